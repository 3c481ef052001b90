"""Reading the `catalog_splits` contract and turning it into labelled image datasets.

Labels are encoded with the catalog's `label_maps.json` (built over the whole clean catalog), so class
indices are the same for every split and every run on the same catalog. A missing label is -100, which
the loss ignores: a row with no `sub_category` still teaches `article_type`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image
from torch.utils.data import Dataset, Sampler
from torchvision import transforms

from product_attrs import decode
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
            f"no splits.parquet/label_maps.json in {catalog_dir}: "
            "materialize the `catalog_splits` asset first "
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
                f"unknown label column {h.column!r}: "
                f"label columns with a label map in {catalog.catalog_dir} are "
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
    image_size: int | tuple[int, int],
    train: bool,
    mean: tuple[float, ...],
    std: tuple[float, ...],
    crop_scale_min: float = 0.5,
) -> transforms.Compose:
    """Training: RandomResizedCrop(scale=(min, 1)) + flip, as the seed found best. Test: plain resize.

    `image_size` is a square side or (height, width): the catalog's 60x80 images keep their aspect."""
    size = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
    if train:
        head = [
            transforms.RandomResizedCrop(size, scale=(crop_scale_min, 1.0), antialias=True),
            transforms.RandomHorizontalFlip(),
        ]
    else:
        head = [transforms.Resize(size, antialias=True)]
    return transforms.Compose([*head, transforms.ToTensor(), transforms.Normalize(mean, std)])


def load_rgb(path: str | Path) -> Image.Image:
    """RGB through `decode.open_image`: a regular file, the manifest's pixel limit, a time limit."""
    with decode.open_image(path) as img:
        return decode.to_8bit(img).convert("RGB")


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


