"""The catalog's steps with their homes on disk: what the assets call and what the benchmark times.

Each step reads the previous step's files under ``out_dir`` (``<data>/catalog``), so a step can be
re-run alone and a person can open every intermediate table without Dagster.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from product_attrs.catalog.clean import CATALOG_SOURCE, CleanResult, clean_catalog
from product_attrs.catalog.images import ManifestResult, build_manifest
from product_attrs.catalog.splits import SplitResult, SplitRule, data_version, make_splits
from product_attrs.catalog.styles import ParsedStyles, parse_styles
from product_attrs.io import write_json, write_parquet, write_text


@dataclass(frozen=True)
class CatalogFiles:
    """Where each step keeps its output."""

    out_dir: Path

    @property
    def styles(self) -> Path:
        return self.out_dir / "styles.parquet"

    @property
    def styles_quarantine(self) -> Path:
        return self.out_dir / "styles_quarantine.parquet"

    @property
    def manifest(self) -> Path:
        return self.out_dir / "image_manifest.parquet"

    @property
    def manifest_source(self) -> Path:
        return self.out_dir / "image_manifest_source.json"

    @property
    def catalog(self) -> Path:
        return self.out_dir / "catalog.parquet"

    @property
    def catalog_quarantine(self) -> Path:
        return self.out_dir / "catalog_quarantine.parquet"

    @property
    def rgb_images(self) -> Path:
        return self.out_dir / "images_rgb"

    @property
    def splits(self) -> Path:
        return self.out_dir / "splits.parquet"

    @property
    def label_maps(self) -> Path:
        return self.out_dir / "label_maps.json"

    @property
    def data_version(self) -> Path:
        return self.out_dir / "data_version.txt"


def images_dir_of(catalog_dir: Path) -> Path:
    return catalog_dir / "images"


def step_parse_styles(catalog_dir: Path, files: CatalogFiles) -> ParsedStyles:
    parsed = parse_styles(catalog_dir / "styles.csv")
    write_parquet(parsed.rows, files.styles)
    write_parquet(parsed.quarantine, files.styles_quarantine)
    return parsed


def step_manifest(catalog_dir: Path, files: CatalogFiles, workers: int) -> ManifestResult:
    """Incremental: the previous manifest is reused only if it describes the same images folder."""
    images_dir = images_dir_of(catalog_dir).resolve()
    previous = None
    if files.manifest.exists() and files.manifest_source.exists():
        import json

        if json.loads(files.manifest_source.read_text()).get("images_dir") == str(images_dir):
            previous = pd.read_parquet(files.manifest)
    result = build_manifest(images_dir, previous=previous, workers=workers)
    write_parquet(result.manifest, files.manifest)
    write_json({"images_dir": str(images_dir)}, files.manifest_source)
    return result


def step_clean(catalog_dir: Path, files: CatalogFiles) -> CleanResult:
    rows = pd.read_parquet(files.styles)
    manifest = pd.read_parquet(files.manifest)
    result = clean_catalog(rows, manifest, images_dir_of(catalog_dir).resolve(), files.rgb_images)
    write_parquet(result.catalog, files.catalog)
    write_parquet(result.quarantine, files.catalog_quarantine)
    return result


def step_splits(files: CatalogFiles, rule: SplitRule = SplitRule()) -> tuple[SplitResult, str]:
    catalog = pd.read_parquet(files.catalog)
    result = make_splits(catalog, rule)
    version = data_version(catalog)
    write_parquet(result.splits, files.splits)
    write_json(result.label_maps, files.label_maps)
    write_json(result.top_classes, files.out_dir / "top_classes.json")
    write_text(version + "\n", files.data_version)
    return result, version


def ingest_catalog(
    catalog_dir: Path, out_dir: Path, workers: int = 1, rule: SplitRule = SplitRule()
) -> dict[str, int]:
    """All steps in order; returns the counts a person checks first."""
    files = CatalogFiles(out_dir)
    parsed = step_parse_styles(catalog_dir, files)
    manifest = step_manifest(catalog_dir, files, workers)
    clean = step_clean(catalog_dir, files)
    splits, _ = step_splits(files, rule)
    q = clean.quarantine
    return {
        "lines": parsed.n_lines,
        "rows": len(parsed.rows),
        "repaired": parsed.n_repaired,
        "styles_quarantined": len(parsed.quarantine),
        "images_checked": manifest.n_checked,
        "images_reused": manifest.n_reused,
        "clean": len(clean.catalog),
        "catalog_quarantined": int((q["source"] == CATALOG_SOURCE).sum()),
        "converted": clean.n_converted,
        "split_rows": len(splits.splits),
    }
