"""The house style, checked where CI runs: ruff's lint rules (with the 110-character line limit) and its
formatter, over the package, the tests and the benchmarks."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TREES = ["product_attrs", "product_attrs_tests", "bench", "scripts"]


def _ruff() -> str:
    ruff = shutil.which("ruff", path=str(Path(sys.executable).parent))
    if ruff is None:
        pytest.skip("ruff is not installed (pip install -e '.[dev]')")
    return ruff


def test_lint_rules_hold():
    out = subprocess.run([_ruff(), "check", *TREES], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout[-4000:]


def test_code_is_formatted():
    out = subprocess.run(
        [_ruff(), "format", "--check", *TREES], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stdout[-4000:]
