"""Extraction on Ray Data gives the in-process table, survives a dead model worker, and runs in the asset.

One local Ray for the module (2 CPUs, no dashboard), as the issue measured: starting one costs seconds.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from product_attrs.classification.serve import Classifier
from product_attrs.engines.ray_cluster import Cluster
from product_attrs.engines.ray_inference import ClassifierActor, RayPredictor, extract_batch_on_ray
from product_attrs.extraction.batches import CATALOG_KEY
from product_attrs.extraction.extract import extract_batch, file_sha1, items_for_batch
from product_attrs_tests.engines.faults import first_caller_dies
from product_attrs_tests.extraction.conftest import write_classifier_version, write_images

ray = pytest.importorskip("ray")


def _catalog(folder: Path, n: int, broken: int = 1) -> pd.DataFrame:
    """``n`` images and ``broken`` unreadable ones as the items of the catalog batch."""
    paths = write_images(folder / "img", n, broken=broken)
    splits = folder / "catalog" / "splits.parquet"
    splits.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(
        {
            "id": [int(p.stem) for p in paths],
            "image_path": [str(p) for p in paths],
            "image_sha1": [file_sha1(p) for p in paths],
        }
    ).to_parquet(splits)
    return items_for_batch(CATALOG_KEY, splits, folder / "incoming")


def _assert_same(ray_frame: pd.DataFrame, local_frame: pd.DataFrame) -> None:
    """Same rows, columns, dtypes and predictions; embeddings within 1e-5."""
    drop = ["extracted_at", "embedding"]
    pd.testing.assert_frame_equal(ray_frame.drop(columns=drop), local_frame.drop(columns=drop))
    np.testing.assert_allclose(
        np.asarray(ray_frame["embedding"].tolist()), np.asarray(local_frame["embedding"].tolist()), atol=1e-5
    )


def test_ray_gives_the_in_process_rows_and_quarantine(cluster: Cluster, tmp_path: Path):
    items = _catalog(tmp_path, 11, broken=1)
    classifier = Classifier.load(write_classifier_version(tmp_path / "models"), "cpu")
    local = extract_batch(items, classifier, batch_size=4, workers=0)
    on_ray = extract_batch_on_ray(items, classifier, cluster=cluster, actors=2, batch_size=4)
    _assert_same(on_ray.attributes, local.attributes)
    pd.testing.assert_frame_equal(on_ray.quarantine, local.quarantine)
    assert on_ray.quarantine["record_id"].tolist() == ["900"]
    assert on_ray.quarantine["detail"].str.startswith("UnidentifiedImageError").all()
    assert (on_ray.n_new, len(on_ray.attributes)) == (local.n_new, 11)
    assert {"ray_decode", "ray_model", "ray_wall", "ray_start_up"} <= set(on_ray.seconds)
    assert 0 < on_ray.seconds["ray_start_up"] < on_ray.seconds["ray_wall"]


class CrashOnceActor(ClassifierActor):
    """A model actor whose process dies on its first batch, once (the marker file says it happened)."""

    def __init__(self, version_dir: str, device: str, marker: str) -> None:
        super().__init__(version_dir, device)
        self.marker = Path(marker)

    def __call__(self, batch):
        first_caller_dies(self.marker)  # the worker process is gone, mid-run, with a batch in hand
        return super().__call__(batch)


def test_a_model_worker_killed_mid_run_costs_no_image(cluster: Cluster, tmp_path: Path):
    items = _catalog(tmp_path, 16, broken=1)
    classifier = Classifier.load(write_classifier_version(tmp_path / "models"), "cpu")
    marker = tmp_path / "crashed"

    predict = RayPredictor.for_classifier(
        classifier,
        cluster,
        actors=2,
        batch_size=4,
        actor_cls=CrashOnceActor,
        actor_kwargs={"marker": str(marker)},
    )
    result = extract_batch(items, classifier, batch_size=4, predict=predict)
    assert marker.exists()  # a worker did die
    local = extract_batch(items, classifier, batch_size=4, workers=0)
    assert result.attributes["image_key"].is_unique
    _assert_same(result.attributes, local.attributes)
    pd.testing.assert_frame_equal(result.quarantine, local.quarantine)


@pytest.mark.slow  # 30 s on 2 cores: the engine's equivalence is tested above, this is the asset's wiring
def test_the_asset_on_cluster_writes_the_in_process_parquet(
    cluster: Cluster, data_env: Path, monkeypatch: pytest.MonkeyPatch
):
    import dagster as dg

    from product_attrs.extraction.assets import ExtractionConfig, product_attributes
    from product_attrs.resources import ComputeResource, PathsResource, RegistryResource

    monkeypatch.delenv("PRODUCT_ATTRS_RAY_ADDRESS", raising=False)
    write_classifier_version(data_env / "models")
    _catalog(data_env, 9, broken=1)
    out = data_env / "extraction" / "catalog.parquet"
    tables, metadata = {}, {}
    for address in ("", "local"):
        with dg.build_asset_context(partition_key=CATALOG_KEY) as context:
            result = product_attributes(
                context,
                config=ExtractionConfig(detect="never", workers=0, batch_size=4, ray_actors=1),
                paths=PathsResource(data_dir=str(data_env)),
                models=RegistryResource(tracking_uri="none"),
                compute=ComputeResource(device="cpu", engine=address),
            )
        tables[address] = pd.read_parquet(out)
        metadata[address] = result.metadata
        out.unlink()  # the second run extracts again instead of re-using the first's rows
    _assert_same(tables["local"], tables[""])
    assert metadata["local"]["engine"] == "ray local (1 actors)"
    assert metadata[""]["engine"] == "in-process"
    assert metadata["local"]["unreadable"] == metadata[""]["unreadable"] == 1
    quarantine = pd.read_parquet(data_env / "extraction" / "catalog.quarantine.parquet")
    assert quarantine["record_id"].tolist() == ["900"]


@pytest.mark.slow
def test_the_gallery_embedded_on_ray_equals_the_in_process_one(cluster: Cluster, tmp_path: Path):
    from product_attrs.engines.ray_inference import predictor_for
    from product_attrs.retrieval.gallery import build_gallery

    paths = write_images(tmp_path / "img", 6, broken=1)
    rows = pd.DataFrame({"image_path": [str(p) for p in paths], "article_type": ["Shirts"] * len(paths)})
    classifier = Classifier.load(write_classifier_version(tmp_path / "models"), "cpu")
    local, local_q = build_gallery(classifier, rows, batch_size=4, workers=0)
    on_ray, ray_q = build_gallery(classifier, rows, predict=predictor_for(classifier, "local", batch_size=4))
    pd.testing.assert_frame_equal(ray_q, local_q)
    pd.testing.assert_frame_equal(on_ray.items, local.items)
    np.testing.assert_allclose(on_ray.embeddings, local.embeddings, atol=1e-5)
