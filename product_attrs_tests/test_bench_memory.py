"""bench/bench_memory.py --smoke runs the real recognition and similar-products paths in fresh children and
writes its JSON where it is told (never over the committed bench/results/memory.json)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench" / "bench_memory.py"


@pytest.mark.slow
def test_smoke_run_writes_its_figures(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(BENCH), "--smoke", "--results", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads((tmp_path / "memory.json").read_text())
    assert result["name"] == "memory" and result["command"].endswith("--smoke")
    figures, floor = result["figures"], result["floor"]
    assert figures["recognize_objects"] == 20 * 5  # every photo read, 5 boxes each
    assert 0 < floor["recognize_models_loaded_rss_mb"] <= figures["recognize_20_photos_peak_rss_mb"] < 2048
    assert (
        0 < floor["similar_embeddings_allocated_rss_mb"] <= figures["similar_20k_products_peak_rss_mb"] < 2048
    )
    assert figures["similar_block_rows"] >= 1 and "SMOKE" in result["notes"]
