"""Unit tests of `clean_catalog` and the RGB conversion on hand-written manifests: no decode pool, so they are
fast enough to run against every mutant of ``catalog.clean`` (``make mutation``)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

from product_attrs import decode
from product_attrs.catalog.clean import clean_catalog, needs_conversion, to_rgb, write_rgb_copy
from product_attrs.catalog.images import MANIFEST_COLUMNS
from product_attrs.catalog.styles import parse_styles_text

HEADER = "id,gender,masterCategory,subCategory,articleType,baseColour,season,year,usage,productDisplayName"
WHITE = (255, 255, 255)


def styles(*ids: int) -> pd.DataFrame:
    lines = [f"{i},Men,Apparel,Topwear,Tshirts,Red,Summer,2012,Casual,Shirt {i}" for i in ids]
    return parse_styles_text("\n".join([HEADER, *lines]) + "\n").rows


def manifest(*rows: dict) -> pd.DataFrame:
    """Manifest rows as `build_manifest` types them; unnamed fields are those of a good upright RGB JPEG."""
    good = {"format": "JPEG", "mode": "RGB", "width": 60, "height": 80, "exif_orientation": 1, "error": None}
    full = []
    for r in rows:
        name = r["file_name"]
        stem = name.split(".")[0]
        pid = int(stem) if stem.isdigit() else None
        full.append(
            {"product_id": pid, "size_bytes": 1, "mtime_ns": 1, "sha1": f"{stem:0>12}abcdef", **good, **r}
        )
    frame = pd.DataFrame(full, columns=MANIFEST_COLUMNS)
    return frame.astype(
        {
            "product_id": "Int64",
            "width": "Int64",
            "height": "Int64",
            "exif_orientation": "Int64",
            "file_name": "string",
            "sha1": "string",
            "mode": "string",
            "error": "string",
        }
    )


def test_one_file_per_product_jpg_first(tmp_path: Path):
    """The preference is .jpg, .jpeg, .png, .webp, then anything else; ties by name. The cases are chosen so
    that the file name's order alone would pick another file."""
    m = manifest(
        {"file_name": "5.png"},
        {"file_name": "5.jpeg"},
        {"file_name": "5.jpg"},
        {"file_name": "6.7z"},
        {"file_name": "6.PNG"},  # the extension's case does not matter
        {"file_name": "7.bmp"},
        {"file_name": "7.webp"},
        {"file_name": "8.gif"},
        {"file_name": "8.bmp"},  # two unknown extensions: by name
        {"file_name": "9.zz"},
        {"file_name": "9"},  # no extension: like an unknown one
    )
    result = clean_catalog(styles(5, 6, 7, 8, 9), m, tmp_path / "img", tmp_path / "rgb")
    paths = dict(zip(result.catalog["id"], result.catalog["image_path"], strict=True))
    assert paths == {
        5: f"{tmp_path}/img/5.jpg",
        6: f"{tmp_path}/img/6.PNG",
        7: f"{tmp_path}/img/7.webp",
        8: f"{tmp_path}/img/8.bmp",
        9: f"{tmp_path}/img/9",
    }
    assert result.quarantine.empty and result.n_converted == 0 and result.n_orphan_images == 0
    assert list(result.quarantine.columns) == ["source", "record_id", "reason", "detail"]


