"""`holdout_products`: a fixed share of the products (primary-head classes) never reaches training, gallery
images included, and the version records which, so that retrieval can score unseen products apart."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from product_attrs.classification.config import PROFILES, ConfigError, TrainConfig
from product_attrs.classification.data import holdout_classes
from product_attrs.classification.task import ClassificationTask
from product_attrs.classification.train import train
from product_attrs.modeling.config import resolve
from product_attrs.modeling.distributed import DistInfo
from product_attrs.modeling.registry import Registry
from product_attrs.modeling.versions import VersionManifest
from product_attrs_tests.classification.helpers import fast_config, grocery_catalog_from

NAMES = [f"product {i:02d}" for i in range(81)]


def test_holdout_classes_is_a_fixed_sorted_share_of_the_names():
    chosen = holdout_classes(NAMES, 0.2)
    assert len(chosen) == 16 and chosen == sorted(chosen) and set(chosen) <= set(NAMES)
    assert holdout_classes(list(reversed(NAMES)), 0.2) == chosen  # the order of the label map is irrelevant
    assert holdout_classes(NAMES, 0.2, seed=1) != chosen
    assert holdout_classes(NAMES, 0.0) == [] and holdout_classes(["only"], 0.5) == []
    assert len(holdout_classes(NAMES[:3], 0.01)) == 1  # at least one
    assert len(holdout_classes(NAMES[:3], 0.9)) == 2  # never all


def test_holdout_products_is_validated_and_only_the_recognizer_holds_out():
    with pytest.raises(ConfigError, match="holdout_products must be in"):
        TrainConfig(holdout_products=1.0).validate()
    with pytest.raises(ConfigError, match="holdout_products must be in"):
        TrainConfig(holdout_products=-0.1).validate()
    assert TrainConfig().holdout_products == 0.0
    assert resolve(TrainConfig, PROFILES, "demo", "recognizer", {}).holdout_products == 0.2
    assert resolve(TrainConfig, PROFILES, "demo", None, {}).holdout_products == 0.0


@pytest.fixture(scope="module")
def grocery_with_gallery(tiny_catalog, tmp_path_factory) -> Path:
    """The tiny catalog as a grocery catalog with a gallery.parquet holding one image of each product."""
    return grocery_catalog_from(
        tiny_catalog, tmp_path_factory.mktemp("grocery_holdout") / "catalog", "holdout0deadbeef", gallery=True
    )


def _config(**overrides) -> TrainConfig:
    settings = {"phase1_epochs": 1, "phase2_epochs": 0, "gallery_repeats": 2, "holdout_products": 0.3}
    return fast_config(heads="fine_label:1.0,coarse_label:0.5", **{**settings, **overrides})


def _task(cfg: TrainConfig, catalog: Path, log=lambda m: None) -> ClassificationTask:
    return ClassificationTask(cfg, catalog, DistInfo(), torch.device("cpu"), log, allow_download=False)


def test_held_out_products_leave_the_training_and_test_rows(grocery_with_gallery):
    classes = json.loads((grocery_with_gallery / "label_maps.json").read_text())["fine_label"]
    held = holdout_classes(classes, 0.3)
    assert len(held) == 2  # round(0.3 x 7)
    logged: list[str] = []
    task = _task(_config(), grocery_with_gallery, logged.append)
    everyone = _task(_config(holdout_products=0.0), grocery_with_gallery)
    assert task.holdout == held and everyone.holdout == []
    assert not set(held) & set(task.train_rows["fine_label"].astype(str))
    assert not set(held) & set(task.test_rows["fine_label"].astype(str))
    gallery_rows = task.train_rows[task.train_rows["id"] < 0]  # gallery images: negative ids
    assert len(gallery_rows) == 2 * (7 - 2) and not set(held) & set(gallery_rows["fine_label"])
    # Nothing else is dropped: the rows of seen products are the same as without a holdout.
    seen = ~everyone.train_rows["fine_label"].astype(str).isin(held)
    assert len(task.train_rows) == int(seen.sum())
    assert any("holdout_products: 2 of 7 fine_label classes" in m for m in logged)


def test_the_version_lists_its_held_out_products(grocery_with_gallery, tmp_path):
    result = train(
        _config(max_test_rows=16),
        grocery_with_gallery,
        Registry(tmp_path),
        model="product_recognizer",
        device="cpu",
        log=lambda m: None,
    )
    classes = json.loads((grocery_with_gallery / "label_maps.json").read_text())["fine_label"]
    info = VersionManifest.read(result.version_dir).info
    assert info["holdout_products"] == {
        "column": "fine_label",
        "fraction": 0.3,
        "seed": 0,
        "classes": holdout_classes(classes, 0.3),
    }
    assert info["label_maps"]["fine_label"] == classes  # the heads still have every class
