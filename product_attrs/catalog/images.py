"""The image manifest: every file opened and fully decoded once, then re-checked only when it changes.

Decoding is the bound (a 60x80 JPEG takes ~0.1 ms), so files are checked in a process pool in large
chunks; a file whose (size, mtime) match the previous manifest keeps its row without being read, unless
that row's error was transient (see ``RETRIED_ERRORS``). Every file goes through `product_attrs.decode`
(regular files only, ``MAX_PIXELS``, a time limit), and what is not a regular file or is a symlink that
leads out of its folder is judged from its listing, on every run, without being opened.
"""

from __future__ import annotations

import errno
import hashlib
import multiprocessing
import os
import stat
import warnings
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from PIL import Image

from product_attrs import decode
from product_attrs.paths import FileTooLarge, NotARegularFile, PathOutsideRoot, confine, kind_of, read_regular

MANIFEST_COLUMNS = [
    "file_name",
    "product_id",
    "size_bytes",
    "mtime_ns",
    "sha1",
    "format",
    "mode",
    "width",
    "height",
    "exif_orientation",
    "error",
]
EXIF_ORIENTATION = 0x0112
_EMPTY_ROW = dict.fromkeys(MANIFEST_COLUMNS)
#: Error reasons that say something about the moment (a flaky disk, a loaded machine, a permission being
#: fixed), not about the file: a row with one is re-checked on the next run instead of being reused.
RETRIED_ERRORS = ("transient_read_error", "unreadable_file")
#: errnos of a read that may well succeed next time.
_TRANSIENT_ERRNOS = {errno.EIO, errno.EAGAIN, errno.EINTR, errno.ETIMEDOUT, errno.ESTALE, errno.ENOMEM}
#: At most this many decode processes per manifest, whatever ``workers`` says (see `decode_workers`).
MAX_DECODE_WORKERS = 4


def file_error(exc: BaseException, otherwise: str = "undecodable_image") -> str:
    """``reason: detail`` for a file that could not be read or decoded, the manifest's ``error`` value.

    Definite verdicts about the file (not a regular file, too many pixels, undecodable) are kept until the
    file changes; ``transient_read_error`` and ``unreadable_file`` are retried (``RETRIED_ERRORS``).
    """
    if isinstance(exc, NotARegularFile):
        return f"not_a_regular_file: {exc}"
    if isinstance(exc, decode.ImageTooLarge):
        return f"image_too_large: {exc}"
    transient = isinstance(exc, (decode.DecodeTimeout, MemoryError))
    if transient or (isinstance(exc, OSError) and exc.errno in _TRANSIENT_ERRNOS):
        return f"transient_read_error: {type(exc).__name__}: {exc} (retried on the next run)"[:300]
    if isinstance(exc, OSError) and exc.errno is not None:  # PIL's decoder errors carry no errno
        return f"unreadable_file: {exc} (retried on the next run)"[:300]
    return f"{otherwise}: {type(exc).__name__}: {exc}"[:300]


def inspect_image_bytes(data: bytes) -> dict:
    """Decode fully (`decode.open_image`), since a truncated JPEG opens fine and only fails on decode."""
    row: dict = {"sha1": hashlib.sha1(data).hexdigest()}
    if not data:
        row["error"] = "empty_file: 0 bytes"
        return row
    try:
        with decode.open_image(data, max_pixels=decode.MAX_PIXELS, timeout_s=decode.DECODE_TIMEOUT_S) as img:
            # Parsing EXIF costs as much as decoding a thumbnail: only when there is an EXIF block.
            orientation = int(img.getexif().get(EXIF_ORIENTATION, 1) or 1) if "exif" in img.info else 1
            row.update(
                format=img.format,
                mode=img.mode,
                width=img.width,
                height=img.height,
                exif_orientation=orientation,
            )
    except Exception as exc:  # noqa: BLE001 - any decoder failure is a property of the file, recorded
        row["error"] = file_error(exc)
    return row


def inspect_file(path: str) -> dict:
    """The manifest row of one file: opened only if it is a regular file, at most ``MAX_FILE_BYTES``."""
    try:
        data = read_regular(Path(path), limit=decode.MAX_FILE_BYTES)
    except (OSError, MemoryError) as exc:
        return {"error": file_error(exc)}
    except FileTooLarge as exc:  # more than MAX_FILE_BYTES: a verdict about the file, cached
        return {"error": f"image_too_large: {exc}"}
    return inspect_image_bytes(data)


