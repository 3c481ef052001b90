"""Detection sources: COCO instances json and SKU-110K-style CSV boxes, and finding which a folder holds.

The format-specific half of loading: each parser turns its file into raw image and box records (with
what it could not parse already marked for quarantine) and hands them to ``cleaning._assemble``.
``count_source_boxes`` counts the boxes of a source again without these parsers, for the asset check.
"""

from __future__ import annotations

import csv
import json
import logging
import math
from pathlib import Path
from typing import Any

from product_attrs.detection.cleaning import _assemble, _build_label_map, _RawBox, _RawImage, _to_float
from product_attrs.detection.dataset import (
    BOX_PREFIX,
    DEFAULT_TEST_FRACTION,
    IMAGE_PREFIX,
    SOURCE,
    DetectionData,
)

log = logging.getLogger(__name__)


# ----------------------------------------------------------------------------------------- loaders


def load_coco(
    annotations_json: Path,
    images_dir: Path,
    test_fraction: float = DEFAULT_TEST_FRACTION,
    label_map: list[dict[str, Any]] | None = None,
) -> DetectionData:
    """Load a COCO instances json; segmentation and other extra fields are ignored.

    `label_map`: a stored map (from a previous run) whose labels must not shift; new categories are
    appended after it.
    """
    annotations_json = Path(annotations_json)
    doc = json.loads(annotations_json.read_text())
    quarantine: list[dict[str, str]] = []

    def reject(record_id: str, reason: str, detail: str) -> None:
        quarantine.append({"source": SOURCE, "record_id": record_id, "reason": reason, "detail": detail})

    categories: list[tuple[int, str]] = []
    for c in doc.get("categories", []):
        try:
            categories.append((int(c["id"]), str(c.get("name", c["id"]))))
        except (KeyError, TypeError, ValueError):
            reject(
                f"category:{c.get('id') if isinstance(c, dict) else c}",
                "bad_row",
                f"unusable category entry {c!r}",
            )
    lmap = _build_label_map(categories, label_map)

    raw_images: list[_RawImage] = []
    seen_images: set[int] = set()
    raw_list = doc.get("images", [])
    for i, im in enumerate(raw_list):
        try:
            iid, fname = int(im["id"]), str(im["file_name"])
        except (KeyError, TypeError, ValueError):
            reject(
                f"{IMAGE_PREFIX}#{i}", "bad_row", f"image entry without usable id/file_name: {str(im)[:200]}"
            )
            continue
        if iid in seen_images:
            reject(f"{IMAGE_PREFIX}{iid}", "duplicate_id", f"image id {iid} listed again ({fname})")
            continue
        seen_images.add(iid)
        w, h = im.get("width"), im.get("height")
        raw_images.append(
            _RawImage(iid, fname, int(w) if w is not None else None, int(h) if h is not None else None)
        )

    raw_boxes: list[_RawBox] = []
    seen_boxes: set[int] = set()
    for i, a in enumerate(doc.get("annotations", [])):
        ann_id = a.get("id") if isinstance(a, dict) else None
        record = f"{BOX_PREFIX}{ann_id if ann_id is not None else f'#{i}'}"
        try:
            bid = int(ann_id)  # type: ignore[arg-type]
            image_id = int(a["image_id"])
            cid = int(a["category_id"])
            bbox = a["bbox"]
            if len(bbox) != 4:
                raise ValueError("bbox must have 4 numbers")
        except (KeyError, TypeError, ValueError) as exc:
            raw_boxes.append(
                _RawBox(
                    record,
                    None,
                    None,
                    (math.nan,) * 4,
                    None,
                    False,
                    ("bad_row", f"unusable annotation ({exc}): {str(a)[:200]}"),
                )
            )
            continue
        x, y, w, h = (_to_float(v) for v in bbox)
        problem = ("duplicate_id", f"annotation id {bid} appears again") if bid in seen_boxes else None
        seen_boxes.add(bid)
        raw_boxes.append(
            _RawBox(record, bid, image_id, (x, y, x + w, y + h), cid, bool(a.get("iscrowd", 0)), problem)
        )

    return _assemble(
        raw_images,
        raw_boxes,
        lmap,
        Path(images_dir),
        quarantine,
        test_fraction,
        str(annotations_json.resolve()),
        len(raw_list),
    )


CSV_FIELDS = ["image_name", "x1", "y1", "x2", "y2", "class", "image_width", "image_height"]


