"""The image manifest: every file opened and fully decoded once, then re-checked only when it changes.

Decoding is the bound (a 60x80 JPEG takes ~0.1 ms), so files are checked in a forked process pool in large
chunks; a file whose (size, mtime) match the previous manifest keeps its row without being read.
"""

from __future__ import annotations

import hashlib
import io
import multiprocessing
import os
import warnings
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from PIL import Image

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


def inspect_image_bytes(data: bytes) -> dict:
    """Decode fully (``load()``), since a truncated JPEG opens fine and only fails on decode.

    Callers turn ``DecompressionBombWarning`` into an error once per chunk (see ``_inspect_chunk``).
    """
    row: dict = {"sha1": hashlib.sha1(data).hexdigest()}
    if not data:
        row["error"] = "empty_file: 0 bytes"
        return row
    try:
        with Image.open(io.BytesIO(data)) as img:
            img.load()
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
        row["error"] = f"undecodable_image: {type(exc).__name__}: {exc}"[:300]
    return row


def _inspect_chunk(chunk: list[tuple[str, str, int, int]]) -> list[dict]:
    rows = []
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        for path, name, size, mtime_ns in chunk:
            try:
                with open(path, "rb") as handle:
                    data = handle.read()
            except OSError as exc:
                row = {"error": f"unreadable_file: {exc}"}
            else:
                row = inspect_image_bytes(data)
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


def _list_files(images_dir: Path) -> list[tuple[str, str, int, int]]:
    files = []
    with os.scandir(images_dir) as it:
        for entry in it:
            if entry.name.startswith(".") or entry.is_dir():
                continue
            try:
                st = entry.stat()
            except OSError:  # e.g. a dangling symlink: kept, so that reading it records the error
                files.append((entry.path, entry.name, -1, 0))
                continue
            files.append((entry.path, entry.name, st.st_size, st.st_mtime_ns))
    files.sort(key=lambda f: f[1])
    return files


def inspect_files(
    todo: list[tuple[str, str, int, int]], workers: int = 1, chunk_size: int = 512
) -> list[dict]:
    """Decode ``(path, name, size, mtime_ns)`` files in chunks, forked over ``workers`` processes."""
    checked: list[dict] = []
    if not todo:
        return checked
    chunks = [todo[i : i + chunk_size] for i in range(0, len(todo), chunk_size)]
    if workers > 1 and len(chunks) > 1:
        ctx = multiprocessing.get_context("fork")
        with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
            for rows in pool.map(_inspect_chunk, chunks):
                checked.extend(rows)
    else:
        for chunk in chunks:
            checked.extend(_inspect_chunk(chunk))
    return checked


def _split_reused(
    files: list[tuple[str, str, int, int]], previous: pd.DataFrame | None
) -> tuple[list[bool], pd.DataFrame, int]:
    """Which listed files keep their ``previous`` row: same (file_name, size, mtime)."""
    listing = pd.DataFrame(files, columns=["path", "file_name", "size_bytes", "mtime_ns"])
    key = ["file_name", "size_bytes", "mtime_ns"]
    if previous is not None and len(previous):
        prev = previous[MANIFEST_COLUMNS].astype(
            {"file_name": "object", "size_bytes": "int64", "mtime_ns": "int64"}
        )
        listing = listing.astype({"file_name": "object"})
        matched = listing.merge(prev, on=key, how="left", indicator=True)
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
    """Inspect new or changed files under ``images_dir``; reuse ``previous`` rows for the rest."""
    if not images_dir.is_dir():
        raise FileNotFoundError(f"no images folder at {images_dir}")
    files = _list_files(images_dir)
    is_reused, reused, n_previous = _split_reused(files, previous)
    todo = [f for f, r in zip(files, is_reused) if not r]
    checked = inspect_files(todo, workers=workers, chunk_size=chunk_size)
    manifest = _typed_manifest(reused, checked)
    n_removed = n_previous - len(reused)
    return ManifestResult(manifest, n_checked=len(checked), n_reused=len(reused), n_removed=n_removed)


def _stat_listed(root: Path, relative_paths: list[str]) -> tuple[list[tuple[str, str, int, int]], list[str]]:
    """(path, relative name, size, mtime) of each listed file that exists, and the names that do not."""
    files, missing = [], []
    for name in sorted(set(relative_paths)):
        path = root / name
        try:
            st = path.stat()
        except FileNotFoundError:
            missing.append(name)
            continue
        except OSError:  # e.g. permission denied on a folder: kept, so that reading it records the error
            files.append((str(path), name, -1, 0))
            continue
        if not path.is_file():
            missing.append(name)
            continue
        files.append((str(path), name, st.st_size, st.st_mtime_ns))
    return files, missing


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
    files, missing = _stat_listed(root, relative_paths)
    is_reused, reused, n_previous = _split_reused(files, previous)
    todo = [f for f, r in zip(files, is_reused) if not r]
    checked = inspect_files(todo, workers=workers, chunk_size=chunk_size)
    manifest = _typed_manifest(reused, checked)
    return ManifestResult(
        manifest,
        n_checked=len(checked),
        n_reused=len(reused),
        n_removed=n_previous - len(reused),
        missing=missing,
    )
