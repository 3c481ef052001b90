"""Detection sources: COCO instances json and SKU-110K-style CSV boxes, and finding which a folder holds.

The format-specific half of loading: each parser turns its file into raw image and box records (with
what it could not parse already marked for quarantine) and hands them to ``cleaning._assemble``.
``count_source_boxes`` counts the boxes of a source again without these parsers, for the asset check.
"""

from __future__ import annotations

import json
import logging
import math
import re
import reprlib
from pathlib import Path
from typing import Any

from product_attrs.catalog.styles import INT64_MAX, line_fields, split_lines
from product_attrs.detection.cleaning import _assemble, _build_label_map, _RawBox, _RawImage
from product_attrs.detection.dataset import (
    BOX_PREFIX,
    DEFAULT_TEST_FRACTION,
    IMAGE_PREFIX,
    SOURCE,
    DetectionData,
)
from product_attrs.paths import PathOutsideRoot, confine, read_regular

log = logging.getLogger(__name__)


# ------------------------------------------------------------------------------------ record rules


class DetectionFormatError(ValueError):
    """The annotation file is not a COCO document or boxes CSV at all: nothing record-level can be done."""


_NAN4 = (math.nan,) * 4
_NUMBER = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")


def _parse_int(text: str) -> int | float:
    """A JSON integer; one longer than any id or pixel (and than int()'s 4,300-digit limit, which would
    fail the whole file) becomes +-inf, which every id and box check rejects."""
    if len(text) > 40:
        return -math.inf if text.startswith("-") else math.inf
    return int(text)


def read_coco(path: Path) -> dict[str, Any]:
    """The COCO document, or `DetectionFormatError` when the file is not JSON or not shaped like COCO."""
    path = Path(path)
    try:
        doc = json.loads(read_regular(path).decode("utf-8"), parse_int=_parse_int)
    except UnicodeDecodeError as exc:
        raise DetectionFormatError(
            f"{path.name} is not UTF-8 text ({exc.reason} at byte {exc.start})"
        ) from None
    except (ValueError, RecursionError) as exc:  # JSONDecodeError is a ValueError; RecursionError: nesting
        raise DetectionFormatError(f"{path.name} is not JSON: {str(exc)[:200]}") from None
    if not isinstance(doc, dict):
        raise DetectionFormatError(f"{path.name}: a COCO file is a JSON object, not a {type(doc).__name__}")
    for key in ("images", "annotations", "categories"):
        if not isinstance(doc.get(key, []), list):
            raise DetectionFormatError(
                f"{path.name}: {key!r} must be a list, not a {type(doc[key]).__name__}"
            )
    return doc


def _json_id(value: Any) -> int | tuple[str, str]:
    """A COCO id: a JSON integer in 0..int64 (some exporters start at 0), else (reason, detail).
    Strings, floats, booleans, null and nested values are the wrong type, never coerced."""
    if isinstance(value, float) and math.isinf(value):
        return "id_out_of_range", f"id {value} is beyond int64"
    if isinstance(value, bool) or not isinstance(value, int):
        return "bad_id", f"id {reprlib.repr(value)} is a JSON {type(value).__name__}, not an integer"
    if not 0 <= value <= INT64_MAX:
        return "id_out_of_range", f"id {value} is not in 0..{INT64_MAX}"
    return value


def _json_number(value: Any) -> float:
    """A JSON number as a float; anything else is NaN, so its box is quarantined as invalid_coordinates."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return math.nan
    return float(value)


def _size(value: Any) -> int | None:
    """An annotated width or height; only compared with the file's, so an unusable one is just unknown."""
    v = _json_number(value) if not isinstance(value, str) else _csv_number(value)
    return int(v) if math.isfinite(v) and 0 < v < 2**31 else None


def _csv_number(text: str) -> float:
    """A number written in ASCII (float() also reads '١٢', '1_000' or 'nan'), else NaN."""
    text = text.strip()
    return float(text) if _NUMBER.fullmatch(text) else math.nan


