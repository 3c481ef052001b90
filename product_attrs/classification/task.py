"""The multitask classifier as a task of the shared lifecycle: its data, network, loss and evaluation.

Phase 1 trains on the top-k classes, phase 2 on all rows (or the rest), each with SGD and a cosine
schedule stepped per batch. Only rank 0 evaluates; the runner shares its numbers with the other ranks.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler

from product_attrs.classification import data as cdata
from product_attrs.classification.config import ConfigError, HeadSpec, TrainConfig
from product_attrs.classification.evaluate import evaluate_model, majority_rate
from product_attrs.classification.losses import multitask_loss
from product_attrs.classification.metric import ArcFaceSpec, MetricLoss
from product_attrs.classification.model import build_model, normalization
from product_attrs.modeling.distributed import DistInfo
from product_attrs.modeling.lifecycle import Finished
from product_attrs.modeling.runner import Log, Phase, Step


@dataclass
class Predictions:
    """Softmax probabilities per head (rows in dataset order), the embeddings and the mean loss.

    `embeddings` are the neck's raw output unless `embeddings_normalized`; `loss` is the weighted
    cross-entropy of the heads only (the metric loss needs training mode).
    """

    probs: dict[str, np.ndarray]
    embeddings: np.ndarray
    targets: np.ndarray
    loss: float
    embeddings_normalized: bool = False


def _to_device(images: torch.Tensor, device: torch.device, channels_last: bool) -> torch.Tensor:
    images = images.to(device, non_blocking=True)
    return images.contiguous(memory_format=torch.channels_last) if channels_last else images


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
    """Every row of a labelled loader without augmentation, back in dataset order."""
    model.eval()
    probs: dict[str, list[np.ndarray]] = {h.column: [] for h in heads}
    embs, targets, order = [], [], []
    loss_sum, n = 0.0, 0
    for images, y, idx in loader:
        images, y = _to_device(images, device, channels_last), y.to(device)
        with torch.autocast(
            device_type=device.type, dtype=torch.float16, enabled=amp and device.type == "cuda"
        ):
            emb, logits = model.forward_all(images)
            loss, _ = multitask_loss(logits, y, heads)
        loss_sum, n = loss_sum + float(loss) * len(images), n + len(images)
        for h in heads:
            probs[h.column].append(torch.softmax(logits[h.column].float(), 1).cpu().numpy())
        emb = emb.float()
        embs.append((F.normalize(emb, dim=1) if normalize else emb).cpu().numpy())
        targets.append(y.cpu().numpy())
        order.append(np.asarray(idx))
    if not order:
        empty = {h.column: np.zeros((0, model.heads[h.column].out_features), np.float32) for h in heads}
        return Predictions(
            empty, np.zeros((0, 0), np.float32), np.zeros((0, len(heads)), np.int64), float("nan"), normalize
        )
    perm = np.argsort(np.concatenate(order), kind="stable")
    return Predictions(
        {k: np.concatenate(v)[perm] for k, v in probs.items()},
        np.concatenate(embs)[perm],
        np.concatenate(targets)[perm],
        loss_sum / max(n, 1),
        normalize,
    )


def arcface_spec(cfg: TrainConfig, label_maps: dict[str, list[str]]) -> ArcFaceSpec | None:
    """The ArcMargin head of this configuration (None unless metric_loss is arcface)."""
    if cfg.metric_loss != "arcface":
        return None
    column = cfg.metric_target()
    return ArcFaceSpec(column, len(label_maps[column]), cfg.arc_margin, cfg.arc_scale, cfg.arc_easy_margin)


def metric_loss_of(cfg: TrainConfig) -> MetricLoss | None:
    if cfg.metric_loss == "none":
        return None
    columns = [h.column for h in cfg.head_specs()]
    return MetricLoss(
        cfg.metric_loss,
        columns.index(cfg.metric_target()),
        cfg.metric_weight,
        cfg.triplet_margin,
        cfg.triplet_distance,
    )


def multitask_step(
    model: nn.Module,
    batch: Any,
    device: torch.device,
    heads: list[HeadSpec],
    metric: MetricLoss | None,
    channels_last: bool = False,
    label_smoothing: float = 0.0,
    logit_offsets: dict[str, torch.Tensor] | None = None,
) -> Step:
    """One batch's loss (weighted cross-entropy of every head, plus the metric loss) and the sums the epoch
    statistics are made of (losses, correct and labelled rows per head)."""
    images, targets, _ = batch
    images, targets = _to_device(images, device, channels_last), targets.to(device, non_blocking=True)
    if metric is None:
        logits = model(images)
        loss, parts = multitask_loss(logits, targets, heads, label_smoothing, logit_offsets)
    else:
        out = model(images, metric_targets=targets[:, metric.target_index])
        logits = out.logits
        loss, parts = multitask_loss(logits, targets, heads, label_smoothing, logit_offsets)
        parts["metric"] = metric(out.emb, out.metric_logits, targets)
        loss = loss + metric.weight * parts["metric"]
        parts["metric"] = parts["metric"].detach()
    b = len(images)
    sums = {"loss": float(loss.detach()) * b, **{f"loss_{k}": float(v) * b for k, v in parts.items()}}
    for j, h in enumerate(heads):
        mask = targets[:, j] != cdata.IGNORE_INDEX
        sums[f"correct_{h.column}"] = float((logits[h.column].argmax(1)[mask] == targets[mask, j]).sum())
        sums[f"labelled_{h.column}"] = float(mask.sum())
    return Step(loss, sums, b)


class ClassificationTask:
    def __init__(
        self,
        cfg: TrainConfig,
        catalog_dir: Path | str,
        info: DistInfo,
        device: torch.device,
        log: Log,
        allow_download: bool = True,
    ) -> None:
        self.cfg, self.info, self.device = cfg.validate(), info, device
        self.log, self.allow_download = log, allow_download
        self.heads = cfg.head_specs()
        self.head_names = [h.column for h in self.heads]
        self.catalog = cdata.load_catalog(catalog_dir)
        cdata.check_heads(self.heads, self.catalog)
        self.data_version = self.catalog.data_version
        #: The checked label corrections this version trains with (their ids go to the manifest).
        self.corrections_seen: list[str] = []
        if cfg.corrections:
            self._apply_corrections(Path(cfg.corrections))
        self.label_maps = {h: self.catalog.label_maps[h] for h in self.head_names}
        # Held-out products (classes of the primary head) are never trained on, gallery images included,
        # and leave the test rows too: the classifier cannot name them, retrieval scores them separately.
        primary = self.head_names[0]
        self.holdout = cdata.holdout_classes(self.label_maps[primary], cfg.holdout_products)

        def seen(frame: pd.DataFrame) -> pd.DataFrame:
            return frame[~frame[primary].astype(str).isin(self.holdout).to_numpy()].reset_index(drop=True)

        train_rows, test_rows = self.catalog.split("train"), self.catalog.split("test")
        if self.holdout:
            kept_train, kept_test = seen(train_rows), seen(test_rows)
            log(
                f"holdout_products: {len(self.holdout)} of {len(self.label_maps[primary])} {primary} classes "
                f"kept out ({len(train_rows) - len(kept_train)} train and {len(test_rows) - len(kept_test)} "
                f"test rows): {', '.join(self.holdout)}"
            )
            train_rows, test_rows = kept_train, kept_test
        train_rows = cdata.cap_rows(train_rows, cfg.max_train_rows, cfg.seed)
        # Rows the image model never trains on, predicted at the end: what the image/text fusion is fitted
        # on (text_baseline), so that nothing is ever tuned on the test split.
        train_rows, self.val_rows = cdata.validation_split(train_rows, primary, cfg.val_fraction)
        if len(self.val_rows):
            log(f"validation: {len(self.val_rows)} train rows kept out of training ({cfg.val_fraction:.0%})")
        if cfg.gallery_repeats:
            gallery = seen(cdata.gallery_training_rows(self.catalog, self.head_names, cfg.gallery_repeats))
            train_rows = pd.concat([train_rows, gallery], ignore_index=True)
            log(f"gallery: {len(gallery)} training rows ({cfg.gallery_repeats} x gallery.parquet)")
        if len(train_rows) == 0:
            raise ConfigError(f"no training rows (split == 'train') in {catalog_dir}/splits.parquet")
        self.train_rows = train_rows
        self.test_rows = cdata.cap_rows(test_rows, cfg.max_test_rows, cfg.seed)
        self.arcface = arcface_spec(cfg, self.label_maps)
        self.metric = metric_loss_of(cfg)
        self.mean, self.std = normalization(cfg.backbone)
        self.amp = cfg.amp and device.type == "cuda"
        test_tf = cdata.build_transform(cfg.input_size(), False, self.mean, self.std)
        self.test_loader = self._eval_loader(
            cdata.make_dataset(self.test_rows, self.heads, self.label_maps, test_tf)
        )
        self.val_loader = self._eval_loader(
            cdata.make_dataset(self.val_rows, self.heads, self.label_maps, test_tf)
        )
        self.logit_offsets = self._logit_offsets()
        self._model: nn.Module | None = None
        self._epochs, self._pred, self._pred_at = 0, None, -1

    def _apply_corrections(self, path: Path) -> None:
        """Corrected labels replace the catalog's on training rows (a new label grows its head's map);
        the data version then names the corrections, so a draft never resumes with others."""
        from product_attrs.catalog.corrections import apply_corrections

        if not path.is_file():
            raise ConfigError(f"corrections file {path} does not exist (materialize label_corrections)")
        corrections = pd.read_parquet(path)
        frame = self.catalog.frame
        train_ids = set(frame.loc[cdata._is(frame["split"], "train"), "id"].astype("int64"))
        # The test split is the fixed evaluation set: a correction there is never applied (the checks
        # quarantine it already; this keeps a hand-made file from moving the goalposts).
        usable = corrections[corrections["product_id"].astype("int64").isin(train_ids)]
        frame, maps, corrected = apply_corrections(frame, self.catalog.label_maps, usable)
        self.catalog = dataclasses.replace(self.catalog, frame=frame.assign(_corrected=corrected.to_numpy()))
        self.label_maps = {h: maps[h] for h in self.head_names}
        self.corrections_seen = sorted(usable["correction_id"].astype(str))
        digest = hashlib.sha1("\n".join(self.corrections_seen).encode()).hexdigest()[:12]
        self.data_version = f"{self.catalog.data_version}+corrections-{digest}"
        self.log(
            f"corrections: {len(usable)} of {len(corrections)} applied to {int(corrected.sum())} training "
            f"rows (weight {self.cfg.correction_weight}) from {path}"
        )

    def _eval_loader(self, dataset) -> DataLoader:
        return DataLoader(
            dataset,
            batch_size=self.cfg.batch_size * 2,
            num_workers=self.cfg.num_workers,
            pin_memory=self.device.type == "cuda",
        )

    def _logit_offsets(self) -> dict[str, torch.Tensor] | None:
        """tau * log(class prior over the training rows) per head, for the logit-adjusted loss."""
        tau = self.cfg.logit_adjustment
        if not tau:
            return None
        targets = cdata.encode_labels(self.train_rows, self.heads, self.label_maps)
        out = {}
        for j, h in enumerate(self.head_names):
            y = targets[:, j][targets[:, j] != cdata.IGNORE_INDEX]
            counts = np.bincount(y, minlength=len(self.label_maps[h])) + 1.0  # unseen classes stay finite
            offsets = tau * np.log(counts / counts.sum())
            out[h] = torch.tensor(offsets, dtype=torch.float32, device=self.device)
        return out

    # ---- model and phases ----------------------------------------------------------------------------
    def build(self, resuming: bool) -> tuple[nn.Module, str]:
        cfg, pretrained = (
            self.cfg,
            not resuming,
        )  # frozen stages do not depend on the weights: skip loading them
        model, source = build_model(
            cfg.backbone,
            {h: len(self.label_maps[h]) for h in self.head_names},
            cfg.embedding_dim,
            cfg.dropout,
            pretrained=cfg.pretrained if pretrained else "none",
            weights_file=cfg.weights_file if pretrained else "",
            freeze_stages=cfg.freeze_stages,
            log=self.log,
            allow_download=self.allow_download,
            arcface=self.arcface,
        )
        self._model = model
        return model, source

    def _optimizer(self, params: list[nn.Parameter], lr: float) -> torch.optim.Optimizer:
        cfg = self.cfg
        if cfg.optimizer == "adamw":
            return torch.optim.AdamW(params, lr=lr, weight_decay=cfg.weight_decay)
        return torch.optim.SGD(params, lr=lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)

    def _cached_datasets(self) -> Any:
        """Swap images for the cached output of the frozen stages: test and validation loaders now, and a
        function giving a phase's training dataset (both views of its rows)."""
        from product_attrs.classification import feature_cache as fc

        cfg, model = self.cfg, self._model
        assert model is not None, "build() comes before phases()"
        common = {
            "size": cfg.input_size(),
            "weights_source": f"{cfg.backbone}:{cfg.pretrained}:{cfg.weights_file}",
            "data_version": self.data_version,
            "device": self.device,
            "workers": cfg.num_workers,
            "log": self.log,
        }
        folder = self.catalog.catalog_dir / fc.CACHE_FOLDER
        fit = pd.concat([self.train_rows, self.val_rows], ignore_index=True)
        fit_cache = fc.build_cache(model, fit["image_path"].astype(str).tolist(), folder, views=2, **common)
        test_cache = fc.build_cache(
            model, self.test_rows["image_path"].astype(str).tolist(), folder, views=1, **common
        )

        def labels(frame: pd.DataFrame) -> np.ndarray:
            return cdata.encode_labels(frame, self.heads, self.label_maps)

        self.test_loader = self._eval_loader(
            fc.CachedFeatures(test_cache, np.arange(len(self.test_rows)), labels(self.test_rows), 1)
        )
        n_train = len(self.train_rows)
        self.val_loader = self._eval_loader(
            fc.CachedFeatures(fit_cache, n_train + np.arange(len(self.val_rows)), labels(self.val_rows), 1)
        )
        model.input_stage = cfg.freeze_stages
        return lambda rows: fc.CachedFeatures(fit_cache, rows["_pos"].to_numpy(), labels(rows), 2)

    def phases(self) -> list[Phase]:
        cfg = self.cfg
        cached = self._cached_datasets() if cfg.feature_cache else None
        plan = [
            ("phase1", "top", cfg.phase1_epochs, cfg.phase1_lr),
            ("phase2", cfg.phase2_rows, cfg.phase2_epochs, cfg.phase2_lr),
        ]
        train_tf = cdata.build_transform(cfg.input_size(), True, self.mean, self.std, cfg.crop_scale_min)
        phases = []
        for index, (name, rows_kind, epochs, lr) in enumerate(plan):
            positioned = self.train_rows.assign(_pos=np.arange(len(self.train_rows)))
            rows = cdata.phase_rows(positioned, rows_kind, self.catalog.top_subset)
            rows = self.weighted(rows)
            if epochs and len(rows) < 2:
                self.log(f"{name}: only {len(rows)} training rows for '{rows_kind}', skipping the phase")
                epochs = 0
            dataset = (
                cached(rows) if cached else cdata.make_dataset(rows, self.heads, self.label_maps, train_tf)
            )
            loader, sampler, generator = (
                self._loader(dataset, cfg.seed + index) if epochs else ([], None, None)
            )
            phases.append(
                Phase(
                    name,
                    epochs,
                    loader,
                    optimizer=lambda params, lr=lr: self._optimizer(params, lr),
                    scheduler=lambda opt, steps, epochs=epochs: torch.optim.lr_scheduler.CosineAnnealingLR(
                        opt, T_max=max(1, steps * epochs)
                    ),
                    generator=generator,
                    sampler=sampler,
                    note=f"{len(rows)} rows ({rows_kind}), lr {lr}, ",
                )
            )
        return phases

    def weighted(self, rows: pd.DataFrame) -> pd.DataFrame:
        """`rows` with each corrected row repeated correction_weight times in all: an integer weight in the
        loss that works the same for images and cached features."""
        extra = self.cfg.correction_weight - 1
        if "_corrected" not in rows or extra <= 0 or not rows["_corrected"].any():
            return rows
        corrected = rows[rows["_corrected"].to_numpy(bool)]
        return pd.concat([rows, *([corrected] * extra)], ignore_index=True)

    def _loader(self, dataset, seed: int):
        """Shuffled batches (or P x K class-balanced ones); workers are not persistent, so that every epoch
        starts from the reseeded generator and a resumed run draws what an uninterrupted one would."""
        cfg, info = self.cfg, self.info
        common = {"num_workers": cfg.num_workers, "pin_memory": self.device.type == "cuda"}
        if cfg.samples_per_class:
            labels = dataset.labels[:, self.head_names.index(cfg.metric_target())].numpy()
            batches = cdata.ClassBalancedBatchSampler(
                labels,
                cfg.classes_per_batch(),
                cfg.samples_per_class,
                seed=seed,
                rank=info.rank,
                world_size=info.world_size,
            )
            if batches.n_unlabelled:
                self.log(
                    f"{batches.n_unlabelled} rows without a {cfg.metric_target()} label are left out of the "
                    "class-balanced batches"
                )
            generator = torch.Generator()
            return (
                DataLoader(dataset, batch_sampler=batches, generator=generator, **common),
                batches,
                generator,
            )
        sampler = DistributedSampler(dataset, shuffle=True, seed=seed) if info.enabled else None
        generator = torch.Generator()
        # BatchNorm in the neck needs >1 row: drop a ragged last batch when there is a full one.
        drop_last = len(dataset) // max(info.world_size, 1) >= cfg.batch_size
        loader = DataLoader(
            dataset,
            batch_size=cfg.batch_size,
            shuffle=sampler is None,
            sampler=sampler,
            drop_last=drop_last,
            generator=generator,
            **common,
        )
        return loader, sampler, generator

    # ---- training step and epoch statistics ----------------------------------------------------------
    def step(self, model: nn.Module, batch: Any, device: torch.device) -> Step:
        return multitask_step(
            model,
            batch,
            device,
            self.heads,
            self.metric,
            self.cfg.channels_last,
            self.cfg.label_smoothing,
            self.logit_offsets,
        )

    def epoch_metrics(self, sums: dict[str, float], n: int) -> dict[str, float]:
        self._epochs += 1
        out = {"train_loss": sums.get("loss", math.nan) / max(n, 1)}
        for h in self.head_names:
            labelled = sums.get(f"labelled_{h}", 0.0)
            out[f"train_acc_{h}"] = sums.get(f"correct_{h}", 0.0) / labelled if labelled else math.nan
        if self.metric is not None:
            out["train_metric_loss"] = sums.get("loss_metric", math.nan) / max(n, 1)
        return out

    def _predict(self, model: nn.Module) -> Predictions:
        return predict(
            model,
            self.test_loader,
            self.heads,
            self.device,
            amp=self.amp,
            channels_last=self.cfg.channels_last,
        )

    def evaluate(self, model: nn.Module, device: torch.device) -> dict[str, Any]:
        if not self.info.is_main:
            return {}
        self._pred, self._pred_at = self._predict(model), self._epochs
        out = {"test_loss": self._pred.loss}
        for j, h in enumerate(self.head_names):
            y = self._pred.targets[:, j]
            mask = y != cdata.IGNORE_INDEX
            out[f"test_acc_{h}"] = (
                float((self._pred.probs[h].argmax(1)[mask] == y[mask]).mean()) if mask.any() else math.nan
            )
        return out

    # ---- the version's reports -----------------------------------------------------------------------
    def finish(self, model: nn.Module, folder: Path, history: list[dict[str, Any]]) -> Finished:
        from product_attrs.classification import report  # matplotlib: only where pictures are drawn

        pred = (
            self._pred
            if self._pred is not None and self._pred_at == self._epochs > 0
            else self._predict(model)
        )
        train_targets = cdata.encode_labels(self.train_rows, self.heads, self.label_maps)
        groups = self.test_rows["subset"].astype(str).to_numpy(dtype=object)
        evaluation = evaluate_model(
            "image", pred.probs, pred.targets, self.head_names, self.label_maps, groups, train_targets
        )
        primary, top = self.head_names[0], self.catalog.top_subset
        metrics = {
            "test_top1": evaluation.metric(primary, "all"),
            "test_top5": evaluation.metric(primary, "all", "top5"),
            f"test_top1_{top}": evaluation.metric(primary, top),
            f"test_top5_{top}": evaluation.metric(primary, top, "top5"),
            "test_top1_rest": evaluation.metric(primary, "rest"),
            "test_top5_rest": evaluation.metric(primary, "rest", "top5"),
            "test_macro_top1": evaluation.metric(primary, "all", "macro_top1"),
            **{f"test_top1_{h}": evaluation.metric(h, "all") for h in self.head_names},
            "majority_rate": majority_rate(train_targets[:, 0], pred.targets[:, 0]),
        }
        report.write_reports(
            folder, evaluation, history, pred, self.test_rows, self.head_names, self.label_maps, self.cfg.seed
        )
        if len(self.val_rows):
            val = predict(model, self.val_loader, self.heads, self.device, amp=self.amp)
            np.savez_compressed(
                folder / "val_predictions.npz",
                ids=self.val_rows["id"].to_numpy(dtype=np.int64),
                **{f"probs__{h}": val.probs[h].astype(np.float32) for h in self.head_names},
            )
            y = val.targets[:, 0]
            mask = y != cdata.IGNORE_INDEX
            metrics["val_top1"] = float((val.probs[primary].argmax(1)[mask] == y[mask]).mean())
        model.input_stage = 0  # the version reads images again
        cfg = self.cfg
        info = {
            "heads": [{"column": h.column, "weight": h.weight} for h in self.heads],
            "label_maps": self.label_maps,
            "backbone": cfg.backbone,
            "embedding_dim": cfg.embedding_dim,
            # The retrieval embedding is model.embed(x): the neck output L2-normalised, matched by cosine.
            "embedding_normalized": True,
            "similarity": "cosine",
            "metric": {
                **{
                    k: getattr(cfg, k)
                    for k in (
                        "metric_loss",
                        "metric_weight",
                        "arc_margin",
                        "arc_scale",
                        "arc_easy_margin",
                        "triplet_margin",
                        "triplet_distance",
                        "samples_per_class",
                    )
                },
                "column": cfg.metric_target(),
                "head": None if self.arcface is None else dataclasses.asdict(self.arcface),
            },
            "image_size": cfg.image_size,
            "image_height": cfg.input_size()[0],
            "normalization": {"mean": list(self.mean), "std": list(self.std)},
            "catalog_dir": str(self.catalog.catalog_dir),
            "n_train": len(self.train_rows),
            "n_test": len(self.test_rows),
            "n_val": len(self.val_rows),
            # The label corrections this version saw (catalog.corrections ids), and their weight.
            "corrections": {"ids": self.corrections_seen, "weight": cfg.correction_weight},
            "missing_from_train": evaluation.missing_from_train,
            # Products never trained on (retrieval reports recall on them apart); test rows exclude them.
            "holdout_products": {
                "column": self.head_names[0],
                "fraction": cfg.holdout_products,
                "seed": cdata.HOLDOUT_SEED,
                "classes": self.holdout,
            },
        }
        return Finished(metrics, info, evaluation)
