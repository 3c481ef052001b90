"""Atomic, durable file writes, so that a crashed run or a power cut never leaves a half-written table.

Every write goes to a temporary file beside the target, is fsynced, renamed over the target, and the
folder is fsynced too: without that last step the rename may not survive a power cut, and Dagster would
have recorded a materialization whose file is the old one, or missing. A failed write removes its
temporary file. The cost is two fsyncs per file written (a few milliseconds on an SSD).
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd


def _tmp(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")


def write_parquet(frame: pd.DataFrame, path: Path) -> Path:
    durable_write(path, lambda tmp: frame.to_parquet(tmp, index=False))
    return path


def write_json(obj: Any, path: Path) -> Path:
    durable_write(path, lambda tmp: tmp.write_text(json.dumps(obj, indent=1, default=str)))
    return path


def write_text(text: str, path: Path) -> Path:
    durable_write(path, lambda tmp: tmp.write_text(text))
    return path


def durable_write(path: Path, write: Callable[[Path], Any]) -> None:
    """`write(tmp_path)`, fsync it, rename it over `path`, fsync the folder; no temporary file is left
    behind when `write` (or anything after it) fails."""
    path = Path(path)
    tmp = _tmp(path)
    try:
        write(tmp)
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def fsync_dir(folder: Path) -> None:
    """Make a rename in `folder` durable."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
