"""Detection data: load COCO json or SKU-110K-style CSV boxes into clean tables plus a quarantine.

Plain pandas/PIL, no Dagster. Every input box ends in exactly one place: ``boxes`` (clean, clipped to
the image, with a contiguous ``label``) or ``quarantine`` (with a reason code), so counts can be
asserted. Labels are 1..K in source category-id order (0 is background, as torchvision expects) and
are stored in ``label_map.json`` so that a reload with the stored map never shifts them.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import math
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import pandas as pd
from PIL import Image

log = logging.getLogger(__name__)

SOURCE = "detection"
DEFAULT_TEST_FRACTION = 0.2
SPLIT_SALT = "product_attrs.detection.split.v1"

IMAGE_COLUMNS = {
    "image_id": "int64",
    "file_name": "object",
    "file_path": "object",
    "width": "int64",
    "height": "int64",
    "n_boxes": "int64",
    "split": "object",
    "size_mismatch": "bool",
}
BOX_COLUMNS = {
    "box_id": "int64",
    "image_id": "int64",
    "x1": "float64",
    "y1": "float64",
    "x2": "float64",
    "y2": "float64",
    "category_id": "int64",
    "label": "int64",
    "category_name": "object",
    "iscrowd": "bool",
    "clipped": "bool",
}
QUARANTINE_COLUMNS = {"source": "object", "record_id": "object", "reason": "object", "detail": "object"}

# Quarantine record ids are prefixed so that box and image records can be told apart without an
# extra column (the quarantine schema is shared with the other domains).
BOX_PREFIX = "box:"
IMAGE_PREFIX = "image:"


def _frame(rows: list[dict[str, Any]], columns: dict[str, str]) -> pd.DataFrame:
    """A DataFrame with fixed columns and dtypes, also when there are no rows."""
    df = pd.DataFrame(rows, columns=list(columns))
    return df.astype(columns) if len(df) else pd.DataFrame({c: pd.Series(dtype=t) for c, t in columns.items()})


@dataclass
class DetectionData:
    """Clean images and boxes, what was rejected and why, and the label map that fixes labels."""

    images: pd.DataFrame
    boxes: pd.DataFrame
    quarantine: pd.DataFrame
    label_map: list[dict[str, Any]]
    n_input_images: int = 0
    n_input_boxes: int = 0
    source: str = ""
    test_fraction: float = DEFAULT_TEST_FRACTION
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        """K, the number of object classes (the model needs K + 1 with background)."""
        return len(self.label_map)

    @property
    def n_quarantined_boxes(self) -> int:
        return int(self.quarantine["record_id"].str.startswith(BOX_PREFIX).sum())

    @property
    def n_quarantined_images(self) -> int:
        return int(self.quarantine["record_id"].str.startswith(IMAGE_PREFIX).sum())

    def label_names(self) -> dict[int, str]:
        return {int(m["label"]): str(m["name"]) for m in self.label_map}

    def data_version(self) -> str:
        """A content hash of what a model would train on (tables, label map, image file sizes)."""
        h = hashlib.sha256()
        imgs = self.images.sort_values("image_id")
        for r in imgs.itertuples(index=False):
            size = os.path.getsize(r.file_path) if os.path.exists(r.file_path) else -1
            h.update(f"{r.image_id}|{r.file_name}|{r.width}|{r.height}|{r.split}|{size}\n".encode())
        cols = ["box_id", "image_id", "x1", "y1", "x2", "y2", "label", "iscrowd"]
        for r in self.boxes.sort_values("box_id")[cols].itertuples(index=False):
            h.update(("|".join(repr(v) for v in r) + "\n").encode())
        h.update(json.dumps(self.label_map, sort_keys=True).encode())
        return h.hexdigest()[:16]

    def summary(self) -> dict[str, Any]:
        split_images = self.images["split"].value_counts().to_dict()
        merged = self.boxes.merge(self.images[["image_id", "split"]], on="image_id", how="left")
        split_boxes = merged["split"].value_counts().to_dict()
        return {
            "n_input_images": self.n_input_images,
            "n_input_boxes": self.n_input_boxes,
            "n_images": len(self.images),
            "n_boxes": len(self.boxes),
            "n_crowd_boxes": int(self.boxes["iscrowd"].sum()),
            "n_clipped_boxes": int(self.boxes["clipped"].sum()),
            "n_negative_images": int((self.images["n_boxes"] == 0).sum()),
            "n_quarantine": len(self.quarantine),
            "n_quarantined_boxes": self.n_quarantined_boxes,
            "n_quarantined_images": self.n_quarantined_images,
            "images_per_split": {k: int(split_images.get(k, 0)) for k in ("train", "test")},
            "boxes_per_split": {k: int(split_boxes.get(k, 0)) for k in ("train", "test")},
            "num_classes": self.num_classes,
            "test_fraction": self.test_fraction,
            "source": self.source,
        }


# --------------------------------------------------------------------------------------------- split


def split_of(file_name: str, test_fraction: float = DEFAULT_TEST_FRACTION) -> str:
    """'train' or 'test' from a stable hash of the file name, independent of the other images."""
    digest = hashlib.sha1(f"{SPLIT_SALT}|{file_name}".encode()).digest()
    u = int.from_bytes(digest[:8], "big") / 2**64
    return "test" if u < test_fraction else "train"


def assign_splits(file_names: Iterable[str], test_fraction: float = DEFAULT_TEST_FRACTION) -> list[str]:
    """Hash split; with >= 2 images neither split is left empty (the extreme-hash image moves)."""
    names = list(file_names)
    splits = [split_of(n, test_fraction) for n in names]
    if len(names) >= 2 and 0.0 < test_fraction < 1.0:
        keys = [hashlib.sha1(f"{SPLIT_SALT}|{n}".encode()).hexdigest() for n in names]
        if "test" not in splits:
            splits[min(range(len(names)), key=keys.__getitem__)] = "test"
        elif "train" not in splits:
            splits[max(range(len(names)), key=keys.__getitem__)] = "train"
    return splits


# ----------------------------------------------------------------------------------------- images


def probe_image(path: Path) -> tuple[int, int] | str:
    """(width, height) of a readable image, else a reason code; decodes at reduced scale to be cheap."""
    if not path.is_file():
        return "missing_image"
    try:
        with Image.open(path) as im:
            size = im.size
            im.draft("RGB", (max(1, size[0] // 8), max(1, size[1] // 8)))  # JPEG: decode 1/8 scale
            im.load()
        return int(size[0]), int(size[1])
    except Exception:  # noqa: BLE001 - any decoder failure means the file cannot be trained on
        return "unreadable_image"


def _probe_all(paths: list[Path]) -> list[tuple[int, int] | str]:
    workers = max(1, min(8, os.cpu_count() or 1))
    with ThreadPoolExecutor(workers) as pool:  # PIL decoding releases the GIL
        return list(pool.map(probe_image, paths))


# ------------------------------------------------------------------------------------------ boxes


def _clip_box(
    x1: float, y1: float, x2: float, y2: float, width: int, height: int
) -> tuple[tuple[float, float, float, float], bool] | str:
    """Clip xyxy to the image; returns ((x1,y1,x2,y2), clipped) or a reason code."""
    vals = (x1, y1, x2, y2)
    if not all(isinstance(v, (int, float)) and math.isfinite(v) for v in vals):
        return "invalid_coordinates"
    c = (min(max(x1, 0.0), width), min(max(y1, 0.0), height), min(max(x2, 0.0), width), min(max(y2, 0.0), height))
    if c[2] - c[0] <= 0 or c[3] - c[1] <= 0:
        return "degenerate_box"
    return tuple(float(v) for v in c), any(abs(a - b) > 1e-9 for a, b in zip(c, vals))  # type: ignore[return-value]


def _to_float(v: Any) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return float("nan")


def _build_label_map(
    categories: list[tuple[int, str]], existing: list[dict[str, Any]] | None
) -> list[dict[str, Any]]:
    """Labels 1..K in category-id order; categories already in `existing` keep their label."""
    out = [dict(m) for m in (existing or [])]
    known = {int(m["category_id"]) for m in out}
    next_label = max((int(m["label"]) for m in out), default=0) + 1
    for cid, name in sorted(categories):
        if cid not in known:
            out.append({"label": next_label, "category_id": int(cid), "name": str(name)})
            known.add(cid)
            next_label += 1
    return sorted(out, key=lambda m: m["label"])


@dataclass
class _RawImage:
    image_id: int
    file_name: str
    width: int | None
    height: int | None


@dataclass
class _RawBox:
    record_id: str  # quarantine id, "box:<id>"
    box_id: int | None
    image_id: int | None
    coords: tuple[float, float, float, float]  # xyxy, may be NaN
    category_id: int | None
    iscrowd: bool
    problem: tuple[str, str] | None = None  # (reason, detail) found while parsing


def _assemble(
    raw_images: list[_RawImage],
    raw_boxes: list[_RawBox],
    label_map: list[dict[str, Any]],
    images_dir: Path,
    quarantine: list[dict[str, str]],
    test_fraction: float,
    source: str,
    n_input_images: int,
) -> DetectionData:
    """Shared second half of both loaders: check files, clip boxes, split, account for everything."""

    def reject(record_id: str, reason: str, detail: str) -> None:
        quarantine.append({"source": SOURCE, "record_id": record_id, "reason": reason, "detail": detail})

    images_dir = images_dir.resolve()
    probes = _probe_all([images_dir / im.file_name for im in raw_images])
    good: dict[int, dict[str, Any]] = {}
    bad_images: dict[int, str] = {}
    for im, probe in zip(raw_images, probes):
        path = (images_dir / im.file_name).resolve()
        if isinstance(probe, str):
            bad_images[im.image_id] = probe
            reject(f"{IMAGE_PREFIX}{im.image_id}", probe, f"{im.file_name}: {'no such file' if probe == 'missing_image' else 'cannot be decoded'} ({path})")
            continue
        w, h = probe
        mismatch = (im.width, im.height) != (w, h) and im.width is not None
        if mismatch:
            log.warning("%s: annotated size %sx%s but file is %sx%s; using the file's", im.file_name, im.width, im.height, w, h)
        good[im.image_id] = {
            "image_id": im.image_id, "file_name": im.file_name, "file_path": str(path),
            "width": w, "height": h, "n_boxes": 0, "size_mismatch": bool(mismatch),
        }

    by_cid = {int(m["category_id"]): m for m in label_map}
    box_rows: list[dict[str, Any]] = []
    for b in raw_boxes:
        if b.problem is not None:
            reject(b.record_id, *b.problem)
            continue
        if b.image_id in bad_images:
            reject(b.record_id, bad_images[b.image_id], f"box of image {b.image_id}, whose file is {bad_images[b.image_id].replace('_image', '')}")
            continue
        if b.image_id not in good:
            reject(b.record_id, "unknown_image", f"image_id {b.image_id} is not in the image list")
            continue
        if b.category_id not in by_cid:
            reject(b.record_id, "unknown_category", f"category_id {b.category_id} is not in the categories")
            continue
        img = good[b.image_id]
        clipped = _clip_box(*b.coords, img["width"], img["height"])
        if isinstance(clipped, str):
            detail = f"xyxy={list(b.coords)} in a {img['width']}x{img['height']} image {img['file_name']}"
            reject(b.record_id, clipped, detail)
            continue
        (x1, y1, x2, y2), was_clipped = clipped
        cat = by_cid[b.category_id]
        box_rows.append({
            "box_id": b.box_id, "image_id": b.image_id, "x1": x1, "y1": y1, "x2": x2, "y2": y2,
            "category_id": b.category_id, "label": int(cat["label"]), "category_name": cat["name"],
            "iscrowd": b.iscrowd, "clipped": was_clipped,
        })
        img["n_boxes"] += 1

    image_rows = list(good.values())
    for row, split in zip(image_rows, assign_splits([r["file_name"] for r in image_rows], test_fraction)):
        row["split"] = split
    images = _frame(image_rows, IMAGE_COLUMNS).sort_values("image_id", kind="stable").reset_index(drop=True)
    boxes = _frame(box_rows, BOX_COLUMNS).sort_values(["image_id", "box_id"], kind="stable").reset_index(drop=True)
    data = DetectionData(
        images=images,
        boxes=boxes,
        quarantine=_frame(quarantine, QUARANTINE_COLUMNS),
        label_map=label_map,
        n_input_images=n_input_images,
        n_input_boxes=len(raw_boxes),
        source=source,
        test_fraction=test_fraction,
    )
    assert len(data.boxes) + data.n_quarantined_boxes == data.n_input_boxes, "a box was lost"
    return data


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
            reject(f"category:{c.get('id') if isinstance(c, dict) else c}", "bad_row", f"unusable category entry {c!r}")
    lmap = _build_label_map(categories, label_map)

    raw_images: list[_RawImage] = []
    seen_images: set[int] = set()
    raw_list = doc.get("images", [])
    for i, im in enumerate(raw_list):
        try:
            iid, fname = int(im["id"]), str(im["file_name"])
        except (KeyError, TypeError, ValueError):
            reject(f"{IMAGE_PREFIX}#{i}", "bad_row", f"image entry without usable id/file_name: {str(im)[:200]}")
            continue
        if iid in seen_images:
            reject(f"{IMAGE_PREFIX}{iid}", "duplicate_id", f"image id {iid} listed again ({fname})")
            continue
        seen_images.add(iid)
        w, h = im.get("width"), im.get("height")
        raw_images.append(_RawImage(iid, fname, int(w) if w is not None else None, int(h) if h is not None else None))

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
            raw_boxes.append(_RawBox(record, None, None, (math.nan,) * 4, None, False, ("bad_row", f"unusable annotation ({exc}): {str(a)[:200]}")))
            continue
        x, y, w, h = (_to_float(v) for v in bbox)
        problem = ("duplicate_id", f"annotation id {bid} appears again") if bid in seen_boxes else None
        seen_boxes.add(bid)
        raw_boxes.append(_RawBox(record, bid, image_id, (x, y, x + w, y + h), cid, bool(a.get("iscrowd", 0)), problem))

    return _assemble(raw_images, raw_boxes, lmap, Path(images_dir), quarantine, test_fraction,
                     str(annotations_json.resolve()), len(raw_list))


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
            raw_boxes.append(_RawBox(record, i, None, (math.nan,) * 4, None, False, ("bad_row", f"expected {len(CSV_FIELDS)} fields, got {len(r)}: {','.join(r)[:200]}")))
            continue
        name = r[0].strip()
        coords = tuple(_to_float(v) for v in r[1:5])
        raw_boxes.append(_RawBox(record, i, image_id_of[name], coords, cid_of[r[5].strip()], False))  # type: ignore[arg-type]

    return _assemble(raw_images, raw_boxes, lmap, Path(images_dir), quarantine, test_fraction,
                     str(csv_path.resolve()), len(raw_images))


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


# ------------------------------------------------------------------------------------- on disk

FILES = ("images.parquet", "boxes.parquet", "quarantine.parquet", "label_map.json", "dataset.json")


def _atomic_write(path: Path, write: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    write(tmp)
    os.replace(tmp, path)  # readers (the warehouse) never see a half-written file


def write_detection_dataset(data: DetectionData, out_dir: Path) -> dict[str, Path]:
    """Write the tables as Parquet plus label_map.json and dataset.json (counts and data version)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {name: out_dir / name for name in FILES}
    _atomic_write(paths["images.parquet"], lambda p: data.images.to_parquet(p, index=False))
    _atomic_write(paths["boxes.parquet"], lambda p: data.boxes.to_parquet(p, index=False))
    _atomic_write(paths["quarantine.parquet"], lambda p: data.quarantine.to_parquet(p, index=False))
    _atomic_write(paths["label_map.json"], lambda p: p.write_text(json.dumps(data.label_map, indent=2)))
    meta = {**data.summary(), "data_version": data.data_version(), "extra": data.extra}
    _atomic_write(paths["dataset.json"], lambda p: p.write_text(json.dumps(meta, indent=2)))
    return paths


