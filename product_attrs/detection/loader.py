"""PyTorch side of the detection tables: a Dataset, the aspect-ratio grouping sampler, data loaders.

Training targets drop crowd boxes (as torchvision's references do); evaluation keeps them in the COCO
ground truth, where pycocotools treats them as crowd regions.
"""

from __future__ import annotations

import bisect
import math
import random
from collections import defaultdict
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch.utils.data import BatchSampler, DataLoader, Dataset, Sampler
from torchvision.transforms import functional as TF

from product_attrs import decode
from product_attrs.detection.dataset import DetectionData


def read_image(path: str) -> torch.Tensor:
    """RGB float tensor in [0, 1], CHW; grayscale, palette and 16-bit images are converted.

    Decoded by `decode.open_image` (regular file, pixel and time limits), as the manifest did."""
    with decode.open_image(path) as im:
        return TF.to_tensor(decode.to_8bit(im).convert("RGB"))


class DetectionTorchDataset(Dataset):
    """Images of one split with their targets in torchvision's format (boxes xyxy, labels 1..K)."""

    def __init__(self, data: DetectionData, split: str | None, train: bool, hflip_prob: float = 0.5) -> None:
        imgs = data.images if split is None else data.images[data.images["split"] == split]
        self.images = imgs.sort_values("image_id").reset_index(drop=True)
        boxes = data.boxes
        if train:
            boxes = boxes[~boxes["iscrowd"]]
        self._boxes = {int(k): g for k, g in boxes.groupby("image_id")}
        self.train = train
        self.hflip_prob = hflip_prob if train else 0.0

    def __len__(self) -> int:
        return len(self.images)

    def target_of(self, idx: int) -> dict[str, torch.Tensor]:
        row = self.images.iloc[idx]
        g = self._boxes.get(int(row.image_id))
        if g is None or len(g) == 0:
            boxes = torch.zeros((0, 4), dtype=torch.float32)
            labels = torch.zeros((0,), dtype=torch.int64)
            crowd = torch.zeros((0,), dtype=torch.bool)
        else:
            boxes = torch.as_tensor(g[["x1", "y1", "x2", "y2"]].to_numpy(np.float32, copy=True))
            labels = torch.as_tensor(g["label"].to_numpy(np.int64, copy=True))
            crowd = torch.as_tensor(g["iscrowd"].to_numpy(bool, copy=True))
        return {
            "boxes": boxes,
            "labels": labels,
            "iscrowd": crowd,
            "image_id": torch.tensor(int(row.image_id)),
        }

    def __getitem__(self, idx: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        row = self.images.iloc[idx]
        img = read_image(row.file_path)
        target = self.target_of(idx)
        if self.hflip_prob and random.random() < self.hflip_prob:
            img = img.flip(-1)
            w = img.shape[-1]
            b = target["boxes"].clone()
            b[:, [0, 2]] = w - target["boxes"][:, [2, 0]]
            target["boxes"] = b
        return img, target

    def aspect_ratios(self) -> list[float]:
        """width / height of each image, from the table (no decoding)."""
        return (self.images["width"] / self.images["height"]).astype(float).tolist()


def collate(batch: Sequence[Any]) -> tuple[Any, ...]:
    return tuple(zip(*batch))


# ---------------------------------------------------------------------- aspect-ratio grouping
# After torchvision references/detection/group_by_aspect_ratio.py: batches hold images of similar
# shape, so the padded batch tensor wastes less compute.


def create_aspect_ratio_groups(aspect_ratios: Sequence[float], k: int = 3) -> list[int]:
    """Group index of each image: bins spaced log-uniformly in [0.5, 2] with 2k + 1 edges."""
    bins = (2 ** np.linspace(-1, 1, 2 * k + 1)).tolist() if k > 0 else [1.0]
    return [bisect.bisect_right(bins, a) for a in aspect_ratios]


class GroupedBatchSampler(BatchSampler):
    """Batches of `batch_size` indices that share a group; leftovers are filled from the same group."""

    def __init__(self, sampler: Sampler[int], group_ids: Sequence[int], batch_size: int) -> None:
        self.sampler = sampler
        self.group_ids = list(group_ids)
        self.batch_size = batch_size

    def __iter__(self) -> Iterator[list[int]]:
        buffers: dict[int, list[int]] = defaultdict(list)
        samples_per_group: dict[int, list[int]] = defaultdict(list)
        num_batches = 0
        for idx in self.sampler:
            g = self.group_ids[idx]
            buffers[g].append(idx)
            samples_per_group[g].append(idx)
            if len(buffers[g]) == self.batch_size:
                yield buffers[g]
                num_batches += 1
                buffers[g] = []
        expected = len(self)
        # Fill the incomplete groups with repeated samples of the same group, largest first.
        for g, buf in sorted(buffers.items(), key=lambda kv: len(kv[1]), reverse=True):
            if num_batches >= expected:
                break
            if not buf:
                continue
            pool = samples_per_group[g]
            extra = (pool * math.ceil(self.batch_size / len(pool)))[: self.batch_size - len(buf)]
            yield buf + extra
            num_batches += 1

    def __len__(self) -> int:
        return math.ceil(len(self.sampler) / self.batch_size)  # type: ignore[arg-type]


def make_train_loader(
    ds: DetectionTorchDataset,
    batch_size: int,
    workers: int,
    group_factor: int,
    seed: int,
    distributed: bool = False,
) -> tuple[DataLoader, Sampler[int], torch.Generator]:
    """Loader for training, with its sampler (DistributedSampler needs set_epoch) and the generator the
    runner reseeds every epoch. Workers are not persistent, so every epoch starts from that seed."""
    generator = torch.Generator().manual_seed(seed)
    if distributed:
        sampler: Sampler[int] = torch.utils.data.DistributedSampler(ds, shuffle=True, seed=seed)
    else:
        sampler = torch.utils.data.RandomSampler(ds, generator=generator)
    if group_factor >= 0:
        groups = create_aspect_ratio_groups(ds.aspect_ratios(), group_factor)
        batch_sampler: BatchSampler = GroupedBatchSampler(sampler, groups, batch_size)
    else:
        batch_sampler = BatchSampler(sampler, batch_size, drop_last=True)
    loader = DataLoader(
        ds, batch_sampler=batch_sampler, num_workers=workers, collate_fn=collate, generator=generator
    )
    return loader, sampler, generator


def make_eval_loader(ds: DetectionTorchDataset, batch_size: int, workers: int) -> DataLoader:
    return DataLoader(ds, batch_size=batch_size, shuffle=False, num_workers=workers, collate_fn=collate)


def coco_ground_truth(data: DetectionData, split: str | None = "test") -> dict[str, Any]:
    """A COCO-format dict of one split (with crowd flags), for pycocotools evaluation.

    Category ids are the contiguous labels, so predictions (labels) need no mapping back.
    """
    imgs = data.images if split is None else data.images[data.images["split"] == split]
    ids = set(imgs["image_id"].astype(int))
    b: pd.DataFrame = data.boxes[data.boxes["image_id"].isin(ids)]
    anns = []
    for r in b.itertuples(index=False):
        w, h = float(r.x2 - r.x1), float(r.y2 - r.y1)
        anns.append(
            {
                "id": len(anns) + 1,
                "image_id": int(r.image_id),
                "category_id": int(r.label),
                "bbox": [float(r.x1), float(r.y1), w, h],
                "area": w * h,
                "iscrowd": int(bool(r.iscrowd)),
            }
        )
    return {
        "images": [
            {"id": int(r.image_id), "width": int(r.width), "height": int(r.height), "file_name": r.file_name}
            for r in imgs.itertuples(index=False)
        ],
        "annotations": anns,
        "categories": [{"id": int(m["label"]), "name": str(m["name"])} for m in data.label_map],
    }
