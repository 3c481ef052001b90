"""The detection assets materialize through Dagster with their checks."""

from __future__ import annotations

import json
from pathlib import Path

import dagster as dg
import pytest

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


def test_product_detector_config_mirrors_the_dataclass() -> None:
    from dataclasses import fields

    from product_attrs.detection.assets import ProductDetectorConfig
    from product_attrs.detection.config import DetectorConfig

    assert set(ProductDetectorConfig.model_fields) == {f.name for f in fields(DetectorConfig)}
    assert ProductDetectorConfig().to_detector_config() == DetectorConfig.for_profile("demo")
    full = ProductDetectorConfig(profile="full", lr=0.001, anchor_sizes=[8, 16, 32, 64, 128]).to_detector_config()
    assert full == DetectorConfig.for_profile("full", lr=0.001, anchor_sizes=(8, 16, 32, 64, 128))


def test_product_detector_asset_definition() -> None:
    from product_attrs.detection.assets import detection_assets, product_detector
    from product_attrs.resources import GPU_POOL

    assert product_detector.op.pool == GPU_POOL
    assert {"paths", "compute"} <= product_detector.required_resource_keys
    assert dg.AssetKey("detection_dataset") in product_detector.asset_deps[dg.AssetKey("product_detector")]
    assert len(detection_assets) == 3


@pytest.mark.slow  # trains a tiny model, exports it, writes MLflow: ~30 s
def test_detector_assets_materialize(scenes_dir: Path, tmp_path: Path) -> None:
    from product_attrs.detection.assets import ProductDetectorConfig, detection_assets
    from product_attrs.resources import ComputeResource
    from product_attrs_tests.detection.conftest import tiny_config

    tiny = {k: (list(v) if isinstance(v, tuple) else v) for k, v in tiny_config().to_dict().items()}
    paths = PathsResource(data_dir=str(tmp_path / "data"), detection_dir=str(scenes_dir))
    result = dg.materialize(
        [*detection_assets, *detection_checks],
        resources={"paths": paths, "compute": ComputeResource(device="cpu")},
        run_config=dg.RunConfig({"product_detector": ProductDetectorConfig(**tiny)}),
    )
    assert result.success
    md = result.asset_materializations_for_node("product_detector")[0].metadata
    assert 0.0 <= md["mAP"].value <= 1.0 and md["champion"].value is True
    assert md["registered_version"].value == "1"
    version_dir = Path(md["version_dir"].value)
    assert (version_dir / "model.pt").is_file() and (version_dir / "model.onnx").is_file()
    checks = {c.check_name: c.passed for c in result.get_asset_check_evaluations()}
    assert checks == {"detection_boxes_accounted_for": True, "onnx_parity": True}
    assert (tmp_path / "data" / "mlflow" / "mlflow.db").is_file()
