"""Make the embedded demo data appear when the pipeline points at it and it is not there yet.

So that materializing from an empty data folder works: only the *default* demo locations are filled in;
a user-given folder that is missing is an error, never silently replaced with synthetic data.
"""

from __future__ import annotations

from collections.abc import Callable
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


def _ensure(target: Path, ready: bool, default: Path, generate: Callable[[], object], hint: str) -> Path:
    """Generate the demo input at its default location only; a named folder that is missing is an error."""
    if ready:
        return target
    if target == default:
        generate()
        return target
    raise MissingInputError(hint)


def ensure_catalog(settings: Settings) -> Path:
    from product_attrs.sample_data.catalog import generate_catalog

    target = settings.catalog_dir
    return _ensure(
        target, (target / "styles.csv").exists(), settings.demo_dir / "catalog",
        lambda: generate_catalog(target, n_products=_sizes(settings)[0], seed=DEMO_SEED),
        f"no styles.csv in {target} (set by PRODUCT_ATTRS_CATALOG_DIR): point it at a folder with "
        "styles.csv and images/, or unset it to use the generated demo catalog",
    )


def ensure_shelves(settings: Settings) -> Path:
    from product_attrs.sample_data.shelves import generate_shelves

    target = settings.detection_dir
    return _ensure(
        target, target.exists() and any(target.iterdir()), settings.demo_dir / "shelves",
        lambda: generate_shelves(target, n_images=_sizes(settings)[1], seed=DEMO_SEED),
        f"detection folder {target} (set by PRODUCT_ATTRS_DETECTION_DIR) is missing or empty: point it at "
        "a COCO json or CSV boxes with images/, or unset it to use the generated shelf scenes",
    )


def ensure_interactions(settings: Settings) -> Path:
    from product_attrs.sample_data.interactions import generate_interactions

    target = settings.interactions_path
    return _ensure(
        target, target.exists(), settings.demo_dir / "interactions",
        lambda: generate_interactions(ensure_catalog(settings) / "styles.csv", target,
                                      n_customers=_sizes(settings)[2], seed=DEMO_SEED),
        f"no interactions at {target} (set by PRODUCT_ATTRS_INTERACTIONS): point it at a CSV/Parquet file "
        "or folder of them, or unset it to use the generated demo events",
    )
