"""The detection assets materialize through Dagster with their checks."""

from __future__ import annotations

import json
from pathlib import Path

import dagster as dg

from product_attrs.detection.assets import detection_checks, detection_dataset
from product_attrs.resources import PathsResource


def test_detection_dataset_asset(coco_dir: Path, tmp_path: Path) -> None:
    paths = PathsResource(data_dir=str(tmp_path / "data"), detection_dir=str(coco_dir))
    result = dg.materialize([detection_dataset, *detection_checks], resources={"paths": paths})
    assert result.success
    mat = result.asset_materializations_for_node("detection_dataset")[0]
    md = mat.metadata
    assert md["n_boxes"].value == 4 and md["n_input_boxes"].value == 13
    assert md["n_quarantine"].value == 11
    assert md["n_train_images"].value + md["n_test_images"].value == 3
    assert "| 3 | 90 | can |" in md["label_map"].value
    checks = result.get_asset_check_evaluations()
    assert len(checks) == 1 and checks[0].passed
    out = tmp_path / "data" / "detection"
    for name in ("images.parquet", "boxes.parquet", "quarantine.parquet", "label_map.json"):
        assert (out / name).is_file()
    assert json.loads((out / "label_map.json").read_text())[0]["category_id"] == 5
