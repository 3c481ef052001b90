from __future__ import annotations

import os
import time
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from product_attrs.automation import ready_folders
from product_attrs.classification.serve import Classifier, load_champion
from product_attrs.extraction.assets import image_batches, product_attributes
from product_attrs.extraction.batches import CATALOG_KEY, UnknownBatchError
from product_attrs.extraction.extract import extract_batch, file_sha1, items_for_batch
from product_attrs.modeling.registry import NoChampionError, Registry
from product_attrs.modeling.versions import VersionStore
from product_attrs.resources import ComputeResource, PathsResource, RegistryResource
from product_attrs_tests.extraction.conftest import (
    call_product_attributes,
    NAME,
    write_classifier_version,
    write_images,
)


def _splits(tmp_path: Path, paths: list[Path]) -> Path:
    tmp_path.mkdir(parents=True, exist_ok=True)
    frame = pd.DataFrame(
        {
            "id": [int(p.stem) for p in paths],
            "image_path": [str(p) for p in paths],
            "image_sha1": [file_sha1(p) for p in paths],
        }
    )
    out = tmp_path / "splits.parquet"
    frame.to_parquet(out)
    return out


def test_batches_name_the_catalog_its_shards_and_incoming_folders(tmp_path: Path):
    splits = _splits(tmp_path, write_images(tmp_path / "img", 6))
    incoming = tmp_path / "incoming"
    write_images(incoming / "monday", 2)
    assert len(items_for_batch("catalog", splits, incoming)) == 6
    shards = [items_for_batch(f"catalog-{i}-of-3", splits, incoming) for i in range(3)]
    assert sorted(sum((s["image_key"].tolist() for s in shards), [])) == sorted(map(str, range(100, 106)))
    inc = items_for_batch("incoming-monday", splits, incoming)
    assert inc["image_key"].tolist() == ["monday/100.jpg", "monday/101.jpg"]
    assert inc["product_id"].tolist() == [100, 101]
    with pytest.raises(UnknownBatchError, match="unknown batch"):
        items_for_batch("nightly", splits, incoming)
    with pytest.raises(UnknownBatchError, match="no folder"):
        items_for_batch("incoming-tuesday", splits, incoming)


def test_extraction_labels_every_image_quarantines_broken_ones_and_reuses_work(
    tmp_path: Path, classifier_dir: Path
):
    paths = write_images(tmp_path / "img", 5, broken=1)
    bundle = Classifier.load(classifier_dir)
    items = items_for_batch("catalog", _splits(tmp_path, paths), tmp_path)
    first = extract_batch(items, bundle, batch_size=4, workers=0)
    a = first.attributes
    assert len(a) == 5 and first.n_new == 5
    assert set(a["article_type"]) <= {"Shirts", "Watches"}
    assert a["article_type_confidence"].between(0.5, 1.0).all()  # the argmax of two classes
    emb = np.asarray(a["embedding"].tolist())
    assert emb.shape == (5, 16) and np.allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    assert first.quarantine["record_id"].tolist() == ["900"]
    assert first.quarantine["reason"].tolist() == ["unreadable_image"]

    again = extract_batch(items, bundle, previous=a, batch_size=4, workers=0)
    assert again.n_new == 0 and again.n_reused == 5
    pd.testing.assert_frame_equal(
        again.attributes.drop(columns="extracted_at"), a.drop(columns="extracted_at")
    )

    # A changed image is extracted again; the rest are kept.
    changed = items.copy()
    changed.loc[0, "image_sha1"] = "0" * 40
    third = extract_batch(changed, bundle, previous=a, batch_size=4, workers=0)
    assert third.n_new == 1 and third.n_reused == 4

    # A new model version re-extracts every image, although no image changed.
    newer = Classifier.load(write_classifier_version(tmp_path / "models", seed=1, champion=False))
    assert newer.version != bundle.version
    fourth = extract_batch(items, newer, previous=a, batch_size=4, workers=0)
    assert fourth.n_new == 5 and fourth.n_reused == 0
    assert fourth.attributes["classifier_version"].unique().tolist() == [newer.version]


