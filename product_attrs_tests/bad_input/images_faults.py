"""The fashion images folder: whatever sits where ``<id>.jpg`` should be, the product ends in the clean
catalog or in quarantine with a reason, and nothing hangs. Each case runs the manifest and cleaning."""

from __future__ import annotations

import errno
import io
import os
from collections.abc import Callable
from pathlib import Path
from unittest import mock

from PIL import Image

from product_attrs import decode
from product_attrs.catalog import images as images_module
from product_attrs.catalog.clean import CATALOG_SOURCE, clean_catalog
from product_attrs.catalog.images import build_manifest
from product_attrs.catalog.styles import parse_styles_text
from product_attrs_tests.bad_input.cases import Fault, quarantined

HEADER = "id,gender,masterCategory,subCategory,articleType,baseColour,season,year,usage,productDisplayName\n"


def _jpeg(size: tuple[int, int] = (60, 80)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, (200, 30, 30)).save(buf, format="JPEG")
    return buf.getvalue()


def _rows():
    return parse_styles_text(
        HEADER + "".join(f"{i},Men,Apparel,Topwear,Tshirts,Red,Summer,2012,Casual,T\n" for i in (1, 2))
    ).rows


def _catalog(make_bad: Callable[[Path, Path], None], runs: int = 1):
    """Product 1 has a good image; ``make_bad(images, folder)`` puts the hostile thing at ``2.jpg``."""

    def run(folder: Path) -> str:
        images = folder / "images"
        images.mkdir()
        (images / "1.jpg").write_bytes(_jpeg())
        make_bad(images, folder)
        rows = _rows()
        manifest = build_manifest(images, workers=1).manifest
        result = clean_catalog(rows, manifest, images, folder / "rgb")
        q = result.quarantine[result.quarantine["source"] == CATALOG_SOURCE]
        assert result.catalog["id"].tolist() == [1] and len(q) == 1, "product 1 clean, product 2 quarantined"
        return quarantined(q["reason"])

    return run


def _fifo(images: Path, folder: Path) -> None:
    os.mkfifo(images / "2.jpg")


def _link_out(images: Path, folder: Path) -> None:
    (folder / "credentials").write_bytes(_jpeg())  # even a valid image is not read
    (images / "2.jpg").symlink_to(folder / "credentials")


def _link_to_device(images: Path, folder: Path) -> None:
    (images / "2.jpg").symlink_to("/dev/zero")


def _too_many_pixels(images: Path, folder: Path) -> None:
    Image.new("1", (9500, 9500)).save(images / "2.jpg", format="PNG")  # 90.25 MP in 11 kB


def _truncated(images: Path, folder: Path) -> None:
    data = _jpeg()
    (images / "2.jpg").write_bytes(data[: len(data) // 2])


def _empty(images: Path, folder: Path) -> None:
    (images / "2.jpg").write_bytes(b"")


def _retried(fail: Callable[[], mock._patch]):
    """Reading or decoding fails during one run; the next run retries what failed instead of reusing it."""

    def run(folder: Path) -> str:
        images = folder / "images"
        images.mkdir()
        for pid in (1, 2):
            (images / f"{pid}.jpg").write_bytes(_jpeg())
        rows = _rows()
        with fail():
            first = build_manifest(images, workers=1)
        result = clean_catalog(rows, first.manifest, images, folder / "rgb")
        again = build_manifest(images, previous=first.manifest, workers=1)
        assert again.n_checked == len(result.quarantine) > 0, "what failed is read again, and only that"
        assert again.manifest["error"].isna().all(), "and now it is fine"
        return quarantined(result.quarantine["reason"])

    return run


def _eio() -> mock._patch:
    real = images_module.read_regular

    def flaky(path: Path, limit: int | None = None) -> bytes:
        if Path(path).name == "2.jpg":
            raise OSError(errno.EIO, "Input/output error")
        return real(path, limit)

    return mock.patch.object(images_module, "read_regular", flaky)


def _slow() -> mock._patch:
    return mock.patch.object(decode, "DECODE_TIMEOUT_S", -1.0)  # every decode is past its deadline


FAULTS = [
    Fault(
        "images folder",
        "a FIFO named like an image (5.jpg)",
        "quarantine: not_a_regular_file",
        _catalog(_fifo),
    ),
    Fault(
        "images folder",
        "5.jpg is a symlink to a file outside the catalog",
        "quarantine: link_outside_catalog",
        _catalog(_link_out),
    ),
    Fault(
        "images folder",
        "5.jpg is a symlink to a device (/dev/zero)",
        "quarantine: link_outside_catalog",
        _catalog(_link_to_device),
    ),
    Fault(
        "image file",
        f"more than {decode.MAX_PIXELS:,} pixels (a 90-MP PNG of 11 kB)",
        "quarantine: image_too_large",
        _catalog(_too_many_pixels),
    ),
    Fault("image file", "a truncated JPEG", "quarantine: undecodable_image", _catalog(_truncated)),
    Fault("image file", "0 bytes", "quarantine: empty_file", _catalog(_empty)),
    Fault(
        "image file",
        "reading fails with EIO (a flaky disk): retried on the next run",
        "quarantine: transient_read_error",
        _retried(_eio),
    ),
    Fault(
        "image file",
        f"decoding runs past its time limit ({decode.DECODE_TIMEOUT_S:.0f} s): retried on the next run",
        "quarantine: transient_read_error",
        _retried(_slow),
    ),
]
