"""The whole recognition path on the real Grocery Store Dataset: ingest, train a small recognizer, embed
the iconic gallery, score recall@k and head top-1 on test photos, and recognize a folder of real photos.

Small on purpose (a frozen ImageNet backbone, 64 px, one epoch on 10 photos per product plus the
recognizer's gallery images) so that it runs in the default suite; the full-size figures come from
bench/bench_recognizer_real.py.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest

from product_attrs.catalog.grocery import ingest_grocery
from product_attrs.classification.config import PROFILES, TrainConfig
from product_attrs.classification.serve import load_champion
from product_attrs.classification.train import train
from product_attrs.modeling.config import resolve
from product_attrs.modeling.registry import Registry
from product_attrs.retrieval.evaluate import evaluate_recognizer
from product_attrs.retrieval.gallery import build_gallery, gallery_rows
from product_attrs.retrieval.recognize import list_photos, product_counts, recognize_photos
from product_attrs_tests.conftest import real_data_dir

CHANCE_AT_5 = 5 / 81


@pytest.mark.real_data
def test_recognition_end_to_end_on_the_real_grocery_store_dataset(tmp_path: Path) -> None:
    root = real_data_dir("grocery-store")
    catalog_dir = tmp_path / "grocery"
    counts = ingest_grocery(root, catalog_dir, workers=2)
    assert (counts["train"], counts["test"], counts["gallery"]) == (2640, 2485, 81)

    cfg = resolve(
        TrainConfig,
        PROFILES,
        "demo",
        "recognizer",
        {
            "image_size": 64,
            "freeze_stages": 8,
            "embedding_dim": 128,
            "phase1_epochs": 1,
            "phase1_lr": 0.05,
            "phase2_epochs": 0,
            "max_train_rows": 810,
            "max_test_rows": 162,
            "batch_size": 32,
        },
    )
    assert (cfg.heads, cfg.metric_loss) == (
        "fine_label:1.0,coarse_label:0.5",
        "arcface",
    )  # the recognizer overlay
    registry = Registry(tmp_path / "models")
    result = train(
        cfg,
        catalog_dir,
        registry,
        model="product_recognizer",
        device="cpu",
        allow_download=False,
        log=lambda _: None,
    )
    assert result.version_dir.parent.name == "product_recognizer"
    assert {"test_top1_fine_label", "test_top1_coarse_label"} <= set(result.metrics)
    assert (
        result.promotion.promoted and registry.champion("product_recognizer") == result.version
    )  # the first

    classifier = load_champion(registry, "product_recognizer")  # what the gallery_index asset serves
    assert classifier.version_dir == result.version_dir
    assert classifier.heads == ["fine_label", "coarse_label"]
    index, quarantine = build_gallery(classifier, gallery_rows(catalog_dir, "iconic", "fine_label"))
    assert len(index.products) == 81 and quarantine.empty
    ev = evaluate_recognizer(classifier, index, catalog_dir, split="test", max_rows=300)
    m = ev.metrics
    assert m["queries"] == 300 and m["queries_without_gallery_product"] == 0
    # One epoch on 10 photos per product (and the gallery images), against studio images: far from the full
    # run, far above chance.
    assert m["recall@5"] > 3 * CHANCE_AT_5, m
    assert m["top1_fine_label"] > 3 / 81 and m["top1_coarse_label"] > 3 / 43, m

    # A folder of real photos, recognized whole (each shows one product).
    test = pd.read_parquet(catalog_dir / "splits.parquet").query("split == 'test'").sample(12, random_state=1)
    folder = tmp_path / "photos"
    folder.mkdir()
    for row in test.itertuples():
        shutil.copy(row.image_path, folder / f"{row.id}.jpg")
    found = recognize_photos(list_photos(folder), classifier, index, root=folder)
    assert len(found.rows) == 12 and found.quarantine.empty
    assert set(found.rows["product"]) <= set(index.products)
    per_photo = product_counts(found.rows)
    assert (per_photo["facings"] == 1).all() and len(per_photo) == 12
