"""Detection data: the container of clean tables, the train/test split, and the dataset folder on disk.

Plain pandas, no Dagster. Every input box ends in exactly one place: ``boxes`` (clean, clipped to
the image, with a contiguous ``label``) or ``quarantine`` (with a reason code), so counts can be
asserted. Labels are 1..K in source category-id order (0 is background, as torchvision expects) and
are stored in ``label_map.json`` so that a reload with the stored map never shifts them. Reading a
source folder (COCO json or CSV) is in ``detection.sources``, the checks both formats share in
``detection.cleaning``.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import pandas as pd

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
