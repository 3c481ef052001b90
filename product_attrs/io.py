"""Atomic file writes, so that a crashed run never leaves a half-written table behind."""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path
from typing import Any

import pandas as pd


def _tmp(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")


def write_parquet(frame: pd.DataFrame, path: Path) -> Path:
    tmp = _tmp(path)
    frame.to_parquet(tmp, index=False)
    os.replace(tmp, path)
    return path


def write_json(obj: Any, path: Path) -> Path:
    tmp = _tmp(path)
    tmp.write_text(json.dumps(obj, indent=1, default=str))
    os.replace(tmp, path)
    return path


def write_text(text: str, path: Path) -> Path:
    tmp = _tmp(path)
    tmp.write_text(text)
    os.replace(tmp, path)
    return path
