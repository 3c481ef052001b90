from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from product_attrs.automation import ready_folders
from product_attrs.extraction.batch import ClassifierBundle, file_sha1
from product_attrs.extraction.extract import UnknownBatchError, extract_batch, items_for_batch
from product_attrs.extraction.models import champion_dir
from product_attrs_tests.extraction.conftest import write_images


def _splits(tmp_path: Path, paths: list[Path]) -> Path:
    frame = pd.DataFrame(
        {"id": [int(p.stem) for p in paths], "image_path": [str(p) for p in paths],
         "image_sha1": [file_sha1(p) for p in paths]}
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


def test_extraction_labels_every_image_quarantines_broken_ones_and_reuses_work(tmp_path: Path, classifier_dir: Path):
    paths = write_images(tmp_path / "img", 5, broken=1)
    bundle = ClassifierBundle.from_version_dir(classifier_dir)
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
    pd.testing.assert_frame_equal(again.attributes.drop(columns="extracted_at"), a.drop(columns="extracted_at"))

    # A changed image is extracted again; the rest are kept.
    changed = items.copy()
    changed.loc[0, "image_sha1"] = "0" * 40
    third = extract_batch(changed, bundle, previous=a, batch_size=4, workers=0)
    assert third.n_new == 1 and third.n_reused == 4


def test_batched_extraction_matches_one_image_at_a_time(tmp_path: Path, classifier_dir: Path):
    paths = write_images(tmp_path / "img", 6)
    bundle = ClassifierBundle.from_version_dir(classifier_dir)
    items = items_for_batch("catalog", _splits(tmp_path, paths), tmp_path)
    batched = extract_batch(items, bundle, batch_size=6, workers=2).attributes
    single = extract_batch(items, bundle, batch_size=1, workers=0).attributes
    assert batched["article_type"].tolist() == single["article_type"].tolist()
    np.testing.assert_allclose(np.asarray(batched["embedding"].tolist()), np.asarray(single["embedding"].tolist()), atol=1e-4)


def test_latest_version_is_used_when_the_registry_has_no_champion(tmp_path: Path, classifier_dir: Path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    found, how = champion_dir(uri, classifier_dir.parent.parent, "attribute_classifier")
    assert found == classifier_dir and "latest" in how
    assert champion_dir(uri, tmp_path / "none", "attribute_classifier")[0] is None


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
