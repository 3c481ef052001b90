"""One dataclass drives the flags and the profiles; bad settings fail with a message naming them."""

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
    resolve_config,
)
from product_attrs.classification.train import build_parser, main


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
    assert demo.backbone == PROFILES["demo"]["backbone"]
    assert demo.phase1_epochs == 7 and demo.batch_size == PROFILES["demo"]["batch_size"]
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
    from product_attrs.classification.config import config_from_args

    args = build_parser().parse_args(
        ["--profile", "full", "--phase1-epochs", "3", "--no-amp", "--heads", "a:1"]
    )
    cfg = config_from_args(args)
    assert (cfg.phase1_epochs, cfg.amp, cfg.heads, cfg.backbone) == (3, False, "a:1", "resnet50")


def test_cli_bad_backbone_exits_2_without_traceback(capsys):
    assert main(["--backbone", "vgg11"]) == 2
    err = capsys.readouterr().err
    assert "unknown backbone 'vgg11'" in err and "Traceback" not in err


def test_text_config_validates():
    with pytest.raises(ConfigError, match="fusion_weight"):
        TextConfig(fusion_weight=2.0).validate()
    with pytest.raises(ConfigError, match="fusion_method"):
        TextConfig(fusion_method="max").validate()
