"""The gallery: catalog images of each product, embedded by the recognizer, keyed by its primary label.

A new product needs only a gallery image and a re-embedding of the gallery, not a retraining. The
gallery can be the iconic (studio) image of each product, the catalog's own training photos, or both;
rows whose image cannot be read are returned as quarantine rows, never dropped silently.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import pandas as pd

from product_attrs.catalog.styles import QUARANTINE_COLUMNS
from product_attrs.classification.serve import Classifier, Served
from product_attrs.retrieval.index import GalleryIndex

GALLERY_SOURCES = ("iconic", "train_photos", "both")
GALLERY_SOURCE = "gallery_index"
#: The decoder's error types (`product_attrs.decode.open_image`) as the manifest's quarantine reasons.
_REASONS = {
    "NotARegularFile": "not_a_regular_file",
    "ImageTooLarge": "image_too_large",
    "DecodeTimeout": "transient_read_error",
    "MemoryError": "transient_read_error",
    "FileNotFoundError": "missing_image",
}


class GalleryInputError(FileNotFoundError):
    """The catalog folder lacks what the asked-for gallery source needs; the message says what to run."""


def gallery_rows(catalog_dir: Path, source: str, key: str) -> pd.DataFrame:
    """One row per gallery image: ``key`` (the label the recognizer's primary head predicts), image_path,
    image_sha1, ``gallery_source`` and whatever product columns the catalog has."""
    if source not in GALLERY_SOURCES:
        raise ValueError(f"gallery source must be one of {GALLERY_SOURCES}, not {source!r}")
    parts: list[pd.DataFrame] = []
    if source in ("iconic", "both"):
        path = catalog_dir / "gallery.parquet"
        if not path.exists():
            raise GalleryInputError(
                f"no gallery.parquet (iconic images) in {catalog_dir}: materialize the "
                "catalog with a gallery (grocery_catalog) or use gallery source 'train_photos'"
            )
        parts.append(pd.read_parquet(path).assign(gallery_source="iconic"))
    if source in ("train_photos", "both"):
        path = catalog_dir / "splits.parquet"
        if not path.exists():
            raise GalleryInputError(f"no splits.parquet in {catalog_dir}: materialize the catalog first")
        photos = pd.read_parquet(path)
        photos = photos[(photos["split"] == "train").fillna(False)]
        parts.append(photos.assign(gallery_source="train_photos"))
    rows = pd.concat(parts, ignore_index=True)
    if key not in rows.columns:
        raise GalleryInputError(
            f"gallery rows in {catalog_dir} have no column {key!r} (the recognizer's primary "
            f"head); columns: {list(rows.columns)}"
        )
    missing_key = rows[key].isna()
    if missing_key.any():
        raise GalleryInputError(f"{int(missing_key.sum())} gallery rows have no {key!r}")
    keep = [key, *[c for c in ("product_id", "id") if c in rows.columns and c != key]]
    extra = [c for c in rows.columns if c.endswith("_label") and c not in keep]
    extra += [c for c in ("description",) if c in rows.columns]
    cols = [*keep, *extra, "image_path", "image_sha1", "gallery_source"]
    out = rows[[c for c in cols if c in rows.columns]].copy()
    out[key] = out[key].astype(str)
    return out.reset_index(drop=True)


def build_gallery(
    classifier: Classifier,
    rows: pd.DataFrame,
    *,
    batch_size: int = 64,
    workers: int = 1,
    predict: Callable[[Sequence[str]], Served] | None = None,
) -> tuple[GalleryIndex, pd.DataFrame]:
    """Embed every gallery image; unreadable ones become quarantine rows. ``predict``: another engine's
    `predict_files` (a Ray actor pool, engines.ray_inference), same contract, same gallery."""
    key = classifier.heads[0]
    files = rows["image_path"].astype(str).tolist()
    if predict is None:
        done = classifier.predict_files(files, batch_size=batch_size, workers=workers)
    else:
        done = predict(files)
    ok = [i for i in range(len(rows)) if i not in done.errors]
    quarantine = pd.DataFrame(
        [
            {
                "source": GALLERY_SOURCE,
                "record_id": str(rows.loc[i, "image_path"]),
                "reason": _REASONS.get(msg.partition(":")[0], "unreadable_image"),
                "detail": msg,
            }
            for i, msg in sorted(done.errors.items())
        ],
        columns=QUARANTINE_COLUMNS,
    )
    items = rows.iloc[ok].reset_index(drop=True).assign(model_version=classifier.version)
    return GalleryIndex(done.embeddings[ok], items, key=key), quarantine


def gallery_table(index: GalleryIndex) -> pd.DataFrame:
    """The warehouse ``gallery`` table: the rows with their embedding (cast to FLOAT[dim] on publish)."""
    return index.items.assign(embedding=[row.tolist() for row in index.embeddings])
