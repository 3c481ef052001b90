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