def _inspect_chunk(chunk: list[tuple[str, str, int, int]]) -> list[dict]:
    rows = []
    with warnings.catch_warnings():
        # open_image refuses what is over MAX_PIXELS (PIL's warning threshold) itself: no warning noise.
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        for path, name, size, mtime_ns in chunk:
            row = inspect_file(path)
            rows.append({**_EMPTY_ROW, **row, "file_name": name, "size_bytes": size, "mtime_ns": mtime_ns})
    return rows


def product_id_from_name(name: str) -> int | None:
    stem = name.rsplit(".", 1)[0]
    return int(stem) if stem.isdigit() else None


@dataclass
class ManifestResult:
    manifest: pd.DataFrame
    n_checked: int
    n_reused: int
    n_removed: int
    #: Listed names that are not files (``build_listed_manifest`` only).
    missing: list[str] = field(default_factory=list)


File = tuple[str, str, int, int]  # (path, name, size_bytes, mtime_ns)


def _judged(name: str, size: int, mtime_ns: int, error: str) -> dict:
    """The row of a file refused from its listing alone (never opened)."""
    return {**_EMPTY_ROW, "file_name": name, "size_bytes": size, "mtime_ns": mtime_ns, "error": error}


def _outside(name: str, root: Path) -> dict:
    return _judged(name, -1, 0, f"link_outside_catalog: {name} is a symlink that leads outside {root.name}/")


def _list_files(images_dir: Path) -> tuple[list[File], list[dict]]:
    """Files to decode, and rows of entries judged without opening them: a symlink that leads out of
    ``images_dir``, or anything that is not a regular file (a FIFO would block ``open()`` forever)."""
    root = images_dir.resolve()
    files: list[File] = []
    judged: list[dict] = []
    with os.scandir(images_dir) as it:
        for entry in it:
            if entry.name.startswith(".") or entry.is_dir():
                continue
            path = entry.path
            if entry.is_symlink():  # read through its target, the one that was checked
                path = os.path.realpath(entry.path)
                if not Path(path).is_relative_to(root):
                    judged.append(_outside(entry.name, images_dir))
                    continue
            try:
                st = entry.stat()
            except OSError as exc:  # e.g. a dangling symlink, retried on the next run
                judged.append(_judged(entry.name, -1, 0, file_error(exc)))
                continue
            if not stat.S_ISREG(st.st_mode):
                kind = f"not_a_regular_file: {entry.name} is a {kind_of(st.st_mode)}"
                judged.append(_judged(entry.name, st.st_size, st.st_mtime_ns, kind))
                continue
            files.append((path, entry.name, st.st_size, st.st_mtime_ns))
    files.sort(key=lambda f: f[1])
    return files, judged


def decode_workers(workers: int, n_chunks: int) -> int:
    """Processes for one manifest: ``workers``, but at most ``MAX_DECODE_WORKERS`` and one per chunk.

    ``workers`` defaults to the machine's cores for every run, and up to four runs ingest at once; four
    processes already keep ingestion well above the whole-catalog target, so more only adds memory.
    """
    return max(1, min(workers, MAX_DECODE_WORKERS, n_chunks))


def inspect_files(todo: list[File], workers: int = 1, chunk_size: int = 512) -> list[dict]:
    """Decode ``(path, name, size, mtime_ns)`` files in chunks over `decode_workers` processes.

    The processes come from a "forkserver", never a fork of this process: a Dagster run worker has threads,
    and a fork copies whatever lock one of them held at that moment.
    """
    checked: list[dict] = []
    if not todo:
        return checked
    chunks = [todo[i : i + chunk_size] for i in range(0, len(todo), chunk_size)]
    n = decode_workers(workers, len(chunks))
    if n > 1:
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload([__name__])  # each worker starts with pandas and PIL imported
        with ProcessPoolExecutor(max_workers=n, mp_context=ctx) as pool:
            for rows in pool.map(_inspect_chunk, chunks):
                checked.extend(rows)
    else:
        for chunk in chunks:
            checked.extend(_inspect_chunk(chunk))
    return checked


def _split_reused(files: list[File], previous: pd.DataFrame | None) -> tuple[list[bool], pd.DataFrame, int]:
    """Which listed files keep their ``previous`` row: same (file_name, size, mtime), and not an error
    that is retried (``RETRIED_ERRORS``)."""
    listing = pd.DataFrame(files, columns=["path", "file_name", "size_bytes", "mtime_ns"])
    key = ["file_name", "size_bytes", "mtime_ns"]
    if previous is not None and len(previous):
        prev = previous[MANIFEST_COLUMNS].astype(
            {"file_name": "object", "size_bytes": "int64", "mtime_ns": "int64"}
        )
        retried = prev["error"].astype("string").fillna("").str.startswith(RETRIED_ERRORS)
        listing = listing.astype({"file_name": "object"})
        matched = listing.merge(prev[~retried.to_numpy()], on=key, how="left", indicator=True)
        is_reused = (matched["_merge"] == "both").to_numpy().tolist()
        return is_reused, matched.loc[matched["_merge"] == "both", MANIFEST_COLUMNS], len(prev)
    return [False] * len(listing), pd.DataFrame(columns=MANIFEST_COLUMNS), 0


