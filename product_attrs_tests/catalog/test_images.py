from __future__ import annotations

import errno
import io
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from product_attrs import decode
from product_attrs.catalog.clean import clean_catalog, to_rgb
from product_attrs.catalog.images import build_manifest
from product_attrs.catalog.styles import parse_styles_text
from product_attrs_tests.spies import array_dtypes

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
    (images / "50.jpg").symlink_to(images / "nowhere.jpg")
    (images / "thumbs").mkdir()
    m = build_manifest(images, workers=1).manifest.set_index("file_name")
    assert m.loc["50.jpg", "error"].startswith("unreadable_file")
    assert m.loc["50.jpg", "error"].endswith("(retried on the next run)")
    assert "thumbs" not in m.index


def _clean(tmp_path: Path, images: Path, manifest: pd.DataFrame):
    rows = parse_styles_text((tmp_path / "styles.csv").read_text()).rows
    result = clean_catalog(rows, manifest, images, tmp_path / "rgb")
    assert len(result.catalog) + int((result.quarantine["source"] == "catalog").sum()) == len(rows)
    return result, result.quarantine.set_index("record_id")


@pytest.mark.timeout(30)  # before the fix, open() on the FIFO blocked forever
def test_a_fifo_named_like_an_image_is_quarantined_without_being_opened(tmp_path: Path):
    images = make_catalog(tmp_path)
    os.mkfifo(images / "10.jpg")
    m = build_manifest(images, workers=1).manifest.set_index("product_id")
    assert m.loc[10, "error"] == "not_a_regular_file: 10.jpg is a fifo"
    result, q = _clean(tmp_path, images, build_manifest(images, previous=m.reset_index()).manifest)
    assert q.loc["10", "reason"] == "not_a_regular_file" and "fifo" in q.loc["10", "detail"]
    assert 10 not in set(result.catalog["id"])


def test_a_symlink_out_of_the_images_folder_is_never_read(tmp_path: Path):
    images = make_catalog(tmp_path)
    secret = tmp_path / "secret.jpg"  # a perfectly good image, but not the catalog's
    secret.write_bytes(_jpeg(Image.new("RGB", (60, 80))))
    (images / "10.jpg").symlink_to(secret)
    (images / "11.jpg").symlink_to(images / "1.jpg")  # a link inside the folder is followed
    m = build_manifest(images, workers=1).manifest.set_index("product_id")
    assert m.loc[10, "error"].startswith("link_outside_catalog: 10.jpg") and pd.isna(m.loc[10, "sha1"])
    assert pd.isna(m.loc[11, "error"]) and m.loc[11, "sha1"] == m.loc[1, "sha1"]
    result, q = _clean(tmp_path, images, m.reset_index())
    assert q.loc["10", "reason"] == "link_outside_catalog" and 10 not in set(result.catalog["id"])