def load_csv_boxes(
    csv_path: Path,
    images_dir: Path,
    test_fraction: float = DEFAULT_TEST_FRACTION,
    label_map: list[dict[str, Any]] | None = None,
) -> DetectionData:
    """Load SKU-110K-style rows `image_name,x1,y1,x2,y2,class,image_width,image_height` (header optional).

    Classes are names: they get category ids 1..K in name order (or keep those of `label_map`).
    Image ids are 1..N in file-name order. Each row is a box; box_id is its 0-based data-row index.
    """
    csv_path = Path(csv_path)
    quarantine: list[dict[str, str]] = []
    with csv_path.open(newline="") as f:
        rows = [r for r in csv.reader(f) if r and any(cell.strip() for cell in r)]
    if rows and not _is_number(rows[0][1] if len(rows[0]) > 1 else ""):
        rows = rows[1:]  # header line

    existing_names = {str(m["name"]): int(m["category_id"]) for m in (label_map or [])}
    class_names = sorted({r[5].strip() for r in rows if len(r) == len(CSV_FIELDS)})
    next_cid = max(existing_names.values(), default=0) + 1
    cid_of = dict(existing_names)
    for name in class_names:
        if name not in cid_of:
            cid_of[name] = next_cid
            next_cid += 1
    lmap = _build_label_map([(cid, name) for name, cid in cid_of.items()], label_map)

    sizes: dict[str, tuple[int | None, int | None]] = {}
    for r in rows:
        if len(r) == len(CSV_FIELDS) and r[0].strip() not in sizes:
            w, h = _to_float(r[6]), _to_float(r[7])
            sizes[r[0].strip()] = (int(w) if math.isfinite(w) else None, int(h) if math.isfinite(h) else None)
    image_id_of = {name: i + 1 for i, name in enumerate(sorted(sizes))}
    raw_images = [_RawImage(image_id_of[n], n, *sizes[n]) for n in sorted(sizes)]

    raw_boxes: list[_RawBox] = []
    for i, r in enumerate(rows):
        record = f"{BOX_PREFIX}{i}"
        if len(r) != len(CSV_FIELDS):
            raw_boxes.append(
                _RawBox(
                    record,
                    i,
                    None,
                    (math.nan,) * 4,
                    None,
                    False,
                    ("bad_row", f"expected {len(CSV_FIELDS)} fields, got {len(r)}: {','.join(r)[:200]}"),
                )
            )
            continue
        name = r[0].strip()
        coords = tuple(_to_float(v) for v in r[1:5])
        raw_boxes.append(_RawBox(record, i, image_id_of[name], coords, cid_of[r[5].strip()], False))  # type: ignore[arg-type]

    return _assemble(
        raw_images,
        raw_boxes,
        lmap,
        Path(images_dir),
        quarantine,
        test_fraction,
        str(csv_path.resolve()),
        len(raw_images),
    )


def _is_number(s: str) -> bool:
    return math.isfinite(_to_float(s)) if s.strip() else False


def _is_coco(path: Path) -> bool:
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    return isinstance(doc, dict) and {"images", "annotations", "categories"} <= doc.keys()


def find_annotations(folder: Path) -> Path:
    """The annotation file of a source folder: a COCO json first, else a CSV."""
    folder = Path(folder)
    candidates = [folder / "annotations.json", *sorted((folder / "annotations").glob("instances*.json"))]
    candidates += sorted(folder.glob("*.json")) + sorted((folder / "annotations").glob("*.json"))
    for c in candidates:
        if c.is_file() and _is_coco(c):
            return c
    csvs = sorted(folder.glob("*.csv")) + sorted((folder / "annotations").glob("*.csv"))
    if csvs:
        return csvs[0]
    raise FileNotFoundError(
        f"no detection annotations in {folder}: expected a COCO json (annotations.json, "
        "annotations/instances*.json or any json with images/annotations/categories) or a CSV of boxes"
    )


def load_detection_source(
    folder: Path,
    test_fraction: float = DEFAULT_TEST_FRACTION,
    label_map: list[dict[str, Any]] | None = None,
) -> DetectionData:
    """Load whatever a source folder holds; images are in `folder/images`, else the folder itself."""
    folder = Path(folder)
    ann = find_annotations(folder)
    images_dir = folder / "images" if (folder / "images").is_dir() else folder
    loader = load_coco if ann.suffix.lower() == ".json" else load_csv_boxes
    log.info("loading detection source %s (images in %s)", ann, images_dir)
    return loader(ann, images_dir, test_fraction=test_fraction, label_map=label_map)


def count_source_boxes(folder: Path) -> int:
    """Boxes in a source folder's annotation file, counted independently of the loaders (for checks)."""
    ann = find_annotations(Path(folder))
    if ann.suffix.lower() == ".json":
        return len(json.loads(ann.read_text()).get("annotations", []))
    with ann.open(newline="") as f:
        rows = [r for r in csv.reader(f) if r and any(cell.strip() for cell in r)]
    has_header = bool(rows) and not _is_number(rows[0][1] if len(rows[0]) > 1 else "")
    return len(rows) - int(has_header)
