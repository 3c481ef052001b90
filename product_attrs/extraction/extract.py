"""Extraction over one batch of images (a partition), re-using what an earlier run already extracted.

A batch is the catalog (``catalog``, or a shard ``catalog-<i>-of-<n>`` so that a cluster can spread it),
or a folder dropped under ``<data>/incoming/<name>`` (``incoming-<name>``). A row is re-extracted only if
its image bytes (SHA-1) or the model versions changed, so a nightly run processes only what is new.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from product_attrs.catalog.images import product_id_from_name
from product_attrs.extraction.batch import ClassifierBundle, attributes_frame, classify_images, file_sha1

CATALOG_KEY = "catalog"
INCOMING_PREFIX = "incoming-"
_SHARD = re.compile(r"^catalog-(\d+)-of-(\d+)$")
_IMAGE_EXT = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"}
ITEM_COLUMNS = ["product_id", "image_key", "image_path", "image_sha1"]


class UnknownBatchError(ValueError):
    """A partition key that names no batch."""


def incoming_key(folder_name: str) -> str:
    return f"{INCOMING_PREFIX}{folder_name}"


def catalog_shard_keys(n: int) -> list[str]:
    return [CATALOG_KEY] if n <= 1 else [f"catalog-{i}-of-{n}" for i in range(n)]


def items_for_batch(key: str, splits_path: Path, incoming_dir: Path) -> pd.DataFrame:
    """The images of a batch: product_id (nullable), image_key (unique), image_path, image_sha1."""
    shard = _SHARD.match(key)
    if key == CATALOG_KEY or shard:
        cat = pd.read_parquet(splits_path, columns=["id", "image_path", "image_sha1"])
        if shard:
            i, n = int(shard.group(1)), int(shard.group(2))
            if not 0 <= i < n:
                raise UnknownBatchError(f"{key}: shard index must be in 0..{n - 1}")
            cat = cat[cat["id"] % n == i]
        return pd.DataFrame(
            {
                "product_id": cat["id"].astype("Int64"),
                "image_key": cat["id"].astype(str),
                "image_path": cat["image_path"].astype(str),
                "image_sha1": cat["image_sha1"].astype(str),
            }
        ).reset_index(drop=True)
    if key.startswith(INCOMING_PREFIX):
        folder = incoming_dir / key.removeprefix(INCOMING_PREFIX)
        if not folder.is_dir():
            raise UnknownBatchError(f"{key}: no folder {folder}")
        files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in _IMAGE_EXT)
        return pd.DataFrame(
            {
                "product_id": pd.array([product_id_from_name(p.name) for p in files], dtype="Int64"),
                "image_key": [f"{folder.name}/{p.relative_to(folder)}" for p in files],
                "image_path": [str(p) for p in files],
                "image_sha1": [file_sha1(p) for p in files],
            },
            columns=ITEM_COLUMNS,
        )
    raise UnknownBatchError(f"unknown batch {key!r}: expected 'catalog', 'catalog-<i>-of-<n>' or 'incoming-<name>'")


@dataclass
class ExtractionResult:
    attributes: pd.DataFrame
    quarantine: pd.DataFrame
    n_new: int
    n_reused: int
    seconds: dict[str, float] = field(default_factory=dict)


def extract_batch(
    items: pd.DataFrame,
    classifier: ClassifierBundle,
    detector=None,
    previous: pd.DataFrame | None = None,
    *,
    batch_size: int = 128,
    workers: int = 1,
    device: str = "cpu",
    detector_batch_size: int = 8,
    score_threshold: float = 0.5,
) -> ExtractionResult:
    """Classify (and detect in) the images of ``items`` not already extracted with the same models."""
    detector_version = getattr(detector, "version", None) if detector is not None else None
    reuse = pd.DataFrame()
    todo = items
    if previous is not None and len(previous):
        same_models = (previous["classifier_version"] == classifier.version) & (
            previous["detector_version"].fillna("") == (detector_version or "")
        )
        prev = previous[same_models]
        key = items[["image_key", "image_sha1"]].merge(prev[["image_key", "image_sha1"]], how="left", indicator=True)
        hit = (key["_merge"] == "both").to_numpy()
        reuse = prev.merge(items.loc[hit, ["image_key", "image_sha1"]], on=["image_key", "image_sha1"])
        todo = items.loc[~hit].reset_index(drop=True)

    seconds: dict[str, float] = {}
    t = time.perf_counter()
    paths = todo["image_path"].tolist()
    preds, emb, errors = classify_images(classifier, paths, batch_size=batch_size, workers=workers, device=device)
    seconds["classify"] = time.perf_counter() - t
    objects = None
    if detector is not None and len(todo):
        t = time.perf_counter()
        good = [i for i in range(len(paths)) if i not in errors]
        det = detector.detect([paths[i] for i in good], batch_size=detector_batch_size, score_thresh=score_threshold)
        per_image: list[list[dict]] = [[] for _ in paths]
        for r in det.itertuples(index=False):
            per_image[good[r.image]].append(
                {"label": r.category_name, "score": round(float(r.score), 4),
                 "box": [round(float(v), 1) for v in (r.x1, r.y1, r.x2, r.y2)]}
            )
        objects = per_image
        seconds["detect"] = time.perf_counter() - t
    fresh, quarantine = attributes_frame(todo, classifier, preds, emb, errors, objects, detector_version)
    fresh["extracted_at"] = pd.Timestamp.now(tz="UTC")
    parts = [p for p in (reuse, fresh) if len(p)]
    attributes = pd.concat(parts, ignore_index=True) if parts else fresh
    if len(attributes):
        attributes = attributes.sort_values("image_key", ignore_index=True)
    return ExtractionResult(attributes, quarantine, n_new=len(todo) - len(errors), n_reused=len(reuse), seconds=seconds)


def embeddings_matrix(attributes: pd.DataFrame) -> np.ndarray:
    return np.asarray(attributes["embedding"].tolist(), dtype=np.float32)
