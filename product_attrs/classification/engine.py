"""One training epoch and one prediction pass: the loops, with nothing about files, phases or logging.

Like torchvision's references/detection engine: AMP with a grad scaler, channels_last inputs, and a
non-finite loss stops training with a clear error instead of silently producing NaN weights.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from product_attrs.classification.config import HeadSpec
from product_attrs.classification.data import IGNORE_INDEX
from product_attrs.classification.metric import MetricLoss


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or infinite; the message says where and what to try."""


def multitask_loss(
    logits: dict[str, torch.Tensor],
    targets: torch.Tensor,
    heads: list[HeadSpec],
    label_smoothing: float = 0.0,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """sum_h weight_h * CE_h, ignoring missing labels.

    A head with no labelled row in the batch contributes 0 * logits, not NaN, so every parameter still
    gets a gradient (DDP requires it) and the total stays finite.
    """
    total = logits[heads[0].column].new_zeros(())
    parts: dict[str, torch.Tensor] = {}
    for j, h in enumerate(heads):
        out, y = logits[h.column].float(), targets[:, j]
        if bool((y != IGNORE_INDEX).any()):
            loss = F.cross_entropy(out, y, ignore_index=IGNORE_INDEX, label_smoothing=label_smoothing)
        else:
            loss = out.sum() * 0.0
        parts[h.column] = loss.detach()
        total = total + h.weight * loss
    return total, parts


@dataclass
class EpochStats:
    loss: float
    head_loss: dict[str, float]
    head_acc: dict[str, float]
    images: int
    seconds: float
    metric_loss: float = float("nan")  # mean unweighted metric loss (NaN without one)

    @property
    def images_per_s(self) -> float:
        return self.images / self.seconds if self.seconds > 0 else float("nan")


def _autocast(device: torch.device, amp: bool):
    # AMP only on CUDA: float16 autocast on CPU is slow and bfloat16 changes results between machines.
    return torch.autocast(device_type="cuda", dtype=torch.float16, enabled=amp and device.type == "cuda")


def _to_device(images: torch.Tensor, device: torch.device, channels_last: bool) -> torch.Tensor:
    images = images.to(device, non_blocking=True)
    return images.contiguous(memory_format=torch.channels_last) if channels_last else images


def train_one_epoch(
    model: nn.Module,
    loader: Iterable,
    optimizer: torch.optim.Optimizer,
    heads: list[HeadSpec],
    device: torch.device,
    *,
    scaler: torch.amp.GradScaler | None = None,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
    amp: bool = False,
    channels_last: bool = False,
    label_smoothing: float = 0.0,
    epoch: int = 0,
    max_steps: int = 0,
    metric: MetricLoss | None = None,
) -> EpochStats:
    """One pass over `loader`; returns mean loss and per-head training accuracy (on labelled rows).

    With `metric`, the loss is the weighted cross-entropy heads + metric.weight * the metric loss, and
    the model is called as `model(images, metric_targets=...)` (see MultiTaskClassifier.forward).
    """
    model.train()
    start = time.perf_counter()
    n_images, loss_sum, metric_sum = 0, 0.0, 0.0
    head_loss = {h.column: 0.0 for h in heads}
    correct = {h.column: 0 for h in heads}
    labelled = {h.column: 0 for h in heads}
    for step, (images, targets, _) in enumerate(loader):
        if max_steps and step >= max_steps:
            break
        images = _to_device(images, device, channels_last)
        targets = targets.to(device, non_blocking=True)
        with _autocast(device, amp):
            if metric is None:
                logits = model(images)
                loss, parts = multitask_loss(logits, targets, heads, label_smoothing)
            else:
                out = model(images, metric_targets=targets[:, metric.target_index])
                logits = out.logits
                loss, parts = multitask_loss(logits, targets, heads, label_smoothing)
                metric_loss = metric(out.emb, out.metric_logits, targets)
                loss = loss + metric.weight * metric_loss
                parts["metric"] = metric_loss.detach()
        value = float(loss.detach())
        if not math.isfinite(value):
            raise NonFiniteLossError(
                f"training loss is {value} at epoch {epoch} step {step} (per head: "
                f"{ {k: float(v) for k, v in parts.items()} }); lower the learning rate, check the input images, "
                "or disable --amp"
            )
        optimizer.zero_grad(set_to_none=True)
        if scaler is not None and scaler.is_enabled():
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
        else:
            loss.backward()
            optimizer.step()
        if scheduler is not None:
            scheduler.step()
        b = images.shape[0]
        n_images += b
        loss_sum += value * b
        if metric is not None:
            metric_sum += float(parts["metric"]) * b
        for j, h in enumerate(heads):
            y = targets[:, j]
            mask = y != IGNORE_INDEX
            head_loss[h.column] += float(parts[h.column]) * b
            correct[h.column] += int((logits[h.column].argmax(1)[mask] == y[mask]).sum())
            labelled[h.column] += int(mask.sum())
    seconds = time.perf_counter() - start
    n = max(n_images, 1)
    return EpochStats(
        loss=loss_sum / n,
        head_loss={k: v / n for k, v in head_loss.items()},
        head_acc={k: correct[k] / labelled[k] if labelled[k] else float("nan") for k in correct},
        images=n_images,
        seconds=seconds,
        metric_loss=metric_sum / n if metric is not None else float("nan"),
    )


@dataclass
class Predictions:
    """Softmax probabilities per head (rows in dataset order), the embeddings and the mean loss.

    `embeddings` are the neck's raw output unless `embeddings_normalized` (predict(normalize=True)):
    then each row has unit L2 norm and a dot product is the cosine similarity used for retrieval.
    `loss` is the weighted cross-entropy of the heads only (no metric loss: it needs training mode).
    """

    probs: dict[str, np.ndarray]
    embeddings: np.ndarray
    targets: np.ndarray
    loss: float
    embeddings_normalized: bool = False


@torch.no_grad()
def predict(
    model: nn.Module,
    loader: Iterable,
    heads: list[HeadSpec],
    device: torch.device,
    *,
    amp: bool = False,
    channels_last: bool = False,
    normalize: bool = False,
) -> Predictions:
    """Evaluate without augmentation; rows come back in dataset order whatever the loader's order.

    Embeddings are raw (the BatchNorm'd neck output, as `model.embed(x, normalize=False)`) by default;
    `normalize=True` L2-normalises them (as `model.embed(x)`), which is what retrieval by cosine expects.
    """
    model.eval()
    probs: dict[str, list[np.ndarray]] = {h.column: [] for h in heads}
    embs: list[np.ndarray] = []
    targets: list[np.ndarray] = []
    order: list[np.ndarray] = []
    loss_sum, n = 0.0, 0
    for images, y, idx in loader:
        images = _to_device(images, device, channels_last)
        y = y.to(device)
        with _autocast(device, amp):
            emb, logits = model.forward_all(images)
            loss, _ = multitask_loss(logits, y, heads)
        loss_sum += float(loss) * images.shape[0]
        n += images.shape[0]
        for h in heads:
            probs[h.column].append(torch.softmax(logits[h.column].float(), 1).cpu().numpy())
        emb = emb.float()
        embs.append((F.normalize(emb, dim=1) if normalize else emb).cpu().numpy())
        targets.append(y.cpu().numpy())
        order.append(np.asarray(idx))
    if not order:
        empty = {h.column: np.zeros((0, model.heads[h.column].out_features), np.float32) for h in heads}
        return Predictions(
            empty,
            np.zeros((0, 0), np.float32),
            np.zeros((0, len(heads)), np.int64),
            float("nan"),
            normalize,
        )
    perm = np.argsort(np.concatenate(order), kind="stable")
    return Predictions(
        probs={k: np.concatenate(v)[perm] for k, v in probs.items()},
        embeddings=np.concatenate(embs)[perm],
        targets=np.concatenate(targets)[perm],
        loss=loss_sum / max(n, 1),
        embeddings_normalized=normalize,
    )
