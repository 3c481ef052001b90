"""The SKU world: shelves keep their boxes, the grocery catalog has the real set's layout and exactly its
documented faults, and the store photos' truth adds up.

One small grocery catalog and one set of store photos are generated per module (about a second).
"""

from __future__ import annotations

import csv
import hashlib
import json
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from product_attrs.sample_data.grocery import (
    CLASSES_HEADER,
    PHOTOS_PER_SKU,
    STORE_PHOTOS,
    generate_grocery,
    generate_store_photos,
)
from product_attrs.sample_data.shelves import generate_shelves
from product_attrs.sample_data.skus import (
    CATEGORIES,
    SKUS,
    SKUS_BY_NAME,
    render_iconic,
    render_photo,
    sku_records,
)
from product_attrs_tests.conftest import real_data_dir

HEADER = (
    "Class Name (str),Class ID (int),Coarse Class Name (str),Coarse Class ID (int),"
    "Iconic Image Path (str),Product Description Path (str)"
)
LINE = re.compile(r"^(train|val|test)/Packages/([^/]+)/([^/]+)/\3_(\d{3})\.jpg, (\d+), (\d+)$")


def _digests(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def grocery(tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("grocery")
    return out, generate_grocery(out, seed=0, small=True)


@pytest.fixture(scope="module")
def classes(grocery) -> dict[int, list[str]]:
    root, _ = grocery
    rows = list(csv.reader((root / "classes.csv").read_text(encoding="utf-8").splitlines()))
    return {int(r[1]): r for r in rows[1:]}


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("store")
    return out, generate_store_photos(out, n_images=STORE_PHOTOS["small"], seed=0)


# --- shelves: same boxes as before SKUs existed ------------------------------------------------------

#: Recorded from generate_shelves(n_images=8, seed=0) before SKUs were added.
BOXES_CSV_SHA256 = "4d013d78f3e871369188e2d626cd126f32f95cfb0eb50ae56c227bb050c98aa4"
FAULTS_JSON_SHA256 = "d031c39e957d75b441507454dc5e4ee4382e3d0e6662d14accc5af815b4e76e8"
FIRST_ROWS = [
    "shelf_0000.jpg,4,22,47,72,chips_bag,320,240",
    "shelf_0000.jpg,51,25,81,72,cereal_box,320,240",
    "shelf_0000.jpg,81,18,108,72,milk_carton,320,240",
]


def test_shelf_boxes_are_unchanged_and_carry_a_sku_of_their_class(tmp_path):
    faults = generate_shelves(tmp_path, n_images=8, seed=0)
    assert (faults["n_annotations"], faults["n_csv_rows"]) == (94, 93)
    rows = (tmp_path / "boxes.csv").read_text().splitlines()
    assert rows[:3] == FIRST_ROWS
    assert hashlib.sha256((tmp_path / "boxes.csv").read_bytes()).hexdigest() == BOXES_CSV_SHA256
    assert hashlib.sha256((tmp_path / "faults.json").read_bytes()).hexdigest() == FAULTS_JSON_SHA256

    coco = json.loads((tmp_path / "annotations.json").read_text())
    for a in coco["annotations"]:
        if a["iscrowd"]:
            assert a["sku"] is None
        else:
            assert SKUS_BY_NAME[a["sku"]].category_id == a["category_id"]
    assert json.loads((tmp_path / "skus.json").read_text()) == sku_records()


# --- SKUs and their pictures ---------------------------------------------------------------------------


def test_thirty_skus_five_per_class_with_distinct_labels():
    assert len(SKUS) == 30 and [s.fine_id for s in SKUS] == list(range(30))
    assert Counter(s.coarse for s in SKUS) == {c.name: 5 for c in CATEGORIES}
    for c in CATEGORIES:
        mine = [s for s in SKUS if s.coarse == c.name]
        assert len({s.label for s in mine}) == 5 and len({s.mark for s in mine}) == 5
    assert len({s.name for s in SKUS}) == 30 and all(re.fullmatch(r"[A-Za-z-]+", s.name) for s in SKUS)


def test_iconic_images_tell_the_skus_of_a_class_apart():
    for c in CATEGORIES:
        pics = [np.asarray(render_iconic(s), dtype=float) for s in SKUS if s.coarse == c.name]
        assert all(p.shape == (128, 128, 3) for p in pics)
        diffs = [np.abs(a - b).mean() for i, a in enumerate(pics) for b in pics[i + 1 :]]
        assert min(diffs) > 2.0, c.name


def test_render_photo_is_deterministic_and_sized():
    sku = SKUS[7]
    a = render_photo(sku, np.random.default_rng(5), 128)
    assert np.array_equal(np.asarray(a), np.asarray(render_photo(sku, np.random.default_rng(5), 128)))
    assert a.size == (128, 128) and a.mode == "RGB"
    assert render_photo(sku, np.random.default_rng(5), (128, 171)).size == (128, 171)


# --- grocery layout ----------------------------------------------------------------------------------


def test_same_seed_gives_same_bytes(grocery, tmp_path):
    root, _ = grocery
    generate_grocery(tmp_path, seed=0, small=True)
    first, second = _digests(root), _digests(tmp_path)
    assert len(first) > 200 and first == second


def test_classes_csv_is_the_real_layout(grocery, classes):
    root, faults = grocery
    raw = (root / "classes.csv").read_bytes()
    assert raw.startswith(HEADER.encode() + b"\r\n") and HEADER == CLASSES_HEADER
    assert not raw.endswith(b"\n") and raw.count(b"\r\n") == 30
    assert sorted(classes) == list(range(30))
    missing = {m["path"] for m in faults["missing_iconic"]}
    assert len(missing) == 1
    for fine_id, (name, _, coarse, coarse_id, iconic, description) in classes.items():
        sku = SKUS[fine_id]
        assert (name, coarse, int(coarse_id)) == (sku.name, sku.coarse, sku.coarse_id)
        folder = f"/iconic-images-and-descriptions/Packages/{coarse}/{name}/{name}"
        assert (iconic, description) == (f"{folder}_Iconic.jpg", f"{folder}_Description.txt")
        assert (root / description[1:]).read_text().strip() == sku.description
        assert (root / iconic[1:]).exists() == (iconic not in missing)
        if iconic not in missing:
            assert Image.open(root / iconic[1:]).size == (128, 128)


def test_every_line_parses_and_its_file_exists_except_the_planted_faults(grocery, classes):
    root, faults = grocery
    malformed = {(f["list"], f["line"]) for f in faults["malformed_lines"]}
    unknown = {(f["list"], f["line"]) for f in faults["unknown_class_lines"]}
    missing = {(f["list"], f["line"]) for f in faults["missing_files"]}
    assert len(malformed) == len(unknown) == len(missing) == 1
    n_per = dict(zip(("train", "val", "test"), PHOTOS_PER_SKU["small"]))
    assert faults["photos_per_sku"] == n_per
    for split in ("train", "val", "test"):
        text = (root / f"{split}.txt").read_text(encoding="utf-8")
        assert text.endswith("\n") and "\r" not in text
        lines = text.splitlines()
        assert len(lines) == faults["n_lines"][split] == 30 * n_per[split]
        for n, line in enumerate(lines, start=1):
            key = (f"{split}.txt", n)
            path = line.split(",")[0]
            assert (root / path).exists() == (key not in missing), line
            m = LINE.match(line)
            if key in malformed:
                assert m is None and line == next(f["raw"] for f in faults["malformed_lines"])
                continue
            assert m, line
            fine_id, coarse_id = int(m[5]), int(m[6])
            assert m[1] == split
            if key in unknown:
                assert fine_id not in classes
                fine_id = SKUS_BY_NAME[m[3]].fine_id
            name, _, coarse, coarse_cls_id, *_ = classes[fine_id]
            assert (m[2], m[3], str(coarse_id)) == (coarse, name, coarse_cls_id), line


def test_photos_are_rgb_jpegs_except_the_planted_ones(grocery):
    root, faults = grocery
    files = sorted(p for split in ("train", "val", "test") for p in (root / split).rglob("*") if p.is_file())
    assert len(files) == faults["n_photo_files"]
    (gray,), (empty,) = faults["grayscale_photos"], faults["zero_byte_photos"]
    assert (root / empty).stat().st_size == 0
    sizes, good = Counter(), 0
    for path in files:
        rel = str(path.relative_to(root))
        if rel == empty:
            continue
        img = Image.open(path)
        img.load()
        good += 1
        assert img.format == "JPEG" and img.mode == ("L" if rel == gray else "RGB"), rel
        sizes[img.size] += 1
    assert good == faults["n_good_photos"]
    assert set(sizes) <= {(128, 128), (128, 171)} and sizes[(128, 171)] == faults["n_portrait_photos"]


def test_each_fault_is_on_its_own_sku(grocery):
    _, faults = grocery
    paths = [*faults["grayscale_photos"], *faults["zero_byte_photos"]]
    for kind in ("missing_files", "malformed_lines", "unknown_class_lines"):
        paths += [f["path"] for f in faults[kind]]
    names = [p.split("/")[3] for p in paths] + [faults["missing_iconic"][0]["class_name"]]
    assert len(names) == len(set(names)) == 6


@pytest.mark.real_data
def test_layout_matches_the_real_grocery_store_dataset(grocery):
    real = real_data_dir("grocery-store")
    root, _ = grocery
    real_classes = (real / "classes.csv").read_bytes()
    assert real_classes.split(b"\r\n")[0] == (root / "classes.csv").read_bytes().split(b"\r\n")[0]
    assert not real_classes.endswith(b"\n")  # like ours: CRLF between lines, none after the last
    real_line = re.compile(
        r"^(train|val|test)/(Fruit|Packages|Vegetables)/(?:[^/]+/)?([^/]+)/\3_\d{3}\.jpg, "
        r"\d+, \d+$"
    )
    lines = (real / "train.txt").read_text().splitlines()
    assert all(real_line.match(line) for line in lines)
    assert all(LINE.match(line) for line in lines if "/Packages/" in line)  # ours: the Packages branch


# --- store photos ------------------------------------------------------------------------------------


def test_store_truth_counts_equal_the_boxes(store):
    out, summary = store
    boxes = json.loads((out / "boxes.json").read_text())
    photos = sorted(p.name for p in out.glob("*.jpg"))
    assert photos == sorted(boxes) and len(photos) == summary["n_images"] == 4
    with open(out / "truth.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["photo", "sku", "count"]
    truth = {(r["photo"], r["sku"]): int(r["count"]) for r in rows}
    counted = Counter((name, b["sku"]) for name, bs in boxes.items() for b in bs)
    assert truth == dict(counted) and sum(truth.values()) == summary["n_boxes"]
    assert max(truth.values()) > 1  # facings: counting is more than spotting
    for name, bs in boxes.items():
        assert Image.open(out / name).size == (320, 240)
        for b in bs:
            sku = SKUS_BY_NAME[b["sku"]]
            assert (b["category"], b["category_id"]) == (sku.coarse, sku.category_id)
            x, y, w, h = b["bbox"]
            assert 0 <= x and x + w <= 320 and 0 <= y and y + h <= 240 and w > 0 and h > 0


def test_store_photos_are_deterministic_and_not_the_training_shelves(store, tmp_path):
    out, _ = store
    generate_store_photos(tmp_path / "again", n_images=STORE_PHOTOS["small"], seed=0)
    assert _digests(out) == _digests(tmp_path / "again")
    generate_shelves(tmp_path / "shelves", n_images=5, seed=0)
    shelf = np.asarray(Image.open(tmp_path / "shelves" / "images" / "shelf_0000.jpg"), dtype=float)
    assert np.abs(shelf - np.asarray(Image.open(out / "store_0000.jpg"), dtype=float)).mean() > 5


def test_the_product_missing_from_the_gallery_is_on_the_demo_store_photos(grocery, store):
    (_, faults), (out, _) = grocery, store
    skus = {r["sku"] for r in csv.DictReader(open(out / "truth.csv", newline=""))}
    assert faults["missing_iconic"][0]["class_name"] in skus


# --- demo folders on demand ----------------------------------------------------------------------------


def test_ensure_generates_default_folders_and_refuses_named_missing_ones(data_env, monkeypatch):
    from product_attrs.demo import MissingInputError, ensure_grocery, ensure_store_photos
    from product_attrs.settings import Settings

    monkeypatch.setenv("PRODUCT_ATTRS_DEMO_SIZE", "small")
    settings = Settings.from_env()
    grocery = ensure_grocery(settings)
    assert grocery == data_env / "demo" / "grocery" and (grocery / "classes.csv").exists()
    photos = ensure_store_photos(settings)
    assert photos == data_env / "demo" / "store_photos"
    assert len(list(photos.glob("*.jpg"))) == STORE_PHOTOS["small"]
    assert ensure_grocery(settings) == grocery  # ready: not generated again

    monkeypatch.setenv("PRODUCT_ATTRS_GROCERY_DIR", str(data_env / "nowhere"))
    monkeypatch.setenv("PRODUCT_ATTRS_RECOGNITION_DIR", str(data_env / "no_photos"))
    named = Settings.from_env()
    with pytest.raises(MissingInputError, match="PRODUCT_ATTRS_GROCERY_DIR"):
        ensure_grocery(named)
    with pytest.raises(MissingInputError, match="PRODUCT_ATTRS_RECOGNITION_DIR"):
        ensure_store_photos(named)