def test_batched_extraction_matches_one_image_at_a_time(tmp_path: Path, classifier_dir: Path):
    paths = write_images(tmp_path / "img", 6)
    bundle = Classifier.load(classifier_dir)
    items = items_for_batch("catalog", _splits(tmp_path, paths), tmp_path)
    batched = extract_batch(items, bundle, batch_size=6, workers=2).attributes
    single = extract_batch(items, bundle, batch_size=1, workers=0).attributes
    assert batched["article_type"].tolist() == single["article_type"].tolist()
    np.testing.assert_allclose(
        np.asarray(batched["embedding"].tolist()), np.asarray(single["embedding"].tolist()), atol=1e-4
    )


def _extract_catalog(data_dir: Path) -> dg.ExecuteInProcessResult:
    """Materialize the `catalog` partition of `product_attributes` with MLflow off, on CPU."""
    with dg.DagsterInstance.ephemeral() as instance:
        instance.add_dynamic_partitions(image_batches.name, [CATALOG_KEY])
        return dg.materialize(
            [product_attributes],
            partition_key=CATALOG_KEY,
            instance=instance,
            raise_on_error=False,
            resources={
                "paths": PathsResource(data_dir=str(data_dir)),
                "models": RegistryResource(tracking_uri="none"),
                "compute": ComputeResource(device="cpu"),
            },
            run_config={
                "ops": {"product_attributes": {"config": {"detect": "never", "batch_size": 4, "workers": 0}}}
            },
        )


def test_extraction_serves_the_champion_not_a_newer_version(data_env: Path):
    models = data_env / "models"
    champion = write_classifier_version(models, seed=0)
    newer = write_classifier_version(
        models, seed=1, champion=False
    )  # a worse retrain: committed, not promoted
    store = VersionStore(models, NAME)
    assert store.latest() == newer.name and store.champion() == champion.name != newer.name

    served = load_champion(Registry(models))
    assert served.version_dir == champion and served.version == f"{NAME}/{champion.name}"

    catalog = data_env / "catalog"
    paths = write_images(data_env / "img", 3)
    _splits(catalog, paths)
    items = items_for_batch(CATALOG_KEY, catalog / "splits.parquet", data_env / "incoming")
    direct = extract_batch(items, served, batch_size=4, workers=0).attributes
    assert direct["classifier_version"].unique().tolist() == [f"{NAME}/{champion.name}"]

    result = _extract_catalog(data_env)
    assert result.success
    (event,) = result.get_asset_materialization_events()
    assert event.materialization.metadata["classifier"].value == f"{NAME}/{champion.name}"
    out = pd.read_parquet(data_env / "extraction" / "catalog.parquet")
    assert out["classifier_version"].unique().tolist() == [f"{NAME}/{champion.name}"]
    emb = np.asarray(out["embedding"].tolist())
    np.testing.assert_allclose(emb, np.asarray(direct["embedding"].tolist()), atol=1e-5)
    # ... and not the newer version's embeddings (the two versions really differ).
    other = extract_batch(items, Classifier.load(newer), batch_size=4, workers=0).attributes
    assert not np.allclose(emb, np.asarray(other["embedding"].tolist()), atol=1e-3)


def test_without_a_champion_extraction_fails_saying_what_to_materialize(data_env: Path):
    models = data_env / "models"
    with pytest.raises(NoChampionError, match="materialize .*attribute_classifier"):
        load_champion(Registry(models))  # no version at all
    write_classifier_version(models, champion=False)  # a version exists, but none was promoted
    with pytest.raises(NoChampionError, match="no champion of attribute_classifier.*materialize"):
        load_champion(Registry(models))

    _splits(data_env / "catalog", write_images(data_env / "img", 2))
    # The asset called directly: through `materialize` its retry policy would retry this for 20 s.
    with pytest.raises(dg.Failure, match="no champion of attribute_classifier yet: materialize"):
        call_product_attributes(data_env, CATALOG_KEY)
    assert not (data_env / "extraction" / "catalog.parquet").exists()


