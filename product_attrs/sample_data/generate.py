"""Generate the whole embedded demo data set: catalog, shelf scenes, customer interactions, and the
SKU world's Grocery-Store-layout catalog and store photos for product recognition.

``small=True`` makes a tiny version (150 products, 8 shelf pictures, 40 customers, 2+1+1 photos per SKU,
4 store photos) for unit tests that must run in seconds; the default size is what the demo pipeline
trains on in a few CPU minutes.
"""

from __future__ import annotations

import json
from pathlib import Path

from product_attrs.sample_data.catalog import generate_catalog
from product_attrs.sample_data.grocery import STORE_PHOTOS, generate_grocery, generate_store_photos
from product_attrs.sample_data.interactions import generate_interactions
from product_attrs.sample_data.shelves import generate_shelves

#: (products, shelf pictures, customers) for each size. The grocery catalog's and store photos' sizes
#: are ``grocery.PHOTOS_PER_SKU`` and ``grocery.STORE_PHOTOS``, keyed by the same names.
SIZES = {"default": (1200, 60, 300), "small": (150, 8, 40)}


def generate_all(demo_dir: Path, seed: int = 0, small: bool = False) -> dict:
    """Write ``demo_dir/catalog``, ``shelves``, ``interactions``, ``grocery``, ``store_photos`` and a
    ``manifest.json``.

    Returns the manifest: the size, the seed, each part's faults or summary, and where it went
    (absolute paths here, paths relative to ``demo_dir`` in the file).
    """
    demo_dir = Path(demo_dir)
    size = "small" if small else "default"
    n_products, n_images, n_customers = SIZES[size]
    catalog = generate_catalog(demo_dir / "catalog", n_products=n_products, seed=seed)
    shelves = generate_shelves(demo_dir / "shelves", n_images=n_images, seed=seed)
    interactions = generate_interactions(
        demo_dir / "catalog" / "styles.csv", demo_dir / "interactions", n_customers=n_customers, seed=seed
    )
    grocery = generate_grocery(demo_dir / "grocery", seed=seed, small=small)
    store_photos = generate_store_photos(demo_dir / "store_photos", n_images=STORE_PHOTOS[size], seed=seed)
    parts = ("catalog", "shelves", "interactions", "grocery", "store_photos")
    manifest = {
        "seed": seed,
        "size": size,
        "paths": {name: name for name in parts},  # relative: same seed, same bytes wherever it is written
        "catalog": catalog,
        "shelves": shelves,
        "interactions": interactions,
        "grocery": grocery,
        "store_photos": store_photos,
    }
    (demo_dir / "manifest.json").write_text(
        json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8"
    )
    return {**manifest, "paths": {name: str(demo_dir / name) for name in parts}}
