"""A model file is data, never code: a checkpoint or weights file carrying a pickle payload is refused on
every path that resumes a training or serves a model, and no torch.load in the project unpickles code."""

from __future__ import annotations

import ast
from pathlib import Path


import pytest
import torch

from product_attrs.modeling.weights import WeightsUnavailableError

REPO = Path(__file__).resolve().parents[2]


class Payload:
    """Unpickled, runs code: creates ``marker``."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').write('pwned')",))


def _plant(path: Path, marker: Path, real: dict | None = None) -> Path:
    """``real`` (a checkpoint or state dict) with the payload slipped in, as an attacker would write it."""
    torch.save({**(real or {}), "model": {"weight": torch.zeros(1)}, "extra": Payload(marker)}, path)
    return path


def test_the_payload_is_real(tmp_path: Path):
    """Loaded the unsafe way, the planted file runs its code (so the refusals below mean something)."""
    marker = tmp_path / "pwned"
    torch.load(_plant(tmp_path / "evil.pt", marker), weights_only=False)
    assert marker.read_text() == "pwned"


def test_resume_refuses_a_checkpoint_with_a_pickle_payload(tmp_path: Path):
    from product_attrs.modeling.checkpoint import CheckpointError, load_checkpoint

    marker = tmp_path / "pwned"
    path = _plant(tmp_path / "checkpoint.pt", marker, {"position": {"epoch": 1}})
    with pytest.raises(CheckpointError, match="cannot be read safely"):
        load_checkpoint(path)
    assert not marker.exists()


def test_a_weights_file_with_a_pickle_payload_is_refused(tmp_path: Path):
    from product_attrs.modeling.weights import read_state_dict

    marker = tmp_path / "pwned"
    with pytest.raises(WeightsUnavailableError, match="is not a PyTorch state dict"):
        read_state_dict(_plant(tmp_path / "weights.pt", marker))
    assert not marker.exists()


def test_serving_refuses_a_classifier_version_with_a_pickle_payload(tmp_path: Path):
    from product_attrs.classification.serve import Classifier
    from product_attrs_tests.extraction.conftest import write_classifier_version

    version = write_classifier_version(tmp_path / "models")
    marker = tmp_path / "pwned"
    _plant(version / "model.pt", marker)
    with pytest.raises(WeightsUnavailableError, match=r"model\.pt: it holds pickled objects"):
        Classifier.load(version, device="cpu")
    assert not marker.exists()


def test_serving_refuses_a_detector_version_with_a_pickle_payload(tmp_path: Path):
    from product_attrs.detection.model import build_detector
    from product_attrs.detection.serve import Detector
    from product_attrs_tests.detection.conftest import tiny_config
    from product_attrs_tests.modeling.helpers import commit_version

    cfg = tiny_config(pretrained=False)
    label_map = [{"label": 1, "name": "can"}]
    model, _ = build_detector(cfg, 2)
    version = commit_version(
        tmp_path / "models",
        "product_detector",
        "detection",
        model,
        config=cfg.to_dict(),
        info={"label_map": label_map},
    )
    marker = tmp_path / "pwned"
    _plant(version / "model.pt", marker)
    with pytest.raises(WeightsUnavailableError, match=r"model\.pt: it holds pickled objects"):
        Detector.load(version, "cpu")
    assert not marker.exists()


def _torch_loads(tree: ast.AST):
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "load"
            and isinstance(node.func.value, ast.Name)
            and node.func.value.id == "torch"
        ):
            yield node


def test_every_torch_load_in_the_project_is_weights_only():
    unsafe, seen = [], 0
    for path in sorted([*(REPO / "product_attrs").rglob("*.py"), *(REPO / "bench").rglob("*.py")]):
        for call in _torch_loads(ast.parse(path.read_text(), str(path))):
            seen += 1
            flag = {k.arg: k.value for k in call.keywords}.get("weights_only")
            if not (isinstance(flag, ast.Constant) and flag.value is True):
                unsafe.append(f"{path.relative_to(REPO)}:{call.lineno}")
    assert seen >= 5, "the scan found the project's torch.load calls"
    assert unsafe == [], f"torch.load without weights_only=True: {unsafe}"