def _is_text(value: Any) -> bool:
    """A string that can be written out: JSON may hold lone surrogates ('\\ud800'), which parquet rejects."""
    if not isinstance(value, str):
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _name_problem(images_dir: Path, name: str) -> tuple[str, str] | None:
    """Why an image file name cannot be used, or None: it must stay inside the images folder."""
    if "\x00" in name:
        return "nul_byte", f"file name {name!r} contains a NUL byte"
    try:
        confine(images_dir, name)
    except PathOutsideRoot as exc:
        return "link_outside_catalog", str(exc)
    except OSError as exc:  # e.g. a folder on the way that cannot be read
        return "missing_image", f"{name}: cannot be resolved ({exc})"
    return None


# ----------------------------------------------------------------------------------------- loaders


def load_coco(
    annotations_json: Path,
    images_dir: Path,
    test_fraction: float = DEFAULT_TEST_FRACTION,
    label_map: list[dict[str, Any]] | None = None,
) -> DetectionData:
    """Load a COCO instances json; segmentation and other extra fields are ignored.

    `label_map`: a stored map (from a previous run) whose labels must not shift; new categories are
    appended after it. A record of the wrong shape or type is quarantined; a file that is not a COCO
    document at all raises `DetectionFormatError`.
    """
    annotations_json = Path(annotations_json)
    images_dir = Path(images_dir)
    doc = read_coco(annotations_json)
    quarantine: list[dict[str, str]] = []

    def reject(record_id: str, reason: str, detail: str) -> None:
        quarantine.append({"source": SOURCE, "record_id": record_id, "reason": reason, "detail": detail})

    categories: list[tuple[int, str]] = []
    seen_categories: set[int] = set()
    for i, c in enumerate(doc.get("categories", [])):
        if not isinstance(c, dict) or "id" not in c:
            reject(f"category:#{i}", "bad_row", f"unusable category entry {reprlib.repr(c)}")
            continue
        cid = _json_id(c["id"])
        if isinstance(cid, tuple):
            reject(f"category:#{i}", *cid)
            continue
        name = c.get("name", str(cid))
        if not _is_text(name):
            reject(f"category:{cid}", "bad_row", f"category name {reprlib.repr(name)} is not text")
        elif cid in seen_categories:
            reject(
                f"category:{cid}", "duplicate_id", f"category id {cid} listed again ({reprlib.repr(name)})"
            )
        else:
            seen_categories.add(cid)
            categories.append((cid, name))
    lmap = _build_label_map(categories, label_map)

    raw_images: list[_RawImage] = []
    seen_images: set[int] = set()
    blocked: dict[int, tuple[str, str]] = {}  # image id -> why its file may not be opened
    raw_list = doc.get("images", [])
    for i, im in enumerate(raw_list):
        if not isinstance(im, dict) or "id" not in im or "file_name" not in im:
            reject(f"{IMAGE_PREFIX}#{i}", "bad_row", f"image entry without id/file_name: {reprlib.repr(im)}")
            continue
        iid, fname = _json_id(im["id"]), im["file_name"]
        if isinstance(iid, tuple):
            reject(f"{IMAGE_PREFIX}#{i}", *iid)
            continue
        if not _is_text(fname):
            reject(f"{IMAGE_PREFIX}{iid}", "bad_row", f"file_name {reprlib.repr(fname)} is not text")
            continue
        if iid in seen_images:
            reject(f"{IMAGE_PREFIX}{iid}", "duplicate_id", f"image id {iid} listed again ({fname!r})")
            continue
        seen_images.add(iid)
        problem = _name_problem(images_dir, fname)
        if problem is not None:
            blocked[iid] = problem
            reject(f"{IMAGE_PREFIX}{iid}", *problem)
            continue
        raw_images.append(_RawImage(iid, fname, _size(im.get("width")), _size(im.get("height"))))

    raw_boxes: list[_RawBox] = []
    seen_boxes: set[int] = set()
    for i, a in enumerate(doc.get("annotations", [])):
        record = f"{BOX_PREFIX}#{i}"
        missing = (
            [k for k in ("id", "image_id", "category_id", "bbox") if k not in a]
            if isinstance(a, dict)
            else []
        )
        if not isinstance(a, dict) or missing:
            what = f"missing {missing}" if missing else "not an object"
            detail = f"unusable annotation ({what}): {reprlib.repr(a)}"
            raw_boxes.append(_RawBox(record, None, None, _NAN4, None, False, ("bad_row", detail)))
            continue
        bid, image_id, cid = (_json_id(a[k]) for k in ("id", "image_id", "category_id"))
        if isinstance(bid, int):
            record = f"{BOX_PREFIX}{bid}"
        wrong = next(
            (
                (k, v)
                for k, v in zip(("id", "image_id", "category_id"), (bid, image_id, cid))
                if isinstance(v, tuple)
            ),
            None,
        )
        bbox, iscrowd = a["bbox"], a.get("iscrowd", 0)
        if wrong is not None:
            key, (reason, detail) = wrong
            problem: tuple[str, str] | None = (reason, f"{key}: {detail}")
        elif not isinstance(bbox, list) or len(bbox) != 4:
            problem = ("bad_row", f"bbox must be a list of 4 numbers: {reprlib.repr(bbox)}")
        elif iscrowd not in (0, 1):
            problem = ("bad_row", f"iscrowd must be 0 or 1: {reprlib.repr(iscrowd)}")
        else:
            problem = None
        if problem is not None:
            raw_boxes.append(_RawBox(record, None, None, _NAN4, None, False, problem))
            continue
        assert isinstance(bid, int) and isinstance(image_id, int) and isinstance(cid, int)
        x, y, w, h = (_json_number(v) for v in bbox)
        if bid in seen_boxes:
            problem = ("duplicate_id", f"annotation id {bid} appears again")
        elif image_id in blocked:
            problem = (blocked[image_id][0], f"box of image {image_id}: {blocked[image_id][1]}")
        seen_boxes.add(bid)
        raw_boxes.append(_RawBox(record, bid, image_id, (x, y, x + w, y + h), cid, bool(iscrowd), problem))

    return _assemble(
        raw_images,
        raw_boxes,
        lmap,
        images_dir,
        quarantine,
        test_fraction,
        str(annotations_json.resolve()),
        len(raw_list),
    )


