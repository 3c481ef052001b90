"""A tiny synthetic catalog that follows the `catalog_splits` contract: coloured shapes, 32x32 RGB.

article_type is a (colour, shape) pair, so a small CNN separates the classes within a few epochs;
master_category follows the shape and sub_category the colour. Years alternate (even = train, odd =
test), one class ('Purple Circle') exists only in test, some labels are missing, and one row has no year.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image, ImageDraw

from product_attrs.catalog.splits import build_label_maps

COLOURS = {"Red": (220, 30, 30), "Green": (30, 180, 40), "Blue": (30, 60, 220), "Purple": (140, 40, 170)}
SHAPES = {"Circle": "Round", "Square": "Boxy"}
#: (colour, shape, products) -- the first four are frequent ("top20"), the others "rest".
CLASSES = [
    ("Red", "Circle", 14),
    ("Green", "Square", 14),
    ("Blue", "Circle", 12),
    ("Red", "Square", 12),
    ("Green", "Circle", 6),
    ("Blue", "Square", 6),
]
TEST_ONLY = ("Purple", "Circle", 3)


def _draw(colour: str, shape: str, rng: np.random.Generator, size: int = 32) -> Image.Image:
    bg = tuple(int(v) for v in rng.integers(200, 256, 3))
    img = Image.new("RGB", (size, size), bg)
    d = ImageDraw.Draw(img)
    r = int(rng.integers(8, 13))
    cx, cy = (int(v) for v in rng.integers(r + 1, size - r - 1, 2))
    box = (cx - r, cy - r, cx + r, cy + r)
    fill = tuple(int(np.clip(c + rng.integers(-25, 26), 0, 255)) for c in COLOURS[colour])
    (d.ellipse if shape == "Circle" else d.rectangle)(box, fill=fill)
    return img


def make_tiny_catalog(root: Path, seed: int = 0, scale: int = 1) -> Path:
    """Write images/, and catalog/{splits.parquet,label_maps.json,data_version.txt}; return catalog/."""
    rng = np.random.default_rng(seed)
    images = root / "images"
    images.mkdir(parents=True, exist_ok=True)
    rows = []
    pid = 1000
    specs = [(c, s, n * scale, False) for c, s, n in CLASSES] + [(*TEST_ONLY[:2], TEST_ONLY[2] * scale, True)]
    for colour, shape, n, test_only in specs:
        for i in range(n):
            pid += 1
            year = 2011 if test_only else (2010 if i % 2 == 0 else 2011)
            path = images / f"{pid}.png"
            _draw(colour, shape, rng).save(path)
            noise = ["Cool", "Basic", "Classic", "Urban"][i % 4]
            rows.append(
                {
                    "id": pid,
                    "gender": "Men" if i % 2 else "Women",
                    "master_category": SHAPES[shape],
                    "sub_category": None if i % 7 == 3 else colour,
                    "article_type": f"{colour} {shape}",
                    "base_colour": colour,
                    "season": "Summer",
                    "usage": "Casual",
                    "product_display_name": f"{noise} {colour.lower()} {shape.lower()} thing"
                    if i % 5
                    else f"{noise} item",
                    "year": year,
                    "image_path": str(path.resolve()),
                }
            )
    # One row without a year: the contract's 'unassigned' split.
    rows.append({**rows[0], "id": 1, "year": None})
    frame = pd.DataFrame(rows)
    frame["year"] = frame["year"].astype("Int64")
    frame["split"] = np.where(
        frame["year"].isna(), "unassigned", np.where(frame["year"].fillna(0) % 2 == 0, "train", "test")
    )
    train_counts = frame.loc[frame["split"] == "train", "article_type"].value_counts()
    top = set(sorted(train_counts.index, key=lambda c: (-train_counts[c], c))[:4])
    frame["subset"] = np.where(frame["article_type"].isin(top), "top20", "rest")
    for c in (
        "gender",
        "master_category",
        "sub_category",
        "article_type",
        "base_colour",
        "season",
        "usage",
        "product_display_name",
        "split",
        "subset",
    ):
        frame[c] = frame[c].astype("string")
    frame["id"] = frame["id"].astype("int64")
    out = root / "catalog"
    out.mkdir(parents=True, exist_ok=True)
    frame.to_parquet(out / "splits.parquet", index=False)
    maps = build_label_maps(
        frame, ("article_type", "master_category", "sub_category", "base_colour", "gender")
    )
    (out / "label_maps.json").write_text(json.dumps(maps))
    (out / "data_version.txt").write_text(f"tiny{seed:04d}deadbeef\n")
    return out


@pytest.fixture(scope="session")
def tiny_catalog(tmp_path_factory) -> Path:
    return make_tiny_catalog(tmp_path_factory.mktemp("tiny_catalog"), scale=2)


@pytest.fixture(autouse=True)
def _few_threads():
    """The test machine is shared: keep PyTorch to one thread."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