def _typed_manifest(reused: pd.DataFrame, checked: list[dict]) -> pd.DataFrame:
    parts = [p for p in (reused, pd.DataFrame.from_records(checked, columns=MANIFEST_COLUMNS)) if len(p)]
    manifest = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=MANIFEST_COLUMNS)
    manifest["product_id"] = [product_id_from_name(n) for n in manifest["file_name"]]
    manifest = manifest.sort_values("file_name", ignore_index=True)
    return manifest.astype(
        {
            "product_id": "Int64",
            "size_bytes": "int64",
            "mtime_ns": "int64",
            "width": "Int64",
            "height": "Int64",
            "exif_orientation": "Int64",
            "file_name": "string",
            "sha1": "string",
            "format": "string",
            "mode": "string",
            "error": "string",
        }
    )


def build_manifest(
    images_dir: Path, previous: pd.DataFrame | None = None, workers: int = 1, chunk_size: int = 512
) -> ManifestResult:
    """Inspect new or changed files under ``images_dir``; reuse ``previous`` rows for the rest.

    Symlinks are followed only within ``images_dir``; one that leads out gets a ``link_outside_catalog``
    row and is never read.
    """
    if not images_dir.is_dir():
        raise FileNotFoundError(f"no images folder at {images_dir}")
    files, judged = _list_files(images_dir)
    is_reused, reused, n_previous = _split_reused(files, previous)
    todo = [f for f, r in zip(files, is_reused) if not r]
    checked = [*inspect_files(todo, workers=workers, chunk_size=chunk_size), *judged]
    manifest = _typed_manifest(reused, checked)
    n_removed = n_previous - len(reused)
    return ManifestResult(manifest, n_checked=len(checked), n_reused=len(reused), n_removed=n_removed)


def _stat_listed(root: Path, relative_paths: list[str]) -> tuple[list[File], list[dict], list[str]]:
    """Files to decode, rows judged from the listing (see `_list_files`), and the names that are not files.

    Every name is resolved: one that leads out of ``root`` through a symlink (the file or a folder on its
    way) is ``link_outside_catalog``, even when the link dangles.
    """
    files: list[File] = []
    judged: list[dict] = []
    missing: list[str] = []
    for name in sorted(set(relative_paths)):
        try:
            path = confine(root, name)
        except PathOutsideRoot:
            judged.append(_outside(name, root))
            continue
        try:
            st = path.stat()
        except FileNotFoundError:
            missing.append(name)
            continue
        except OSError as exc:  # e.g. permission denied on a folder, retried on the next run
            judged.append(_judged(name, -1, 0, file_error(exc)))
            continue
        if stat.S_ISDIR(st.st_mode):
            missing.append(name)
        elif not stat.S_ISREG(st.st_mode):
            judged.append(
                _judged(name, st.st_size, st.st_mtime_ns, f"not_a_regular_file: is a {kind_of(st.st_mode)}")
            )
        else:
            files.append((str(path), name, st.st_size, st.st_mtime_ns))
    return files, judged, missing


def build_listed_manifest(
    root: Path,
    relative_paths: list[str],
    previous: pd.DataFrame | None = None,
    workers: int = 1,
    chunk_size: int = 128,
) -> ManifestResult:
    """Like ``build_manifest`` for files named by a list (nested folders) rather than a flat folder.

    ``file_name`` holds the path relative to ``root``; names that are not files are returned in
    ``missing`` instead of getting a row, so that the caller can quarantine them as missing images.
    """
    files, judged, missing = _stat_listed(root, relative_paths)
    is_reused, reused, n_previous = _split_reused(files, previous)
    todo = [f for f, r in zip(files, is_reused) if not r]
    checked = [*inspect_files(todo, workers=workers, chunk_size=chunk_size), *judged]
    manifest = _typed_manifest(reused, checked)
    return ManifestResult(
        manifest,
        n_checked=len(checked),
        n_reused=len(reused),
        n_removed=n_previous - len(reused),
        missing=missing,
    )
