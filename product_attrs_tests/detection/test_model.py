"""Detector construction: offline pretrained backbone, predictor size, freezing, weights file, fallback."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch

from product_attrs.detection.model import build_detector, count_parameters
from product_attrs.modeling.checkpoint import save_checkpoint
from product_attrs.modeling.weights import (
    WeightsUnavailableError,
    load_matching,
    lite0_weights_file,
    read_state_dict,
    torchvision_available,
)
from product_attrs_tests.detection.conftest import tiny_config


def test_lite0_uses_packaged_imagenet_weights_and_sizes_predictor() -> None:
    try:
        lite0_weights_file()
    except WeightsUnavailableError as exc:
        pytest.skip(f"no EfficientNet-Lite0 weights: {exc}")
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
    torch.save(
        {"model": {f"module.{k}": v for k, v in a.state_dict().items()}, "epoch": 3}, tmp_path / "ckpt.pth"
    )
    # The runner's checkpoint (model, optimizer, random states, history...) read with weights_only=True.
    save_checkpoint(
        tmp_path / "checkpoint.pt",
        {
            "model": a.state_dict(),
            "position": {"epoch": 1},
            "history": [],
            "optimizer": {"state": {}, "param_groups": []},
        },
    )
    for f in ("w.pt", "ckpt.pth", "checkpoint.pt"):  # a plain state_dict, a (DDP) checkpoint, the runner's
        b, info = build_detector(tiny_config(weights_file=str(tmp_path / f)), 4)
        assert info.weights_source == f"file:{(tmp_path / f).resolve()}"
        assert a.state_dict().keys() == b.state_dict().keys()
        for (k, va), vb in zip(a.state_dict().items(), b.state_dict().values()):
            assert torch.equal(va, vb), (f, k)
    # Another class count: everything but the predictor loads.
    c, info = build_detector(tiny_config(weights_file=str(tmp_path / "w.pt")), 9)
    assert "skipped 4" in info.message
    assert torch.equal(c.backbone.fpn.layer_blocks[0][0].weight, a.backbone.fpn.layer_blocks[0][0].weight)
    assert c.roi_heads.box_predictor.cls_score.out_features == 10
    torch.save({"unrelated.weight": torch.zeros(2)}, tmp_path / "bad.pt")
    with pytest.raises(WeightsUnavailableError, match="no tensor fits this model"):
        load_matching(c, read_state_dict(tmp_path / "bad.pt"), "bad.pt")
    with pytest.raises(WeightsUnavailableError, match="no tensor fits this model"):
        build_detector(tiny_config(weights_file=str(tmp_path / "bad.pt")), 9)
    with pytest.raises(WeightsUnavailableError, match="does not exist"):
        build_detector(tiny_config(weights_file=str(tmp_path / "missing.pt")), 9)
    (tmp_path / "text.pt").write_text("not a weights file")
    with pytest.raises(WeightsUnavailableError, match="is not a PyTorch state dict"):
        read_state_dict(tmp_path / "text.pt")


def test_torchvision_arch_without_weights_falls_back_loudly(monkeypatch, tmp_path: Path, caplog) -> None:
    from torchvision.models.detection import FasterRCNN_MobileNet_V3_Large_320_FPN_Weights as W

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "empty_hub"))
    ok, why = torchvision_available(W.COCO_V1, allow_download=False)
    assert not ok and "not in the torch hub cache" in why and "downloads are off" in why
    with caplog.at_level(logging.WARNING):
        model, info = build_detector(
            tiny_config(arch="fasterrcnn_mobilenet_v3_large_320_fpn"), 5, allow_download=False
        )
    assert info.weights_source == "scratch"
    assert "FROM SCRATCH" in caplog.text
    assert model.roi_heads.box_predictor.cls_score.out_features == 6


def test_full_profile_builds_offline_with_its_anchors(monkeypatch, tmp_path: Path) -> None:
    from product_attrs.detection.config import PROFILES, DetectorConfig
    from product_attrs.modeling.config import resolve

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "empty_hub"))
    cfg = resolve(DetectorConfig, PROFILES, "full", None, {"anchor_sizes": [16, 32, 64, 128, 256]})
    model, info = build_detector(cfg, 6, allow_download=False)
    assert info.weights_source == "scratch" and "FROM SCRATCH" in info.message
    assert model.rpn.anchor_generator.sizes == ((16,), (32,), (64,), (128,), (256,))
    assert model.roi_heads.box_predictor.cls_score.out_features == 7
    assert model.transform.min_size == (800,)
