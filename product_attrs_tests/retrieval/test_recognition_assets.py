"""The `recognitions` asset on incoming folders: each folder recognized is kept, a folder recognized
again replaces only its own rows, and the warehouse tables say so."""

from __future__ import annotations

from pathlib import Path

import duckdb
from dagster import materialize

from product_attrs.resources import ComputeResource, PathsResource, RegistryResource, WarehouseResource
from product_attrs.retrieval.assets import recognitions
from product_attrs.retrieval.gallery import build_gallery, gallery_rows
from product_attrs.settings import Settings
from product_attrs_tests.retrieval.conftest import product_image, write_recognizer


def _run(folder: Path) -> None:
    result = materialize(
        [recognitions],
        resources={
            "paths": PathsResource(),
            "models": RegistryResource(tracking_uri="none"),
            "warehouse": WarehouseResource(),
            "compute": ComputeResource(device="cpu"),
        },
        run_config={"ops": {"recognitions": {"config": {"folder": str(folder), "use_detector": False}}}},
    )
    assert result.success


def test_incoming_folders_accumulate_and_a_rerun_replaces_its_folder(
    data_env: Path, tmp_path: Path, catalog: Path
):
    settings = Settings.from_env()
    classifier = write_recognizer(settings.models_dir)
    index, _ = build_gallery(classifier, gallery_rows(catalog, "iconic", classifier.heads[0]))
    index.save(
        settings.recognition_out_dir / "gallery",
        info={"model_version": classifier.version, "model_version_dir": str(classifier.version_dir)},
    )
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

    with duckdb.connect(str(settings.warehouse_path), read_only=True) as con:
        rows = con.execute("SELECT folder, photo, product FROM recognitions ORDER BY ALL").fetchall()
        counts = con.execute(
            "SELECT folder, photo, product, facings FROM shelf_product_counts ORDER BY ALL"
        ).fetchall()
        bad = con.execute("SELECT folder, record_id, reason FROM recognition_quarantine").fetchall()
    assert rows == [(str(a), "0.png", "apple"), (str(b), "0.png", "soda")]
    assert counts == [(str(a), "0.png", "apple", 1), (str(b), "0.png", "soda", 1)]
    assert bad == [(str(b), str(b / "bad.jpg"), "unreadable_image")]
