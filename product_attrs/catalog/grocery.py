"""The Grocery Store Dataset as a second catalog: store photos with fine/coarse labels, plus a gallery.

The list files and ``classes.csv`` are parsed in ``catalog.grocery_layout``; this module ingests what
they reference. The photos go through the same cleaning as the fashion catalog (every file decoded once,
non-RGB copied to RGB PNG, broken or missing quarantined with a reason), into their own folder, so that
``clean + quarantined == non-blank list lines`` always; the products' iconic images become the gallery.
"""

from __future__ import annotations

import argparse
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import pandas as pd

from product_attrs.catalog.clean import CATALOG_SOURCE, conversion_error, needs_conversion, write_rgb_copy
from product_attrs.catalog.grocery_layout import (
    LIST_FILES,
    GroceryFormatError,
    _quarantine_row,
    parse_grocery,
)
from product_attrs.catalog.images import ManifestResult, build_listed_manifest
from product_attrs.catalog.ingest import CatalogFiles
from product_attrs.catalog.splits import data_version
from product_attrs.catalog.styles import QUARANTINE_COLUMNS
from product_attrs.io import write_json, write_parquet, write_text

GALLERY_SOURCE = "gallery"
SUBSET = "all"  # one subset: the classifier's phase 1 ('top' rows) trains on every photo
LABEL_COLUMNS = ("fine_label", "coarse_label")
IMAGE_COLUMNS = ["image_path", "image_sha1", "width", "height", "source_mode", "converted"]


@dataclass(frozen=True)
class GroceryFiles(CatalogFiles):
    """The fashion catalog's file names, plus the gallery."""

    @property
    def gallery(self) -> Path:
        return self.out_dir / "gallery.parquet"


@dataclass
class ImageResult:
    clean: pd.DataFrame  # the input rows that have a usable image, plus IMAGE_COLUMNS
    quarantine: pd.DataFrame
    n_converted: int


def _rgb_copy_path(rgb_dir: Path, rel: str, sha1: str) -> Path:
    """Mirrors the source folders; the sha1 in the name makes a changed file get a new copy."""
    p = PurePosixPath(rel)
    return rgb_dir / p.parent / f"{p.stem}-{sha1[:12]}.png"


def attach_images(
    rows: pd.DataFrame, key: str, source: str, manifest: ManifestResult, root: Path, rgb_dir: Path
) -> ImageResult:
    """Join rows to their decoded file by ``relative_path``: quarantine the broken, RGB-copy the rest."""
    by_name = {str(r["file_name"]): r for r in manifest.manifest.to_dict("records")}
    missing = set(manifest.missing)
    clean: list[dict] = []
    quarantine: list[dict] = []
    n_converted = 0
    for row in rows.to_dict("records"):
        rel = row["relative_path"]
        record_id = str(row[key])
        if pd.isna(rel):
            quarantine.append(_quarantine_row(source, record_id, "missing_image", "no usable image path"))
            continue
        if rel in missing or rel not in by_name:
            detail = f"{rel}: no such file in {root}"
            quarantine.append(_quarantine_row(source, record_id, "missing_image", detail))
            continue
        m = by_name[rel]
        if pd.notna(m["error"]):
            reason, _, detail = str(m["error"]).partition(": ")
            quarantine.append(_quarantine_row(source, record_id, reason, f"{rel}: {detail}"))
            continue
        image_path, width, height = str(root / rel), int(m["width"]), int(m["height"])
        orientation = None if pd.isna(m["exif_orientation"]) else int(m["exif_orientation"])
        convert = needs_conversion(m["mode"], orientation)
        if convert:
            dst = _rgb_copy_path(rgb_dir, rel, str(m["sha1"]))
            dst.parent.mkdir(parents=True, exist_ok=True)
            try:
                width, height = write_rgb_copy(root / rel, dst)
            except Exception as exc:  # noqa: BLE001 - file changed since the manifest, or decoder failed
                reason, _, detail = conversion_error(exc).partition(": ")
                quarantine.append(_quarantine_row(source, record_id, reason, f"{rel}: {detail}"))
                continue
            image_path = str(dst)
            n_converted += 1
        clean.append(
            {
                **row,
                "image_path": image_path,
                "image_sha1": m["sha1"],
                "width": width,
                "height": height,
                "source_mode": m["mode"],
                "converted": convert,
            }
        )
    frame = pd.DataFrame(clean, columns=[*rows.columns, *IMAGE_COLUMNS]).astype(rows.dtypes.to_dict())
    frame = frame.astype(
        {
            "image_path": "string",
            "image_sha1": "string",
            "width": "Int64",
            "height": "Int64",
            "source_mode": "string",
            "converted": bool,
        }
    )
    return ImageResult(frame, pd.DataFrame(quarantine, columns=QUARANTINE_COLUMNS), n_converted)


