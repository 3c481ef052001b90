"""COCO metrics: perfect predictions give 1.0, none give 0, crowd regions are not false positives."""

from __future__ import annotations

from pathlib import Path

import pytest

from product_attrs.detection.evaluate import evaluate_coco
from product_attrs.detection.loader import coco_ground_truth
from product_attrs.detection.sources import load_detection_source


def _perfect(gt: dict) -> list[dict]:
    return [
        {"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"], "score": 0.9}
        for a in gt["annotations"]
        if not a["iscrowd"]
    ]


def test_perfect_none_and_partial(scenes_dir: Path) -> None:
    gt = coco_ground_truth(load_detection_source(scenes_dir), split=None)
    perfect = evaluate_coco(gt, _perfect(gt))
    for k in ("mAP", "AP50", "AP75", "AR100"):
        assert perfect[k] == pytest.approx(1.0), k
    assert set(perfect["per_class_AP"]) == {"red", "green", "blue"}
    assert all(v == pytest.approx(1.0) for v in perfect["per_class_AP"].values())

    none = evaluate_coco(gt, [])
    assert none["mAP"] == 0.0 and none["AR100"] == 0.0 and set(none["per_class_AP"].values()) == {0.0}

    wrong_class = [dict(r, category_id=(r["category_id"] % 3) + 1) for r in _perfect(gt)]
    assert evaluate_coco(gt, wrong_class)["mAP"] < 0.5
    half = _perfect(gt)[::2]
    assert 0.0 < evaluate_coco(gt, half)["AR100"] < 1.0


def test_crowd_region_is_ignored(coco_dir: Path) -> None:
    data = load_detection_source(coco_dir)
    gt = coco_ground_truth(data, split=None)
    assert any(a["iscrowd"] for a in gt["annotations"])
    preds = _perfect(gt)
    crowd = next(a for a in gt["annotations"] if a["iscrowd"])
    # A detection on the crowd region is neither a hit nor a false positive.
    preds.append(
        {
            "image_id": crowd["image_id"],
            "category_id": crowd["category_id"],
            "bbox": crowd["bbox"],
            "score": 0.95,
        }
    )
    assert evaluate_coco(gt, preds)["mAP"] == pytest.approx(1.0)


def test_model_output_as_coco_rows() -> None:
    import torch

    from product_attrs.detection.evaluate import to_coco_results

    out = {
        "boxes": torch.tensor([[10.0, 20.0, 40.0, 60.0], [0.0, 0.0, 5.0, 5.0]]),
        "scores": torch.tensor([0.75, 0.5]),
        "labels": torch.tensor([2, 1]),
    }
    rows = to_coco_results(7, out)
    assert rows == [  # xyxy -> COCO's xywh
        {"image_id": 7, "category_id": 2, "bbox": [10.0, 20.0, 30.0, 40.0], "score": 0.75},
        {"image_id": 7, "category_id": 1, "bbox": [0.0, 0.0, 5.0, 5.0], "score": 0.5},
    ]
    empty = {
        "boxes": torch.zeros(0, 4),
        "scores": torch.zeros(0),
        "labels": torch.zeros(0, dtype=torch.int64),
    }
    assert to_coco_results(7, empty) == []
