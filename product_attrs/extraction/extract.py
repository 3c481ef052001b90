"""Extraction over one batch of images (a partition), re-using what an earlier run already extracted.

A batch is the catalog (``catalog``, or a shard ``catalog-<i>-of-<n>`` so that a cluster can spread it),
or a folder dropped under ``<data>/incoming/<name>`` (``incoming-<name>``). A row is re-extracted only if
its image bytes (SHA-1) or the model versions changed, so a nightly run processes only what is new.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from product_attrs.catalog.images import product_id_from_name
from product_attrs.classification.serve import Classifier, Served
from product_attrs.io import durable_write
from product_attrs.extraction.batches import (
    CATALOG_KEY,
    INCOMING_PREFIX,
    SHARD,
    UnknownBatchError,
    UnsafePartitionKey,
    check_key,
)
from product_attrs.paths import PathOutsideRoot, confine, open_regular

IMAGE_EXT = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"}
ITEM_COLUMNS = ["product_id", "image_key", "image_path", "image_sha1"]

#: How a batch's files become predictions: ``Classifier.predict_files`` in-process, or an engine's
#: (engines.ray_inference) with the same contract: one row per path, unreadable files as errors by position.
Predict = Callable[[Sequence[str]], Served]


def file_sha1(path: str | Path) -> str:
    """Streamed (a large file is not held in memory); a FIFO named like an image is refused, not waited on."""
    with open_regular(Path(path)) as handle:
        return hashlib.file_digest(handle, "sha1").hexdigest()  # pragma: no mutate - "SHA1" is the same


def batch_folder(key: str, incoming_dir: Path) -> Path:
    """The folder of an ``incoming-<name>`` batch, which must stay under ``incoming_dir`` (no symlink out)."""
    name = check_key(key).removeprefix(INCOMING_PREFIX)
    try:
        confine(incoming_dir, name)
    except PathOutsideRoot:
        raise UnsafePartitionKey(f"{key}: folder {name!r} leads outside the incoming folder") from None
    return Path(incoming_dir) / name


def batch_output(key: str, out_dir: Path, suffix: str = ".parquet") -> Path:
    """Where a batch's table is written: a file directly in ``out_dir``, whatever the key says."""
    try:
        path = confine(out_dir, f"{check_key(key)}{suffix}")
    except PathOutsideRoot:
        raise UnsafePartitionKey(f"{key}: its output would leave the extraction folder") from None
    if path.parent != Path(out_dir).resolve():
        raise UnsafePartitionKey(f"{key}: its output would leave the extraction folder")
    return path


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
        # The runner-up and the top-1/top-2 margin: what the review queue ranks by (NaN where an engine
        # did not compute them).
        if f"{h}__second" in served.predictions:
            second = served.predictions[f"{h}__second"]
            out[f"{h}_runner_up"] = pd.array(classifier.labels_of(h, second), dtype="string")
            margin = served.predictions[f"{h}__confidence"] - served.predictions[f"{h}__second_confidence"]
            out[f"{h}_margin"] = np.where(second >= 0, margin, np.nan).astype("float32")
        else:
            out[f"{h}_runner_up"] = pd.array([None] * len(out), dtype="string")
            out[f"{h}_margin"] = np.full(len(out), np.nan, np.float32)
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
    """The images of a batch: product_id (nullable), image_key (unique), image_path, image_sha1.
    A key that is not safe as a file name is refused (`UnsafePartitionKey`) before anything is read."""
    check_key(key)
    shard = SHARD.match(key)
    if key == CATALOG_KEY or shard:
        # pragma: no mutate start - the other columns would only cost memory: the items take these three
        cat = pd.read_parquet(splits_path, columns=["id", "image_path", "image_sha1"])
        # pragma: no mutate end
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
        folder = batch_folder(key, incoming_dir)
        if not folder.is_dir():
            raise UnknownBatchError(f"{key}: no folder {folder}")
        files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXT)
        return pd.DataFrame(
            {
                "product_id": pd.array([product_id_from_name(p.name) for p in files], dtype="Int64"),
                "image_key": [f"{key.removeprefix(INCOMING_PREFIX)}/{p.relative_to(folder)}" for p in files],
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
    predict: Predict | None = None,
) -> ExtractionResult:
    """Classify (and detect in) the images of ``items`` not already extracted with the same models.

    ``predict`` replaces the in-process loader (a Ray actor pool, say) while everything around it (re-use,
    detection, the frame, the quarantine) stays this one code path, so both engines give the same table."""
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
    if predict is None:
        served = classifier.predict_files(paths, batch_size=batch_size, workers=workers)
    else:
        served = predict(paths)
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
        for r in det.itertuples(index=False):  # pragma: no mutate - fields are read by name
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


#: Images classified, merged with their re-used rows and written per step: memory stays bounded by this
#: many rows (embeddings included) whatever the size of the batch.
CHUNK_ROWS = 2048


@dataclass
class ExtractionSummary:
    """What `extract_to_parquet` wrote, for the asset's metadata (the table itself stays on disk)."""

    rows: int
    quarantine: pd.DataFrame
    n_new: int
    n_reused: int
    chunks: int
    seconds: dict[str, float]
    #: value counts of the first head's labels over the whole batch
    counts: Counter
    preview: pd.DataFrame


def extract_to_parquet(
    items: pd.DataFrame,
    classifier: Classifier,
    detector,
    out_path: Path,
    *,
    chunk_rows: int = CHUNK_ROWS,
    preview_rows: int = 10,
    **options: Any,
) -> ExtractionSummary:
    """`extract_batch` over ``items`` in chunks of ``chunk_rows`` images taken in ``image_key`` order, each
    chunk written to ``out_path`` as it is done (a row group), so the table is never whole in memory.

    The rows already in ``out_path`` are re-used exactly as `extract_batch` would (read per chunk by key
    range: the file is sorted by ``image_key``, so each read touches its own row groups); the new file
    replaces the old one atomically once complete. The result equals ``extract_batch`` on all ``items``.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    chunk_rows = max(1, int(chunk_rows))
    position = {k: i for i, k in enumerate(items["image_key"])}
    ordered = items.sort_values("image_key", ignore_index=True)  # pragma: no mutate - chunks are renumbered
    previous = Path(out_path) if Path(out_path).is_file() else None
    head = classifier.heads[0]
    summary = ExtractionSummary(0, pd.DataFrame(), 0, 0, 0, {}, Counter(), pd.DataFrame())
    quarantines: list[pd.DataFrame] = []

    def write(tmp: Path) -> None:
        writer = None
        last = None
        try:
            for start in range(0, max(len(ordered), 1), chunk_rows):
                chunk = ordered.iloc[start : start + chunk_rows].reset_index(drop=True)
                prev = _previous_rows(previous, chunk["image_key"]) if previous is not None else None
                result = extract_batch(chunk, classifier, detector, prev, **options)
                last = result.attributes
                summary.chunks += 1
                summary.n_new += result.n_new
                summary.n_reused += result.n_reused
                for stage, sec in result.seconds.items():
                    summary.seconds[stage] = summary.seconds.get(stage, 0.0) + sec
                if len(result.quarantine):
                    quarantines.append(result.quarantine)
                if not len(last):
                    continue  # an empty frame has no column types to give the file
                summary.rows += len(last)
                # Rows written have a label (unreadable images are quarantined), a str already.
                summary.counts.update(last[head].dropna().astype(str))  # pragma: no mutate - see above
                if len(summary.preview) < preview_rows:
                    summary.preview = pd.concat([summary.preview, last.head(preview_rows)]).head(preview_rows)
                table = pa.Table.from_pandas(last, preserve_index=False)
                if writer is None:
                    writer = pq.ParquetWriter(tmp, table.schema)
                elif not table.schema.equals(writer.schema, check_metadata=False):
                    table = table.cast(writer.schema)
                writer.write_table(table, row_group_size=CHUNK_ROWS)
        finally:
            if writer is not None:
                writer.close()
        if writer is None:  # no row at all: the same empty table as before
            last.to_parquet(tmp, index=False)

    durable_write(Path(out_path), write)
    quarantine = pd.concat(quarantines, ignore_index=True) if quarantines else _empty_quarantine()
    summary.quarantine = quarantine.sort_values(
        "record_id", key=lambda ids: ids.map(position), ignore_index=True, kind="stable"
    )
    summary.preview = summary.preview.reset_index(drop=True)
    return summary


def _previous_rows(path: Path, keys: pd.Series) -> pd.DataFrame:
    """The rows of an earlier output whose ``image_key`` lies in the range of ``keys`` (streamed filter)."""
    import pyarrow.dataset as ds

    if not len(keys):
        return pd.DataFrame()
    field = ds.field("image_key")
    table = ds.dataset(path, format="parquet").to_table(filter=(field >= keys.min()) & (field <= keys.max()))
    return table.to_pandas()


def _empty_quarantine() -> pd.DataFrame:
    return pd.DataFrame(columns=["source", "record_id", "reason", "detail"])


def embeddings_matrix(attributes: pd.DataFrame) -> np.ndarray:
    return np.asarray(attributes["embedding"].tolist(), dtype=np.float32)
