"""The single-stage detector (fcos_lite0_fpn): built on the same Lite0 + FPN, trained and exported by the
same code as the Faster R-CNNs, and its ONNX graph has none of the two-stage ops (RoiAlign, the RPN)."""

from __future__ import annotations

import json
from pathlib import Path

import onnx
from torchvision.models.detection import FCOS

from product_attrs.detection.export import export_onnx, export_version
from product_attrs.detection.model import build_detector
from product_attrs.detection.train import train
from product_attrs.modeling.registry import Registry
from product_attrs_tests.detection.conftest import quiet, tiny_config


def _op_types(path: Path) -> set[str]:
    graph = onnx.load(str(path)).graph
    ops: set[str] = set()
    stack = [graph]
    while stack:  # subgraphs of If/Loop too
        g = stack.pop()
        for node in g.node:
            ops.add(node.op_type)
            stack += [a.g for a in node.attribute if a.type == onnx.AttributeProto.GRAPH]
    return ops


def test_fcos_trains_exports_and_has_no_roi_ops(session_scenes: Path, tmp_path: Path) -> None:
    cfg = tiny_config(arch="fcos_lite0_fpn", anchor_sizes=(8, 16, 32, 64), head_convs=1)
    model, info = build_detector(cfg, 3)
    assert isinstance(model, FCOS) and info.arch == "fcos_lite0_fpn"
    assert model.head.classification_head.num_classes == 4  # labels 1..3, as the Faster R-CNNs number them
    result = train(cfg, session_scenes, Registry(tmp_path / "models"), device="cpu", log=quiet)
    manifest = json.loads((result.version_dir / "manifest.json").read_text())
    assert manifest["config"]["arch"] == "fcos_lite0_fpn" and manifest["metrics"]["mAP"] is not None
    images = sorted((session_scenes / "images").glob("*.png"))[:2]
    report = export_version(result.version_dir, images)
    assert report["ok"], report["problems"][:5]
    fcos_ops = _op_types(result.version_dir / "model.onnx")
    frcnn, _ = build_detector(tiny_config(pretrained=False), 3)
    frcnn_ops = _op_types(export_onnx(frcnn, tmp_path / "frcnn.onnx"))
    assert "RoiAlign" in frcnn_ops and "RoiAlign" not in fcos_ops
    assert {"Conv", "NonMaxSuppression"} <= fcos_ops


def test_browser_profile_heads_run_on_the_stride_8_level_only() -> None:
    """The `browser` profile (the shelf app's light FCOS): the Lite0 without its stride-32 blocks, one FPN
    level for the heads, so one anchor size; a Faster R-CNN with fewer stages pools from those it has."""
    import pytest
    import torch

    from product_attrs.detection.config import PROFILES, DetectorConfig
    from product_attrs.modeling.config import ConfigError, resolve

    cfg = resolve(DetectorConfig, PROFILES, "browser", None, {"pretrained": False})
    assert (cfg.arch, cfg.min_size, cfg.max_size, cfg.head_levels) == ("fcos_lite0_fpn", 168, 224, 1)
    model, _ = build_detector(cfg, 3)
    assert len(model.backbone.body.blocks) == 11  # blocks 0-10: up to stride 16
    with torch.inference_mode():
        feats = model.backbone(torch.rand(1, 3, 168, 224))
    assert [tuple(f.shape[1:]) for f in feats.values()] == [(64, 21, 28)]  # stride 8 only
    assert model.eval()([torch.rand(3, 168, 224)])[0]["boxes"].shape[1] == 4
    frcnn, _ = build_detector(tiny_config(pretrained=False, backbone_levels=2, anchor_sizes=(16, 32, 64)), 3)
    assert frcnn.roi_heads.box_roi_pool.featmap_names == ["0", "1"]
    with pytest.raises(ConfigError, match="head_levels"):
        resolve(DetectorConfig, PROFILES, "demo", None, {"backbone_levels": 2, "head_levels": 3})
    with pytest.raises(ValueError, match="anchor_sizes"):
        build_detector(tiny_config(pretrained=False, arch="fcos_lite0_fpn", head_levels=1), 3)
