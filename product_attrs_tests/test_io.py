"""A write that Dagster records as done survives a power cut: file and folder are fsynced after the rename."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pandas as pd
import pytest

from product_attrs import io


@pytest.mark.parametrize(
    "write",
    [
        lambda path: io.write_parquet(pd.DataFrame({"a": [1, 2]}), path),
        lambda path: io.write_json({"a": 1}, path),
        lambda path: io.write_text("a\n", path),
    ],
    ids=["parquet", "json", "text"],
)
def test_every_write_fsyncs_the_file_then_the_folder_after_the_rename(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, write
):
    target = tmp_path / "out" / "table"
    calls: list[tuple[str, str, bool]] = []
    fsync = os.fsync

    def record(fd: int) -> None:
        kind = "dir" if stat.S_ISDIR(os.fstat(fd).st_mode) else "file"
        calls.append((kind, os.readlink(f"/proc/self/fd/{fd}"), target.exists()))
        fsync(fd)

    monkeypatch.setattr(os, "fsync", record)
    write(target)
    assert [c[0] for c in calls] == ["file", "dir"]
    (_, file_fsynced, renamed_before_file), (_, dir_fsynced, renamed_before_dir) = calls
    assert Path(file_fsynced).parent == target.parent and not renamed_before_file  # the temporary file
    assert Path(dir_fsynced) == target.parent and renamed_before_dir  # the folder, after the rename
    assert [p.name for p in target.parent.iterdir()] == ["table"]


def test_a_failed_write_leaves_no_temporary_file_and_the_old_file_intact(tmp_path: Path):
    target = tmp_path / "t.parquet"
    io.write_text("old", target)

    class Unwritable:
        def to_parquet(self, path, index=False):
            Path(path).write_bytes(b"half a table")
            raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        io.write_parquet(Unwritable(), target)
    assert [p.name for p in tmp_path.iterdir()] == ["t.parquet"] and target.read_text() == "old"
