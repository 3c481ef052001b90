"""The `recognitions` asset on incoming folders: each folder recognized is kept, a folder recognized
again replaces only its own rows, and the warehouse tables say so; a folder outside the allowed roots is
refused before anything in it is read."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from dagster import materialize

from product_attrs.warehouse.lake import Lake, exists, reading
from product_attrs.resources import ComputeResource, PathsResource, RegistryResource, WarehouseResource
from product_attrs.retrieval.assets import recognitions
from product_attrs.retrieval.gallery import build_gallery, gallery_rows
from product_attrs.settings import Settings
from product_attrs_tests.retrieval.conftest import product_image, write_recognizer


def _run(folder: Path, success: bool = True):
    result = materialize(
        [recognitions],
        resources={
            "paths": PathsResource(),
            "models": RegistryResource(tracking_uri="none"),
            "warehouse": WarehouseResource(),
            "compute": ComputeResource(device="cpu"),
        },
        run_config={"ops": {"recognitions": {"config": {"folder": str(folder), "use_detector": False}}}},
        raise_on_error=success,
    )
    assert result.success == success
    return result


def _gallery(settings: Settings, catalog: Path) -> None:
    classifier = write_recognizer(settings.models_dir)
    index, _ = build_gallery(classifier, gallery_rows(catalog, "iconic", classifier.heads[0]))
    index.save(
        settings.recognition_out_dir / "gallery",
        info={"model_version": classifier.version, "model_version_dir": str(classifier.version_dir)},
    )


def test_incoming_folders_accumulate_and_a_rerun_replaces_its_folder(
    data_env: Path, tmp_path: Path, catalog: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("PRODUCT_ATTRS_RECOGNITION_ROOTS", str(tmp_path / "incoming"))
    settings = Settings.from_env()
    _gallery(settings, catalog)
    a, b = tmp_path / "incoming" / "a", tmp_path / "incoming" / "b"
    for folder, products in ((a, [0, 1]), (b, [3])):
        folder.mkdir(parents=True)
        for j, p in enumerate(products):
            product_image(p).save(folder / f"{j}.png")
    (b / "bad.jpg").write_bytes(b"")

    _run(a)
    _run(b)
    (a / "1.png").unlink()  # folder a shrinks to one photo, then is recognized again
    _run(a)

    with reading(Lake.from_settings(settings)) as con:
        rows = con.execute("SELECT folder, photo, product FROM recognitions ORDER BY ALL").fetchall()
        counts = con.execute(
            "SELECT folder, photo, product, facings FROM shelf_product_counts ORDER BY ALL"
        ).fetchall()
        bad = con.execute("SELECT folder, record_id, reason FROM recognition_quarantine").fetchall()
    assert rows == [(str(a), "0.png", "apple"), (str(b), "0.png", "soda")]
    assert counts == [(str(a), "0.png", "apple", 1), (str(b), "0.png", "soda", 1)]
    assert bad == [(str(b), str(b / "bad.jpg"), "unreadable_image")]


def test_a_folder_outside_the_allowed_roots_is_refused_unread(
    data_env: Path, tmp_path: Path, catalog: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("PRODUCT_ATTRS_RECOGNITION_ROOTS", os.pathsep.join(["", str(tmp_path / "allowed")]))
    settings = Settings.from_env()
    _gallery(settings, catalog)
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    product_image(0).save(outside / "0.png")
    sneaky = tmp_path / "allowed" / "link"  # a symlink under an allowed root that leads out of it
    sneaky.parent.mkdir()
    sneaky.symlink_to(outside, target_is_directory=True)
    for folder in (outside, sneaky, tmp_path / "allowed" / ".." / "elsewhere"):
        result = _run(folder, success=False)
        failure = result.failure_data_for_node("recognitions")
        assert "FolderNotAllowed" in failure.error.cause.cls_name
        assert "recognitions.folder is outside the allowed roots" in failure.error.cause.message
    assert (
        not exists(Lake.from_settings(settings))
        and not (settings.recognition_out_dir / "recognitions.parquet").exists()
    )
    # A folder under the data root is allowed without any setting.
    inside = settings.data_dir / "incoming"
    inside.mkdir(parents=True)
    product_image(1).save(inside / "0.png")
    _run(inside)
    with reading(Lake.from_settings(settings)) as con:
        assert con.execute("SELECT photo, product FROM recognitions").fetchall() == [("0.png", "milk")]


def test_a_gallery_naming_a_model_outside_the_models_folder_is_refused(
    data_env: Path, tmp_path: Path, catalog: Path
):
    """The gallery's info.json is read back from disk: the model folder it names must be a model version."""
    settings = Settings.from_env()
    _gallery(settings, catalog)
    info_file = settings.recognition_out_dir / "gallery" / "gallery.json"
    info = json.loads(info_file.read_text())
    elsewhere = tmp_path / "elsewhere_model"
    shutil.copytree(info["model_version_dir"], elsewhere)
    info["model_version_dir"] = str(elsewhere)
    info_file.write_text(json.dumps(info))
    inside = settings.data_dir / "incoming"
    inside.mkdir(parents=True)
    product_image(1).save(inside / "0.png")
    result = _run(inside, success=False)
    assert "outside" in result.failure_data_for_node("recognitions").error.message
