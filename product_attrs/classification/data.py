"""Reading the `catalog_splits` contract and turning it into labelled image datasets.

Labels are encoded with the catalog's `label_maps.json` (built over the whole clean catalog), so class
indices are the same for every split and every run on the same catalog. A missing label is -100, which
the loss ignores: a row with no `sub_category` still teaches `article_type`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image
from torch.utils.data import Dataset
from torchvision import transforms

from product_attrs.classification.config import ConfigError, HeadSpec

IGNORE_INDEX = -100
REST = "rest"
REQUIRED_COLUMNS = ("id", "image_path", "split", "subset")


class CatalogNotReadyError(FileNotFoundError):
    """The catalog_splits output is missing: the message says what to run first."""


@dataclass
class Catalog:
    """The splits table with its label maps and data version, as produced by `catalog_splits`."""

    frame: pd.DataFrame
    label_maps: dict[str, list[str]]
    data_version: str
    catalog_dir: Path

    @property
    def top_subset(self) -> str:
        """The name of the frequent-class subset ('top20' with the seed's rule)."""
        names = sorted(set(self.frame["subset"].dropna().astype(str)) - {REST})
        return names[0] if names else "top20"

    def split(self, name: str) -> pd.DataFrame:
        return self.frame[_is(self.frame["split"], name)].reset_index(drop=True)


def _is(column: pd.Series, value: str) -> np.ndarray:
    """Element-wise equality where a missing value is simply False (nullable string columns)."""
    return (column == value).fillna(False).to_numpy(dtype=bool)


def load_catalog(catalog_dir: Path | str) -> Catalog:
    """Read splits.parquet, label_maps.json and data_version.txt from one folder."""
    catalog_dir = Path(catalog_dir)
    splits = catalog_dir / "splits.parquet"
    maps = catalog_dir / "label_maps.json"
    if not splits.exists() or not maps.exists():
        raise CatalogNotReadyError(
            f"no splits.parquet/label_maps.json in {catalog_dir}: materialize the `catalog_splits` asset first "
            "(or point --catalog-dir at a folder that has them)"
        )
    frame = pd.read_parquet(splits)
    missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
    if missing:
        raise ConfigError(f"{splits} lacks columns {missing}; it has {list(frame.columns)}")
    version_file = catalog_dir / "data_version.txt"
    version = version_file.read_text().strip() if version_file.exists() else "unknown"
    return Catalog(frame, json.loads(maps.read_text()), version, catalog_dir)


def check_heads(heads: list[HeadSpec], catalog: Catalog) -> None:
    """Every configured head needs a column in the table and a label map, else a clear ConfigError."""
    for h in heads:
        if h.column not in catalog.frame.columns or h.column not in catalog.label_maps:
            raise ConfigError(
                f"unknown label column {h.column!r}: label columns with a label map in {catalog.catalog_dir} are "
                f"{sorted(c for c in catalog.label_maps if c in catalog.frame.columns)}"
            )
        if not catalog.label_maps[h.column]:
            raise ConfigError(f"label column {h.column!r} has no classes in label_maps.json")


def encode_labels(frame: pd.DataFrame, heads: list[HeadSpec], label_maps: dict[str, list[str]]) -> np.ndarray:
    """(rows, heads) int64 class indices; missing or unmapped values become IGNORE_INDEX."""
    out = np.full((len(frame), len(heads)), IGNORE_INDEX, dtype=np.int64)
    for j, h in enumerate(heads):
        index = {name: i for i, name in enumerate(label_maps[h.column])}
        values = frame[h.column].astype("object")
        out[:, j] = [index.get(str(v), IGNORE_INDEX) if not pd.isna(v) else IGNORE_INDEX for v in values]
    return out


def phase_rows(train: pd.DataFrame, rows: str, top_subset: str) -> pd.DataFrame:
    """Training rows of a phase: 'top' (the frequent classes), 'rest' or 'all'."""
    if rows == "top":
        return train[_is(train["subset"], top_subset)].reset_index(drop=True)
    if rows == "rest":
        return train[_is(train["subset"], REST)].reset_index(drop=True)
    return train.reset_index(drop=True)


def cap_rows(frame: pd.DataFrame, n: int, seed: int) -> pd.DataFrame:
    """A reproducible random subset of at most n rows (n == 0: all); for smoke runs."""
    if n <= 0 or len(frame) <= n:
        return frame
    return frame.sample(n=n, random_state=seed).sort_index().reset_index(drop=True)


def build_transform(
    image_size: int, train: bool, mean: tuple[float, ...], std: tuple[float, ...], crop_scale_min: float = 0.5
) -> transforms.Compose:
    """Training: RandomResizedCrop(scale=(min, 1)) + flip, as the seed found best. Test: plain resize."""
    if train:
        head = [
            transforms.RandomResizedCrop(image_size, scale=(crop_scale_min, 1.0), antialias=True),
            transforms.RandomHorizontalFlip(),
        ]
    else:
        head = [transforms.Resize((image_size, image_size), antialias=True)]
    return transforms.Compose([*head, transforms.ToTensor(), transforms.Normalize(mean, std)])


def load_rgb(path: str | Path) -> Image.Image:
    with Image.open(path) as img:
        return img.convert("RGB")


class ProductImageDataset(Dataset):
    """(image tensor, labels (heads,), row index) for each row; images are read lazily."""

    def __init__(self, image_paths: list[str], labels: np.ndarray, transform) -> None:
        if len(image_paths) != len(labels):
            raise ValueError("image_paths and labels differ in length")
        self.image_paths = list(image_paths)
        self.labels = torch.as_tensor(labels, dtype=torch.long)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.image_paths)

    def __getitem__(self, i: int):
        return self.transform(load_rgb(self.image_paths[i])), self.labels[i], i


def make_dataset(
    frame: pd.DataFrame, heads: list[HeadSpec], label_maps: dict[str, list[str]], transform
) -> ProductImageDataset:
    return ProductImageDataset(
        frame["image_path"].astype(str).tolist(), encode_labels(frame, heads, label_maps), transform
    )
