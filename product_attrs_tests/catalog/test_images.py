from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from product_attrs.catalog.clean import clean_catalog, to_rgb
from product_attrs.catalog.images import build_manifest
from product_attrs.catalog.styles import parse_styles_text

HEADER = "id,gender,masterCategory,subCategory,articleType,baseColour,season,year,usage,productDisplayName"


def _jpeg(img: Image.Image, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=90, **kw)
    return buf.getvalue()


def _png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def make_catalog(root: Path) -> Path:
    """One image of each kind a real catalog has, named <id>.jpg."""
    images = root / "images"
    images.mkdir(parents=True)
    red = Image.new("RGB", (60, 80), (200, 30, 30))
    rotated = Image.new("RGB", (80, 60), (10, 200, 10))  # stored sideways, EXIF says rotate
    exif = Image.Exif()
    exif[0x0112] = 6
    rgba = Image.new("RGBA", (60, 80), (0, 0, 255, 0))  # fully transparent: must become white
    full = _jpeg(red)
    files = {
        1: full,
        2: _jpeg(red.convert("L")),
        3: _jpeg(red.convert("CMYK")),
        4: _png(rgba),
        5: _png(red.convert("P")),
        6: _jpeg(rotated, exif=exif.tobytes()),
        7: b"",
        8: full[: len(full) // 2],
        9: b"this is not an image",
        # 10: listed but missing
        99: full,  # an image without a row
    }
    for pid, data in files.items():
        (images / f"{pid}.jpg").write_bytes(data)
    lines = [HEADER] + [
        f"{i},Men,Apparel,Topwear,Tshirts,Red,Summer,2012,Casual,Shirt {i}" for i in range(1, 11)
    ]
    (root / "styles.csv").write_text("\n".join(lines) + "\n")
    return images


def test_manifest_decodes_every_file_and_records_errors(tmp_path: Path):
    images = make_catalog(tmp_path)
    result = build_manifest(images, workers=2, chunk_size=2)
    m = result.manifest.set_index("product_id")
    assert result.n_checked == 10 and len(m) == 10
    assert m.loc[1, "mode"] == "RGB" and (m.loc[1, "width"], m.loc[1, "height"]) == (60, 80)
    assert m.loc[2, "mode"] == "L" and m.loc[3, "mode"] == "CMYK"
    assert m.loc[4, "mode"] == "RGBA" and m.loc[4, "format"] == "PNG" and m.loc[5, "mode"] == "P"
    assert m.loc[6, "exif_orientation"] == 6
    assert m.loc[7, "error"].startswith("empty_file")
    assert m.loc[8, "error"].startswith("undecodable_image")  # truncated JPEG: opens, fails on decode
    assert m.loc[9, "error"].startswith("undecodable_image")
    assert m.loc[1, "sha1"] == m.loc[99, "sha1"]


def test_manifest_rerun_rechecks_only_changed_files(tmp_path: Path):
    images = make_catalog(tmp_path)
    first = build_manifest(images, workers=1).manifest
    again = build_manifest(images, previous=first, workers=1)
    assert again.n_checked == 0 and again.n_reused == 10
    pd.testing.assert_frame_equal(again.manifest, first)
    # Repair the empty file: only it is read again, and its row now has a mode.
    (images / "7.jpg").write_bytes(_jpeg(Image.new("RGB", (60, 80))))
    os.utime(images / "7.jpg", ns=(1, 1))
    third = build_manifest(images, previous=again.manifest, workers=1)
    assert third.n_checked == 1 and third.n_reused == 9
    assert third.manifest.set_index("product_id").loc[7, "mode"] == "RGB"


def test_clean_catalog_converts_quarantines_and_accounts_for_every_row(tmp_path: Path):
    images = make_catalog(tmp_path)
    rows = parse_styles_text((tmp_path / "styles.csv").read_text()).rows
    manifest = build_manifest(images).manifest
    result = clean_catalog(rows, manifest, images, tmp_path / "rgb")
    cat = result.catalog.set_index("id")
    assert sorted(cat.index) == [1, 2, 3, 4, 5, 6]
    q = result.quarantine.set_index("record_id")
    assert q.loc["7", "reason"] == "empty_file"
    assert q.loc["8", "reason"] == "undecodable_image" and q.loc["9", "reason"] == "undecodable_image"
    assert q.loc["10", "reason"] == "missing_image"
    assert q.loc["99.jpg", "reason"] == "orphan_image" and q.loc["99.jpg", "source"] == "images"
    assert len(cat) + int((result.quarantine["source"] == "catalog").sum()) == len(rows)
    assert not cat.loc[1, "converted"] and cat.loc[1, "image_path"] == str(images / "1.jpg")
    assert result.n_converted == 5
    for pid in (2, 3, 4, 5, 6):
        with Image.open(cat.loc[pid, "image_path"]) as img:
            assert img.mode == "RGB" and img.size == (60, 80), pid
            assert (cat.loc[pid, "width"], cat.loc[pid, "height"]) == (60, 80)
    with Image.open(cat.loc[4, "image_path"]) as img:
        assert img.getpixel((30, 40)) == (255, 255, 255)  # transparent onto white, not black
    # Originals are never modified.
    assert Image.open(images / "2.jpg").mode == "L"


@pytest.mark.parametrize("mode", ["L", "CMYK", "P", "RGBA", "LA", "I;16", "I", "F", "1"])
def test_to_rgb_handles_every_mode(mode: str):
    base = Image.fromarray((np.arange(60 * 80).reshape(80, 60) % 256).astype(np.uint8))
    img = base.convert(mode) if mode not in ("I;16",) else Image.fromarray(np.full((80, 60), 4000, np.uint16))
    out = to_rgb(img)
    assert out.mode == "RGB" and out.size == (60, 80)


def test_to_rgb_applies_exif_orientation():
    img = Image.new("RGB", (80, 60))
    exif = Image.Exif()
    exif[0x0112] = 8
    buf = io.BytesIO()
    img.save(buf, format="JPEG", exif=exif.tobytes())
    assert to_rgb(Image.open(io.BytesIO(buf.getvalue()))).size == (60, 80)


def test_dangling_symlink_and_subfolder_do_not_crash_the_manifest(tmp_path: Path):
    images = make_catalog(tmp_path)
    (images / "50.jpg").symlink_to(tmp_path / "nowhere.jpg")
    (images / "thumbs").mkdir()
    m = build_manifest(images, workers=1).manifest.set_index("file_name")
    assert m.loc["50.jpg", "error"].startswith("unreadable_file")
    assert "thumbs" not in m.index
