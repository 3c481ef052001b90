"""COCO box evaluation with pycocotools: mAP@[.5:.95], AP50, AP75, AR@100 and AP per class.

Predictions are plain lists of COCO result rows, so evaluation under DDP only has to gather lists.
"""

from __future__ import annotations

import contextlib
import io
import math
from typing import Any

import numpy as np
import torch
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

# Index of each figure in COCOeval.stats
STAT_NAMES = (
    "mAP",
    "AP50",
    "AP75",
    "AP_small",
    "AP_medium",
    "AP_large",
    "AR1",
    "AR10",
    "AR100",
    "AR_small",
    "AR_medium",
    "AR_large",
)


def coco_from_dict(doc: dict[str, Any]) -> COCO:
    """An in-memory pycocotools COCO object (no json file needed)."""
    coco = COCO()
    coco.dataset = {"info": {}, "licenses": [], **doc}
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def _as_numpy(x: Any) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def to_coco_results(image_id: int, output: dict[str, Any]) -> list[dict[str, Any]]:
    """One image's model output (boxes xyxy, scores, labels) as COCO result rows (bbox xywh)."""
    boxes, scores, labels = (_as_numpy(output[k]) for k in ("boxes", "scores", "labels"))
    rows = []
    for (x1, y1, x2, y2), s, lab in zip(boxes.reshape(-1, 4).tolist(), scores.tolist(), labels.tolist()):
        rows.append(
            {
                "image_id": int(image_id),
                "category_id": int(lab),
                "bbox": [x1, y1, x2 - x1, y2 - y1],
                "score": float(s),
            }
        )
    return rows


def evaluate_coco(
    gt_doc: dict[str, Any], results: list[dict[str, Any]], max_dets: int = 100
) -> dict[str, Any]:
    """Metrics as a flat dict (floats) plus `per_class_AP` {name: AP} for classes with ground truth.

    No predictions gives 0.0 everywhere (pycocotools cannot load an empty result list).
    A figure with nothing to measure (e.g. no small objects) is NaN, as pycocotools' -1 means.
    """
    gt = coco_from_dict(gt_doc)
    names = {c["id"]: c["name"] for c in gt_doc["categories"]}
    classes_with_gt = sorted({a["category_id"] for a in gt_doc["annotations"] if not a.get("iscrowd")})
    if not results or not gt_doc["annotations"]:
        metrics: dict[str, Any] = {k: 0.0 for k in STAT_NAMES}
        metrics["per_class_AP"] = {names[c]: 0.0 for c in classes_with_gt}
        metrics["summary"] = "no predictions" if not results else "no ground truth boxes"
        return metrics
    with contextlib.redirect_stdout(io.StringIO()) as buf:
        dt = gt.loadRes(results)
        ev = COCOeval(gt, dt, iouType="bbox")
        ev.params.imgIds = sorted(gt.getImgIds())
        ev.params.maxDets = [1, 10, max_dets]
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    metrics = {k: (float(v) if v >= 0 else math.nan) for k, v in zip(STAT_NAMES, ev.stats)}
    # precision: [T iou thresholds, R recall points, K classes, A areas, M maxDets]; area 'all', maxDets last.
    prec = ev.eval["precision"][:, :, :, 0, -1]
    per_class = {}
    for k_idx, cat_id in enumerate(ev.params.catIds):
        if cat_id not in classes_with_gt:
            continue
        p = prec[:, :, k_idx]
        p = p[p > -1]
        per_class[names[cat_id]] = float(p.mean()) if p.size else 0.0
    metrics["per_class_AP"] = per_class
    metrics["summary"] = buf.getvalue()
    return metrics
