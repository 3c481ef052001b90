"""One small JSON per benchmark run under bench/results/ (the format ../shared/BENCH.md describes), so
that every figure the README quotes has its evidence committed beside it."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


def write_result(
    name: str,
    command: str,
    figures: dict[str, Any],
    floor: dict[str, Any],
    seconds: float,
    notes: str = "",
    data_version: str | None = None,
    gpu: str | None = None,
    results_dir: Path | None = None,
) -> Path:
    """Write the JSON into `results_dir` (default bench/results/): a subset or smoke run writes elsewhere so
    that it never replaces the committed figures of a full one."""
    import torch

    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"],
        cwd=Path(__file__).resolve().parent,
        capture_output=True,
        text=True,
    ).stdout.strip()
    result = {
        "name": name,
        "command": command,
        "commit": commit,
        "data_version": data_version,
        "machine": {"cores": os.cpu_count(), "gpu": gpu, "torch": torch.__version__.split("+")[0]},
        "seconds": round(seconds, 1),
        "figures": {k: round(v, 4) if isinstance(v, float) else v for k, v in figures.items()},
        "floor": {k: round(v, 4) if isinstance(v, float) else v for k, v in floor.items()},
        "notes": notes,
    }
    folder = RESULTS if results_dir is None else Path(results_dir)
    folder.mkdir(parents=True, exist_ok=True)
    out = folder / (f"{name}_gpu.json" if gpu else f"{name}.json")
    out.write_text(json.dumps(result, indent=2) + "\n")
    return out
