"""A small classifier version folder written the way training writes one, and images to extract from."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from product_attrs.classification.model import MultiTaskClassifier

LABELS = {"article_type": ["Shirts", "Watches"], "master_category": ["Accessories", "Apparel"]}


def write_classifier_version(root: Path, version: str = "v1", seed: int = 0) -> Path:
    torch.manual_seed(seed)
    model = MultiTaskClassifier("resnet18", {k: len(v) for k, v in LABELS.items()}, embedding_dim=16).eval()
    folder = root / "attribute_classifier" / version
    folder.mkdir(parents=True)
    torch.save(model.state_dict(), folder / "model.pt")
    manifest = {
        "name": "attribute_classifier", "version": version, "backbone": "resnet18", "embedding_dim": 16,
        "image_size": 32, "heads": [{"column": c, "weight": 1.0} for c in LABELS], "label_maps": LABELS,
        "normalization": {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]},
    }
    (folder / "model.json").write_text(json.dumps(manifest))
    (root / "attribute_classifier" / "LATEST").write_text(version + "\n")
    return folder


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


@pytest.fixture
def classifier_dir(tmp_path: Path) -> Path:
    return write_classifier_version(tmp_path / "models")
