"""One dataclass drives the flags, the profiles and the recognizer overlay; bad settings fail with a message
naming them."""

from __future__ import annotations

import dataclasses

import pytest

from product_attrs.classification.config import (
    PROFILES,
    ConfigError,
    HeadSpec,
    TextConfig,
    TrainConfig,
    parse_heads,
)
from product_attrs.classification.train import build_parser, main
from product_attrs.modeling.config import from_args, resolve


def resolve_config(cls, profile: str = "demo", overrides=None, overlay=None):
    return resolve(cls, PROFILES, profile, overlay, overrides)


def test_heads_parse_with_default_weight():
    assert parse_heads("article_type:2, sub_category") == [
        HeadSpec("article_type", 2.0),
        HeadSpec("sub_category", 1.0),
    ]


@pytest.mark.parametrize(
    ("heads", "message"),
    [
        ("", "no label column"),
        ("a:x", "not a number"),
        ("a:-1", "positive"),
        ("a,a", "twice"),
        (":1", "empty"),
    ],
)
def test_bad_heads_are_named(heads, message):
    with pytest.raises(ConfigError, match=message):
        parse_heads(heads)


def test_profile_then_overrides():
    demo = resolve_config(TrainConfig, "demo", {"phase1_epochs": 7, "batch_size": None})
    assert demo.backbone == PROFILES.profiles["demo"]["backbone"] == "efficientnet_lite0"
    assert demo.phase1_epochs == 7 and demo.batch_size == PROFILES.profiles["demo"]["batch_size"] == 32
    assert resolve_config(TrainConfig, "full").backbone == "resnet50"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"backbone": "vgg11"}, "unknown backbone 'vgg11'"),
        ({"pretrained": "yes"}, "unknown pretrained"),
        ({"phase2_rows": "some"}, "unknown phase2_rows"),
        ({"phase1_lr": 0.0}, "phase1_lr"),
        ({"phase1_epochs": 0, "phase2_epochs": 0}, "nothing to train"),
        ({"crop_scale_min": 0.0}, "crop_scale_min"),
        ({"nonsense": 1}, "unknown setting 'nonsense'"),
    ],
)
def test_bad_config_is_a_clear_error(overrides, message):
    with pytest.raises(ConfigError, match=message):
        resolve_config(TrainConfig, "demo", overrides)


def test_unknown_profile():
    with pytest.raises(ConfigError, match="unknown profile"):
        resolve_config(TrainConfig, "huge")


def test_every_field_is_a_flag():
    flags = {a.dest for a in build_parser()._actions}
    assert {f.name for f in dataclasses.fields(TrainConfig)} <= flags


def test_cli_flags_reach_the_config():
    args = build_parser().parse_args(
        ["--profile", "full", "--phase1-epochs", "3", "--no-amp", "--heads", "a:1"]
    )
    cfg = from_args(args, TrainConfig, PROFILES)
    assert (cfg.phase1_epochs, cfg.amp, cfg.heads, cfg.backbone) == (3, False, "a:1", "resnet50")


def test_the_recognizer_is_an_overlay_the_command_and_the_asset_share():
    """`--model-name product_recognizer` trains what the `product_recognizer` asset trains."""
    from product_attrs.classification.config import PRODUCT_RECOGNIZER, model_spec
    from product_attrs.modeling.assets import resolve_config as dagster_resolve
    from product_attrs.classification.assets import ClassifierConfig

    args = build_parser().parse_args(["--model-name", "product_recognizer", "--seed", "3"])
    from_cli = from_args(args, TrainConfig, PROFILES, overlay=model_spec(args.model_name).overlay)
    from_asset = dagster_resolve(ClassifierConfig(seed=3), TrainConfig, PROFILES, PRODUCT_RECOGNIZER.overlay)
    assert from_cli == from_asset
    assert PRODUCT_RECOGNIZER.overlay == "recognizer"
    assert (from_cli.heads, from_cli.metric_loss, from_cli.gallery_repeats) == (
        "fine_label:1.0,coarse_label:0.5",
        "arcface",
        3,
    )
    assert (from_cli.image_size, from_cli.embedding_dim, from_cli.phase1_epochs) == (96, 256, 6)  # demo part
    full = resolve_config(TrainConfig, "full", overlay="recognizer")
    assert (full.image_size, full.backbone, full.metric_loss) == (224, "resnet50", "arcface")
    # An explicit value beats the overlay, and the fashion classifier is untouched by it.
    assert resolve_config(TrainConfig, "demo", {"image_size": 64}, overlay="recognizer").image_size == 64
    assert resolve_config(TrainConfig, "demo").metric_loss == "none"


def test_unknown_overlay_is_named():
    with pytest.raises(ConfigError, match="unknown overlay 'grocer'"):
        resolve_config(TrainConfig, "demo", overlay="grocer")


def test_cli_bad_backbone_exits_2_without_traceback(capsys):
    assert main(["--backbone", "vgg11"]) == 2
    err = capsys.readouterr().err
    assert "unknown backbone 'vgg11'" in err and "Traceback" not in err


def test_text_config_validates():
    with pytest.raises(ConfigError, match="fusion_weight"):
        TextConfig(fusion_weight=2.0).validate()
    with pytest.raises(ConfigError, match="fusion_method"):
        TextConfig(fusion_method="max").validate()
