"""The analysts' shape of the catalog and quarantine tables."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from product_attrs.catalog.styles import QUARANTINE_COLUMNS

CATALOG_TABLE_COLUMNS = [
    "id",
    "gender",
    "master_category",
    "sub_category",
    "article_type",
    "base_colour",
    "season",
    "year",
    "usage",
    "product_display_name",
    "image_path",
    "split",
    "subset",
]


def catalog_table(splits: pd.DataFrame) -> pd.DataFrame:
    return splits[CATALOG_TABLE_COLUMNS].sort_values("id", ignore_index=True)


def quarantine_files(settings) -> list[Path]:
    """Every step's quarantine file, in pipeline order (catalog, detection, extraction batches)."""
    catalog = settings.catalog_out_dir
    extraction = sorted((settings.data_dir / "extraction").glob("*.quarantine.parquet"))
    return [
        catalog / "styles_quarantine.parquet",
        catalog / "catalog_quarantine.parquet",
        settings.detection_out_dir / "quarantine.parquet",
        *extraction,
    ]


def quarantine_table(parquet_files: list[Path]) -> pd.DataFrame:
    """Every quarantined record, from whichever steps have run (absent files are skipped)."""
    parts = [pd.read_parquet(p) for p in parquet_files if p.exists()]
    parts = [p[QUARANTINE_COLUMNS] for p in parts if len(p)]
    if not parts:
        return pd.DataFrame({c: pd.Series(dtype="string") for c in QUARANTINE_COLUMNS})
    return pd.concat(parts, ignore_index=True).astype("string")
