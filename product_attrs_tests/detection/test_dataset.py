"""Detection dataset loading: hand-written COCO and CSV sources, and the real tiny-coco when present."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd
import pytest

from product_attrs import decode
from product_attrs.detection import cleaning
from product_attrs.detection import dataset as ds
from product_attrs.detection.sources import count_source_boxes, load_detection_source
from product_attrs.paths import NotARegularFile
from product_attrs_tests.detection.conftest import make_image as _img


def test_coco_rules(coco_dir: Path) -> None:
    data = load_detection_source(coco_dir)
    # Non-contiguous ids 5, 11, 90 -> labels 1, 2, 3 in id order.
    assert data.label_map == [
        {"label": 1, "category_id": 5, "name": "bottle"},
        {"label": 2, "category_id": 11, "name": "box"},
        {"label": 3, "category_id": 90, "name": "can"},
    ]
    b = data.boxes.set_index("box_id")
    assert sorted(b.index) == [10, 11, 13, 21]
    assert tuple(b.loc[10, ["x1", "y1", "x2", "y2"]]) == (10, 10, 30, 40) and not b.loc[10, "clipped"]
    assert b.loc[11, "iscrowd"] and b.loc[11, "label"] == 2
    assert tuple(b.loc[13, ["x1", "y1", "x2", "y2"]]) == (90, 70, 100, 80) and b.loc[13, "clipped"]
    # The file is 50x50 although the json says 500x500: the file wins and the box is clipped to it.
    assert tuple(b.loc[21, ["x2", "y2"]]) == (50, 50) and b.loc[21, "clipped"]

    q = data.quarantine.set_index("record_id")
    assert (data.quarantine["source"] == "detection").all()
    expected = {
        "box:12": "degenerate_box",
        "box:14": "degenerate_box",
        "box:15": "invalid_coordinates",
        "box:16": "unknown_category",
        "box:17": "missing_image",
        "box:18": "missing_image",
        "box:19": "unreadable_image",
        "box:20": "unknown_image",
        "box:22": "bad_row",
        "image:3": "missing_image",
        "image:4": "unreadable_image",
    }
    assert q["reason"].to_dict() == expected
    assert q["detail"].str.len().min() > 0
    # Every box is in exactly one place.
    assert len(data.boxes) + data.n_quarantined_boxes == data.n_input_boxes == 13
    assert count_source_boxes(coco_dir) == 13
    assert data.n_input_images == 5 and data.n_quarantined_boxes == 9
    assert list(data.images.dtypes.astype(str).items()) == list(ds.IMAGE_COLUMNS.items())
    assert list(data.boxes.dtypes.astype(str).items()) == list(ds.BOX_COLUMNS.items())
    assert data.source == str((coco_dir / "annotations.json").resolve())
    assert data.test_fraction == ds.DEFAULT_TEST_FRACTION
    assert load_detection_source(coco_dir, test_fraction=0.5).test_fraction == 0.5

    im = data.images.set_index("image_id")
    assert sorted(im.index) == [1, 2, 5]
    assert im.loc[2, "n_boxes"] == 0  # negatives are kept
    assert im.loc[1, "n_boxes"] == 3
    assert (im.loc[5, "width"], im.loc[5, "height"], im.loc[5, "size_mismatch"]) == (50, 50, True)
    assert Path(im.loc[5, "file_path"]).is_absolute() and Path(im.loc[5, "file_path"]).is_file()
    assert set(im["split"]) <= {"train", "test"}


def test_split_is_deterministic_and_configurable() -> None:
    names = [f"img_{i:04d}.jpg" for i in range(1000)]
    a = ds.assign_splits(names, 0.2)
    assert a == ds.assign_splits(list(names), 0.2)
    assert 150 < a.count("test") < 250
    assert 400 < ds.assign_splits(names, 0.5).count("test") < 600
    # An image's split does not depend on which other images are present.
    assert ds.assign_splits(names[:500], 0.2) == a[:500]
    # Tiny sets still get both splits.
    assert sorted(set(ds.assign_splits(["x.jpg", "y.jpg"], 0.2))) == ["test", "train"]


def test_write_read_round_trip_and_stable_labels(coco_dir: Path, tmp_path: Path) -> None:
    data = load_detection_source(coco_dir)
    out = tmp_path / "out"
    ds.write_detection_dataset(data, out)
    assert {p.name for p in out.iterdir()} == set(ds.FILES)
    back = ds.read_detection_dataset(out)
    pd.testing.assert_frame_equal(back.images, data.images)
    pd.testing.assert_frame_equal(back.boxes, data.boxes)
    pd.testing.assert_frame_equal(back.quarantine, data.quarantine)
    assert back.label_map == data.label_map and back.n_input_boxes == data.n_input_boxes
    assert back.data_version() == data.data_version()

    # A new category with a smaller id appears later: stored labels do not shift, it is appended.
    doc = json.loads((coco_dir / "annotations.json").read_text())
    doc["categories"].append({"id": 1, "name": "jar"})
    (coco_dir / "annotations.json").write_text(json.dumps(doc))
    again = load_detection_source(coco_dir, label_map=ds.read_label_map(out))
    assert again.label_map[:3] == data.label_map
    assert again.label_map[3] == {"label": 4, "category_id": 1, "name": "jar"}


@pytest.mark.parametrize("header", [False, True])
def test_csv_boxes(tmp_path: Path, header: bool) -> None:
    root = tmp_path / "sku"
    _img(root / "images" / "s1.jpg", (200, 100))
    _img(root / "images" / "s2.jpg", (80, 80))
    rows = [
        "s1.jpg,10,10,50,60,object,200,100",
        "s1.jpg,150,50,250,120,object,200,100",  # clipped to 200x100
        "s1.jpg,30,30,30,40,object,200,100",  # zero width
        "s2.jpg,1,1,20,20,price_tag,80,80",
        "s2.jpg,1,1,20",  # bad row
        "gone.jpg,1,1,5,5,object,10,10",  # missing image
    ]
    text = (
        ("image_name,x1,y1,x2,y2,class,image_width,image_height\n" if header else "") + "\n".join(rows) + "\n"
    )
    (root / "boxes.csv").write_text(text)
    data = load_detection_source(root)
    assert [m["name"] for m in data.label_map] == ["object", "price_tag"]
    assert [m["label"] for m in data.label_map] == [1, 2]
    assert len(data.boxes) == 3 and data.boxes["clipped"].sum() == 1
    assert data.boxes["x2"].max() == 200 and data.boxes["y2"].max() == 100
    reasons = sorted(data.quarantine["reason"])
    assert reasons == ["bad_row", "degenerate_box", "missing_image", "missing_image"]
    assert len(data.boxes) + data.n_quarantined_boxes == data.n_input_boxes == 6
    assert count_source_boxes(root) == 6
    assert set(data.images["file_name"]) == {"s1.jpg", "s2.jpg"}


def test_missing_annotations_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no detection annotations"):
        load_detection_source(tmp_path)


def _real_tiny_coco() -> Path:
    root = os.environ.get("PRODUCT_ATTRS_REAL_DATA")
    if not root:
        pytest.skip("PRODUCT_ATTRS_REAL_DATA is not set: no real tiny-coco to check against")
    folder = Path(root) / "tiny-coco"
    if not (folder / "annotations" / "instances.json").is_file():
        pytest.skip(f"{folder} has no annotations/instances.json")
    return folder


@pytest.mark.real_data
def test_real_tiny_coco() -> None:
    folder = _real_tiny_coco()
    data = load_detection_source(folder)
    cats = json.loads((folder / "annotations" / "instances.json").read_text())["categories"]
    assert len(data.label_map) == 80
    assert [m["label"] for m in data.label_map] == list(range(1, 81))
    assert [m["category_id"] for m in data.label_map] == sorted(c["id"] for c in cats)
    assert data.n_input_boxes == 197
    assert len(data.boxes) + data.n_quarantined_boxes == 197
    crowd = data.boxes[data.boxes["iscrowd"]]
    assert len(crowd) == 1
    assert len(data.images) == 16
    assert (data.boxes["x2"] > data.boxes["x1"]).all() and (data.boxes["y2"] > data.boxes["y1"]).all()
    assert set(data.images["split"]) == {"train", "test"}


@pytest.mark.parametrize(
    ("xyxy", "why"),
    [
        ((10, 30, 50, 30), "zero height"),
        ((10, 40, 50, 20), "upside down"),
        ((10, -30, 50, -5), "wholly above the image"),
        ((10, 120, 50, 150), "wholly below the image"),
        ((30, 10, 30, 50), "zero width"),
        ((50, 10, 10, 50), "right edge left of the left edge"),
        ((-40, 10, -5, 50), "wholly left of the image"),
        ((220, 10, 250, 50), "wholly right of the image"),
    ],
)
def test_a_box_with_no_area_inside_the_image_is_degenerate(xyxy: tuple[int, ...], why: str) -> None:
    """Height is checked like width: a box of no height, or clipped to nothing above or below the image,
    would train the detector on an empty target."""
    assert cleaning._clip_box(*xyxy, 200, 100) == "degenerate_box", why


def test_a_box_is_clipped_to_the_image_and_says_so() -> None:
    assert cleaning._clip_box(10, 20, 50, 60, 200, 100) == ((10.0, 20.0, 50.0, 60.0), False)
    assert cleaning._clip_box(-5, -1, 250, 130, 200, 100) == ((0.0, 0.0, 200.0, 100.0), True)
    assert cleaning._clip_box(0, 0, 200, 100, 200, 100) == ((0.0, 0.0, 200.0, 100.0), False)  # on the edge
    assert cleaning._clip_box(1, 99.5, 2, 100.5, 200, 100) == ((1.0, 99.5, 2.0, 100.0), True)
    for bad in (float("nan"), float("inf"), "3", None):
        assert cleaning._clip_box(1, 1, bad, 5, 200, 100) == "invalid_coordinates"  # type: ignore[arg-type]


def test_csv_boxes_of_no_height_are_quarantined(tmp_path: Path) -> None:
    root = tmp_path / "sku"
    _img(root / "images" / "s1.jpg", (200, 100))
    rows = [
        "s1.jpg,10,10,50,60,object,200,100",
        "s1.jpg,10,30,50,30,object,200,100",  # zero height
        "s1.jpg,10,-30,50,-5,object,200,100",  # wholly above
        "s1.jpg,10,120,50,150,object,200,100",  # wholly below
    ]
    (root / "boxes.csv").write_text("\n".join(rows) + "\n")
    data = load_detection_source(root)
    assert data.boxes[["x1", "y1", "x2", "y2"]].values.tolist() == [[10, 10, 50, 60]]
    assert data.quarantine["reason"].tolist() == ["degenerate_box"] * 3
    assert data.quarantine["detail"].str.contains("200x100 image s1.jpg").all()
    assert data.images["n_boxes"].tolist() == [1]


def test_quarantine_details_say_what_was_wrong(coco_dir: Path) -> None:
    q = load_detection_source(coco_dir).quarantine.set_index("record_id")["detail"]
    images = (coco_dir / "images").resolve()
    assert q["image:3"] == f"missing.jpg: no such file ({images / 'missing.jpg'})"
    assert q["image:4"] == f"broken.jpg: cannot be decoded ({images / 'broken.jpg'})"
    assert q["box:17"] == "box of image 3, whose file is missing"
    assert q["box:19"] == "box of image 4, whose file is unreadable"
    assert q["box:20"] == "image_id 999 is not in the image list"
    assert q["box:16"] == "category_id 77 is not in the categories"
    assert q["box:12"] == "xyxy=[5.0, 5.0, 5.0, 15.0] in a 100x80 image a.jpg"


@pytest.mark.parametrize(
    ("error", "reason", "detail"),
    [
        (FileNotFoundError("x"), "missing_image", "no such file"),
        (NotARegularFile("x"), "not_a_regular_file", "not a regular file (a FIFO, a device, a folder)"),
        (decode.ImageTooLarge("x"), "image_too_large", f"more than {decode.MAX_PIXELS:,} pixels"),
        (
            decode.DecodeTimeout("x"),
            "transient_read_error",
            "a read or decode that may succeed on the next run",
        ),
        (MemoryError(), "transient_read_error", "a read or decode that may succeed on the next run"),
        (OSError("truncated"), "unreadable_image", "cannot be decoded"),
    ],
)
def test_an_image_that_cannot_be_probed_is_quarantined_with_its_reason(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, error: BaseException, reason: str, detail: str
) -> None:
    root = tmp_path / "sku"
    _img(root / "images" / "s1.jpg", (200, 100))
    (root / "boxes.csv").write_text("s1.jpg,10,10,50,60,object,200,100\n")

    def fail(*args: object, **kwargs: object) -> None:
        raise error

    monkeypatch.setattr(cleaning.decode, "open_image", fail)
    data = load_detection_source(root)
    q = data.quarantine.set_index("record_id")
    assert q["reason"].tolist() == [reason, reason]  # the image, then its box
    image_detail = q.loc[q.index.str.startswith("image:"), "detail"].item()
    assert image_detail.startswith(f"s1.jpg: {detail} (") and image_detail.endswith("s1.jpg)")
    assert len(data.images) == 0 and len(data.boxes) == 0


def test_the_probe_reads_the_size_of_the_file_not_of_its_draft(tmp_path: Path) -> None:
    _img(tmp_path / "big.jpg", (640, 480))
    assert cleaning.probe_image(tmp_path / "big.jpg") == (640, 480)
    assert cleaning.probe_image(tmp_path / "gone.jpg") == "missing_image"


def test_a_source_without_a_clean_box_still_has_typed_tables(tmp_path: Path) -> None:
    root = tmp_path / "sku"
    _img(root / "images" / "s1.jpg", (20, 10))
    (root / "boxes.csv").write_text("s1.jpg,1,5,9,5,object,20,10\n")  # zero height: no clean box
    data = load_detection_source(root)
    assert data.boxes.empty and list(data.boxes.dtypes.astype(str).items()) == list(ds.BOX_COLUMNS.items())
    assert list(data.images.dtypes.astype(str).items()) == list(ds.IMAGE_COLUMNS.items())
    assert data.quarantine.columns.tolist() == list(ds.QUARANTINE_COLUMNS)
    assert data.images[["width", "height", "n_boxes", "size_mismatch"]].values.tolist() == [
        [20, 10, 0, False]
    ]


def test_a_size_mismatch_is_only_flagged_when_the_annotation_gives_a_size(coco_dir: Path) -> None:
    doc = json.loads((coco_dir / "annotations.json").read_text())
    for im in doc["images"]:
        if im["id"] == 5:
            del im["width"], im["height"]
        if im["id"] == 1:
            im["height"] = 81  # the width agrees, the height does not
    (coco_dir / "annotations.json").write_text(json.dumps(doc))
    im = load_detection_source(coco_dir).images.set_index("image_id")
    assert im["size_mismatch"].to_dict() == {1: True, 2: False, 5: False}


def test_the_label_map_keeps_existing_labels_and_numbers_new_ones_after_them() -> None:
    existing = [{"label": 2, "category_id": 7, "name": "can"}, {"label": 1, "category_id": 9, "name": "jar"}]
    out = cleaning._build_label_map([(3, "box"), (9, "renamed jar"), (1, "bag")], existing)
    assert out == [
        {"label": 1, "category_id": 9, "name": "jar"},
        {"label": 2, "category_id": 7, "name": "can"},
        {"label": 3, "category_id": 1, "name": "bag"},
        {"label": 4, "category_id": 3, "name": "box"},
    ]
    assert existing[0] == {"label": 2, "category_id": 7, "name": "can"}  # not modified in place
    assert cleaning._build_label_map([(4, "x"), (4, "x")], None) == [
        {"label": 1, "category_id": 4, "name": "x"}
    ]
