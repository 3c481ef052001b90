"""The layer rules, checked where CI runs them: import-linter's contracts (pyproject.toml), and what loading
the Dagster definitions imports at run time (every step process and the UI pay for it)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
#: Never imported by loading the definitions: the first three by rule, the others because they cost
#: most of a second each (the code location must load in about one).
HEAVY = ("torch", "torchvision", "mlflow", "pandas", "duckdb", "sklearn", "PIL")


def test_loading_the_definitions_imports_nothing_heavy():
    code = (
        "import json, sys; import product_attrs.definitions as d; "
        "d.defs.get_repository_def().get_all_jobs(); "
        f"print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


def test_import_contracts_hold():
    lint = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    if lint is None:
        pytest.skip("import-linter is not installed (pip install -e '.[dev]')")
    out = subprocess.run([lint], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout[-4000:]
    assert "0 broken" in out.stdout