def test_incoming_folder_is_ready_only_once_it_stops_changing(tmp_path: Path):
    incoming = tmp_path / "incoming"
    write_images(incoming / "done", 1)
    write_images(incoming / "copying", 1)
    (incoming / "empty").mkdir()
    old = time.time() - 120
    for p in (incoming / "done").rglob("*"):
        os.utime(p, (old, old))
    os.utime(incoming / "done", (old, old))
    assert ready_folders(incoming, min_age_seconds=30) == ["done"]
    assert ready_folders(tmp_path / "missing", 30) == []


def _assert_same_rows(a: pd.DataFrame, b: pd.DataFrame) -> None:
    """Same rows, columns and types; numbers equal up to the float noise of other batch compositions."""
    drop = ["extracted_at", "embedding"]
    pd.testing.assert_frame_equal(a.drop(columns=drop), b.drop(columns=drop), check_exact=False, atol=1e-5)
    np.testing.assert_allclose(np.stack(a["embedding"]), np.stack(b["embedding"]), atol=1e-5)


def test_chunked_extraction_writes_bounded_chunks_and_the_same_table(
    tmp_path: Path, classifier_dir: Path, monkeypatch: pytest.MonkeyPatch
):
    """The batch is written a chunk at a time (memory does not grow with the batch), and the table, its
    quarantine and the re-use of earlier rows are what one `extract_batch` over everything gives."""
    import pyarrow.parquet as pq

    from product_attrs.extraction.extract import extract_to_parquet

    paths = write_images(tmp_path / "img", 7, broken=2)
    bundle = Classifier.load(classifier_dir)
    items = items_for_batch("catalog", _splits(tmp_path, paths), tmp_path).sample(frac=1, random_state=1)
    whole = extract_batch(items, bundle, batch_size=4, workers=0)

    written: list[int] = []
    write_table = pq.ParquetWriter.write_table
    monkeypatch.setattr(
        pq.ParquetWriter,
        "write_table",
        lambda self, table, *a, **k: (written.append(table.num_rows), write_table(self, table, *a, **k))[1],
    )
    out = tmp_path / "out" / "catalog.parquet"
    out.parent.mkdir()
    first = extract_to_parquet(items, bundle, None, out, chunk_rows=3, batch_size=4, workers=0)
    assert written == [3, 3, 1] and first.chunks == 3  # 9 images, 2 unreadable, 3 at a time
    assert (first.rows, first.n_new, first.n_reused) == (7, 7, 0)
    table = pd.read_parquet(out)
    _assert_same_rows(table, whole.attributes)
    pd.testing.assert_frame_equal(first.quarantine, whole.quarantine)
    assert first.counts == whole.attributes["article_type"].value_counts().to_dict()
    assert not list(out.parent.glob(".*.tmp"))

    written.clear()
    changed = items.copy()
    changed.loc[changed["image_key"] == "104", "image_sha1"] = "0" * 40
    again = extract_to_parquet(changed, bundle, None, out, chunk_rows=3, batch_size=4, workers=0)
    assert (again.n_new, again.n_reused) == (1, 6) and written == [3, 3, 1]
    kept = pd.read_parquet(out)
    _assert_same_rows(kept, whole.attributes.assign(image_sha1=kept["image_sha1"]))
    assert kept.loc[kept["image_key"] == "104", "image_sha1"].tolist() == ["0" * 40]
    unchanged = kept["image_key"] != "104"
    assert kept.loc[unchanged, "extracted_at"].tolist() == table.loc[unchanged, "extracted_at"].tolist()
