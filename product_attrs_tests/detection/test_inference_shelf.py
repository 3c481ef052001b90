"""Loading a version folder, batched detection, shelf share from detections."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from product_attrs.detection.inference import DETECTION_COLUMNS, Detector
from product_attrs.detection.shelf import SHELF_COLUMNS, shelf_share, shelf_summary


def test_batched_detection_equals_one_by_one(trained_version: Path, session_scenes: Path) -> None:
    det = Detector.from_version_dir(trained_version)
    paths = sorted((session_scenes / "images").glob("*.png"))[:5]
    batched = det.detect(paths, batch_size=4)
    single = pd.concat([det.detect([p], batch_size=1).assign(image=i) for i, p in enumerate(paths)], ignore_index=True)
    assert list(batched.columns) == DETECTION_COLUMNS
    assert len(batched) == len(single)
    if len(batched):
        pd.testing.assert_series_equal(batched["label"], single["label"])
        assert (batched[["x1", "y1", "x2", "y2", "score"]] - single[["x1", "y1", "x2", "y2", "score"]]).abs().max().max() < 1e-3
        assert set(batched["category_name"]) <= {"red", "green", "blue"}


def test_shelf_share() -> None:
    det = pd.DataFrame([
        {"image": 0, "category_id": 3, "category_name": "cola", "score": 0.9, "x1": 0, "y1": 0, "x2": 10, "y2": 20},
        {"image": 0, "category_id": 3, "category_name": "cola", "score": 0.8, "x1": 10, "y1": 0, "x2": 20, "y2": 20},
        {"image": 0, "category_id": 5, "category_name": "chips", "score": 0.7, "x1": 20, "y1": 0, "x2": 50, "y2": 10},
        {"image": 0, "category_id": 5, "category_name": "chips", "score": 0.1, "x1": 50, "y1": 0, "x2": 90, "y2": 10},
        {"image": 1, "category_id": 5, "category_name": "chips", "score": 0.6, "x1": 0, "y1": 0, "x2": 5, "y2": 5},
    ])
    label_map = [{"label": 1, "category_id": 3, "name": "cola"}, {"label": 2, "category_id": 5, "name": "chips"},
                 {"label": 3, "category_id": 9, "name": "water"}]
    s = shelf_share(det, score_thresh=0.5, label_map=label_map)
    assert list(s.columns) == SHELF_COLUMNS
    assert len(s) == 6  # 2 images x 3 classes, absent classes as 0
    r = s.set_index(["image", "category_name"])
    assert r.loc[(0, "cola"), "facings"] == 2 and r.loc[(0, "chips"), "facings"] == 1  # the 0.1 box is dropped
    assert r.loc[(0, "cola"), "share_facings"] == pytest.approx(2 / 3)
    assert r.loc[(0, "cola"), "share_width"] == pytest.approx(20 / 50)
    assert r.loc[(0, "cola"), "share_area"] == pytest.approx(400 / 700)
    assert r.loc[(1, "chips"), "share_facings"] == 1.0 and r.loc[(0, "water"), "facings"] == 0
    assert s.groupby("image")["share_facings"].sum().tolist() == pytest.approx([1.0, 1.0])
    summary = shelf_summary(s)
    assert summary.iloc[0]["category_name"] == "cola" and summary.set_index("category_name").loc["chips", "images"] == 2
    assert shelf_share(det.iloc[0:0]).empty
