"""A small classifier version committed through the version store (as training commits one), and images
to extract from."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from product_attrs_tests.classification import helpers

NAME = "attribute_classifier"
LABELS = {"article_type": ["Shirts", "Watches"], "master_category": ["Accessories", "Apparel"]}


def write_classifier_version(root: Path, seed: int = 0, champion: bool = True) -> Path:
    """A random `attribute_classifier` version under the models folder `root` (the champion unless told)."""
    return helpers.write_classifier_version(
        root, NAME, LABELS, embedding_dim=16, image_size=32, seed=seed, champion=champion
    )


def write_images(folder: Path, n: int, broken: int = 0) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        p = folder / f"{100 + i}.jpg"
        Image.fromarray(rng.integers(0, 255, (40, 30, 3), dtype=np.uint8)).save(p)
        paths.append(p)
    for j in range(broken):
        p = folder / f"{900 + j}.jpg"
        p.write_bytes(b"not an image")
        paths.append(p)
    return paths


def call_product_attributes(data_env: Path, key: str):
    """The `product_attributes` asset called directly on partition ``key`` (no retries, unlike
    `materialize`, whose retry policy would retry a failure for 20 s), CPU, no detector."""
    import dagster as dg

    from product_attrs.extraction.assets import ExtractionConfig, product_attributes
    from product_attrs.resources import ComputeResource, PathsResource, RegistryResource

    with dg.build_asset_context(partition_key=key) as context:
        return product_attributes(
            context,
            config=ExtractionConfig(detect="never", workers=0),
            paths=PathsResource(data_dir=str(data_env)),
            models=RegistryResource(tracking_uri="none"),
            compute=ComputeResource(device="cpu"),
        )


@pytest.fixture
def classifier_dir(tmp_path: Path) -> Path:
    return write_classifier_version(tmp_path / "models")
