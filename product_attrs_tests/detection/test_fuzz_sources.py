"""Fuzz the detection sources: any COCO json or SKU-110K csv in, no exception out but DetectionFormatError,
and every image entry and box record is clean or quarantined."""

from __future__ import annotations

import csv
import json
import math
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import event, given
from hypothesis import strategies as st
from PIL import Image

from product_attrs.detection.sources import (
    DetectionFormatError,
    count_source_boxes,
    load_coco,
    load_csv_boxes,
)
from product_attrs_tests.fuzz import damaged, join, line_end, lines_of, physical_lines


@pytest.fixture(scope="module")
def folder() -> Path:
    """One source folder for all examples: a real image, and one outside the images folder."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "images").mkdir()
        Image.new("RGB", (40, 30), (200, 30, 30)).save(root / "images" / "a.png")
        Image.new("RGB", (40, 30), (30, 30, 200)).save(root / "outside.png")
        (root / "images" / "link.png").symlink_to(root / "outside.png")
        (root / "images" / "broken.png").write_bytes(b"not a png")
        yield root


# ------------------------------------------------------------------------------------------- COCO

# No subnormal floats: a library compiled with -ffast-math (loaded earlier in the same test process) can
# switch on flush-to-zero for the whole process, and Hypothesis then refuses to draw them.
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True, allow_subnormal=False),
    st.text(max_size=8),
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(["id", "x", ""]), inner, max_size=2)
    ),
    max_leaves=10,
)
ids = st.one_of(st.integers(0, 3), st.integers(0, 3), json_values)
names = st.one_of(
    st.sampled_from(
        ["a.png", "a.png", "missing.png", "broken.png", "link.png", "../outside.png", "/etc/hostname"]
    ),
    st.sampled_from(["a\x00.png", "\ud800.png", "", ".", "images/../a.png", "./a.png"]),
    json_values,
)
numbers = st.one_of(
    st.integers(-5, 60),
    st.integers(-5, 60),
    st.floats(allow_nan=True, allow_infinity=True, allow_subnormal=False),
    json_values,
)


_MISSING = object()


def _record(draw: st.DrawFn, fields: dict[str, tuple[Any, st.SearchStrategy]]) -> Any:
    """Mostly a good record; else one or two fields of a wrong type or value (or left out), or not an object.
    (Hypothesis favours small integers and the ends of a range, so the good case is 0..5.)"""
    kind = draw(st.integers(0, 9))
    record = {k: good for k, (good, _) in fields.items()}
    if kind == 9:
        return draw(json_values)
    for _ in range(0 if kind < 6 else kind - 5 if kind < 8 else 1):
        key = draw(st.sampled_from(list(fields)))
        record[key] = draw(st.one_of(fields[key][1], st.just(_MISSING)))
    return {k: v for k, v in record.items() if v is not _MISSING}


@st.composite
def coco_docs(draw: st.DrawFn) -> Any:
    """A COCO document: good records (ids that match up, a real image) with hostile fields mixed in."""
    n_categories, n_images = draw(st.integers(1, 3)), draw(st.integers(1, 4))
    categories = [_record(draw, {"id": (c, ids), "name": ("can", json_values)}) for c in range(n_categories)]
    size = {"width": (40, numbers), "height": (30, numbers)}
    images = [_record(draw, {"id": (i, ids), "file_name": ("a.png", names), **size}) for i in range(n_images)]
    bbox = st.lists(numbers, min_size=4, max_size=4)
    annotations = [
        _record(
            draw,
            {
                "id": (i, ids),
                "image_id": (draw(st.integers(0, n_images - 1)), ids),
                "category_id": (draw(st.integers(0, n_categories - 1)), ids),
                "bbox": (
                    [2, 2, draw(st.integers(1, 30)), draw(st.integers(1, 20))],
                    st.one_of(bbox, json_values),
                ),
                "iscrowd": (draw(st.sampled_from([0, 1, False, True])), json_values),
            },
        )
        for i in range(draw(st.integers(1, 6)))
    ]
    doc = {"images": images, "annotations": annotations, "categories": categories}
    if draw(st.integers(0, 19)) == 19:
        return draw(st.one_of(json_values, st.dictionaries(st.sampled_from(list(doc)), json_values)))
    return doc


@st.composite
def coco_files(draw: st.DrawFn) -> tuple[Any, bytes]:
    """(the document or None, the file's bytes): mostly a json document, sometimes damaged, or noise."""
    doc = draw(coco_docs())
    data = json.dumps(doc).encode()
    kind = draw(st.integers(0, 9))
    if kind == 9:
        return None, draw(st.binary(max_size=200))
    if kind == 8:
        return None, draw(damaged(data))
    return doc, data


@given(case=coco_files())
def test_coco_any_json_every_record_accounted_for(folder: Path, case: tuple[Any, bytes]) -> None:
    doc, data = case
    path = folder / "annotations.json"
    path.write_bytes(data)
    try:
        loaded = load_coco(path, folder / "images")
    except DetectionFormatError:
        event("format error")
        return  # the one whole-file verdict: not a COCO document
    event(f"boxes kept: {min(len(loaded.boxes), 2)}, images kept: {min(len(loaded.images), 2)}")
    assert len(loaded.boxes) + loaded.n_quarantined_boxes == loaded.n_input_boxes
    assert len(loaded.images) + loaded.n_quarantined_images == loaded.n_input_images
    if doc is not None:
        assert loaded.n_input_boxes == len(doc.get("annotations", []))
        assert loaded.n_input_images == len(doc.get("images", []))
        if {"images", "annotations", "categories"} <= doc.keys():  # what a source folder must hold
            assert count_source_boxes(folder) == loaded.n_input_boxes
    assert set(loaded.images["file_name"]) <= {"a.png", "images/../a.png", "./a.png"}
    assert loaded.boxes[["x1", "y1", "x2", "y2"]].apply(lambda c: c.map(math.isfinite)).all().all()


# -------------------------------------------------------------------------------------- SKU-110K

CSV_HEADER = "image_name,x1,y1,x2,y2,class,image_width,image_height"
CSV_GOOD = [
    "a.png,2,2,20,20,object,40,30",
    "a.png,10,5,60,25,price_tag,40,30",
    "missing.png,1,1,5,5,object,10,10",
    "link.png,1,1,5,5,object,40,30",
    '"a.png",3,3,9,9,"object",40,30',
]


@st.composite
def sku_files(draw: st.DrawFn) -> tuple[bool, bytes]:
    """(whether the first line is the header, the bytes): a header or good first line, fuzzed lines."""
    header = draw(st.booleans())
    first = CSV_HEADER if header else CSV_GOOD[0]
    end = draw(line_end)
    body = join(draw(lines_of(CSV_GOOD)), end).encode("utf-8")
    return header, (first + end).encode() + (draw(damaged(body)) if draw(st.booleans()) else body)


def _csv_records(lines: list[str]) -> int:
    """Lines the csv module would not call blank (one record per line, as the reader reads them)."""
    n = 0
    for line in lines:
        try:
            cells = next(csv.reader([line], strict=True)) if "\x00" not in line else ["\x00"]
        except csv.Error:
            cells = ["unparseable"]
        n += any(cell.strip() for cell in cells)
    return n


@given(case=sku_files())
def test_sku110k_any_csv_every_line_accounted_for(folder: Path, case: tuple[bool, bytes]) -> None:
    header, data = case
    path = folder / "boxes.csv"
    path.write_bytes(data)
    loaded = load_csv_boxes(path, folder / "images")
    event(f"boxes kept: {min(len(loaded.boxes), 2)}, quarantined: {min(loaded.n_quarantined_boxes, 2)}")
    n_in = _csv_records(physical_lines(data.lstrip(b"\xef\xbb\xbf"))) - header
    assert len(loaded.boxes) + loaded.n_quarantined_boxes == loaded.n_input_boxes == n_in
    assert set(loaded.images["file_name"]) <= {"a.png"}
