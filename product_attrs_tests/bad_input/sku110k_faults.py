"""SKU-110K csv: each line is judged alone; a bad one is quarantined with its reason, the others kept."""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from product_attrs.detection.sources import count_source_boxes, load_detection_source
from product_attrs_tests.bad_input.cases import Fault, quarantined

GOOD = b"s1.jpg,2,2,20,20,object,40,30\n"


def _csv(line: bytes, header: bytes = b""):
    def run(folder: Path) -> str:
        (folder / "images").mkdir()
        Image.new("RGB", (40, 30), (200, 30, 30)).save(folder / "images" / "s1.jpg")
        Image.new("RGB", (40, 30), (30, 30, 200)).save(folder / "outside.jpg")
        (folder / "boxes.csv").write_bytes(header + GOOD + line + GOOD.replace(b"2,2", b"3,3"))
        data = load_detection_source(folder)
        assert {2, 3} <= set(data.boxes["x1"]), "the good lines around it are kept"
        assert len(data.boxes) + data.n_quarantined_boxes == data.n_input_boxes == count_source_boxes(folder)
        if data.quarantine.empty:
            return f"kept: {len(data.boxes)} boxes"
        return quarantined(data.quarantine["reason"])

    return run


FAULTS = [
    Fault(
        "SKU-110K csv",
        "image_name with '..' out of the images folder",
        "quarantine: link_outside_catalog",
        _csv(b"../outside.jpg,2,2,20,20,object,40,30\n"),
    ),
    Fault(
        "SKU-110K csv",
        "an absolute image_name",
        "quarantine: link_outside_catalog",
        _csv(b"/etc/hostname,2,2,20,20,object,40,30\n"),
    ),
    Fault(
        "SKU-110K csv",
        "a NUL byte in a line",
        "quarantine: nul_byte",
        _csv(b"s1.jpg\x00,2,2,20,20,o,40,30\n"),
    ),
    Fault(
        "SKU-110K csv",
        "a quoted field over 128 KiB",
        "quarantine: field_too_large",
        _csv(b's1.jpg,2,2,20,20,"' + b"x" * 140_000 + b'",40,30\n'),
    ),
    Fault(
        "SKU-110K csv",
        "an unterminated quote (the csv module would swallow the next lines)",
        "quarantine: bad_row",
        _csv(b's1.jpg,2,2,20,20,"object,40,30\n'),
    ),
    Fault(
        "SKU-110K csv",
        "coordinates in Arabic-Indic digits or with '_'",
        "quarantine: invalid_coordinates",
        _csv("s1.jpg,٢,2,20,20,object,40,30\ns1.jpg,1_0,2,20,20,object,40,30\n".encode()),
    ),
    Fault(
        "SKU-110K csv",
        "bytes that are not UTF-8 in a class name",
        "kept: 3 boxes",
        _csv(b"s1.jpg,2,2,20,20,obj\xffect,40,30\n"),
    ),
    Fault(
        "SKU-110K csv",
        "an image_width that is not a number",
        "kept: 3 boxes",
        _csv(b"s1.jpg,4,4,20,20,object,wide,1e999\n"),
    ),
]