def test_missing_and_broken_images_are_quarantined_with_their_reason(tmp_path: Path):
    m = manifest(
        {"file_name": "1.jpg"},
        {"file_name": "2.jpg", "mode": None, "error": "undecodable_image: OSError: truncated: at 4"},
        {"file_name": "notes.txt", "error": "undecodable_image: x"},  # no product id: an orphan
        {"file_name": "99.jpg"},  # no row in styles.csv (orphans are listed in the manifest's order)
    )
    images = tmp_path / "img"
    result = clean_catalog(styles(1, 2, 3), m, images, tmp_path / "rgb")
    assert result.catalog["id"].tolist() == [1]
    assert result.quarantine.to_dict("records") == [
        {
            "source": "catalog",
            "record_id": "3",
            "reason": "missing_image",
            "detail": f"no file for id 3 in {images}",
        },
        {
            "source": "catalog",
            "record_id": "2",
            "reason": "undecodable_image",
            "detail": "2.jpg: OSError: truncated: at 4",
        },
        {
            "source": "images",
            "record_id": "notes.txt",
            "reason": "orphan_image",
            "detail": "notes.txt has no row in styles.csv",
        },
        {
            "source": "images",
            "record_id": "99.jpg",
            "reason": "orphan_image",
            "detail": "99.jpg has no row in styles.csv",
        },
    ]
    assert result.n_orphan_images == 2


def test_the_catalog_columns_and_types(tmp_path: Path):
    result = clean_catalog(styles(1), manifest({"file_name": "1.jpg"}), tmp_path / "img", tmp_path / "rgb")
    cat = result.catalog
    assert list(cat.columns) == [
        *[c for c in styles(1).columns if c not in ("line", "repaired")],
        "image_path",
        "image_sha1",
        "width",
        "height",
        "source_mode",
        "converted",
        "repaired",
        "line",
    ]
    row = cat.iloc[0]
    assert (row["width"], row["height"], row["source_mode"], row["image_sha1"]) == (
        60,
        80,
        "RGB",
        "000000000001abcdef",
    )
    assert str(cat["width"].dtype) == str(cat["height"].dtype) == "Int64"
    assert str(cat["image_path"].dtype) == "string" and not row["converted"] and row["line"] == 2
    empty = clean_catalog(
        styles(1), manifest({"file_name": "1.jpg"}).iloc[:0], tmp_path / "img", tmp_path / "rgb"
    )
    assert list(empty.quarantine.columns) == ["source", "record_id", "reason", "detail"]


def test_a_catalog_with_no_usable_image_is_empty_but_typed(tmp_path: Path):
    result = clean_catalog(styles(1, 2), manifest(), tmp_path / "img", tmp_path / "rgb")
    assert result.catalog.empty and result.quarantine["reason"].tolist() == ["missing_image"] * 2
    assert (
        str(result.catalog["image_path"].dtype) == "string" and str(result.catalog["width"].dtype) == "Int64"
    )


def _save(path: Path, img: Image.Image) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, format="PNG")


def test_non_rgb_or_rotated_images_get_a_converted_copy(tmp_path: Path):
    images, rgb = tmp_path / "img", tmp_path / "derived" / "rgb"  # made with its parents
    _save(images / "1.jpg", Image.new("L", (60, 80), 90))
    _save(images / "2.jpg", Image.new("RGB", (60, 80), (1, 2, 3)))
    _save(images / "3.jpg", Image.new("RGB", (60, 80), (1, 2, 3)))
    _save(images / "4.jpg", Image.new("RGB", (60, 80), (1, 2, 3)))
    exif = Image.Exif()
    exif[0x0112] = 6
    sideways = images / "5.jpg"
    Image.new("RGB", (80, 60), (9, 9, 9)).save(sideways, format="JPEG", exif=exif.tobytes())
    m = manifest(
        {"file_name": "1.jpg", "mode": "L"},
        {"file_name": "2.jpg", "exif_orientation": 0},  # 0: no orientation written, upright
        {"file_name": "3.jpg", "exif_orientation": None},
        {"file_name": "4.jpg", "mode": None},  # mode unknown: converting is the safe side
        {"file_name": "5.jpg", "width": 80, "height": 60, "exif_orientation": 6},
    )
    result = clean_catalog(styles(1, 2, 3, 4, 5), m, images, rgb)
    cat = result.catalog.set_index("id")
    assert cat["converted"].tolist() == [True, False, False, True, True] and result.n_converted == 3
    assert cat.loc[1, "image_path"] == str(rgb / "1-000000000001.png")
    assert cat.loc[2, "image_path"] == str(images / "2.jpg")
    assert cat.loc[5, "image_path"] == str(rgb / "5-000000000005.png")
    assert (cat.loc[5, "width"], cat.loc[5, "height"]) == (60, 80)  # the upright copy's size, not the file's
    with Image.open(cat.loc[1, "image_path"]) as img:
        assert img.mode == "RGB" and img.getpixel((0, 0)) == (90, 90, 90)
    assert sorted(p.name for p in rgb.iterdir()) == [
        "1-000000000001.png",
        "4-000000000004.png",
        "5-000000000005.png",
    ]


