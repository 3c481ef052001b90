"""Path confinement and safe opening: the primitives every reader of outside names relies on."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from product_attrs.paths import (
    NotARegularFile,
    PathOutsideRoot,
    confine,
    is_within,
    open_regular,
    read_regular,
)


def test_confine_keeps_names_inside_and_refuses_every_way_out(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "a").mkdir(parents=True)
    (root / "a" / "x.jpg").write_bytes(b"x")
    (tmp_path / "secret").write_text("s")
    (root / "link").symlink_to(tmp_path / "secret")
    (root / "inner").symlink_to(root / "a" / "x.jpg")
    assert confine(root, "a/x.jpg") == (root / "a" / "x.jpg").resolve()
    assert confine(root, "inner") == (root / "a" / "x.jpg").resolve()
    assert confine(root, "a/../a/x.jpg") == (root / "a" / "x.jpg").resolve()
    for bad in ("../secret", "/etc/passwd", "link", "a/\x00.jpg"):
        with pytest.raises(PathOutsideRoot):
            confine(root, bad)
    assert is_within(root, root / "a") and not is_within(root, root / "link")
    (root / "loop").symlink_to(root / "loop")
    with pytest.raises(PathOutsideRoot, match="symlink loop"):
        confine(root, "loop")


def test_open_regular_refuses_a_fifo_at_once_and_reads_a_file(tmp_path: Path) -> None:
    fifo = tmp_path / "1.jpg"
    os.mkfifo(fifo)
    (tmp_path / "to_fifo.jpg").symlink_to(fifo)
    done: list[BaseException] = []

    def attempt() -> None:
        for path in (fifo, tmp_path / "to_fifo.jpg", tmp_path):
            try:
                open_regular(path)
            except (NotARegularFile, IsADirectoryError) as exc:
                done.append(exc)

    thread = threading.Thread(target=attempt, daemon=True)
    thread.start()
    thread.join(5)
    assert not thread.is_alive(), "opening a FIFO blocked"
    assert len(done) == 3 and "fifo" in str(done[0])
    (tmp_path / "f.bin").write_bytes(b"abc")
    assert read_regular(tmp_path / "f.bin") == b"abc"
    with pytest.raises(ValueError, match="larger than 2"):
        read_regular(tmp_path / "f.bin", limit=2)
    with pytest.raises(NotARegularFile, match="character device"):
        open_regular(Path("/dev/null"))
