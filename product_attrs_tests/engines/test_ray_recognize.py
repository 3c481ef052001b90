"""Recognition of a photo folder on Ray Data gives the in-process rows and quarantine.

One local Ray for the module (2 CPUs, no dashboard); its workers import this checkout (Ray puts the cwd on
their path), the test's stand-in detector included.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from product_attrs.engines.ray_cluster import Cluster
from product_attrs.engines.ray_recognize import RayRecognizer, RecognizeActor
from product_attrs.retrieval.gallery import build_gallery, gallery_rows
from product_attrs.retrieval.recognize import list_photos, recognize_photos
from product_attrs_tests.engines.faults import first_caller_dies
from product_attrs_tests.retrieval.conftest import SIZE, catalog, product_image, write_recognizer  # noqa: F401
from product_attrs_tests.retrieval.test_recognize import BoxesDetector

ray = pytest.importorskip("ray")


def _assert_same(on_ray, local) -> None:
    """Same rows, columns and quarantine; similarities within 1e-5."""
    close = ["similarity", "runner_up_similarity", "predicted_confidence"]
    pd.testing.assert_frame_equal(on_ray.rows.drop(columns=close), local.rows.drop(columns=close))
    for c in close:
        np.testing.assert_allclose(
            on_ray.rows[c].to_numpy(float), local.rows[c].to_numpy(float), atol=1e-5, err_msg=c
        )
    pd.testing.assert_frame_equal(on_ray.quarantine, local.quarantine)


def _photos(folder: Path) -> Path:
    """Copies of gallery products, one image in no gallery, two unreadable files, a nested folder."""
    (folder / "sub").mkdir(parents=True)
    for j, p in enumerate([0, 1, 3, 2]):
        product_image(p).save(folder / f"{j}.png")
    Image.fromarray(np.full((SIZE, SIZE, 3), 128, np.uint8)).save(folder / "sub" / "grey.png")
    (folder / "broken.jpg").write_bytes(b"not a jpeg")
    (folder / "sub" / "empty.png").write_bytes(b"")
    return folder


@pytest.fixture
def whole_photos(tmp_path: Path, catalog: Path):  # noqa: F811
    """The recognizer, its gallery, the photo folder and its photos, and the recognition options."""
    classifier = write_recognizer(tmp_path / "models")
    index, _ = build_gallery(classifier, gallery_rows(catalog, "iconic", classifier.heads[0]))
    folder = _photos(tmp_path / "photos")
    return classifier, index, list_photos(folder), {"min_similarity": 0.999, "root": folder}


def test_whole_photos_on_ray_give_the_in_process_rows_and_quarantine(cluster: Cluster, whole_photos):
    classifier, index, photos, options = whole_photos
    local = recognize_photos(photos, classifier, index, **options)
    engine = RayRecognizer(Path(classifier.version_dir), cluster, actors=2, photo_batch=2)
    on_ray = engine.recognize(photos, classifier, index, **options)
    _assert_same(on_ray, local)
    assert len(on_ray.rows) == 5 and len(on_ray.quarantine) == 2
    assert on_ray.rows["product"].tolist()[:4] == ["apple", "milk", "soda", "oat"]
    assert {"ray_wall", "ray_photos"} <= set(engine.seconds)


class CrashOnceRecognizer(RecognizeActor):
    """A recognition actor whose process dies on its first batch, once in the whole run."""

    def __init__(self, *args, marker: str, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.marker = Path(marker)

    def __call__(self, batch):
        first_caller_dies(self.marker)
        return super().__call__(batch)


def test_a_recognition_worker_killed_mid_run_costs_no_photo(cluster: Cluster, whole_photos, tmp_path: Path):
    classifier, index, photos, options = whole_photos
    marker = tmp_path / "crashed"
    engine = RayRecognizer(
        Path(classifier.version_dir),
        cluster,
        actors=2,
        photo_batch=2,
        actor_cls=CrashOnceRecognizer,
        actor_kwargs={"marker": str(marker)},
    )
    on_ray = engine.recognize(photos, classifier, index, **options)
    assert marker.exists()  # a worker did die
    _assert_same(on_ray, recognize_photos(photos, classifier, index, **options))
    assert len(on_ray.rows) == 5 and on_ray.rows["photo"].is_unique


@pytest.mark.slow
def test_detected_objects_on_ray_give_the_in_process_rows(
    cluster: Cluster,
    tmp_path: Path,
    catalog: Path,  # noqa: F811
):
    classifier = write_recognizer(tmp_path / "models")
    index, _ = build_gallery(classifier, gallery_rows(catalog, "iconic", classifier.heads[0]))
    folder = tmp_path / "photos"
    folder.mkdir()
    boxes = []
    shelf = Image.new("RGB", (3 * SIZE, SIZE), "white")
    for slot, product in enumerate([0, 1, 3]):
        shelf.paste(product_image(product), (slot * SIZE, 0))
        boxes.append((slot * SIZE, 0, (slot + 1) * SIZE, SIZE, 0.9))
    boxes.append((0, 0, SIZE, SIZE, 0.1))  # below the threshold
    for name in ("a", "b", "c"):  # the stand-in detects the same boxes in every photo of a batch
        shelf.save(folder / f"{name}.png")
    (folder / "broken.jpg").write_bytes(b"not a jpeg")
    detector = BoxesDetector({0: boxes, 1: boxes})
    photos = list_photos(folder)
    options = {"detector": detector, "score_thresh": 0.5, "crop_pad": 0.0, "root": folder}
    local = recognize_photos(photos, classifier, index, **options)
    on_ray = RayRecognizer(Path(classifier.version_dir), cluster, actors=1).recognize(
        photos, classifier, index, **options
    )
    _assert_same(on_ray, local)
    assert len(on_ray.rows) == 9 and on_ray.quarantine["reason"].tolist() == ["unreadable_image"]


@pytest.mark.slow  # the engine's equivalence is tested above, this is the asset's wiring
def test_the_asset_on_cluster_writes_the_in_process_rows(
    cluster: Cluster,
    data_env: Path,
    tmp_path: Path,
    catalog: Path,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
):
    import dagster as dg

    from product_attrs.resources import ComputeResource, PathsResource, RegistryResource, WarehouseResource
    from product_attrs.retrieval.assets import RecognitionConfig, recognitions
    from product_attrs.settings import Settings

    monkeypatch.delenv("PRODUCT_ATTRS_RAY_ADDRESS", raising=False)
    monkeypatch.setenv("PRODUCT_ATTRS_RECOGNITION_ROOTS", str(tmp_path / "incoming"))
    settings = Settings.from_env()
    classifier = write_recognizer(settings.models_dir)
    index, _ = build_gallery(classifier, gallery_rows(catalog, "iconic", classifier.heads[0]))
    index.save(
        settings.recognition_out_dir / "gallery",
        info={"model_version": classifier.version, "model_version_dir": str(classifier.version_dir)},
    )
    folder = _photos(tmp_path / "incoming" / "a")
    out = settings.recognition_out_dir
    tables, metadata = {}, {}
    for address in ("", "local"):
        with dg.build_asset_context() as context:
            result = recognitions(
                context,
                config=RecognitionConfig(folder=str(folder), use_detector=False, ray_actors=1),
                paths=PathsResource(),
                models=RegistryResource(tracking_uri="none"),
                warehouse=WarehouseResource(),
                compute=ComputeResource(device="cpu", engine=address),
            )
        tables[address] = {
            t: pd.read_parquet(out / f"{t}.parquet") for t in ("recognitions", "recognition_quarantine")
        }
        metadata[address] = result.metadata
    close = ["similarity", "runner_up_similarity", "predicted_confidence"]
    ray_rows, local_rows = tables["local"]["recognitions"], tables[""]["recognitions"]
    pd.testing.assert_frame_equal(ray_rows.drop(columns=close), local_rows.drop(columns=close))
    np.testing.assert_allclose(ray_rows[close].to_numpy(float), local_rows[close].to_numpy(float), atol=1e-5)
    pd.testing.assert_frame_equal(
        tables["local"]["recognition_quarantine"], tables[""]["recognition_quarantine"]
    )
    assert metadata["local"]["engine"] == "ray local (1 actors)"
    assert metadata[""]["engine"] == "in-process"
    assert metadata["local"]["unreadable_photos"] == metadata[""]["unreadable_photos"] == 2
