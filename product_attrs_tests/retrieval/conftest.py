"""A recognizer version committed through the version store (as training commits one), and a catalog folder
with a gallery."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from product_attrs.classification.serve import Classifier
from product_attrs_tests.classification.helpers import write_classifier_version

NAME = "product_recognizer"
PRODUCTS = ["apple", "milk", "oat", "soda"]
COARSE = {"apple": "fruit", "milk": "dairy", "oat": "dairy", "soda": "drink"}
SIZE = 32


def write_recognizer(root: Path) -> Classifier:
    """A random `product_recognizer` (the champion) under the models folder `root`, loaded for serving."""
    labels = {"fine_label": PRODUCTS, "coarse_label": sorted(set(COARSE.values()))}
    return Classifier.load(
        write_classifier_version(root, NAME, labels, embedding_dim=32, image_size=SIZE, seed=0)
    )


def product_image(i: int) -> Image.Image:
    rng = np.random.default_rng(100 + i)
    return Image.fromarray(rng.integers(0, 255, (SIZE, SIZE, 3), dtype=np.uint8))


@pytest.fixture
def catalog(tmp_path: Path) -> Path:
    """A catalog folder as grocery ingestion writes it: gallery.parquet and splits.parquet."""
    out = tmp_path / "grocery"
    (out / "iconic").mkdir(parents=True)
    rows = []
    for i, name in enumerate(PRODUCTS):
        path = out / "iconic" / f"{name}.png"
        product_image(i).save(path)
        rows.append(
            {
                "product_id": i,
                "fine_label": name,
                "coarse_label": COARSE[name],
                "image_path": str(path),
                "image_sha1": f"sha{i}",
                "description": f"a {name}",
            }
        )
    pd.DataFrame(rows).to_parquet(out / "gallery.parquet")
    # Test photos: exact copies of products 0..2 (not 3), plus one train photo that must not be queried.
    photos = []
    for j, i in enumerate([0, 1, 2, 2]):
        path = out / "photos" / f"p{j}.png"
        path.parent.mkdir(exist_ok=True)
        product_image(i).save(path)
        photos.append(
            {
                "id": j + 1,
                "split": "test" if j < 3 else "train",
                "fine_label": PRODUCTS[i],
                "coarse_label": COARSE[PRODUCTS[i]],
                "image_path": str(path),
                "image_sha1": f"q{j}",
                "subset": "all",
            }
        )
    pd.DataFrame(photos).to_parquet(out / "splits.parquet")
    return out
