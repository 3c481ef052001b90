"""The CPU recipe's parts: frozen stages cached on disk, the non-square input, the validation split kept out
of training for the fusion, and the logit-adjusted loss."""

from __future__ import annotations


import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from product_attrs.classification.config import PROFILES, ConfigError, HeadSpec, TrainConfig
from product_attrs.classification.data import validation_split
from product_attrs.classification.feature_cache import CACHE_FOLDER
from product_attrs.classification.losses import multitask_loss
from product_attrs.classification.model import Backbone
from product_attrs.classification.serve import Classifier
from product_attrs.classification.train import train
from product_attrs.modeling.config import resolve
from product_attrs.modeling.registry import Registry
from product_attrs_tests.classification.conftest import make_tiny_catalog
from product_attrs_tests.classification.helpers import fast_config


@pytest.mark.parametrize("name", ["efficientnet_lite0", "resnet18"])
def test_the_network_run_from_any_stage_computes_what_it_computes_whole(name):
    torch.manual_seed(0)
    backbone = Backbone(name).eval()
    x = torch.randn(2, 3, 48, 32)
    with torch.no_grad():
        whole = (
            backbone.net(x)
            if name == "resnet18"
            else F.adaptive_avg_pool2d(backbone.net.extract_features(x), 1).flatten(1)
        )
        for stage in range(len(backbone.stages)):
            torch.testing.assert_close(backbone(backbone.run_stages(x, 0, stage), stage), whole)


def test_validation_split_is_stratified_seeded_and_never_takes_a_class_s_last_row():
    rows = pd.DataFrame({"id": range(23), "label": ["a"] * 20 + ["b"] * 2 + ["c"]})
    train_rows, val = validation_split(rows, "label", 0.2)
    assert sorted(val["label"].value_counts().items()) == [("a", 4)]  # b: round(0.4) = 0; c: its only row
    assert len(train_rows) + len(val) == 23 and not set(train_rows["id"]) & set(val["id"])
    assert validation_split(rows, "label", 0.2)[1]["id"].tolist() == val["id"].tolist()
    assert validation_split(rows, "label", 0.5)[1]["label"].value_counts().to_dict() == {"a": 10, "b": 1}
    assert validation_split(rows, "label", 0.0)[1].empty


def test_logit_adjusted_loss_is_cross_entropy_of_the_shifted_logits():
    logits = {"a": torch.tensor([[2.0, 0.0, -1.0], [0.5, 0.5, 0.0]])}
    y = torch.tensor([[1], [2]])
    offsets = {"a": torch.log(torch.tensor([0.8, 0.15, 0.05]))}
    loss, _ = multitask_loss(logits, y, [HeadSpec("a", 1.0)], logit_offsets=offsets)
    torch.testing.assert_close(loss, F.cross_entropy(logits["a"] + offsets["a"], y[:, 0]))
    plain, _ = multitask_loss(logits, y, [HeadSpec("a", 1.0)])
    assert float(loss) > float(plain)  # rare true classes: the adjusted loss asks for a larger margin


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"feature_cache": True}, "feature_cache needs freeze_stages"),
        ({"val_fraction": 0.5}, "val_fraction must be in"),
        ({"logit_adjustment": -1.0}, "logit_adjustment must be"),
        ({"image_height": 8}, "image_height must be"),
        ({"optimizer": "lamb"}, "unknown optimizer"),
    ],
)
def test_recipe_settings_are_validated(overrides, message):
    with pytest.raises(ConfigError, match=message):
        TrainConfig(**overrides).validate()


def test_the_cpu_profile_is_the_cached_recipe():
    cfg = resolve(TrainConfig, PROFILES, "cpu", None, {})
    assert (cfg.feature_cache, cfg.freeze_stages, cfg.input_size()) == (True, 6, (128, 96))
    assert cfg.val_fraction > 0 and cfg.backbone == "efficientnet_lite0"


def test_training_from_cached_features_serves_the_same_predictions_on_images(tmp_path):
    catalog = make_tiny_catalog(tmp_path / "data", scale=2)
    registry = Registry(tmp_path / "models")
    cfg = fast_config(
        freeze_stages=7,
        feature_cache=True,
        image_size=32,
        image_height=48,
        val_fraction=0.2,
        logit_adjustment=1.0,
        phase1_epochs=2,
    )
    logs: list[str] = []
    result = train(cfg, catalog, registry, device="cpu", allow_download=False, log=logs.append)

    caches = sorted((catalog / CACHE_FOLDER).glob("*.npy"))
    assert len(caches) == 2  # training rows (two views) and test rows (one)
    shapes = sorted(np.load(p, mmap_mode="r").shape[:2] for p in caches)
    info = result.manifest.info
    assert shapes == sorted([(1, info["n_test"]), (2, info["n_train"] + info["n_val"])])
    assert info["image_height"] == 48 and info["image_size"] == 32

    # The validation rows were predicted, and never trained on.
    with np.load(result.version_dir / "val_predictions.npz") as npz:
        val_ids = set(npz["ids"].tolist())
        assert npz["probs__article_type"].shape[0] == info["n_val"] > 0
    assert "val_top1" in result.metrics

    # Served on images, the version computes what training evaluated on the cached features.
    splits = pd.read_parquet(catalog / "splits.parquet")
    test = splits[splits["split"] == "test"].reset_index(drop=True)
    assert not val_ids & set(test["id"]) and val_ids <= set(splits.loc[splits["split"] == "train", "id"])
    served = Classifier.load(result.version_dir, device="cpu").predict_files(test["image_path"].tolist())
    with np.load(result.version_dir / "test_predictions.npz") as npz:
        assert npz["ids"].tolist() == test["id"].tolist()
        saved = npz["probs__article_type"].argmax(1)
    assert (served.predictions["article_type"] == saved).mean() >= 0.95  # float16 cache vs float32

    # The same frozen stages on the same images: the next training reads the cache.
    train(cfg, catalog, registry, device="cpu", allow_download=False, log=logs.append)
    assert sum("feature cache: reusing" in line for line in logs) == 2
