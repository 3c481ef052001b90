"""Shared fixtures of the detection tests: small hand-written sources in tmp_path."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image


def make_image(path: Path, size: tuple[int, int]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (120, 30, 200)).save(path)


@pytest.fixture()
def coco_dir(tmp_path: Path) -> Path:
    """A tiny COCO source exercising every rule of the loader."""
    root = tmp_path / "src"
    make_image(root / "images" / "a.jpg", (100, 80))
    make_image(root / "images" / "neg.png", (60, 40))
    (root / "images" / "broken.jpg").write_bytes(b"not a jpeg at all")
    make_image(root / "images" / "sub" / "wrong_size.jpg", (50, 50))
    doc = {
        "info": {"description": "test"},
        "licenses": [{"id": 1, "name": "x"}],
        "categories": [{"id": 90, "name": "can"}, {"id": 5, "name": "bottle"}, {"id": 11, "name": "box"}],
        "images": [
            {"id": 1, "file_name": "a.jpg", "width": 100, "height": 80},
            {"id": 2, "file_name": "neg.png", "width": 60, "height": 40},
            {"id": 3, "file_name": "missing.jpg", "width": 10, "height": 10},
            {"id": 4, "file_name": "broken.jpg", "width": 10, "height": 10},
            {"id": 5, "file_name": "sub/wrong_size.jpg", "width": 500, "height": 500},
        ],
        "annotations": [
            {
                "id": 10,
                "image_id": 1,
                "category_id": 5,
                "bbox": [10, 10, 20, 30],
                "iscrowd": 0,
                "segmentation": [[10, 10, 30, 10, 30, 40]],
                "area": 600,
            },
            {
                "id": 11,
                "image_id": 1,
                "category_id": 11,
                "bbox": [0, 0, 50, 50],
                "iscrowd": 1,
                "segmentation": {"counts": [0, 10], "size": [80, 100]},
                "area": 2500,
            },
            {"id": 12, "image_id": 1, "category_id": 90, "bbox": [5, 5, 0, 10], "iscrowd": 0},  # zero width
            {
                "id": 13,
                "image_id": 1,
                "category_id": 90,
                "bbox": [90, 70, 30, 30],
                "iscrowd": 0,
            },  # partly out
            {"id": 14, "image_id": 1, "category_id": 90, "bbox": [200, 10, 10, 10], "iscrowd": 0},  # all out
            {"id": 15, "image_id": 1, "category_id": 5, "bbox": [float("nan"), 1, 2, 3], "iscrowd": 0},
            {"id": 16, "image_id": 1, "category_id": 77, "bbox": [1, 1, 5, 5], "iscrowd": 0},  # unknown cat
            {"id": 17, "image_id": 3, "category_id": 5, "bbox": [1, 1, 5, 5], "iscrowd": 0},  # missing file
            {"id": 18, "image_id": 3, "category_id": 11, "bbox": [2, 2, 5, 5], "iscrowd": 0},
            {"id": 19, "image_id": 4, "category_id": 5, "bbox": [1, 1, 5, 5], "iscrowd": 0},  # unreadable
            {"id": 20, "image_id": 999, "category_id": 5, "bbox": [1, 1, 5, 5], "iscrowd": 0},  # no image
            {"id": 21, "image_id": 5, "category_id": 11, "bbox": [10, 10, 100, 100], "iscrowd": 0},
            {"id": 22, "image_id": 1, "category_id": 5, "bbox": [1, 2], "iscrowd": 0},  # malformed
        ],
    }
    (root / "annotations.json").write_text(json.dumps(doc))  # json writes NaN, as some tools do
    return root


COLORS = [(220, 40, 40), (40, 200, 60), (40, 70, 220)]  # one colour per class


def make_scenes(root: Path, n_images: int = 12, size: tuple[int, int] = (128, 96), seed: int = 0) -> Path:
    """Tiny synthetic scenes: 1-3 coloured rectangles of 3 classes (COCO ids 3, 7, 12) on grey noise."""
    import random

    import numpy as np

    rng = random.Random(seed)
    nrng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True, exist_ok=True)
    images, anns = [], []
    w, h = size
    for i in range(n_images):
        arr = (nrng.normal(128, 12, (h, w, 3))).clip(0, 255).astype("uint8")
        for _ in range(rng.randint(1, 3)):
            c = rng.randrange(3)
            bw, bh = rng.randint(18, 40), rng.randint(18, 40)
            x, y = rng.randint(0, w - bw), rng.randint(0, h - bh)
            arr[y : y + bh, x : x + bw] = COLORS[c]
            anns.append(
                {
                    "id": len(anns) + 1,
                    "image_id": i + 1,
                    "category_id": (3, 7, 12)[c],
                    "bbox": [x, y, bw, bh],
                    "iscrowd": 0,
                    "area": bw * bh,
                }
            )
        name = f"scene_{i:03d}.png"
        Image.fromarray(arr).save(root / "images" / name)
        images.append({"id": i + 1, "file_name": name, "width": w, "height": h})
    cats = [{"id": 3, "name": "red"}, {"id": 7, "name": "green"}, {"id": 12, "name": "blue"}]
    (root / "annotations.json").write_text(
        json.dumps({"images": images, "annotations": anns, "categories": cats})
    )
    return root


@pytest.fixture()
def scenes_dir(tmp_path: Path) -> Path:
    return make_scenes(tmp_path / "scenes")


def tiny_config(**overrides):
    """The demo profile shrunk so that a training step takes well under a second on one CPU thread."""
    from product_attrs.detection.config import PROFILES, DetectorConfig
    from product_attrs.modeling.config import resolve

    base = dict(
        fpn_channels=32,
        box_head_dim=64,
        min_size=96,
        max_size=128,
        batch_size=2,
        epochs=1,
        max_steps_per_epoch=2,
        warmup_iters=2,
        rpn_pre_nms_top_n_train=200,
        rpn_post_nms_top_n_train=100,
        rpn_pre_nms_top_n_test=100,
        rpn_post_nms_top_n_test=50,
        box_batch_size_per_image=32,
        threads=1,
        lr=0.01,
        eval_every=1,
    )
    base.update(overrides)
    return resolve(DetectorConfig, PROFILES, "demo", None, base)


def quiet(_msg: str) -> None:
    """A training log that prints nothing."""


@pytest.fixture(autouse=True)
def _one_thread():
    """The test machine is small and shared: one torch thread per test process."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def session_scenes(tmp_path_factory) -> Path:
    return make_scenes(tmp_path_factory.mktemp("session") / "scenes", n_images=10)


@pytest.fixture(scope="session")
def trained_version(session_scenes: Path, tmp_path_factory) -> Path:
    """One tiny trained model version folder (MLflow off), shared by the tests that only read it."""
    from product_attrs.detection.train import train
    from product_attrs.modeling.registry import Registry

    models = tmp_path_factory.mktemp("models")
    result = train(tiny_config(), session_scenes, Registry(models), device="cpu", log=quiet)
    return result.version_dir
