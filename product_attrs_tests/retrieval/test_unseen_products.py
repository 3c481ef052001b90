"""Recall of unseen products: queries of the products a recognizer was trained without (`holdout_products`)
are scored apart, against the gallery of all products, in the evaluation, the `gallery_evaluation` table
and the `gallery_index` asset's metadata."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from dagster import materialize

from product_attrs.warehouse.lake import Lake, reading
from product_attrs.classification.serve import Classifier
from product_attrs.resources import ComputeResource, PathsResource, RegistryResource, WarehouseResource
from product_attrs.retrieval.assets import gallery_index
from product_attrs.retrieval.evaluate import evaluate_queries, evaluate_recognizer, held_out_products
from product_attrs.retrieval.gallery import build_gallery, gallery_rows
from product_attrs.retrieval.index import GalleryIndex
from product_attrs.settings import Settings
from product_attrs_tests.retrieval.conftest import write_recognizer


def _hand_made() -> tuple[GalleryIndex, np.ndarray, pd.DataFrame]:
    """Products a, b, c on three axes; the photo of b looks like c (wrong first, right within the top 5)."""
    index = GalleryIndex(np.eye(3, dtype=np.float32), pd.DataFrame({"sku": ["a", "b", "c"]}), key="sku")
    queries = np.array([[1, 0.1, 0], [0, 0.5, 0.9], [0, 0, 1]], dtype=np.float32)
    return index, queries, pd.DataFrame({"sku": ["a", "b", "c"]})


def test_seen_and_unseen_products_are_scored_apart():
    index, embeddings, queries = _hand_made()
    metrics, per_query, _ = evaluate_queries(index, embeddings, queries, held_out=["b"])
    assert per_query["seen"].tolist() == [True, False, True]
    assert metrics["recall@1"] == pytest.approx(2 / 3) and metrics["recall@5"] == 1.0
    assert (metrics["recall@1_seen"], metrics["recall@5_seen"]) == (1.0, 1.0)
    assert (metrics["recall@1_unseen"], metrics["recall@5_unseen"]) == (0.0, 1.0)
    assert (metrics["queries_unseen"], metrics["held_out_products"]) == (1, 1)


def test_without_a_holdout_every_query_is_seen():
    index, embeddings, queries = _hand_made()
    metrics, per_query, _ = evaluate_queries(index, embeddings, queries)
    assert per_query["seen"].all() and metrics["queries_unseen"] == 0
    assert metrics["recall@1_seen"] == metrics["recall@1"] and math.isnan(metrics["recall@1_unseen"])


def _recognizer_without(models: Path, held_out: list[str]) -> Classifier:
    """The conftest's recognizer, its manifest saying it was trained without `held_out`."""
    classifier = write_recognizer(models)
    manifest = classifier.manifest
    manifest.info["holdout_products"] = {"column": "fine_label", "fraction": 0.25, "classes": held_out}
    manifest.write(classifier.version_dir)
    return Classifier.load(classifier.version_dir)


def test_the_recognizer_evaluation_reads_the_versions_holdout(tmp_path: Path, catalog: Path):
    classifier = _recognizer_without(tmp_path / "models", ["milk"])
    assert held_out_products(classifier) == ["milk"]
    assert held_out_products(write_recognizer(tmp_path / "other")) == []  # an older version: none
    index, _ = build_gallery(classifier, gallery_rows(catalog, "iconic", "fine_label"))
    assert len(index.products) == 4  # the gallery holds every product, held-out ones included
    ev = evaluate_recognizer(classifier, index, catalog, split="test")
    assert ev.per_query.set_index("fine_label")["seen"].to_dict() == {
        "apple": True,
        "milk": False,
        "oat": True,
    }
    # Test photos are copies of gallery images: found whether seen or not.
    assert (ev.metrics["recall@1_seen"], ev.metrics["recall@1_unseen"], ev.metrics["queries_unseen"]) == (
        1.0,
        1.0,
        1,
    )
    assert {"top1_fine_label_seen", "top1_fine_label_unseen", "top1_coarse_label_unseen"} <= set(ev.metrics)


def test_gallery_index_publishes_the_seen_column_and_unseen_recall(data_env: Path, catalog: Path):
    settings = Settings.from_env()
    shutil.copytree(catalog, settings.grocery_out_dir)  # image paths are absolute
    _recognizer_without(settings.models_dir, ["milk"])
    result = materialize(
        [gallery_index],
        resources={
            "paths": PathsResource(),
            "models": RegistryResource(tracking_uri="none"),
            "warehouse": WarehouseResource(),
            "compute": ComputeResource(device="cpu"),
        },
    )
    assert result.success
    meta = {
        k: v.value for k, v in result.asset_materializations_for_node("gallery_index")[0].metadata.items()
    }
    assert (meta["recall@1_unseen"], meta["recall@5_unseen"], meta["queries_unseen"]) == (1.0, 1.0, 1)
    assert (meta["recall@1_seen"], meta["held_out_products"]) == (1.0, 1)
    with reading(Lake.from_settings(settings)) as con:
        rows = con.execute("SELECT fine_label, seen FROM gallery_evaluation ORDER BY fine_label").fetchall()
    assert rows == [("apple", True), ("milk", False), ("oat", True)]
