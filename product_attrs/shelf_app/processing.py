"""The shelf app's pre- and post-processing, in Python: the mirror of `web/processing.mjs`, line for line.

Both sides do exactly this, so that the browser and Python's onnxruntime give the same answer:

1. decode the photo to 8-bit RGB at its own size (PIL here, the browser's decoder there: the same pixels
   for PNG; JPEG decoders may round differently, which is why the tests check the decoded pixels too);
2. `fit_size`: the input size, in integers only: the shorter side becomes `min_size` unless the longer
   would then pass `max_size` (then the longer side is `max_size`), like the detector's own resize;
3. `area_resize`: each output pixel is the mean of the source pixels of its integer window
   `[floor(i*S/D), floor((i+1)*S/D))` (at least one pixel), divided by 255: integer sums and one
   float64 division, then float32, so both languages produce bit-identical inputs. A canvas
   `drawImage` resize is not used: its filter is the browser's and differs from PIL's;
4. the graph (resize to its own size, normalisation, RPN, RoIAlign, NMS are inside it) returns boxes in
   input pixels, labels and scores;
5. `summarize`: keep scores >= threshold, scale boxes back to the photo's pixels, count facings per class
   and the share of shelf by facings and by width (as `detection.shelf`).

numpy and PIL only: no torch, so the benchmark and tests can import it cheaply.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

DEFAULT_THRESHOLD = 0.5


def fit_size(width: int, height: int, min_size: int, max_size: int) -> tuple[int, int]:
    """(w, h) of the model input for a `width` x `height` photo; integer arithmetic, round half up."""
    short, long = min(width, height), max(width, height)
    if long * min_size <= max_size * short:
        new_short = min_size
        new_long = (2 * long * min_size + short) // (2 * short)
    else:
        new_long = max_size
        new_short = (2 * short * max_size + long) // (2 * long)
    new_short, new_long = max(1, new_short), max(1, new_long)
    return (new_long, new_short) if width >= height else (new_short, new_long)


def _window_starts(src: int, dst: int) -> np.ndarray:
    return (np.arange(dst, dtype=np.int64) * src) // dst


def _window_sizes(src: int, dst: int) -> np.ndarray:
    starts = _window_starts(src, dst)
    ends = (np.arange(1, dst + 1, dtype=np.int64) * src) // dst
    return np.maximum(ends, starts + 1) - starts


def area_resize(rgb: np.ndarray, out_w: int, out_h: int) -> np.ndarray:
    """uint8 H x W x 3 -> float32 3 x out_h x out_w in [0, 1] (window means, see the module docstring)."""
    h, w = rgb.shape[:2]
    a = rgb.astype(np.int64)
    # reduceat sums each window; where a window is one pixel (upscaling), start >= next start gives a[start].
    a = np.add.reduceat(a, _window_starts(h, out_h), axis=0)
    a = np.add.reduceat(a, _window_starts(w, out_w), axis=1)
    counts = np.outer(_window_sizes(h, out_h), _window_sizes(w, out_w))[:, :, None]
    return (a / (counts * 255)).astype(np.float32).transpose(2, 0, 1).copy()


def load_rgb(path: Path | str) -> np.ndarray:
    """The photo as uint8 H x W x 3 (PIL, no colour management; alpha dropped)."""
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def pixel_checksum(rgb: np.ndarray) -> list[int]:
    """[sum of the RGB bytes, sum of byte * (index % 1000 + 1)], row by row: exact in JavaScript's doubles
    (below 2**53 up to 3.5e9 bytes), so the browser reports the same two numbers for the same decode."""
    data = np.ascontiguousarray(rgb, dtype=np.uint8).ravel().astype(np.int64)
    weights = np.arange(data.size, dtype=np.int64) % 1000 + 1
    return [int(data.sum()), int((data * weights).sum())]


@dataclass(frozen=True)
class AppModel:
    """What the page needs to know about the model (written as `model.json` next to `model.onnx`)."""

    version: str
    min_size: int
    max_size: int
    labels: dict[int, str]  # graph label -> class name (0 is the background and never output)
    threshold: float = DEFAULT_THRESHOLD

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "min_size": self.min_size,
            "max_size": self.max_size,
            "labels": {str(k): v for k, v in sorted(self.labels.items())},
            "threshold": self.threshold,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> AppModel:
        return cls(
            version=d["version"],
            min_size=int(d["min_size"]),
            max_size=int(d["max_size"]),
            labels={int(k): v for k, v in d["labels"].items()},
            threshold=float(d.get("threshold", DEFAULT_THRESHOLD)),
        )


def summarize(
    boxes: np.ndarray,
    labels: np.ndarray,
    scores: np.ndarray,
    threshold: float,
    scale_x: float,
    scale_y: float,
    names: dict[int, str],
) -> dict[str, Any]:
    """Keep scores >= threshold (graph order), boxes in photo pixels, facings and shares per class."""
    keep = [i for i in range(len(scores)) if float(scores[i]) >= threshold]
    out_boxes = [
        [
            float(boxes[i][0]) * scale_x,
            float(boxes[i][1]) * scale_y,
            float(boxes[i][2]) * scale_x,
            float(boxes[i][3]) * scale_y,
        ]
        for i in keep
    ]
    out_labels = [int(labels[i]) for i in keep]
    counts: dict[str, int] = {names[k]: 0 for k in sorted(names)}
    widths: dict[str, float] = {names[k]: 0.0 for k in sorted(names)}
    for b, lab in zip(out_boxes, out_labels, strict=True):
        name = names.get(lab, f"label {lab}")
        counts[name] = counts.get(name, 0) + 1
        widths[name] = widths.get(name, 0.0) + max(0.0, b[2] - b[0])
    total, total_w = sum(counts.values()), sum(widths.values())
    return {
        "boxes": out_boxes,
        "labels": out_labels,
        "scores": [float(scores[i]) for i in keep],
        "counts": counts,
        "share_facings": {k: (v / total if total else 0.0) for k, v in counts.items()},
        "share_width": {k: (v / total_w if total_w else 0.0) for k, v in widths.items()},
    }


def prepare(rgb: np.ndarray, model: AppModel) -> tuple[np.ndarray, float, float]:
    """The graph input for a photo and the factors that map its boxes back to photo pixels."""
    h, w = rgb.shape[:2]
    in_w, in_h = fit_size(w, h, model.min_size, model.max_size)
    return area_resize(rgb, in_w, in_h), w / in_w, h / in_h


def detect(session: Any, rgb: np.ndarray, model: AppModel, threshold: float | None = None) -> dict[str, Any]:
    """One photo through an onnxruntime session, exactly as the page does it."""
    x, sx, sy = prepare(rgb, model)
    boxes, labels, scores = session.run(None, {"image": x})
    result = summarize(
        boxes, labels, scores, model.threshold if threshold is None else threshold, sx, sy, model.labels
    )
    result["input_size"] = [int(x.shape[2]), int(x.shape[1])]
    return result


def session(onnx_path: Path | str, threads: int = 0) -> Any:
    """A CPU onnxruntime session over the app's model (`threads` 0: onnxruntime's default)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    return ort.InferenceSession(str(onnx_path), opts, providers=["CPUExecutionProvider"])