CSV_FIELDS = ["image_name", "x1", "y1", "x2", "y2", "class", "image_width", "image_height"]


def _csv_records(csv_path: Path) -> list[tuple[str, list[str] | tuple[str, str]]]:
    """The data lines of a boxes CSV, one per line (blank lines and a header dropped), each with its
    fields or why it has none (``line_fields``): a quote or NUL never swallows the lines after it."""
    text = read_regular(Path(csv_path)).decode("utf-8", errors="replace").lstrip("\ufeff")
    records: list[tuple[str, list[str] | tuple[str, str]]] = []
    for raw in split_lines(text):
        fields = line_fields(raw)
        if isinstance(fields, list) and not any(cell.strip() for cell in fields):
            continue
        records.append((raw, fields))
    if (
        records
        and isinstance(first := records[0][1], list)
        and not _is_number(first[1] if len(first) > 1 else "")
    ):
        records = records[1:]  # header line
    return records


def load_csv_boxes(
    csv_path: Path,
    images_dir: Path,
    test_fraction: float = DEFAULT_TEST_FRACTION,
    label_map: list[dict[str, Any]] | None = None,
) -> DetectionData:
    """Load SKU-110K-style rows `image_name,x1,y1,x2,y2,class,image_width,image_height` (header optional).

    Classes are names: they get category ids 1..K in name order (or keep those of `label_map`).
    Image ids are 1..N in file-name order. Each data line is a box; box_id is its 0-based index.
    """
    csv_path, images_dir = Path(csv_path), Path(images_dir)
    records = _csv_records(csv_path)
    problems: dict[int, tuple[str, str]] = {}
    rows: dict[int, list[str]] = {}
    name_problem: dict[str, tuple[str, str] | None] = {}
    for i, (raw, fields) in enumerate(records):
        if isinstance(fields, tuple):
            reason = "bad_row" if fields[0] == "unparseable_line" else fields[0]
            problems[i] = (reason, f"{fields[1]}: {raw[:200]!r}")
        elif len(fields) != len(CSV_FIELDS):
            problems[i] = ("bad_row", f"expected {len(CSV_FIELDS)} fields, got {len(fields)}: {raw[:200]}")
        else:
            name = fields[0].strip()
            if name not in name_problem:
                name_problem[name] = _name_problem(images_dir, name)
            if name_problem[name] is not None:
                problems[i] = name_problem[name]  # type: ignore[assignment]
            else:
                rows[i] = fields

    existing_names = {str(m["name"]): int(m["category_id"]) for m in (label_map or [])}
    class_names = sorted({r[5].strip() for r in rows.values()})
    next_cid = max(existing_names.values(), default=0) + 1
    cid_of = dict(existing_names)
    for name in class_names:
        if name not in cid_of:
            cid_of[name] = next_cid
            next_cid += 1
    lmap = _build_label_map([(cid, name) for name, cid in cid_of.items()], label_map)

    sizes: dict[str, tuple[int | None, int | None]] = {}
    for r in rows.values():
        sizes.setdefault(r[0].strip(), (_size(r[6]), _size(r[7])))
    image_id_of = {name: i + 1 for i, name in enumerate(sorted(sizes))}
    raw_images = [_RawImage(image_id_of[n], n, *sizes[n]) for n in sorted(sizes)]

    raw_boxes: list[_RawBox] = []
    for i in range(len(records)):
        record = f"{BOX_PREFIX}{i}"
        if i in problems:
            raw_boxes.append(_RawBox(record, i, None, _NAN4, None, False, problems[i]))
            continue
        r = rows[i]
        coords = tuple(_csv_number(v) for v in r[1:5])
        raw_boxes.append(_RawBox(record, i, image_id_of[r[0].strip()], coords, cid_of[r[5].strip()], False))  # type: ignore[arg-type]

    return _assemble(
        raw_images,
        raw_boxes,
        lmap,
        images_dir,
        [],
        test_fraction,
        str(csv_path.resolve()),
        len(raw_images),
    )


