"""One training epoch and one evaluation pass, after torchvision references/detection/engine.py."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

from product_attrs.detection import distributed as dist_utils
from product_attrs.detection.coco_eval import evaluate_coco, to_coco_results

log = logging.getLogger(__name__)


class NonFiniteLossError(FloatingPointError):
    """Training produced a NaN/inf loss: stop rather than silently training garbage."""


def _to_device(images: Iterable[torch.Tensor], targets: Iterable[dict[str, Any]], device: torch.device) -> tuple[list[torch.Tensor], list[dict[str, Any]]]:
    imgs = [i.to(device, non_blocking=True) for i in images]
    tgts = [{k: (v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v) for k, v in t.items()} for t in targets]
    return imgs, tgts


def warmup_scheduler(optimizer: torch.optim.Optimizer, warmup_iters: int, warmup_factor: float) -> torch.optim.lr_scheduler.LRScheduler | None:
    """Linear LR warm-up over the first iterations (epoch 0 only, as in the references)."""
    if warmup_iters <= 0:
        return None
    return torch.optim.lr_scheduler.LinearLR(optimizer, start_factor=warmup_factor, total_iters=warmup_iters)


def train_one_epoch(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    loader: Iterable[Any],
    device: torch.device,
    epoch: int,
    scaler: torch.amp.GradScaler | None = None,
    warmup_iters: int = 0,
    warmup_factor: float = 0.001,
    clip_grad_norm: float = 0.0,
    max_steps: int = 0,
    log_every: int = 10,
) -> dict[str, float]:
    """Train one epoch; returns mean losses, images seen and images/s (this process).

    AMP is used when a GradScaler is given (CUDA only). A non-finite loss raises NonFiniteLossError
    with the loss components, so a diverging run stops at once with a clear reason.
    """
    model.train()
    # Warm-up must finish within this epoch: the epoch schedulers continue from the LR it leaves.
    steps_here = min(_len_or(loader, warmup_iters), max_steps) if max_steps else _len_or(loader, warmup_iters)
    warmup_total = min(warmup_iters, steps_here)
    warmup = warmup_scheduler(optimizer, warmup_total, warmup_factor) if epoch == 0 else None
    sums: dict[str, float] = {}
    n_steps = n_images = 0
    t0 = time.perf_counter()
    for step, (images, targets) in enumerate(loader):
        if max_steps and step >= max_steps:
            break
        images, targets = _to_device(images, targets, device)
        with torch.autocast(device_type=device.type, enabled=scaler is not None):
            loss_dict = model(images, targets)
            losses = sum(loss_dict.values())
        reduced = dist_utils.reduce_dict({k: v.detach() for k, v in loss_dict.items()})
        loss_value = float(sum(reduced.values()))
        if not math.isfinite(loss_value):
            parts = {k: float(v) for k, v in reduced.items()}
            raise NonFiniteLossError(f"loss is {loss_value} at epoch {epoch} step {step} ({parts}); stopping training. "
                                     "Try a lower --lr, more --warmup-iters, or check the boxes.")
        optimizer.zero_grad(set_to_none=True)
        if scaler is not None:
            scaler.scale(losses).backward()
            if clip_grad_norm > 0:
                scaler.unscale_(optimizer)
                torch.nn.utils.clip_grad_norm_(model.parameters(), clip_grad_norm)
            scaler.step(optimizer)
            scaler.update()
        else:
            losses.backward()
            if clip_grad_norm > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), clip_grad_norm)
            optimizer.step()
        if warmup is not None and step < warmup_total:
            warmup.step()
        for k, v in reduced.items():
            sums[k] = sums.get(k, 0.0) + float(v)
        sums["loss"] = sums.get("loss", 0.0) + loss_value
        n_steps += 1
        n_images += len(images)
        if log_every and step % log_every == 0:
            log.info("epoch %d step %d loss %.4f lr %.5f", epoch, step, loss_value, optimizer.param_groups[0]["lr"])
    elapsed = time.perf_counter() - t0
    out = {k: v / max(n_steps, 1) for k, v in sums.items()}
    out.update(steps=float(n_steps), images=float(n_images), seconds=elapsed, images_per_s=n_images / elapsed if elapsed else 0.0,
               lr=float(optimizer.param_groups[0]["lr"]))
    return out


def _len_or(loader: Iterable[Any], default: int) -> int:
    try:
        return len(loader)  # type: ignore[arg-type]
    except TypeError:
        return default


@torch.inference_mode()
def predict(model: nn.Module, loader: Iterable[Any], device: torch.device) -> dict[int, dict[str, torch.Tensor]]:
    """{image_id: {boxes, scores, labels}} on CPU, for every image the loader yields."""
    model.eval()
    outputs: dict[int, dict[str, torch.Tensor]] = {}
    for images, targets in loader:
        images = [i.to(device) for i in images]
        for t, o in zip(targets, model(images)):
            outputs[int(t["image_id"])] = {k: v.to("cpu") for k, v in o.items()}
    return outputs


def evaluate(model: nn.Module, loader: Iterable[Any], device: torch.device, ground_truth: dict[str, Any]) -> dict[str, Any]:
    """COCO metrics over the loader's images; under DDP each rank predicts its shard and all gather.

    Results are keyed by image id before merging, so the images DistributedSampler repeats to even
    out the shards are counted once.
    """
    outputs = predict(model, loader, device)
    rows_by_image = {iid: to_coco_results(iid, out) for iid, out in outputs.items()}
    if dist_utils.is_dist():
        merged: dict[int, list[dict[str, Any]]] = {}
        for part in dist_utils.all_gather_object(rows_by_image):
            merged.update(part)
        rows_by_image = merged
    t0 = time.perf_counter()
    metrics = evaluate_coco(ground_truth, [r for rows in rows_by_image.values() for r in rows])
    metrics["eval_seconds"] = time.perf_counter() - t0
    metrics["n_eval_images"] = len(rows_by_image)
    return metrics
