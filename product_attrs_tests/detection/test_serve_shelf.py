"""Loading a version folder (or the champion), batched detection, shelf share from detections."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import torch

from product_attrs.detection.serve import DETECTION_COLUMNS, Detector, load_champion
from product_attrs.detection.shelf import SHELF_COLUMNS, shelf_share, shelf_summary, shelf_tables
from product_attrs.detection.sources import load_detection_source
from product_attrs.modeling.registry import NoChampionError, Registry
from product_attrs.modeling.versions import VersionManifest
from product_attrs_tests.detection.conftest import tiny_config


def test_load_a_version_and_the_champion(trained_version: Path, tmp_path: Path) -> None:
    det = Detector.load(trained_version)
    assert det.version == f"product_detector/{trained_version.name}"
    assert det.config == tiny_config() and det.device.type == "cpu" and not det.model.training
    assert det.label_map == VersionManifest.read(trained_version).info["label_map"]
    assert det.model.roi_heads.box_predictor.cls_score.out_features == 4
    state = torch.load(trained_version / "model.pt", weights_only=True)
    served = det.model.state_dict()
    for k, v in state.items():  # every trained tensor is served as saved
        assert torch.equal(served[k], v), k
    # The champion is what consumers serve: the first version here (MLflow off).
    champion = load_champion(Registry(trained_version.parent.parent))
    assert champion.version == det.version
    with pytest.raises(NoChampionError, match="no champion of product_detector yet"):
        load_champion(Registry(tmp_path / "empty_models"))


def test_batched_detection_equals_one_by_one(trained_version: Path, session_scenes: Path) -> None:
    det = Detector.load(trained_version)
    paths = sorted((session_scenes / "images").glob("*.png"))[:5]
    batched = det.detect(paths, batch_size=4)
    single = pd.concat(
        [det.detect([p], batch_size=1).assign(image=i) for i, p in enumerate(paths)], ignore_index=True
    )
    assert list(batched.columns) == DETECTION_COLUMNS
    assert len(batched) == len(single)
    if len(batched):
        pd.testing.assert_series_equal(batched["label"], single["label"])
        assert (
            batched[["x1", "y1", "x2", "y2", "score"]] - single[["x1", "y1", "x2", "y2", "score"]]
        ).abs().max().max() < 1e-3
        assert set(batched["category_name"]) <= {"red", "green", "blue"}


def test_shelf_share() -> None:
    det = pd.DataFrame(
        [
            {
                "image": 0,
                "category_id": 3,
                "category_name": "cola",
                "score": 0.9,
                "x1": 0,
                "y1": 0,
                "x2": 10,
                "y2": 20,
            },
            {
                "image": 0,
                "category_id": 3,
                "category_name": "cola",
                "score": 0.8,
                "x1": 10,
                "y1": 0,
                "x2": 20,
                "y2": 20,
            },
            {
                "image": 0,
                "category_id": 5,
                "category_name": "chips",
                "score": 0.7,
                "x1": 20,
                "y1": 0,
                "x2": 50,
                "y2": 10,
            },
            {
                "image": 0,
                "category_id": 5,
                "category_name": "chips",
                "score": 0.1,
                "x1": 50,
                "y1": 0,
                "x2": 90,
                "y2": 10,
            },
            {
                "image": 1,
                "category_id": 5,
                "category_name": "chips",
                "score": 0.6,
                "x1": 0,
                "y1": 0,
                "x2": 5,
                "y2": 5,
            },
        ]
    )
    label_map = [
        {"label": 1, "category_id": 3, "name": "cola"},
        {"label": 2, "category_id": 5, "name": "chips"},
        {"label": 3, "category_id": 9, "name": "water"},
    ]
    s = shelf_share(det, score_thresh=0.5, label_map=label_map)
    assert list(s.columns) == SHELF_COLUMNS
    assert len(s) == 6  # 2 images x 3 classes, absent classes as 0
    r = s.set_index(["image", "category_name"])
    assert (
        r.loc[(0, "cola"), "facings"] == 2 and r.loc[(0, "chips"), "facings"] == 1
    )  # the 0.1 box is dropped
    assert r.loc[(0, "cola"), "share_facings"] == pytest.approx(2 / 3)
    assert r.loc[(0, "cola"), "share_width"] == pytest.approx(20 / 50)
    assert r.loc[(0, "cola"), "share_area"] == pytest.approx(400 / 700)
    assert r.loc[(1, "chips"), "share_facings"] == 1.0 and r.loc[(0, "water"), "facings"] == 0
    assert s.groupby("image")["share_facings"].sum().tolist() == pytest.approx([1.0, 1.0])
    summary = shelf_summary(s)
    assert (
        summary.iloc[0]["category_name"] == "cola"
        and summary.set_index("category_name").loc["chips", "images"] == 2
    )
    assert shelf_share(det.iloc[0:0]).empty


class _FixedDetector:
    """A stand-in for the served Detector: the same `detect` signature, known detections."""

    def __init__(self, rows: pd.DataFrame) -> None:
        self.rows, self.calls = rows, []

    def detect(self, images, batch_size=4, score_thresh=0.0, decode_threads=2) -> pd.DataFrame:
        self.calls.append((list(images), batch_size, score_thresh))
        return self.rows[self.rows["score"] >= score_thresh].reset_index(drop=True)


def test_shelf_tables_name_each_photo(scenes_dir: Path) -> None:
    data = load_detection_source(scenes_dir)
    images = data.images.reset_index(drop=True)
    rows = pd.DataFrame(
        [
            {
                "image": 0,
                "label": 1,
                "category_id": 3,
                "category_name": "red",
                "score": 0.9,
                "x1": 0,
                "y1": 0,
                "x2": 10,
                "y2": 10,
            },
            {
                "image": 0,
                "label": 2,
                "category_id": 7,
                "category_name": "green",
                "score": 0.8,
                "x1": 10,
                "y1": 0,
                "x2": 40,
                "y2": 10,
            },
            {
                "image": 2,
                "label": 3,
                "category_id": 12,
                "category_name": "blue",
                "score": 0.7,
                "x1": 0,
                "y1": 0,
                "x2": 5,
                "y2": 5,
            },
            {
                "image": 2,
                "label": 3,
                "category_id": 12,
                "category_name": "blue",
                "score": 0.2,
                "x1": 5,
                "y1": 0,
                "x2": 9,
                "y2": 5,
            },
        ],
        columns=DETECTION_COLUMNS,
    )
    det = _FixedDetector(rows)
    shares, summary = shelf_tables(det, data, score_thresh=0.5, batch_size=3)
    assert det.calls == [(images["file_path"].tolist(), 3, 0.5)]  # every photo of the dataset, once
    assert list(shares.columns) == ["image_id", "file_name", "split", *SHELF_COLUMNS[1:]]
    assert len(shares) == 2 * 3  # photos with a detection x every class of the label map
    s = shares.set_index(["file_name", "category_name"])
    first, third = images.loc[0], images.loc[2]
    assert s.loc[(first["file_name"], "red"), "image_id"] == first["image_id"]
    assert s.loc[(first["file_name"], "red"), "split"] == first["split"]
    assert s.loc[(first["file_name"], "green"), "share_width"] == pytest.approx(30 / 40)
    assert s.loc[(first["file_name"], "blue"), "facings"] == 0
    assert s.loc[(third["file_name"], "blue"), "facings"] == 1  # the 0.2 box is below the threshold
    assert s.loc[(third["file_name"], "blue"), "share_facings"] == 1.0
    assert shares.groupby("image_id")["share_facings"].sum().tolist() == pytest.approx([1.0, 1.0])
    by_class = summary.set_index("category_name")
    assert by_class.loc["blue", "facings"] == 1 and by_class.loc["red", "images"] == 1
    assert by_class.loc["red", "share_facings"] == pytest.approx(0.25)  # 0.5 and 0 over the two photos


def test_shelf_tables_with_the_trained_detector(trained_version: Path, session_scenes: Path) -> None:
    data = load_detection_source(session_scenes)
    shares, summary = shelf_tables(Detector.load(trained_version), data, score_thresh=0.0)
    assert list(shares.columns) == ["image_id", "file_name", "split", *SHELF_COLUMNS[1:]]
    assert len(shares) % 3 == 0 and set(shares["image_id"]) <= set(data.images["image_id"])
    assert set(shares["category_name"]) == {"red", "green", "blue"} and shares["facings"].sum() > 0
    assert summary["facings"].sum() == shares["facings"].sum()
