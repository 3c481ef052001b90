"""ONNX export with dynamic image size; onnxruntime agrees with PyTorch on real images."""

from __future__ import annotations

import json
import os
from pathlib import Path

from product_attrs.detection.export import PARITY_BOX_ATOL, check_parity, export_version
from product_attrs.detection.loader import read_image
from product_attrs.detection.serve import Detector


def test_onnx_parity_on_real_images(trained_version: Path, session_scenes: Path, tmp_path: Path) -> None:
    images = sorted((session_scenes / "images").glob("*.png"))[:2]
    real = Path(os.environ.get("PRODUCT_ATTRS_REAL_DATA", "/nonexistent")) / "tiny-coco" / "images"
    images += sorted(real.glob("*.jpg"))[:1]  # a real photograph too, when the real data is present
    report = export_version(trained_version, images)
    assert report["ok"], report["problems"][:5]
    assert report["max_box_diff"] <= PARITY_BOX_ATOL and report["images"] == len(images)
    assert json.loads((trained_version / "onnx_parity.json").read_text())["ok"]
    # Dynamic size: one exported graph serves other image sizes too (real pixels, rescaled).
    det = Detector.load(trained_version)
    import torch.nn.functional as F

    img = read_image(str(images[0]))
    other = F.interpolate(img[None], size=(150, 170), mode="bilinear", align_corners=False)[0]
    report2 = check_parity(det.model, trained_version / "model.onnx", [other], min_score=0.0)
    assert report2["ok"], report2["problems"][:5]
    assert report2["compared"] > 0  # the tiny model does detect things at any score: parity is not vacuous
