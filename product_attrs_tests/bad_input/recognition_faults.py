"""Recognition: a folder typed in run config must lie under an allowed root; a store photo that cannot or must
not be read is recorded with its reason, beside the photos that are recognized."""

from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from product_attrs.retrieval.index import GalleryIndex
from product_attrs.retrieval.recognize import allowed_folder, list_photos, recognize_photos
from product_attrs.settings import Settings
from product_attrs_tests.bad_input.cases import Fault, quarantined, raised


def _folder(make):
    """``recognitions.folder`` as typed in the UI, checked against the settings' roots (data root only)."""

    def run(tmp: Path) -> str:
        settings = Settings.from_env({"PRODUCT_ATTRS_DATA_DIR": str(tmp / "data")})
        (tmp / "data").mkdir()
        (tmp / "elsewhere").mkdir()
        try:
            allowed_folder(make(tmp), settings.recognition_roots)
        except Exception as exc:  # noqa: BLE001 - the outcome is the error
            return raised(exc)
        return "accepted"

    return run


def _link_out(tmp: Path) -> str:
    (tmp / "data" / "photos").symlink_to(tmp / "elsewhere", target_is_directory=True)
    return str(tmp / "data" / "photos")


def _photo(make):
    """A store-photo folder with one good photo and the bad one; the good one must still be recognized."""

    def run(tmp: Path) -> str:
        from product_attrs_tests.retrieval.conftest import write_recognizer

        classifier = write_recognizer(tmp / "models")
        folder = tmp / "photos"
        folder.mkdir()
        Image.new("RGB", (32, 32), "red").save(folder / "good.png")
        make(folder, tmp)
        index = GalleryIndex(
            np.eye(1, 32, dtype=np.float32), pd.DataFrame({"fine_label": ["apple"]}), key="fine_label"
        )
        found = recognize_photos(list_photos(folder), classifier, index, root=folder)
        assert found.rows["photo"].tolist() == ["good.png"], "the good photo is recognized"
        return quarantined(found.quarantine["reason"])

    return run


def _symlink_out(folder: Path, tmp: Path) -> None:
    Image.new("RGB", (32, 32), "blue").save(tmp / "secret.png")
    (folder / "shelf.png").symlink_to(tmp / "secret.png")


def png_header(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width`` x ``height`` pixels, with no pixel data."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")


def _pixel_bomb(folder: Path, tmp: Path) -> None:
    (folder / "shelf.png").write_bytes(png_header(10_000, 10_000))  # the limit is 89.5 MP


FAULTS = [
    Fault(
        "recognitions.folder",
        "a folder outside the data root and the allowed roots",
        "error: FolderNotAllowed: recognitions.folder is outside the allowed roots (the data root, "
        "PRODUCT_ATTRS_RECOGNITION_DIR, PRODUCT_ATTRS_RECOGNITION_ROOTS); add its root to "
        "PRODUCT_ATTRS_RECOGNITION_ROOTS",
        _folder(lambda tmp: str(tmp / "elsewhere")),
    ),
    Fault(
        "recognitions.folder",
        "a symlink under the data root leading out of it",
        "error: FolderNotAllowed: recognitions.folder is outside the allowed roots (the data root, "
        "PRODUCT_ATTRS_RECOGNITION_DIR, PRODUCT_ATTRS_RECOGNITION_ROOTS); add its root to "
        "PRODUCT_ATTRS_RECOGNITION_ROOTS",
        _folder(_link_out),
    ),
    Fault(
        "recognitions.folder",
        "a path climbing out with ..",
        "error: FolderNotAllowed: recognitions.folder is outside the allowed roots (the data root, "
        "PRODUCT_ATTRS_RECOGNITION_DIR, PRODUCT_ATTRS_RECOGNITION_ROOTS); add its root to "
        "PRODUCT_ATTRS_RECOGNITION_ROOTS",
        _folder(lambda tmp: str(tmp / "data" / ".." / "elsewhere")),
    ),
    Fault(
        "recognitions.folder",
        "a NUL byte in the name",
        "error: FolderNotAllowed: recognitions.folder contains a NUL byte",
        _folder(lambda tmp: str(tmp / "data") + "\x00x"),
    ),
    Fault(
        "store photo",
        "a FIFO named shelf.jpg",
        "quarantine: not_a_regular_file",
        _photo(lambda folder, tmp: os.mkfifo(folder / "shelf.jpg")),
    ),
    Fault(
        "store photo",
        "a symlink leading out of the folder",
        "quarantine: outside_folder",
        _photo(_symlink_out),
    ),
    Fault(
        "store photo",
        "a header claiming 100 megapixels",
        "quarantine: image_too_large",
        _photo(_pixel_bomb),
    ),
    Fault(
        "store photo",
        "an empty or truncated file",
        "quarantine: unreadable_image",
        _photo(lambda folder, tmp: (folder / "shelf.jpg").write_bytes(b"\xff\xd8\xff")),
    ),
]
