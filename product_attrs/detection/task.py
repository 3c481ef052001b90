"""The product detector as a task of the shared lifecycle, after torchvision's references/detection.

One phase of epochs over aspect-ratio grouped batches; the learning rate warms up linearly over the
first iterations, then follows a cosine or multistep schedule over epochs, both expressed per iteration
so that a resumed run lands on the same rate. Every rank evaluates its shard of the test images and the
COCO figures are computed over all of them.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler

from product_attrs.detection.config import DetectorConfig
from product_attrs.detection.dataset import DetectionData, read_detection_dataset
from product_attrs.detection.evaluate import STAT_NAMES, evaluate_coco, to_coco_results
from product_attrs.detection.loader import (
    DetectionTorchDataset,
    coco_ground_truth,
    collate,
    make_eval_loader,
    make_train_loader,
)
from product_attrs.detection.model import BuildInfo, build_detector
from product_attrs.detection.sources import load_detection_source
from product_attrs.modeling import distributed as dist
from product_attrs.modeling.config import ConfigError
from product_attrs.modeling.lifecycle import Finished
from product_attrs.modeling.runner import Log, Phase, Step


def load_training_data(path: Path) -> DetectionData:
    """A folder written by the `detection_dataset` asset, or a raw source folder (COCO json / CSV)."""
    path = Path(path)
    if (path / "images.parquet").is_file():
        return read_detection_dataset(path)
    return load_detection_source(path)


def lr_factor(cfg: DetectorConfig, steps_per_epoch: int):
    """The multiplier of the base rate at iteration `it`: warm-up (first epoch) times the epoch schedule."""
    warmup = min(cfg.warmup_iters, steps_per_epoch)

    def factor(it: int) -> float:
        epoch = it // steps_per_epoch
        if cfg.lr_scheduler == "multistep":
            schedule = cfg.lr_gamma ** sum(epoch >= m for m in cfg.lr_steps)
        else:
            schedule = 0.5 * (1 + math.cos(math.pi * epoch / cfg.epochs))
        if it < warmup:
            alpha = it / warmup
            schedule *= cfg.warmup_factor * (1 - alpha) + alpha
        return schedule

    return factor


class DetectionTask:
    def __init__(
        self,
        cfg: DetectorConfig,
        dataset_dir: Path | str,
        info: dist.DistInfo,
        device: torch.device,
        log: Log,
        allow_download: bool = True,
    ) -> None:
        self.cfg, self.info, self.device = cfg.validate(), info, device
        self.log, self.allow_download = log, allow_download
        self.data = load_training_data(Path(dataset_dir))
        self.data_version = self.data.data_version()
        self.train_ds = DetectionTorchDataset(self.data, "train", train=True, hflip_prob=cfg.hflip_prob)
        if len(self.train_ds) == 0:
            raise ConfigError(f"no training images in {dataset_dir}")
        self.eval_split = "test" if (self.data.images["split"] == "test").any() else "train"
        if self.eval_split != "test":
            log("the dataset has no test images: evaluating on the training images (optimistic)")
        test_ds = DetectionTorchDataset(self.data, self.eval_split, train=False)
        self.n_eval = len(test_ds)
        if info.enabled:
            self.eval_loader = DataLoader(
                test_ds,
                batch_size=cfg.batch_size,
                num_workers=cfg.num_workers,
                sampler=DistributedSampler(test_ds, shuffle=False),
                collate_fn=collate,
            )
        else:
            self.eval_loader = make_eval_loader(test_ds, cfg.batch_size, cfg.num_workers)
        self.ground_truth = coco_ground_truth(self.data, self.eval_split)
        self.build_info: BuildInfo | None = None

    def build(self, resuming: bool) -> tuple[nn.Module, str]:
        # Built as configured even when resuming: which layers are frozen (and frozen BatchNorm) depends on
        # the pretrained weights being there, and the checkpoint's optimizer state must fit that layout.
        model, self.build_info = build_detector(self.cfg, self.data.num_classes, self.allow_download)
        self.log(f"{self.cfg.arch}: {self.build_info.message}")
        return model, self.build_info.weights_source

    def phases(self) -> list[Phase]:
        cfg = self.cfg
        loader, sampler, generator = make_train_loader(
            self.train_ds,
            cfg.batch_size,
            cfg.num_workers,
            cfg.aspect_ratio_group_factor,
            cfg.seed,
            self.info.enabled,
        )

        def optimizer(params: list[nn.Parameter]) -> torch.optim.Optimizer:
            if cfg.optimizer == "adamw":
                return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
            return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)

        return [
            Phase(
                "train",
                cfg.epochs,
                loader,
                optimizer,
                lambda opt, steps: torch.optim.lr_scheduler.LambdaLR(opt, lr_factor(cfg, steps)),
                generator=generator,
                sampler=sampler,
                note=f"{len(self.train_ds)} images, {self.data.num_classes} classes, ",
            )
        ]

    def step(self, model: nn.Module, batch: Any, device: torch.device) -> Step:
        images, targets = batch
        images = [i.to(device, non_blocking=True) for i in images]
        targets = [
            {k: (v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v) for k, v in t.items()}
            for t in targets
        ]
        losses = model(images, targets)
        loss = sum(losses.values())
        b = len(images)
        return Step(
            loss,
            {"loss": float(loss.detach()) * b, **{k: float(v.detach()) * b for k, v in losses.items()}},
            b,
        )

    def epoch_metrics(self, sums: dict[str, float], n: int) -> dict[str, float]:
        return {f"train_{k}": v / max(n, 1) for k, v in sums.items()}

    @torch.inference_mode()
    def evaluate(self, model: nn.Module, device: torch.device) -> dict[str, Any]:
        """COCO figures over the test images; under DDP each rank predicts its shard and rank 0 scores all.

        Results are keyed by image id before merging, so images DistributedSampler repeats count once.
        """
        model.eval()
        rows: dict[int, list[dict[str, Any]]] = {}
        for images, targets in self.eval_loader:
            for t, out in zip(targets, model([i.to(device) for i in images])):
                rows[int(t["image_id"])] = to_coco_results(int(t["image_id"]), out)
        merged: dict[int, list[dict[str, Any]]] = {}
        for part in dist.all_gather_object(rows, self.info):
            merged.update(part)
        if not self.info.is_main:
            return {}
        start = time.perf_counter()
        metrics = evaluate_coco(self.ground_truth, [r for image_rows in merged.values() for r in image_rows])
        metrics.pop("summary", None)
        return {**metrics, "eval_seconds": time.perf_counter() - start, "n_eval_images": len(merged)}

    def finish(self, model: nn.Module, folder: Path, history: list[dict[str, Any]]) -> Finished:
        last = next(h for h in reversed(history) if "mAP" in h)  # the runner always evaluates the last epoch
        rates = [h["images_per_s"] for h in history if np.isfinite(h.get("images_per_s", np.nan))]
        info = {
            "label_map": self.data.label_map,
            "num_classes": self.data.num_classes,
            "build": self.build_info.to_dict() if self.build_info else {},
            "dataset_source": self.data.source,
            "eval_split": self.eval_split,
            "n_train_images": len(self.train_ds),
            "n_eval_images": self.n_eval,
            "per_class_AP": last.get("per_class_AP", {}),
            "train_images_per_s": float(np.median(rates)) if rates else None,
        }
        return Finished({k: last.get(k) for k in STAT_NAMES}, info, last)