def test_a_file_that_no_longer_decodes_is_quarantined_not_converted(tmp_path: Path):
    images = tmp_path / "img"
    images.mkdir()
    (images / "1.jpg").write_bytes(b"not an image any more")
    _save(images / "2.jpg", Image.new("L", (60, 80)))
    m = manifest({"file_name": "1.jpg", "mode": "L"}, {"file_name": "2.jpg", "mode": "L"})
    result = clean_catalog(styles(1, 2), m, images, tmp_path / "rgb")
    assert result.catalog["id"].tolist() == [2] and result.n_converted == 1
    assert result.catalog["image_path"].tolist() == [str(tmp_path / "rgb" / "2-000000000002.png")]
    q = result.quarantine.iloc[0]
    assert (q["source"], q["record_id"], q["reason"]) == ("catalog", "1", "conversion_failed")
    assert q["detail"].startswith("1.jpg: UnidentifiedImageError: cannot identify image file")


def test_an_existing_copy_is_kept(tmp_path: Path):
    src, dst = tmp_path / "a.png", tmp_path / "a-copy.png"
    _save(src, Image.new("L", (6, 8)))
    _save(dst, Image.new("RGB", (3, 4)))  # the name says the content: it is not redone
    assert write_rgb_copy(src, dst) == (3, 4)
    dst.unlink()
    assert write_rgb_copy(src, dst) == (6, 8) and not dst.with_suffix(".tmp").exists()
    with Image.open(dst) as img:
        assert img.format == "PNG" and img.mode == "RGB"


def test_the_copy_is_decoded_under_the_pixel_limit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    src = tmp_path / "a.png"
    _save(src, Image.new("L", (6, 8)))
    monkeypatch.setattr(decode, "MAX_PIXELS", 47)
    with pytest.raises(decode.ImageTooLarge):
        write_rgb_copy(src, tmp_path / "a-copy.png")


@pytest.mark.parametrize(
    ("mode", "orientation", "needed"),
    [
        ("RGB", None, False),
        ("RGB", 0, False),
        ("RGB", 1, False),
        ("RGB", 6, True),
        ("L", 1, True),
        (None, 1, True),
    ],
)
def test_needs_conversion(mode: str | None, orientation: int | None, needed: bool):
    assert needs_conversion(mode, orientation) is needed


@pytest.mark.parametrize("mode", ["RGBA", "LA", "PA", "RGBa"])
def test_transparent_pixels_become_white_in_every_alpha_mode(mode: str):
    img = Image.new("RGBA", (2, 1), (0, 0, 0, 0))
    img.putpixel((1, 0), (0, 0, 0, 255))
    out = to_rgb(img.convert(mode))
    assert out.mode == "RGB" and out.getpixel((0, 0)) == WHITE and out.getpixel((1, 0)) == (0, 0, 0)


def test_a_palette_with_a_transparent_index_becomes_white_there():
    img = Image.new("P", (2, 1), 0)
    img.putpalette([0, 0, 0, 10, 20, 30] + [0] * 762)
    img.putpixel((1, 0), 1)
    img.info["transparency"] = 0
    out = to_rgb(img)
    assert out.getpixel((0, 0)) == WHITE and out.getpixel((1, 0)) == (10, 20, 30)
    del img.info["transparency"]
    assert to_rgb(img).getpixel((0, 0)) == (0, 0, 0)
