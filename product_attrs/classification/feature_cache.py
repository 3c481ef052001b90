"""Frozen backbone stages computed once per image and kept on disk, so that training runs only the top.

On a CPU most of a fine-tuning step is spent in the early, high-resolution stages; when they are frozen
(`freeze_stages`) their output never changes, so computing it every epoch is waste. The cache holds the
output of stage `freeze_stages - 1` for every row, in float16, for the plain resize and (for training
rows) its mirror image: the two views an epoch goes through. A model trained this way is an ordinary
classifier: it reads images, and on them computes exactly what training saw (frozen BatchNorm, same
resize). The file is keyed by everything its values depend on and written once (temp file, rename),
under a lock so that concurrent trainings and DDP ranks build it once.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from product_attrs.classification.data import build_transform, load_rgb
from product_attrs.classification.model import MultiTaskClassifier

Log = Callable[[str], None]
CACHE_FOLDER = "feature_cache"


def cache_key(
    model: MultiTaskClassifier,
    image_paths: Sequence[str],
    size: tuple[int, int],
    views: int,
    weights_source: str,
    data_version: str,
) -> str:
    """A hash of what the cached values depend on: images, resize, views, backbone, its frozen weights."""
    stage = model.frozen_stages
    digest = hashlib.sha256()
    frozen = [p for s in model.backbone.stages[:stage] for p in s.state_dict().values()]
    for tensor in frozen:  # the frozen weights themselves: a weights file or a resume cannot mismatch
        digest.update(tensor.detach().cpu().float().numpy().tobytes()[:4096])
        digest.update(str(float(tensor.float().sum())).encode())
    meta = {
        "backbone": model.backbone.name,
        "stage": stage,
        "size": list(size),
        "views": views,
        "mean": list(model.mean),
        "std": list(model.std),
        "weights": weights_source,
        "data_version": data_version,
        "paths": hashlib.sha256("\n".join(image_paths).encode()).hexdigest(),
    }
    digest.update(json.dumps(meta, sort_keys=True).encode())
    return digest.hexdigest()[:20]


class _Views(Dataset):
    """(view, row) -> the image resized (and mirrored for view 1), for the cache build."""

    def __init__(self, paths: Sequence[str], views: int, transform) -> None:
        self.paths, self.views, self.transform = list(paths), views, transform

    def __len__(self) -> int:
        return len(self.paths) * self.views

    def __getitem__(self, i: int):
        view, row = divmod(i, len(self.paths))
        x = self.transform(load_rgb(self.paths[row]))
        return (torch.flip(x, dims=[2]) if view == 1 else x), i


@torch.no_grad()
def build_cache(
    model: MultiTaskClassifier,
    image_paths: Sequence[str],
    folder: Path,
    *,
    size: tuple[int, int],
    views: int,
    weights_source: str,
    data_version: str,
    device: torch.device,
    batch_size: int = 32,
    workers: int = 0,
    log: Log = print,
) -> np.ndarray:
    """`batch_size` 32: on a CPU, batches of 128 ran 2.4x slower (29 against 69 images/s on one thread at
    96x128), their large activations spending the time in page faults."""
    """The cached stage output, (views, rows, C, H, W) float16, memory-mapped; built when missing."""
    if views not in (1, 2):
        raise ValueError(f"views must be 1 (plain) or 2 (plain and mirrored), not {views}")
    key = cache_key(model, image_paths, size, views, weights_source, data_version)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{key}.npy"
    with open(folder / f"{key}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not path.exists():
            _write(model, image_paths, path, size, views, device, batch_size, workers, log)
        else:
            log(f"feature cache: reusing {path.name} ({len(image_paths)} rows x {views} views)")
    return np.load(path, mmap_mode="r")


def _write(
    model: MultiTaskClassifier,
    image_paths: Sequence[str],
    path: Path,
    size: tuple[int, int],
    views: int,
    device: torch.device,
    batch_size: int,
    workers: int,
    log: Log,
) -> None:
    start, stage = time.perf_counter(), model.frozen_stages
    was_training = model.training
    model.eval()
    probe = torch.zeros(1, 3, *size, device=device)
    shape = tuple(model.backbone.run_stages(probe, 0, stage).shape[1:])
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float16, shape=(views, len(image_paths), *shape))
    flat = out.reshape(views * len(image_paths), *shape)
    transform = build_transform(size, False, model.mean, model.std)
    loader = DataLoader(_Views(image_paths, views, transform), batch_size=batch_size, num_workers=workers)
    done, every = 0, max(1, len(loader) // 10)
    for i, (x, idx) in enumerate(loader):
        feats = model.backbone.run_stages(x.to(device), 0, stage)
        flat[idx.numpy()] = feats.to(torch.float16).cpu().numpy()
        done += len(idx)
        if (i + 1) % every == 0:
            rate = done / (time.perf_counter() - start)
            log(f"feature cache: {done}/{len(flat)} images ({rate:.0f} images/s)")
    out.flush()
    del flat, out
    with open(tmp, "rb+") as fh:
        os.fsync(fh.fileno())
    tmp.replace(path)
    model.train(was_training)
    log(
        f"feature cache: stages 0-{stage - 1} of {len(image_paths)} rows x {views} views, shape {shape}, "
        f"{path.stat().st_size / 2**20:.0f} MiB in {time.perf_counter() - start:.0f}s -> {path}"
    )


class CachedFeatures(Dataset):
    """Rows of a cache as training or evaluation items: (features, labels, index), like the image datasets.

    Index i is view i // len(positions) of row positions[i % len(positions)]; the index returned is
    i % len(positions), the row's place in this dataset, which is what evaluation orders by.
    """

    def __init__(self, cache: np.ndarray, positions: np.ndarray, labels: np.ndarray, views: int) -> None:
        if views > cache.shape[0]:
            raise ValueError(f"{views} views asked of a cache with {cache.shape[0]}")
        self.cache, self.positions, self.views = cache, np.asarray(positions, dtype=np.int64), views
        row_labels = torch.as_tensor(labels, dtype=torch.long)
        self.labels = row_labels.repeat(views, 1)  # per item, for the class-balanced sampler

    def __len__(self) -> int:
        return len(self.positions) * self.views

    def __getitem__(self, i: int):
        view, j = divmod(i, len(self.positions))
        x = torch.from_numpy(np.asarray(self.cache[view, self.positions[j]], dtype=np.float32))
        return x, self.labels[j], j
