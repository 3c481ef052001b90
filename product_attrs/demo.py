"""Make the embedded demo data appear when the pipeline points at it and it is not there yet.

So that materializing from an empty data folder works: only the *default* demo locations are filled in;
a user-given folder that is missing is an error, never silently replaced with synthetic data.
"""

from __future__ import annotations

from pathlib import Path

from product_attrs.settings import Settings

DEMO_SEED = 0


def _sizes(settings: Settings) -> tuple[int, int, int]:
    from product_attrs.sample_data.generate import SIZES

    if settings.demo_size not in SIZES:
        raise ValueError(f"PRODUCT_ATTRS_DEMO_SIZE must be one of {sorted(SIZES)}, not {settings.demo_size!r}")
    return SIZES[settings.demo_size]


class MissingInputError(FileNotFoundError):
    """A configured input folder does not exist."""


def ensure_catalog(settings: Settings) -> Path:
    target = settings.catalog_dir
    if (target / "styles.csv").exists():
        return target
    if target == settings.demo_dir / "catalog":
        from product_attrs.sample_data.catalog import generate_catalog

        generate_catalog(target, n_products=_sizes(settings)[0], seed=DEMO_SEED)
        return target
    raise MissingInputError(
        f"no styles.csv in {target} (set by PRODUCT_ATTRS_CATALOG_DIR): point it at a folder with "
        "styles.csv and images/, or unset it to use the generated demo catalog"
    )


def ensure_shelves(settings: Settings) -> Path:
    target = settings.detection_dir
    if target.exists() and any(target.iterdir()):
        return target
    if target == settings.demo_dir / "shelves":
        from product_attrs.sample_data.shelves import generate_shelves

        generate_shelves(target, n_images=_sizes(settings)[1], seed=DEMO_SEED)
        return target
    raise MissingInputError(
        f"detection folder {target} (set by PRODUCT_ATTRS_DETECTION_DIR) is missing or empty: point it at "
        "a COCO json or CSV boxes with images/, or unset it to use the generated shelf scenes"
    )


def ensure_interactions(settings: Settings) -> Path:
    target = settings.interactions_path
    if target.exists():
        return target
    if target == settings.demo_dir / "interactions":
        from product_attrs.sample_data.interactions import generate_interactions

        styles = ensure_catalog(settings) / "styles.csv"
        generate_interactions(styles, target, n_customers=_sizes(settings)[2], seed=DEMO_SEED)
        return target
    raise MissingInputError(
        f"no interactions at {target} (set by PRODUCT_ATTRS_INTERACTIONS): point it at a CSV/Parquet file "
        "or folder of them, or unset it to use the generated demo events"
    )