def grocery_label_maps(catalog: pd.DataFrame, gallery: pd.DataFrame) -> dict[str, list[str]]:
    """Sorted names over photos and the whole gallery: a product with only an iconic image gets an index."""
    return {c: sorted({str(v) for v in pd.concat([catalog[c], gallery[c]]).dropna()}) for c in LABEL_COLUMNS}


def grocery_data_version(
    catalog: pd.DataFrame, gallery: pd.DataFrame, label_maps: dict[str, list[str]]
) -> str:
    """``splits.data_version`` of the photos and of the gallery, with the label maps: what a model sees."""
    digest = hashlib.sha256()
    digest.update(data_version(catalog).encode())
    digest.update(data_version(gallery.rename(columns={"product_id": "id"})).encode())
    digest.update(json.dumps(label_maps, sort_keys=True).encode())
    return digest.hexdigest()[:16]


def _previous_manifest(files: GroceryFiles, root: Path) -> pd.DataFrame | None:
    """The last run's manifest, only if it describes the same source folder."""
    if not (files.manifest.exists() and files.manifest_source.exists()):
        return None
    if json.loads(files.manifest_source.read_text()).get("root") != str(root):
        return None
    return pd.read_parquet(files.manifest)


def ingest_grocery(root: Path, out_dir: Path, workers: int = 1) -> dict[str, int]:
    """Parse, decode every referenced image once (incrementally), clean, and write the tables to ``out_dir``.

    Counts: ``lines`` (non-blank list lines) == ``clean`` + ``quarantined`` (bad lines + bad images).
    """
    root = Path(root).resolve()
    files = GroceryFiles(Path(out_dir))
    parsed = parse_grocery(root)
    wanted = [*parsed.rows["relative_path"], *parsed.gallery["relative_path"].dropna()]
    manifest = build_listed_manifest(root, wanted, previous=_previous_manifest(files, root), workers=workers)
    write_parquet(manifest.manifest, files.manifest)
    write_json({"root": str(root)}, files.manifest_source)

    photos = attach_images(parsed.rows, "id", CATALOG_SOURCE, manifest, root, files.rgb_images)
    gallery = attach_images(parsed.gallery, "product_id", GALLERY_SOURCE, manifest, root, files.rgb_images)
    parts = (parsed.quarantine, photos.quarantine, parsed.classes_quarantine, gallery.quarantine)
    quarantine = pd.concat(
        [q for q in parts if len(q)] or [pd.DataFrame(columns=QUARANTINE_COLUMNS)], ignore_index=True
    ).astype("string")
    catalog = photos.clean
    splits = catalog.assign(subset=pd.Series(SUBSET, index=catalog.index, dtype="string"))
    label_maps = grocery_label_maps(catalog, parsed.gallery)
    version = grocery_data_version(catalog, gallery.clean, label_maps)

    write_parquet(catalog, files.catalog)
    write_parquet(quarantine, files.catalog_quarantine)
    write_parquet(splits, files.splits)
    write_parquet(gallery.clean, files.gallery)
    write_json(label_maps, files.label_maps)
    write_text(version + "\n", files.data_version)
    per_split = catalog["split"].value_counts()
    return {
        "lines": parsed.n_lines,
        "blank_lines": parsed.n_blank,
        "missing_list_files": len(parsed.missing_list_files),
        "rows": len(parsed.rows),
        "line_quarantined": len(parsed.quarantine),
        "image_quarantined": len(photos.quarantine),
        "quarantined": len(parsed.quarantine) + len(photos.quarantine),
        "clean": len(catalog),
        **{split: int(per_split.get(split, 0)) for split in LIST_FILES},
        "converted": photos.n_converted,
        "images_checked": manifest.n_checked,
        "images_reused": manifest.n_reused,
        "classes_quarantined": len(parsed.classes_quarantine),
        "gallery": len(gallery.clean),
        "gallery_quarantined": len(gallery.quarantine),
        "gallery_converted": gallery.n_converted,
        "fine_labels": len(label_maps["fine_label"]),
        "coarse_labels": len(label_maps["coarse_label"]),
    }


def main(argv: list[str] | None = None) -> int:
    """``python -m product_attrs.catalog.grocery ROOT OUT``: ingest and print the counts as JSON."""
    parser = argparse.ArgumentParser(description="Ingest a Grocery Store Dataset folder into OUT.")
    parser.add_argument("root", type=Path, help="folder with train.txt, val.txt, test.txt and classes.csv")
    parser.add_argument("out", type=Path, help="output folder (catalog.parquet, splits.parquet, ...)")
    parser.add_argument("--workers", type=int, default=1, help="processes decoding images")
    args = parser.parse_args(argv)
    try:
        counts = ingest_grocery(args.root, args.out, workers=args.workers)
    except GroceryFormatError as exc:
        parser.error(str(exc))
    print(json.dumps(counts, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
