"""Where a path from the outside may lead: inside its root, and to a regular file.

Names come from files we do not control (COCO ``file_name``, grocery lists, symlinks in a catalog folder)
and from people who can type run config and partition keys in the Dagster UI. Every such path is resolved
(symlinks followed) and must stay under its root; every file is opened without blocking and checked to be a
regular file before a byte is read, since opening a FIFO named ``<id>.jpg`` blocks forever.
"""

from __future__ import annotations

import fcntl
import os
import stat
from pathlib import Path
from typing import BinaryIO


class PathOutsideRoot(ValueError):
    """A name that leads out of the folder it must stay in (``..``, an absolute path, a symlink)."""


class FileTooLarge(ValueError):
    """More bytes than the reader allows: a definite verdict about the file."""


class NotARegularFile(OSError):
    """A FIFO, a device, a socket or a folder where a file was expected: a definite verdict, not transient."""


_KINDS = {
    stat.S_IFIFO: "fifo",
    stat.S_IFCHR: "character device",
    stat.S_IFBLK: "block device",
    stat.S_IFSOCK: "socket",
    stat.S_IFDIR: "directory",
}


def kind_of(mode: int) -> str:
    return _KINDS.get(stat.S_IFMT(mode), "regular file" if stat.S_ISREG(mode) else "special file")


def is_within(root: Path, path: Path) -> bool:
    """Whether ``path``, with every symlink resolved, is ``root`` or under it."""
    return Path(path).resolve().is_relative_to(Path(root).resolve())


def confine(root: Path, name: str | os.PathLike) -> Path:
    """``root / name`` resolved, or `PathOutsideRoot` when it leaves ``root`` by any route."""
    text = os.fspath(name)
    if "\x00" in text:
        raise PathOutsideRoot(f"{text!r} contains a NUL byte")
    if os.path.isabs(text):
        raise PathOutsideRoot(f"{text!r} is an absolute path; a name relative to {root} was expected")
    try:
        resolved = (Path(root) / text).resolve()
    except RuntimeError as exc:  # a symlink loop (Python 3.11 raises RuntimeError, 3.13 OSError)
        raise PathOutsideRoot(f"{text!r} is a symlink loop, it leads nowhere under {root}") from exc
    if not resolved.is_relative_to(Path(root).resolve()):
        raise PathOutsideRoot(f"{text!r} leads to {resolved}, outside {root}")
    return resolved


def open_regular(path: Path) -> BinaryIO:
    """Open for reading only if ``path`` is (or links to) a regular file; never blocks on a FIFO."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise NotARegularFile(f"{path} is a {kind_of(mode)}, not a regular file")
        flags = fcntl.fcntl(fd, fcntl.F_GETFL)
        fcntl.fcntl(fd, fcntl.F_SETFL, flags & ~os.O_NONBLOCK)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_regular(path: Path, limit: int | None = None) -> bytes:
    """The bytes of a regular file (see `open_regular`); more than ``limit`` bytes is `FileTooLarge`."""
    with open_regular(path) as handle:
        data = handle.read() if limit is None else handle.read(limit + 1)
    if limit is not None and len(data) > limit:
        raise FileTooLarge(f"{path} is larger than {limit:,} bytes")
    return data
