"""The GPU check's CPU smoke (bench/gpu_check.py --smoke): every stage's code path runs on a tiny pack and
writes finite figures, with neither Dagster, MLflow nor DuckDB imported.

The GPU machine runs the same stages with larger numbers and cannot be reached from CI, so this is what
keeps the check runnable between GPU runs. The pack comes from the demo generator, or from the real
fashion catalog when $PRODUCT_ATTRS_REAL_DATA is set.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

from product_attrs.settings import ENV_REAL_DATA

REPO = Path(__file__).resolve().parents[1]
STAGES = (
    "classifier",
    "classifier_synthetic",
    "detector",
    "detector_full",
    "extraction",
    "detection_inference",
    "cpu_classifier",
    "cpu_extraction",
    "cpu_detector",
)
FIGURES = (
    "classifier_train_images_per_s",
    "classifier_test_top1",
    "classifier_test_top1_top20",
    "classifier_step_images_per_s_synthetic",
    "resnet50_step_images_per_s_synthetic",
    "detector_train_images_per_s",
    "detector_iterations",
    "detector_map",
    "detector_full_train_images_per_s",
    "extract_images_per_s",
    "detect_images_per_s",
)
FLOORS = (
    "classifier_majority_rate",
    "classifier_train_images_per_s_cpu",
    "extract_images_per_s_one_by_one",
    "extract_images_per_s_cpu",
    "detector_train_images_per_s_cpu",
    "detect_images_per_s_one_by_one",
    "detect_images_per_s_cpu",
)


def _finite(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def test_gpu_check_smoke_runs_every_stage(tmp_path: Path):
    command = [sys.executable, str(REPO / "bench" / "gpu_check.py"), "--smoke", "--out", str(tmp_path)]
    real = Path(os.environ.get(ENV_REAL_DATA, "/nonexistent")) / "fashion-product-images-small"
    if os.environ.get(ENV_REAL_DATA) and real.is_dir():
        command += ["--catalog-source", str(real)]
    env = {k: v for k, v in os.environ.items() if k != "OUT"}  # $OUT would not be where this test reads
    env["OMP_NUM_THREADS"] = "1"
    # From another folder: the GPU machine runs a copy of the repository that is not installed.
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-6000:]

    result = json.loads((tmp_path / "gpu_check.json").read_text())
    assert result["name"] == "gpu_check"
    assert result["machine"]["gpu"] is None  # a CPU run never claims a GPU (nor a _gpu.json name)
    assert {k: v["status"] for k, v in result["stages"].items()} == dict.fromkeys(STAGES, "ok")
    for key in FIGURES:
        assert _finite(result["figures"].get(key)), (key, result["figures"].get(key))
    for key in FLOORS:
        assert _finite(result["floor"].get(key)), (key, result["floor"].get(key))
    assert 0 <= result["figures"]["classifier_test_top1"] <= 1
    assert 0 <= result["figures"]["detector_map"] <= 1
    assert result["figures"]["classifier_epochs"] == 2 and result["figures"]["detector_iterations"] == 2
    assert result["reference"]["resnet50_amp_train_images_per_s_a100"] == 2470
    # Tracking off: the training path must not pull in the orchestration and warehouse stack.
    assert result["heavy_modules_imported"] == []
    assert result["configs"]["classifier"]["resolved"]["backbone"] == "efficientnet_lite0"
    assert result["configs"]["classifier"]["weights_source"].startswith("efficientnet-lite0 ImageNet")