def read_label_map(out_dir: Path) -> list[dict[str, Any]] | None:
    """The stored label map of a dataset folder, or None when there is none yet."""
    p = Path(out_dir) / "label_map.json"
    return json.loads(p.read_text()) if p.is_file() else None


def read_detection_dataset(out_dir: Path) -> DetectionData:
    """Read back what `write_detection_dataset` wrote."""
    out_dir = Path(out_dir)
    meta_path = out_dir / "dataset.json"
    meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
    return DetectionData(
        images=pd.read_parquet(out_dir / "images.parquet").astype(IMAGE_COLUMNS),
        boxes=pd.read_parquet(out_dir / "boxes.parquet").astype(BOX_COLUMNS),
        quarantine=pd.read_parquet(out_dir / "quarantine.parquet").astype(QUARANTINE_COLUMNS),
        label_map=json.loads((out_dir / "label_map.json").read_text()),
        n_input_images=int(meta.get("n_input_images", 0)),
        n_input_boxes=int(meta.get("n_input_boxes", 0)),
        source=str(meta.get("source", "")),
        test_fraction=float(meta.get("test_fraction", DEFAULT_TEST_FRACTION)),
        extra=dict(meta.get("extra", {})),
    )


def count_source_boxes(folder: Path) -> int:
    """Boxes in a source folder's annotation file, counted independently of the loaders (for checks)."""
    ann = find_annotations(Path(folder))
    if ann.suffix.lower() == ".json":
        return len(json.loads(ann.read_text()).get("annotations", []))
    with ann.open(newline="") as f:
        rows = [r for r in csv.reader(f) if r and any(cell.strip() for cell in r)]
    has_header = bool(rows) and not _is_number(rows[0][1] if len(rows[0]) > 1 else "")
    return len(rows) - int(has_header)