def _is_number(s: str) -> bool:
    return math.isfinite(_csv_number(s))


def _is_coco(path: Path) -> bool | str:
    """True for a COCO document; otherwise why not (its keys, or the format error)."""
    try:
        doc = read_coco(path)
    except (OSError, DetectionFormatError) as exc:
        return str(exc)
    missing = sorted({"images", "annotations", "categories"} - doc.keys())
    return True if not missing else f"{path.name} has no {missing}"


def find_annotations(folder: Path) -> Path:
    """The annotation file of a source folder: a COCO json first, else a CSV."""
    folder = Path(folder)
    candidates = [folder / "annotations.json", *sorted((folder / "annotations").glob("instances*.json"))]
    candidates += sorted(folder.glob("*.json")) + sorted((folder / "annotations").glob("*.json"))
    rejected: list[str] = []  # why an annotation file that should be COCO is not
    for c in candidates:
        if c.is_file():
            verdict = _is_coco(c)
            if verdict is True:
                return c
            if c.name == "annotations.json" or c.name.startswith("instances"):
                rejected.append(str(verdict))
    csvs = sorted(folder.glob("*.csv")) + sorted((folder / "annotations").glob("*.csv"))
    if csvs:
        return csvs[0]
    if rejected:
        raise DetectionFormatError(f"no usable annotations in {folder}: {rejected[0]}")
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
        return len(read_coco(ann).get("annotations", []))
    return len(_csv_records(ann))
