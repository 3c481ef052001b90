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
            {"id": 10, "image_id": 1, "category_id": 5, "bbox": [10, 10, 20, 30], "iscrowd": 0,
             "segmentation": [[10, 10, 30, 10, 30, 40]], "area": 600},
            {"id": 11, "image_id": 1, "category_id": 11, "bbox": [0, 0, 50, 50], "iscrowd": 1,
             "segmentation": {"counts": [0, 10], "size": [80, 100]}, "area": 2500},
            {"id": 12, "image_id": 1, "category_id": 90, "bbox": [5, 5, 0, 10], "iscrowd": 0},  # zero width
            {"id": 13, "image_id": 1, "category_id": 90, "bbox": [90, 70, 30, 30], "iscrowd": 0},  # partly out
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