def test_more_pixels_than_the_limit_is_a_definite_verdict(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    images = make_catalog(tmp_path)
    (images / "10.jpg").write_bytes(_png(Image.new("RGB", (80, 80))))
    monkeypatch.setattr(decode, "MAX_PIXELS", 60 * 80)  # the catalog's size: only 10.jpg is over
    m = build_manifest(images, workers=1).manifest
    assert m.set_index("product_id").loc[10, "error"].startswith("image_too_large: 80x80")
    again = build_manifest(images, previous=m, workers=1)
    assert again.n_checked == 0, "a definite verdict is kept until the file changes"
    _, q = _clean(tmp_path, images, m)
    assert q.loc["10", "reason"] == "image_too_large"


def test_an_image_over_pils_bomb_warning_is_too_large_not_undecodable(tmp_path: Path):
    images = make_catalog(tmp_path)
    Image.new("1", (9500, 9500)).save(images / "10.jpg", format="PNG")  # 90.25 MP, 11 kB on disk
    m = build_manifest(images, workers=1).manifest.set_index("product_id")
    assert m.loc[10, "error"].startswith("image_too_large: 9500x9500 is more than 89,478,485 pixels")


def _fail_decoding(monkeypatch: pytest.MonkeyPatch, data: bytes, exc: BaseException) -> None:
    """Image.open raises ``exc`` for the file whose bytes are ``data`` (whatever reader it is given)."""
    real = Image.open

    def flaky(fp, *args, **kwargs):
        if isinstance(fp, io.BytesIO) and fp.getvalue() == data:
            raise exc
        return real(fp, *args, **kwargs)

    monkeypatch.setattr(Image, "open", flaky)


def test_a_transient_error_is_quarantined_now_and_retried_next_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    images = make_catalog(tmp_path)
    with monkeypatch.context() as patch:
        _fail_decoding(patch, (images / "2.jpg").read_bytes(), MemoryError())
        first = build_manifest(images, workers=1)
    row = first.manifest.set_index("product_id").loc[2]
    assert row["error"] == "transient_read_error: MemoryError:  (retried on the next run)"
    _, q = _clean(tmp_path, images, first.manifest)
    assert q.loc["2", "reason"] == "transient_read_error" and "retried" in q.loc["2", "detail"]

    again = build_manifest(images, previous=first.manifest, workers=1)
    assert (again.n_checked, again.n_reused) == (1, 9)
    assert again.manifest.set_index("product_id").loc[2, "mode"] == "L"


def test_a_decode_past_its_time_limit_is_retried(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    images = make_catalog(tmp_path)
    monkeypatch.setattr(decode, "DECODE_TIMEOUT_S", -1.0)
    first = build_manifest(images, workers=1).manifest.set_index("product_id")
    assert first.loc[1, "error"].startswith("transient_read_error: DecodeTimeout")
    monkeypatch.undo()
    again = build_manifest(images, previous=first.reset_index(), workers=1)
    assert again.n_checked == 9 and again.manifest["error"].isna().sum() == 7  # 7, 8, 9 stay broken


def test_an_io_error_while_reading_is_retried(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    from product_attrs.catalog import images as images_module

    images = make_catalog(tmp_path)
    real = images_module.read_regular

    def eio(path, limit=None):
        if Path(path).name == "1.jpg":
            raise OSError(errno.EIO, "Input/output error", str(path))
        return real(path, limit)

    with monkeypatch.context() as patch:
        patch.setattr(images_module, "read_regular", eio)
        first = build_manifest(images, workers=1).manifest
    assert first.set_index("product_id").loc[1, "error"].startswith("transient_read_error: OSError")
    again = build_manifest(images, previous=first, workers=1)
    assert again.n_checked == 1 and pd.isna(again.manifest.set_index("product_id").loc[1, "error"])


@pytest.mark.timeout(30)
def test_a_file_replaced_by_a_fifo_after_the_manifest_is_not_opened_by_cleaning(tmp_path: Path):
    images = make_catalog(tmp_path)
    manifest = build_manifest(images, workers=1).manifest  # 2.jpg is grayscale: cleaning converts it
    (images / "2.jpg").unlink()
    os.mkfifo(images / "2.jpg")
    _, q = _clean(tmp_path, images, manifest)
    assert q.loc["2", "reason"] == "not_a_regular_file"


def test_to_rgb_makes_no_float64_copy_of_a_16_bit_image(monkeypatch: pytest.MonkeyPatch):
    img = Image.fromarray(np.array([[0, 1000], [2000, 4000]], dtype=np.uint16))
    seen = array_dtypes(monkeypatch)
    out = to_rgb(img)
    assert out.mode == "RGB" and out.getpixel((1, 1)) == (255, 255, 255)
    assert seen and np.dtype("float64") not in seen


def test_the_decode_pool_is_a_bounded_forkserver(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    from product_attrs.catalog import images as images_module

    pools: list[tuple[int, str]] = []
    real = images_module.ProcessPoolExecutor

    def spy(max_workers, mp_context):
        pools.append((max_workers, mp_context.get_start_method()))
        return real(max_workers=max_workers, mp_context=mp_context)

    monkeypatch.setattr(images_module, "ProcessPoolExecutor", spy)
    images = make_catalog(tmp_path)
    result = build_manifest(images, workers=64, chunk_size=4)  # 3 chunks
    assert pools == [(3, "forkserver")]
    assert result.n_checked == 10 and result.manifest.set_index("product_id").loc[2, "mode"] == "L"
    assert images_module.decode_workers(64, 1000) == images_module.MAX_DECODE_WORKERS == 4
