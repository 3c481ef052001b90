"""The demo generator: deterministic, Kaggle/COCO/SKU-110K-shaped, and its planted faults really there.

One small demo is generated per module (about a second) and shared; a second run through the CLI checks
that the same seed gives the same bytes.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps, UnidentifiedImageError

from product_attrs.sample_data import generate_all, generate_catalog
from product_attrs.sample_data.__main__ import main
from product_attrs.sample_data.catalog import IMAGE_FAULTS, article_counts
from product_attrs.sample_data.drawing import render_product
from product_attrs.sample_data.encode import encode
from product_attrs.sample_data.taxonomy import ARTICLE_TYPES, STYLES_HEADER

HEADER = "id,gender,masterCategory,subCategory,articleType,baseColour,season,year,usage,productDisplayName"


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("demo")
    return out, generate_all(out, seed=0, small=True)


@pytest.fixture(scope="module")
def catalog(demo) -> tuple[Path, dict, list[str]]:
    out, manifest = demo
    cat = out / "catalog"
    lines = (cat / "styles.csv").read_text(encoding="utf-8").splitlines()
    return cat, json.loads((cat / "faults.json").read_text()), lines


def _digests(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


# --- determinism -------------------------------------------------------------------------------


def test_same_seed_gives_same_bytes_through_the_cli(demo, tmp_path, capsys):
    out, _ = demo
    assert main(["--out", str(tmp_path), "--seed", "0", "--small"]) == 0
    printed = capsys.readouterr().out
    assert "styles.csv" in printed and "events" in printed
    first, second = _digests(out), _digests(tmp_path)
    assert len(first) > 150
    assert first == second


def test_different_seed_gives_different_data(catalog, tmp_path):
    cat, faults, _ = catalog
    other = generate_catalog(tmp_path, n_products=80, seed=1)
    assert (tmp_path / "styles.csv").read_bytes() != (cat / "styles.csv").read_bytes()
    assert other["long_lines"] != faults["long_lines"]


def test_rerun_into_same_folder_leaves_no_stale_images(tmp_path):
    generate_catalog(tmp_path, n_products=120, seed=3)
    faults = generate_catalog(tmp_path, n_products=80, seed=3)
    assert len(list((tmp_path / "images").iterdir())) == faults["n_image_files"]


# --- catalog: layout and labels ----------------------------------------------------------------


def test_header_is_the_kaggle_header(catalog):
    _, _, lines = catalog
    assert lines[0] == HEADER == ",".join(STYLES_HEADER)


def test_taxonomy_is_long_tailed_with_a_meaningful_top20():
    counts = article_counts(1200)
    assert sum(counts.values()) == 1200 and len(counts) == 26
    ranked = sorted(counts.values(), reverse=True)
    assert sum(ranked[:20]) / 1200 > 0.85
    assert ranked[19] > ranked[20]  # no tie at the top-20 border
    assert sum(1 for c in ranked if c < 10) >= 2
    assert len({a.master for a in ARTICLE_TYPES}) == 5
    assert 9 <= len({a.sub for a in ARTICLE_TYPES}) <= 12


def test_years_cover_even_and_odd_and_names_carry_the_labels(catalog):
    _, _, lines = catalog
    rows = [r for r in csv.reader(lines[1:]) if len(r) == 10 and r[0].isdigit()]
    years = {int(r[7]) for r in rows if r[7]}
    assert {y % 2 for y in years} == {0, 1} and min(years) >= 2008 and max(years) <= 2017
    with_colour = [r for r in rows if r[5] != "NA"]
    assert sum(r[5] in r[9] for r in with_colour) == len(with_colour)
    assert sum(r[1] in r[9] for r in rows) == len(rows)


# --- catalog: planted row faults ---------------------------------------------------------------


def test_long_lines_have_11_fields_exactly_where_faults_say(catalog):
    _, faults, lines = catalog
    eleven = [(n, r) for n, r in enumerate(csv.reader(lines), start=1) if len(r) == 11]
    assert [{"line": n, "id": int(r[0])} for n, r in eleven] == faults["long_lines"]
    assert len(eleven) == 5
    # Repairable: rejoining the tail gives the display name with its comma.
    assert all(", " in ",".join(r[9:]) for _, r in eleven)


def test_pandas_defaults_choke_like_on_the_real_file(catalog):
    pd = pytest.importorskip("pandas")
    cat, faults, _ = catalog
    with pytest.raises(pd.errors.ParserError, match="Expected 10 fields"):
        pd.read_csv(cat / "styles.csv")


def test_unrepairable_lines(catalog):
    _, faults, lines = catalog
    assert len(faults["unrepairable_lines"]) == 2
    for entry in faults["unrepairable_lines"]:
        raw = lines[entry["line"] - 1]
        assert raw == entry["raw"]
        fields = next(csv.reader([raw]))
        assert len(fields) < 10 or not fields[0].isdigit()


def test_duplicate_id_and_row_counts(catalog):
    _, faults, lines = catalog
    assert faults["n_rows"] == len(lines) - 1
    parsed = [
        (n, r) for n, r in enumerate(csv.reader(lines), start=1) if n > 1 and len(r) >= 10 and r[0].isdigit()
    ]
    ids = Counter(int(r[0]) for _, r in parsed)
    assert [i for i, k in ids.items() if k > 1] == faults["duplicate_id"]
    dup = faults["duplicate_id"][0]
    assert [n for n, r in parsed if int(r[0]) == dup] == faults["duplicate_id_lines"][0]["lines"]
    assert len(ids) == faults["n_products"] == 150
    assert faults["n_rows"] == faults["n_products"] + len(faults["unrepairable_lines"]) + 1


def test_missing_values(catalog):
    _, faults, lines = catalog
    rows = [r for r in csv.reader(lines[1:]) if len(r) >= 10 and r[0].isdigit()]
    first = {}
    for r in rows:
        first.setdefault(int(r[0]), r)
    na = faults["na_values"]
    assert sorted(i for i, r in first.items() if r[8] == "NA") == na["usage_NA"]
    assert sorted(i for i, r in first.items() if r[8] == "") == na["usage_empty"]
    assert sorted(i for i, r in first.items() if r[5] == "NA") == na["baseColour_NA"]
    assert sorted(i for i, r in first.items() if r[6] == "") == na["season_empty"]
    assert sorted(i for i, r in first.items() if r[7] == "") == faults["no_year"]
    assert len(faults["no_year"]) == 2 and all(na.values())


# --- catalog: planted image faults -------------------------------------------------------------


def _open_loaded(path: Path) -> Image.Image:
    img = Image.open(path)
    img.load()
    return img


def test_no_id_has_two_faults(catalog):
    _, faults, _ = catalog
    lists = [faults[k] for k in IMAGE_FAULTS] + [faults["no_year"], faults["duplicate_id"]]
    lists += [[e["id"] for e in faults["long_lines"]]] + list(faults["na_values"].values())
    flat = [i for ids in lists for i in ids]
    assert len(flat) == len(set(flat))


def test_broken_files(catalog):
    cat, faults, _ = catalog
    images = cat / "images"
    assert len(faults["missing_images"]) >= 3
    assert not any((images / f"{i}.jpg").exists() for i in faults["missing_images"])
    assert len(faults["zero_byte"]) == 2
    assert all((images / f"{i}.jpg").stat().st_size == 0 for i in faults["zero_byte"])
    (truncated,) = faults["truncated"]
    img = Image.open(images / f"{truncated}.jpg")  # the header is intact ...
    assert img.size == (60, 80)
    with pytest.raises(OSError, match="(?i)truncated"):
        img.load()  # ... the pixels are not (LOAD_TRUNCATED_IMAGES is False by default)
    (junk,) = faults["not_an_image"]
    with pytest.raises(UnidentifiedImageError):
        Image.open(images / f"{junk}.jpg")


def test_odd_modes_and_formats(catalog):
    cat, faults, _ = catalog
    images = cat / "images"
    expect = {
        "grayscale": ("JPEG", "L"),
        "cmyk": ("JPEG", "CMYK"),
        "rgba": ("PNG", "RGBA"),
        "palette": ("PNG", "P"),
    }
    for kind, (fmt, mode) in expect.items():
        assert faults[kind], kind
        for i in faults[kind]:
            img = _open_loaded(images / f"{i}.jpg")
            assert (img.format, img.mode, img.size) == (fmt, mode, (60, 80)), (kind, i)
    for i in faults["odd_size"]:
        assert _open_loaded(images / f"{i}.jpg").size in {(53, 80), (60, 60)}


def test_exif_rotated_images_turn_upright(catalog):
    cat, faults, _ = catalog
    assert sorted(faults["exif_orientation"].values()) == [6, 8]
    for i in faults["exif_rotated"]:
        img = _open_loaded(cat / "images" / f"{i}.jpg")
        assert img.size == (80, 60)
        assert img.getexif()[0x0112] == faults["exif_orientation"][str(i)]
        assert ImageOps.exif_transpose(img).size == (60, 80)


@pytest.mark.parametrize("variant", [0, 1])
def test_exif_transpose_restores_the_drawn_picture(variant):
    picture = render_product("Heels", (200, 30, 40), "plain", np.random.default_rng(0))  # not symmetric
    stored = Image.open(io.BytesIO(encode(picture, "exif_rotated", variant)))
    upright = np.asarray(ImageOps.exif_transpose(stored), dtype=float)
    original = np.asarray(picture, dtype=float)
    assert np.abs(upright - original).mean() < 6  # JPEG noise only
    assert np.abs(upright - original[::-1, ::-1]).mean() > 15  # and not upside down


def test_every_other_file_is_a_clean_60x80_rgb_jpeg(catalog):
    cat, faults, _ = catalog
    special = {i for k in IMAGE_FAULTS for i in faults[k]}
    files = sorted((cat / "images").iterdir())
    assert len(files) == faults["n_image_files"]
    n_good = 0
    for path in files:
        try:
            img = _open_loaded(path)
        except (OSError, UnidentifiedImageError):
            continue
        n_good += 1
        if int(path.stem) not in special:
            assert (img.format, img.mode, img.size) == ("JPEG", "RGB", (60, 80)), path.name
    assert n_good == faults["n_good_images"]


# --- shelves -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def shelves(demo) -> tuple[Path, dict, dict]:
    out, _ = demo
    sh = out / "shelves"
    return sh, json.loads((sh / "annotations.json").read_text()), json.loads((sh / "faults.json").read_text())


def test_coco_structure(shelves):
    sh, coco, faults = shelves
    assert {"info", "licenses", "images", "annotations", "categories"} <= coco.keys()
    cat_ids = [c["id"] for c in coco["categories"]]
    assert cat_ids == [3, 7, 12, 25, 40, 51]  # non-contiguous, like COCO's
    image_ids = {im["id"] for im in coco["images"]}
    assert len(image_ids) == faults["n_images"] == 8
    for im in coco["images"]:
        assert Image.open(sh / "images" / im["file_name"]).size == (im["width"], im["height"]) == (320, 240)
    for a in coco["annotations"]:
        assert a["image_id"] in image_ids and a["category_id"] in cat_ids
        assert len(a["bbox"]) == 4 and a["iscrowd"] in (0, 1)
        if not a["iscrowd"]:
            x, y, w, h = a["bbox"]
            assert a["segmentation"] == [[x, y, x + w, y, x + w, y + h, x, y + h]]
    per_image = Counter(a["image_id"] for a in coco["annotations"] if not a["iscrowd"])
    assert all(4 <= k <= 21 for k in per_image.values())  # 4-20 products, +1 degenerate box


def test_coco_planted_faults(shelves):
    _, coco, faults = shelves
    anns = {a["id"]: a for a in coco["annotations"]}
    with_boxes = {a["image_id"] for a in coco["annotations"]}
    assert [im["id"] for im in coco["images"] if im["id"] not in with_boxes] == faults["empty_images"]
    assert len(faults["empty_images"]) == 1
    (deg,) = faults["degenerate_boxes"]
    assert 0 in anns[deg["annotation_id"]]["bbox"][2:]
    (out,) = faults["out_of_border_boxes"]
    x, y, w, h = anns[out["annotation_id"]]["bbox"]
    assert x + w > 320 and x < 320
    crowd = [a for a in coco["annotations"] if a["iscrowd"]]
    assert [a["id"] for a in crowd] == [c["annotation_id"] for c in faults["crowd_boxes"]]
    (c,) = crowd
    rle = c["segmentation"]
    assert rle["size"] == [240, 320] and sum(rle["counts"]) == 240 * 320
    assert sum(rle["counts"][1::2]) == c["area"] == c["bbox"][2] * c["bbox"][3]


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # pycocotools vs numpy 2, not ours
def test_coco_loads_in_pycocotools(shelves):
    coco_mod = pytest.importorskip("pycocotools.coco")
    sh, coco, faults = shelves
    api = coco_mod.COCO(str(sh / "annotations.json"))
    (c,) = api.loadAnns([faults["crowd_boxes"][0]["annotation_id"]])
    assert int(api.annToMask(c).sum()) == c["area"]


def test_boxes_csv_is_sku110k_format_of_the_same_boxes(shelves):
    sh, coco, _ = shelves
    rows = list(csv.reader(io.StringIO((sh / "boxes.csv").read_text())))
    assert rows[0][0].endswith(".jpg")  # no header, as in SKU-110K
    files = {im["id"]: im["file_name"] for im in coco["images"]}
    names = {c["id"]: c["name"] for c in coco["categories"]}
    expected = [
        [
            files[a["image_id"]],
            a["bbox"][0],
            a["bbox"][1],
            a["bbox"][0] + a["bbox"][2],
            a["bbox"][1] + a["bbox"][3],
            names[a["category_id"]],
            320,
            240,
        ]
        for a in coco["annotations"]
        if not a["iscrowd"]
    ]
    assert rows == [[str(v) for v in e] for e in expected]


# --- interactions ------------------------------------------------------------------------------


def test_interactions(demo, catalog):
    out, manifest = demo
    _, faults, lines = catalog
    valid = {int(r[0]) for r in csv.reader(lines[1:]) if len(r) >= 10 and r[0].isdigit()}
    with open(out / "interactions" / "interactions.csv", newline="") as f:
        events = list(csv.DictReader(f))
    assert list(events[0]) == ["customer_id", "product_id", "event_type", "timestamp"]
    assert {int(e["product_id"]) for e in events} <= valid
    kinds = Counter(e["event_type"] for e in events)
    assert set(kinds) == {"view", "add_to_cart", "purchase"}
    assert kinds["purchase"] < kinds["add_to_cart"] < kinds["view"]
    assert manifest["interactions"]["n_events"] == len(events)
    end = datetime(2026, 6, 30, 23, 59, 59, tzinfo=timezone.utc)
    stamps = [datetime.fromisoformat(e["timestamp"].replace("Z", "+00:00")) for e in events]
    assert all(end - timedelta(days=120) <= t <= end for t in stamps)
    assert stamps == sorted(stamps)

    with open(out / "interactions" / "customers.csv", newline="") as f:
        customers = {c["customer_id"]: c for c in csv.DictReader(f)}
    assert len(customers) == 40 and {e["customer_id"] for e in events} <= customers.keys()
    # The latent preferences drive behaviour: most views hit a preferred article type.
    article = {int(r[0]): r[4] for r in csv.reader(lines[1:]) if len(r) >= 10 and r[0].isdigit()}
    views = [e for e in events if e["event_type"] == "view"]
    hits = sum(
        article[int(e["product_id"])] in customers[e["customer_id"]]["preferred_article_types"].split("|")
        for e in views
    )
    assert hits / len(views) > 0.6
