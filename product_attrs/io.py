"""Atomic file writes, so that a crashed run never leaves a half-written table behind.

`durable_write` also flushes the file and the rename to disk: for what other processes act on (model
version manifests, the LATEST / CHAMPION pointers, checkpoints), where a power cut must leave the old
file or the new, never an empty one.
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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


def durable_write(path: Path, write) -> None:
    """`write(tmp_path)`, fsync it, rename it over `path`, fsync the folder."""
    path = Path(path)
    tmp = _tmp(path)
    write(tmp)
    with open(tmp, "rb+") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


def fsync_dir(folder: Path) -> None:
    """Make a rename in `folder` durable."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
