"""COCO annotations: a record of the wrong shape or type is quarantined with its reason, a file that is not
a COCO document is one clear DetectionFormatError, and no file name leads out of the images folder."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from PIL import Image

from product_attrs.detection.sources import load_coco, load_detection_source
from product_attrs_tests.bad_input.cases import Fault, quarantined, raised

CATEGORY = {"id": 1, "name": "can"}
IMAGE = {"id": 1, "file_name": "a.png", "width": 40, "height": 30}
BOX = {"id": 1, "image_id": 1, "category_id": 1, "bbox": [2, 2, 10, 10], "iscrowd": 0}


def _source(folder: Path, text: str) -> Path:
    (folder / "images").mkdir()
    Image.new("RGB", (40, 30), (200, 30, 30)).save(folder / "images" / "a.png")
    Image.new("RGB", (40, 30), (30, 30, 200)).save(folder / "outside.png")  # beside, not in, images/
    (folder / "annotations.json").write_text(text)
    return folder


def _with(images: list[Any] = (), annotations: list[Any] = (), categories: list[Any] = (), setup=None):
    """The good image + box, plus the hostile records; outcome = what else was quarantined."""

    def run(folder: Path) -> str:
        doc = {
            "images": [IMAGE, *images],
            "annotations": [BOX, *annotations],
            "categories": [CATEGORY, *categories],
        }
        # A JSON integer too long for Python's int() is written in place of its marker.
        _source(folder, json.dumps(doc).replace('"<5000 digits>"', "9" * 5000))
        if setup is not None:
            setup(folder)
        data = load_coco(folder / "annotations.json", folder / "images")
        assert data.boxes["box_id"].tolist()[:1] == [1], "the good box is kept"
        assert len(data.boxes) + data.n_quarantined_boxes == data.n_input_boxes
        if data.quarantine.empty:
            return f"kept: {len(data.boxes)} boxes"
        return quarantined(data.quarantine["reason"])

    return run


def _file(text: str | bytes, through_folder: bool = False):
    def run(folder: Path) -> str:
        _source(folder, "")
        path = folder / "annotations.json"
        path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8", errors="surrogatepass"))
        try:
            if through_folder:
                load_detection_source(folder)
            else:
                load_coco(path, folder / "images")
        except Exception as exc:  # noqa: BLE001 - the outcome is the error, whatever it is
            return raised(exc).replace(str(folder), "<folder>")
        return "no error"

    return run


def _link_out(folder: Path) -> None:
    (folder / "images" / "link.png").symlink_to(folder / "outside.png")


def _image(**fields: Any) -> dict[str, Any]:
    return {**IMAGE, "id": 2, **fields}


def _box(**fields: Any) -> dict[str, Any]:
    return {**BOX, "id": 2, **fields}


HUGE = 99999999999999999999
FAULTS = [
    Fault(
        "COCO annotations",
        "file_name with '..' out of the images folder",
        "quarantine: link_outside_catalog",
        _with([_image(file_name="../outside.png")], [_box(image_id=2)]),
    ),
    Fault(
        "COCO annotations",
        "an absolute file_name",
        "quarantine: link_outside_catalog",
        _with([_image(file_name="/etc/hostname")], [_box(image_id=2)]),
    ),
    Fault(
        "COCO annotations",
        "a symlink in the images folder to a file outside it",
        "quarantine: link_outside_catalog",
        _with([_image(file_name="link.png")], [_box(image_id=2)], setup=_link_out),
    ),
    Fault(
        "COCO annotations",
        "a NUL byte in file_name",
        "quarantine: nul_byte",
        _with([_image(file_name="a\x00.png")], [_box(image_id=2)]),
    ),
    Fault(
        "COCO annotations",
        "a file_name with a lone surrogate ('\\ud800')",
        "quarantine: bad_row, unknown_image",
        _with([_image(file_name="\ud800.png")], [_box(image_id=2)]),
    ),
    Fault("COCO annotations", "an image id as a string ('2')", "quarantine: bad_id", _with([_image(id="2")])),
    Fault("COCO annotations", "an image id as a float (2.5)", "quarantine: bad_id", _with([_image(id=2.5)])),
    Fault("COCO annotations", "an image id as a boolean", "quarantine: bad_id", _with([_image(id=True)])),
    Fault("COCO annotations", "an image id null", "quarantine: bad_id", _with([_image(id=None)])),
    Fault("COCO annotations", "an image id nested ([2])", "quarantine: bad_id", _with([_image(id=[2])])),
    Fault(
        "COCO annotations",
        "an image id beyond int64",
        "quarantine: id_out_of_range",
        _with([_image(id=HUGE)]),
    ),
    Fault(
        "COCO annotations",
        "an image id of 5,000 digits (over int()'s limit)",
        "quarantine: id_out_of_range",
        _with([_image(id="<5000 digits>")]),
    ),
    Fault("COCO annotations", "a negative image id", "quarantine: id_out_of_range", _with([_image(id=-2)])),
    Fault(
        "COCO annotations",
        "an image width that is text or infinite",
        "kept: 2 boxes",
        _with([_image(width="wide", height=float("inf"), file_name="a.png")], [_box(image_id=2)]),
    ),
    Fault(
        "COCO annotations",
        "an annotation id as a string",
        "quarantine: bad_id",
        _with(annotations=[_box(id="2")]),
    ),
    Fault(
        "COCO annotations",
        "an annotation category_id of 1e999 (infinite)",
        "quarantine: id_out_of_range",
        _with(annotations=[_box(category_id=float("inf"))]),
    ),
    Fault(
        "COCO annotations",
        "bbox numbers written as strings",
        "quarantine: invalid_coordinates",
        _with(annotations=[_box(bbox=["2", "2", "10", "10"])]),
    ),
    Fault(
        "COCO annotations",
        "bbox of NaN, infinity or 1e308 (x + w overflows)",
        "quarantine: invalid_coordinates",
        _with(
            annotations=[
                _box(bbox=[float("nan"), 2, 10, 10]),
                _box(id=3, bbox=[2, float("-inf"), 10, 10]),
                _box(id=4, bbox=[1e308, 2, 1e308, 10]),
            ]
        ),
    ),
    Fault(
        "COCO annotations",
        "a negative box width",
        "quarantine: degenerate_box",
        _with(annotations=[_box(bbox=[20, 2, -10, 10])]),
    ),
    Fault(
        "COCO annotations",
        "a bbox that is an object, not a list",
        "quarantine: bad_row",
        _with(annotations=[_box(bbox={"x": 1, "y": 1, "w": 5, "h": 5})]),
    ),
    Fault(
        "COCO annotations",
        "iscrowd that is not 0/1",
        "quarantine: bad_row",
        _with(annotations=[_box(iscrowd="yes")]),
    ),
    Fault(
        "COCO annotations",
        "an annotation that is not an object",
        "quarantine: bad_row",
        _with(annotations=[[1, 1, 2, 2]]),
    ),
    Fault(
        "COCO annotations",
        "annotations pointing at an unknown image or category",
        "quarantine: unknown_category, unknown_image",
        _with(annotations=[_box(image_id=77), _box(id=3, category_id=77)]),
    ),
    Fault(
        "COCO annotations",
        "a category id as a string, and a repeated category id",
        "quarantine: bad_id, duplicate_id",
        _with(categories=[{"id": "2", "name": "x"}, {"id": 1, "name": "again"}]),
    ),
    Fault(
        "COCO annotations",
        "a file that is not JSON",
        "error: DetectionFormatError: annotations.json is not JSON: "
        "Expecting value: line 1 column 1 (char 0)",
        _file("images,annotations\n1,2\n"),
    ),
    Fault(
        "COCO annotations",
        "a file that is not UTF-8",
        "error: DetectionFormatError: annotations.json is not UTF-8 text (invalid start byte at byte 0)",
        _file(b"\xff\xfe{}"),
    ),
    Fault(
        "COCO annotations",
        "a JSON list at the top level",
        "error: DetectionFormatError: annotations.json: a COCO file is a JSON object, not a list",
        _file("[]"),
    ),
    Fault(
        "COCO annotations",
        "'images' that is not a list",
        "error: DetectionFormatError: annotations.json: 'images' must be a list, not a dict",
        _file('{"images": {}, "annotations": [], "categories": []}'),
    ),
    Fault(
        "COCO annotations",
        "arrays nested 100,000 deep",
        "error: DetectionFormatError: annotations.json is not JSON: maximum recursion depth exceeded "
        "while decoding a JSON array from a unicode string",
        _file("[" * 100_000 + "]" * 100_000),
    ),
    Fault(
        "COCO annotations",
        "annotations.json that is not JSON, in a source folder",
        "error: DetectionFormatError: no usable annotations in <folder>: annotations.json is not JSON: "
        "Expecting value: line 1 column 1 (char 0)",
        _file("not json", through_folder=True),
    ),
]