class ClassBalancedBatchSampler(Sampler[list[int]]):
    """P classes x K rows per batch, so that every row of a batch has positives (batch-hard triplet).

    Each epoch, every class's rows are shuffled and cut into chunks of K (a short last chunk is topped
    up with other rows of the class, a class with fewer than K rows repeats rows), and each batch takes
    one chunk from each of P different classes, the classes with the most chunks left first (ties at
    random), so that every labelled row is seen at least once per epoch in
    max(ceil(chunks / P), most chunks of one class) batches. When fewer than P classes have chunks left,
    fresh chunks of other classes fill the batch. Rows whose label is missing are never sampled.

    Under DDP every rank builds the same batches (same seed and epoch) and takes every world_size-th,
    the list padded by its first batches so that all ranks make the same number of steps.
    """

    def __init__(
        self,
        labels: np.ndarray,
        classes_per_batch: int,
        samples_per_class: int,
        *,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        labels = np.asarray(labels)
        valid = labels != IGNORE_INDEX
        classes = np.unique(labels[valid])
        if classes_per_batch < 1 or samples_per_class < 1:
            raise ConfigError("class-balanced batches need classes_per_batch and samples_per_class >= 1")
        if len(classes) < classes_per_batch:
            raise ConfigError(
                f"class-balanced batches of {classes_per_batch} classes x {samples_per_class} rows, but the "
                f"training rows have only {len(classes)} labelled classes: lower batch_size or raise "
                "samples_per_class"
            )
        self.p, self.k = classes_per_batch, samples_per_class
        self.rows_by_class = [np.flatnonzero(labels == c) for c in classes]
        self.n_unlabelled = int((~valid).sum())
        self.seed, self.rank, self.world_size, self.epoch = seed, rank, max(world_size, 1), 0
        chunks = [max(1, math.ceil(len(r) / self.k)) for r in self.rows_by_class]
        self.batches_per_epoch = max(math.ceil(sum(chunks) / self.p), max(chunks))

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return math.ceil(self.batches_per_epoch / self.world_size)

    def _fresh_chunk(self, rng: np.random.Generator, rows: np.ndarray) -> np.ndarray:
        if len(rows) >= self.k:
            return rng.choice(rows, self.k, replace=False)
        return np.concatenate([rng.permutation(rows), rng.choice(rows, self.k - len(rows), replace=True)])

    def _chunks(self, rng: np.random.Generator, rows: np.ndarray) -> list[np.ndarray]:
        if len(rows) <= self.k:
            return [self._fresh_chunk(rng, rows)]
        rows = rng.permutation(rows)
        rem = len(rows) % self.k
        if rem:  # top up the short last chunk with rows of the class that are not in it
            rows = np.concatenate([rows, rng.choice(rows[:-rem], self.k - rem, replace=False)])
        return list(rows.reshape(-1, self.k))

    def epoch_batches(self) -> list[list[int]]:
        """All batches of the current epoch (every rank's), in training order."""
        rng = np.random.default_rng([self.seed, self.epoch])
        left = [self._chunks(rng, rows) for rows in self.rows_by_class]
        batches: list[list[int]] = []
        while any(left):
            counts = np.array([len(c) for c in left])
            order = np.lexsort((rng.random(len(left)), -counts))  # most chunks left first, ties at random
            chosen = [int(c) for c in order[: self.p] if counts[c] > 0]
            parts = [left[c].pop() for c in chosen]
            if len(chosen) < self.p:
                others = np.setdiff1d(np.arange(len(left)), chosen)
                fill = rng.choice(others, self.p - len(chosen), replace=False)
                parts += [self._fresh_chunk(rng, self.rows_by_class[c]) for c in fill]
            batches.append([int(i) for i in np.concatenate(parts)])
        return [batches[i] for i in rng.permutation(len(batches))]

    def __iter__(self) -> Iterator[list[int]]:
        batches = self.epoch_batches()
        n = len(self) * self.world_size
        while len(batches) < n:
            batches += batches[: n - len(batches)]
        yield from batches[self.rank : n : self.world_size]


def gallery_training_rows(catalog: Catalog, columns: list[str], repeats: int) -> pd.DataFrame:
    """The catalog's gallery images (``gallery.parquet``) as training rows, each ``repeats`` times.

    Shop photos and studio images of one product differ more than two photos do; training on both is
    what lets a photo find its product's studio image. Ids are negative: they name no catalog row.
    """
    path = catalog.catalog_dir / "gallery.parquet"
    if repeats <= 0:
        return catalog.frame.iloc[:0]
    if not path.exists():
        raise ConfigError(
            f"gallery_repeats={repeats} but there is no gallery.parquet in {catalog.catalog_dir}"
        )
    gallery = pd.read_parquet(path)
    missing = [c for c in ("image_path", *columns) if c not in gallery.columns]
    if missing:
        raise ConfigError(
            f"{path} lacks columns {missing} needed to train on it; it has {list(gallery.columns)}"
        )
    rows = gallery[["image_path", *columns]].copy()
    rows["id"] = -(np.arange(len(rows), dtype=np.int64) + 1)
    rows["split"] = "train"
    rows["subset"] = catalog.top_subset
    return pd.concat([rows] * repeats, ignore_index=True)


#: The held-out products depend on the catalog only, never on the training seed: every run of every seed
#: is scored on the same unseen products, so their figures compare.
HOLDOUT_SEED = 0


def holdout_classes(label_map: list[str], fraction: float, seed: int = HOLDOUT_SEED) -> list[str]:
    """The classes kept out of training: round(fraction * n) of them (at least one when fraction > 0 and
    there are two classes or more, never all), a seeded choice among the sorted names, returned sorted.

    Drawn from the sorted names, so that the choice depends on which classes exist and not on their order.
    """
    names = sorted(set(map(str, label_map)))
    n = len(names)
    if fraction <= 0 or n < 2:
        return []
    k = min(max(round(fraction * n), 1), n - 1)
    chosen = np.random.default_rng(seed).choice(n, size=k, replace=False)
    return sorted(names[i] for i in chosen)


VALIDATION_SEED = 0


def validation_split(
    rows: pd.DataFrame, column: str, fraction: float, seed: int = VALIDATION_SEED
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(rows to train on, validation rows): round(fraction * n) rows of each class of `column`, never a
    class's last row, so a validation split costs no class its training examples. Seeded apart from
    the training seed: every run keeps out the same rows."""
    if fraction <= 0 or rows.empty:
        return rows.reset_index(drop=True), rows.iloc[:0].reset_index(drop=True)
    rng = np.random.default_rng(seed)
    picked: list[np.ndarray] = []
    for _, group in rows.groupby(rows[column].astype(str), sort=True):
        k = min(round(fraction * len(group)), len(group) - 1)
        if k > 0:
            picked.append(rng.choice(group.index.to_numpy(), size=k, replace=False))
    chosen = np.zeros(len(rows), dtype=bool)
    if picked:
        chosen[rows.index.get_indexer(np.concatenate(picked))] = True
    return rows[~chosen].reset_index(drop=True), rows[chosen].reset_index(drop=True)
