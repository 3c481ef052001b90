"""ONNX export of a trained detector, with dynamic image size, checked against PyTorch with onnxruntime.

    python -m product_attrs.detection.export <version_dir> [--images img1.jpg ...]

The graph takes one image (float32, 3 x H x W, values in [0, 1]; any H, W) and returns boxes (N x 4,
xyxy pixels of the input), labels (N) and scores (N), exactly like the PyTorch model in eval mode.
The TorchScript-based exporter is used (`dynamo=False`): torchvision's detection models are written
for it, and the dynamo exporter needs onnxscript.

Parity tolerance (PARITY_BOX_ATOL, PARITY_SCORE_ATOL): every PyTorch detection scoring at least
`min_score` must have an ONNX detection of the same label within 1.0 px on each coordinate and 1e-3 in
score, and vice versa. Float reordering in the ONNX kernels moves values by ~1e-4, which can tip a
borderline box across the score threshold or NMS; the floor keeps the check about real detections.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

log = logging.getLogger(__name__)

ONNX_FILE = "model.onnx"
OPSET = 17
PARITY_BOX_ATOL = 1.0  # pixels
PARITY_SCORE_ATOL = 1e-3
PARITY_MIN_SCORE = 0.2


class _NamedOutputs(torch.nn.Module):
    """The detector's first result as (boxes, labels, scores): the exporter names outputs by position, and
    torchvision's detectors do not agree on their dicts' order (FCOS puts scores before labels)."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        out = self.model(images)[0]
        return out["boxes"], out["labels"], out["scores"]


def export_onnx(
    model: torch.nn.Module, out_path: Path, sample: torch.Tensor | None = None, opset: int = OPSET
) -> Path:
    """Export `model` (eval mode, CPU) to ONNX with dynamic height and width."""
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    model = _NamedOutputs(model.to("cpu").eval()).eval()
    if sample is None:
        sample = torch.rand(3, 240, 320)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings about python-side shapes are expected here
        torch.onnx.export(
            model,
            ([sample],),
            str(out_path),
            dynamo=False,
            opset_version=opset,
            input_names=["image"],
            output_names=["boxes", "labels", "scores"],
            dynamic_axes={
                "image": {1: "height", 2: "width"},
                "boxes": {0: "n"},
                "labels": {0: "n"},
                "scores": {0: "n"},
            },
            do_constant_folding=True,
        )
    import onnx

    onnx.checker.check_model(onnx.load(str(out_path)))
    return out_path


class OnnxDetector:
    """onnxruntime session over an exported detector: `predict(image) -> {boxes, labels, scores}` (numpy)."""

    def __init__(self, path: Path, threads: int = 0) -> None:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = threads
        opts.log_severity_level = 3
        self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])

    def predict(self, image: torch.Tensor | np.ndarray) -> dict[str, np.ndarray]:
        arr = image.numpy() if isinstance(image, torch.Tensor) else image
        boxes, labels, scores = self.session.run(None, {"image": arr.astype(np.float32)})
        return {"boxes": boxes, "labels": labels, "scores": scores}


def _match(
    a: dict[str, np.ndarray], b: dict[str, np.ndarray], min_score: float, box_atol: float, score_atol: float
) -> tuple[int, float, float, list[str]]:
    """Each detection of `a` above min_score must have a close twin in `b`.

    Returns (n, max box diff, max score diff, problems).
    """
    problems: list[str] = []
    max_box = max_score = 0.0
    keep = np.flatnonzero(a["scores"] >= min_score)
    used: set[int] = set()
    for i in keep:
        same = [j for j in range(len(b["scores"])) if b["labels"][j] == a["labels"][i] and j not in used]
        if not same:
            problems.append(f"detection {i} (label {a['labels'][i]}, score {a['scores'][i]:.3f}) has no twin")
            continue
        diffs = [float(np.abs(b["boxes"][j] - a["boxes"][i]).max()) for j in same]
        k = int(np.argmin(diffs))
        j = same[k]
        used.add(j)
        sd = abs(float(b["scores"][j]) - float(a["scores"][i]))
        max_box, max_score = max(max_box, diffs[k]), max(max_score, sd)
        if diffs[k] > box_atol or sd > score_atol:
            problems.append(f"detection {i}: box diff {diffs[k]:.4f} px, score diff {sd:.2e}")
    return len(keep), max_box, max_score, problems


def check_parity(
    model: torch.nn.Module,
    onnx_path: Path,
    images: Sequence[torch.Tensor],
    min_score: float = PARITY_MIN_SCORE,
    box_atol: float = PARITY_BOX_ATOL,
    score_atol: float = PARITY_SCORE_ATOL,
) -> dict[str, Any]:
    """Run PyTorch and onnxruntime on the same images and compare detections both ways."""
    model = model.to("cpu").eval()
    ort_model = OnnxDetector(onnx_path)
    report: dict[str, Any] = {
        "images": len(images),
        "compared": 0,
        "max_box_diff": 0.0,
        "max_score_diff": 0.0,
        "problems": [],
        "box_atol": box_atol,
        "score_atol": score_atol,
        "min_score": min_score,
    }
    for n, img in enumerate(images):
        with torch.inference_mode():
            t = {k: v.numpy() for k, v in model([img])[0].items()}
        o = ort_model.predict(img)
        for a, b, direction in ((t, o, "torch->onnx"), (o, t, "onnx->torch")):
            k, mb, ms, probs = _match(a, b, min_score, box_atol, score_atol)
            if direction == "torch->onnx":
                report["compared"] += k
            report["max_box_diff"] = max(report["max_box_diff"], mb)
            report["max_score_diff"] = max(report["max_score_diff"], ms)
            report["problems"] += [f"image {n} ({tuple(img.shape[1:])}) {direction}: {p}" for p in probs]
    report["ok"] = not report["problems"]
    return report


def export_version(version_dir: Path, images: Sequence[Path] = (), max_images: int = 4) -> dict[str, Any]:
    """Export a model version folder to `<version_dir>/model.onnx`, check parity, write onnx_parity.json."""
    from product_attrs.detection.loader import read_image
    from product_attrs.detection.serve import Detector

    version_dir = Path(version_dir)
    det = Detector.load(version_dir, "cpu")
    tensors = [read_image(str(p)) for p in list(images)[:max_images]]
    path = export_onnx(det.model, version_dir / ONNX_FILE, sample=tensors[0] if tensors else None)
    report = check_parity(det.model, path, tensors or [torch.rand(3, 240, 320)])
    report["onnx"] = str(path)
    (version_dir / "onnx_parity.json").write_text(json.dumps(report, indent=2))
    return report


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO)
    p = argparse.ArgumentParser(
        prog="python -m product_attrs.detection.export", description=__doc__.split("\n\n")[0]
    )
    p.add_argument("version_dir", type=Path)
    p.add_argument("--images", type=Path, nargs="*", default=[], help="real images for the parity check")
    args = p.parse_args(argv)
    report = export_version(args.version_dir, args.images)
    print(
        json.dumps(
            {k: v for k, v in report.items() if k != "problems"} | {"n_problems": len(report["problems"])},
            indent=2,
        )
    )
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
