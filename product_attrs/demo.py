"""Make the embedded demo data appear when the pipeline points at it and it is not there yet.

So that materializing from an empty data folder works: only the *default* demo locations are filled in;
a user-given folder that is missing is an error, never silently replaced with synthetic data.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from product_attrs.settings import Settings

DEMO_SEED = 0
#: What counts as a photo in a recognition folder.
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


def _sizes(settings: Settings) -> tuple[int, int, int]:
    from product_attrs.sample_data.generate import SIZES

    if settings.demo_size not in SIZES:
        raise ValueError(
            f"PRODUCT_ATTRS_DEMO_SIZE must be one of {sorted(SIZES)}, not {settings.demo_size!r}"
        )
    return SIZES[settings.demo_size]


def _size_name(settings: Settings) -> str:
    """The demo size, "default" or "small", checked like the other generators check it."""
    _sizes(settings)
    return settings.demo_size


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
        target,
        (target / "styles.csv").exists(),
        settings.demo_dir / "catalog",
        lambda: generate_catalog(target, n_products=_sizes(settings)[0], seed=DEMO_SEED),
        f"no styles.csv in {target} (set by PRODUCT_ATTRS_CATALOG_DIR): point it at a folder with "
        "styles.csv and images/, or unset it to use the generated demo catalog",
    )


def ensure_shelves(settings: Settings) -> Path:
    from product_attrs.sample_data.shelves import generate_shelves

    target = settings.detection_dir
    return _ensure(
        target,
        target.exists() and any(target.iterdir()),
        settings.demo_dir / "shelves",
        lambda: generate_shelves(target, n_images=_sizes(settings)[1], seed=DEMO_SEED),
        f"detection folder {target} (set by PRODUCT_ATTRS_DETECTION_DIR) is missing or empty: point it at "
        "a COCO json or CSV boxes with images/, or unset it to use the generated shelf scenes",
    )


def ensure_interactions(settings: Settings) -> Path:
    from product_attrs.sample_data.interactions import generate_interactions

    target = settings.interactions_path
    return _ensure(
        target,
        target.exists(),
        settings.demo_dir / "interactions",
        lambda: generate_interactions(
            ensure_catalog(settings) / "styles.csv", target, n_customers=_sizes(settings)[2], seed=DEMO_SEED
        ),
        f"no interactions at {target} (set by PRODUCT_ATTRS_INTERACTIONS): point it at a CSV/Parquet file "
        "or folder of them, or unset it to use the generated demo events",
    )


def ensure_grocery(settings: Settings) -> Path:
    """The Grocery-Store-Dataset-layout folder (iconic gallery + photos); ready once classes.csv exists."""
    from product_attrs.sample_data.grocery import generate_grocery

    default = settings.demo_dir / "grocery"
    target = settings.grocery_dir or default
    return _ensure(
        target,
        (target / "classes.csv").exists(),
        default,
        lambda: generate_grocery(target, seed=DEMO_SEED, small=_size_name(settings) == "small"),
        f"no classes.csv in {target} (set by PRODUCT_ATTRS_GROCERY_DIR): point it at a Grocery Store "
        "Dataset folder (classes.csv, train.txt/val.txt/test.txt, iconic-images-and-descriptions/), "
        "or unset it to use the generated demo grocery catalog",
    )


def ensure_store_photos(settings: Settings) -> Path:
    """The folder of photos to recognize, ready when it holds any image."""
    from product_attrs.sample_data.grocery import STORE_PHOTOS, generate_store_photos

    default = settings.demo_dir / "store_photos"
    target = settings.recognition_dir or default
    ready = target.is_dir() and any(p.suffix.lower() in IMAGE_SUFFIXES for p in target.rglob("*"))
    return _ensure(
        target,
        ready,
        default,
        lambda: generate_store_photos(target, n_images=STORE_PHOTOS[_size_name(settings)], seed=DEMO_SEED),
        f"no images in {target} (set by PRODUCT_ATTRS_RECOGNITION_DIR): point it at a folder of shelf or "
        "product photos (.jpg, .jpeg, .png), or unset it to use the generated demo store photos",
    )
