"""Extraction over one batch of images (a partition), re-using what an earlier run already extracted.

A batch is the catalog (``catalog``, or a shard ``catalog-<i>-of-<n>`` so that a cluster can spread it),
or a folder dropped under ``<data>/incoming/<name>`` (``incoming-<name>``). A row is re-extracted only if
its image bytes (SHA-1) or the model versions changed, so a nightly run processes only what is new.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from product_attrs.catalog.images import product_id_from_name
from product_attrs.classification.serve import Classifier, Served
from product_attrs.extraction.batches import CATALOG_KEY, INCOMING_PREFIX, SHARD, UnknownBatchError

IMAGE_EXT = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"}
ITEM_COLUMNS = ["product_id", "image_key", "image_path", "image_sha1"]


def file_sha1(path: str | Path) -> str:
    return hashlib.sha1(Path(path).read_bytes()).hexdigest()


def attributes_frame(
    items: pd.DataFrame,
    classifier: Classifier,
    served: Served,
    objects: list[list[dict[str, Any]]] | None = None,
    detector_version: str | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The ``product_attributes`` rows for ``items`` (columns product_id, image_key, image_path, image_sha1)
    and the quarantine rows of images that could not be read."""
    errors = served.errors
    ok = np.array([i not in errors for i in range(len(items))], dtype=bool)
    out = items.reset_index(drop=True).copy()
    for h in classifier.heads:
        out[h] = pd.array(classifier.labels(served, h), dtype="string")
        out[f"{h}_confidence"] = served.predictions[f"{h}__confidence"].astype("float32")
    out["embedding"] = [row.tolist() for row in served.embeddings]
    if objects is not None:
        out["objects"] = [json.dumps(o) for o in objects]
        out["n_objects"] = [len(o) for o in objects]
    else:
        out["objects"] = "[]"
        out["n_objects"] = 0
    out["classifier_version"] = classifier.version
    out["detector_version"] = detector_version
    quarantine = pd.DataFrame(
        {
            "source": "extraction",
            "record_id": [str(out.loc[i, "image_key"]) for i in sorted(errors)],
            "reason": "unreadable_image",
            "detail": [errors[i] for i in sorted(errors)],
        },
        columns=["source", "record_id", "reason", "detail"],
    )
    return out[ok].reset_index(drop=True), quarantine


def items_for_batch(key: str, splits_path: Path, incoming_dir: Path) -> pd.DataFrame:
    """The images of a batch: product_id (nullable), image_key (unique), image_path, image_sha1."""
    shard = SHARD.match(key)
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
        files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXT)
        return pd.DataFrame(
            {
                "product_id": pd.array([product_id_from_name(p.name) for p in files], dtype="Int64"),
                "image_key": [f"{folder.name}/{p.relative_to(folder)}" for p in files],
                "image_path": [str(p) for p in files],
                "image_sha1": [file_sha1(p) for p in files],
            },
            columns=ITEM_COLUMNS,
        )
    raise UnknownBatchError(
        f"unknown batch {key!r}: expected 'catalog', 'catalog-<i>-of-<n>' or 'incoming-<name>'"
    )


@dataclass
class ExtractionResult:
    attributes: pd.DataFrame
    quarantine: pd.DataFrame
    n_new: int
    n_reused: int
    seconds: dict[str, float] = field(default_factory=dict)


def extract_batch(
    items: pd.DataFrame,
    classifier: Classifier,
    detector=None,
    previous: pd.DataFrame | None = None,
    *,
    batch_size: int = 128,
    workers: int = 1,
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
        key = items[["image_key", "image_sha1"]].merge(
            prev[["image_key", "image_sha1"]], how="left", indicator=True
        )
        hit = (key["_merge"] == "both").to_numpy()
        reuse = prev.merge(items.loc[hit, ["image_key", "image_sha1"]], on=["image_key", "image_sha1"])
        todo = items.loc[~hit].reset_index(drop=True)

    seconds: dict[str, float] = {}
    t = time.perf_counter()
    paths = todo["image_path"].tolist()
    served = classifier.predict_files(paths, batch_size=batch_size, workers=workers)
    errors = served.errors
    seconds["classify"] = time.perf_counter() - t
    objects = None
    if detector is not None and len(todo):
        t = time.perf_counter()
        good = [i for i in range(len(paths)) if i not in errors]
        det = detector.detect(
            [paths[i] for i in good], batch_size=detector_batch_size, score_thresh=score_threshold
        )
        per_image: list[list[dict]] = [[] for _ in paths]
        for r in det.itertuples(index=False):
            per_image[good[r.image]].append(
                {
                    "label": r.category_name,
                    "score": round(float(r.score), 4),
                    "box": [round(float(v), 1) for v in (r.x1, r.y1, r.x2, r.y2)],
                }
            )
        objects = per_image
        seconds["detect"] = time.perf_counter() - t
    fresh, quarantine = attributes_frame(todo, classifier, served, objects, detector_version)
    fresh["extracted_at"] = pd.Timestamp.now(tz="UTC")
    parts = [p for p in (reuse, fresh) if len(p)]
    attributes = pd.concat(parts, ignore_index=True) if parts else fresh
    if len(attributes):
        attributes = attributes.sort_values("image_key", ignore_index=True)
    return ExtractionResult(
        attributes, quarantine, n_new=len(todo) - len(errors), n_reused=len(reuse), seconds=seconds
    )


def embeddings_matrix(attributes: pd.DataFrame) -> np.ndarray:
    return np.asarray(attributes["embedding"].tolist(), dtype=np.float32)
