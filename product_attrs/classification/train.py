"""Train and evaluate the multitask classifier: a function (`train`) and a command.

    python -m product_attrs.classification.train --profile demo
    torchrun --nproc_per_node 4 -m product_attrs.classification.train --profile full

Runs alone or under torchrun (DDP: NCCL on GPUs, gloo on CPU; only rank 0 evaluates, checkpoints and
logs). Phase 1 trains on the top-k article types, phase 2 fine-tunes on all rows (or the rest). A
checkpoint is written after every epoch; `--resume` continues from it (model, optimizer, scheduler,
grad scaler, phase and epoch). The result is a model version folder:

    <models_dir>/<model_name>/<version>/     (model_name: attribute_classifier unless --model-name)
        model.pt             state dict of MultiTaskClassifier (with its ArcMargin metric_head, if any)
        model.json           config, heads, label maps, normalisation, data version, metrics, MLflow ids,
                             embedding_normalized / similarity and the metric-learning settings
        checkpoint.pt        last epoch's training state (for --resume)
        history.json         per-epoch train/test loss and accuracy
        results.csv          top-1/top-5 per head and group (top20 / rest / all), rows and classes averaged
        per_class.csv        per-class scores; `missing_from_train` marks classes with no training row
        confused_pairs.csv   the most confused (true, predicted) pairs per head
        test_predictions.npz test ids and per-head probabilities (for late fusion with the text baseline)
        curves.png, samples.png

Another catalog gets its own model: `--model-name product_recognizer --registered-model product_recognizer`
keeps separate version folders, LATEST file, MLflow experiment, registered model and champion alias.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import math
import os
import random
import re
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, DistributedSampler

from product_attrs.classification import data as cdata
from product_attrs.classification.config import (
    ConfigError,
    TrainConfig,
    add_config_arguments,
    config_from_args,
)
from product_attrs.classification.engine import NonFiniteLossError, Predictions, predict, train_one_epoch
from product_attrs.classification.evaluate import Evaluation, evaluate_model, majority_rate
from product_attrs.classification.metric import ArcFaceSpec, MetricLoss
from product_attrs.classification.model import MultiTaskClassifier, WeightsUnavailableError, build_model
from product_attrs.classification.tracking import (
    REGISTERED_MODEL,
    PromotionDecision,
    RunLogger,
    promote_if_better,
)

MODEL_NAME = "attribute_classifier"
LATEST_FILE = "LATEST"
# A model name is a folder under models_dir (and the MLflow experiment): no path separators.
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
Log = Callable[[str], None]


# ---- distributed -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    initialized_here: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def init_distributed(device: str = "auto") -> DistInfo:
    """Join the process group torchrun describes in the environment (a no-op when started alone)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if dist.is_initialized():
        return DistInfo(rank, world, local_rank, False)
    use_cuda = device != "cpu" and torch.cuda.is_available()
    if use_cuda:
        torch.cuda.set_device(local_rank)
    dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    return DistInfo(rank, world, local_rank, True)


def resolve_device(device: str, info: DistInfo) -> torch.device:
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and info.enabled:
        return torch.device("cuda", info.local_rank)
    return torch.device(device)


def _broadcast(value, info: DistInfo):
    if not info.enabled:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


# ---- checkpoints -----------------------------------------------------------------------------------------


@dataclass
class TrainState:
    """Where training is: the phase index and the epochs completed in it, plus the running history."""

    phase: int = 0
    phase_epoch: int = 0
    global_epoch: int = 0
    history: list[dict] = field(default_factory=list)
    version: str = ""
    mlflow_run_id: str | None = None
    weights_source: str = ""


def save_checkpoint(
    path: Path, model: MultiTaskClassifier, optimizer, scheduler, scaler, state: TrainState, cfg: TrainConfig
) -> None:
    """Atomically write everything needed to continue (a crash mid-write leaves the previous one)."""
    payload = {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "scaler": scaler.state_dict() if scaler is not None else None,
        "state": {k: getattr(state, k) for k in TrainState.__dataclass_fields__},
        "config": cfg.to_dict(),
    }
    tmp = path.with_suffix(".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: Path | str) -> dict:
    """Read a checkpoint file, or the `checkpoint.pt` inside a model version folder."""
    path = Path(path)
    if path.is_dir():
        path = path / "checkpoint.pt"
    if not path.is_file():
        raise ConfigError(f"--resume: no checkpoint at {path}")
    return torch.load(path, map_location="cpu", weights_only=True)


def restore_checkpoint(
    ckpt: dict, model: MultiTaskClassifier, optimizer=None, scheduler=None, scaler=None
) -> TrainState:
    """Load model (and optimizer, scheduler, scaler when given) from a checkpoint; return the TrainState."""
    model.load_state_dict(ckpt["model"])
    if optimizer is not None and ckpt.get("optimizer"):
        optimizer.load_state_dict(ckpt["optimizer"])
    if scheduler is not None and ckpt.get("scheduler"):
        scheduler.load_state_dict(ckpt["scheduler"])
    if scaler is not None and ckpt.get("scaler"):
        scaler.load_state_dict(ckpt["scaler"])
    return TrainState(**ckpt["state"])


_MODEL_SHAPING = ("heads", "backbone", "embedding_dim", "metric_loss", "metric_column")


def _check_resume_config(ckpt: dict, cfg: TrainConfig) -> None:
    old = ckpt.get("config", {})
    for key in _MODEL_SHAPING:
        if key in old and old[key] != getattr(cfg, key):
            raise ConfigError(
                f"--resume: the checkpoint was trained with {key}={old[key]!r}, not {getattr(cfg, key)!r}"
            )


# ---- the training run ------------------------------------------------------------------------------------


@dataclass
class TrainResult:
    version: str
    version_dir: Path
    evaluation: Evaluation | None  # None on ranks other than 0
    history: list[dict]
    metrics: dict[str, float]
    majority_rate: float
    weights_source: str
    mlflow_run_id: str | None = None
    registered_version: str | None = None
    promotion: PromotionDecision | None = None
    model: MultiTaskClassifier | None = field(default=None, repr=False)  # the trained network (unwrapped)


@dataclass
class Phase:
    name: str
    rows: str
    epochs: int
    lr: float


def phases_of(cfg: TrainConfig) -> list[Phase]:
    return [
        Phase("phase1", "top", cfg.phase1_epochs, cfg.phase1_lr),
        Phase("phase2", cfg.phase2_rows, cfg.phase2_epochs, cfg.phase2_lr),
    ]


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _new_version(models_root: Path, data_version: str) -> str:
    base = f"{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}-{data_version[:8]}"
    version, i = base, 1
    while (models_root / version).exists():
        i += 1
        version = f"{base}-{i}"
    return version


def _loader(
    dataset,
    batch_size: int,
    shuffle: bool,
    cfg: TrainConfig,
    info: DistInfo,
    device: torch.device,
    seed: int,
    balance_by: np.ndarray | None = None,
) -> tuple[DataLoader, DistributedSampler | cdata.ClassBalancedBatchSampler | None]:
    """A training (shuffle) or test loader; with `balance_by` (labels) P x K class-balanced batches."""
    if shuffle and balance_by is not None:
        batches = cdata.ClassBalancedBatchSampler(
            balance_by,
            cfg.classes_per_batch(),
            cfg.samples_per_class,
            seed=seed,
            rank=info.rank,
            world_size=info.world_size,
        )
        loader = DataLoader(
            dataset,
            batch_sampler=batches,
            num_workers=cfg.num_workers,
            pin_memory=device.type == "cuda",
            persistent_workers=cfg.num_workers > 0,
        )
        return loader, batches
    sampler = DistributedSampler(dataset, shuffle=True, seed=seed) if (shuffle and info.enabled) else None
    per_rank = len(dataset) // max(info.world_size, 1)
    generator = torch.Generator().manual_seed(seed)
    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle and sampler is None,
        sampler=sampler,
        num_workers=cfg.num_workers,
        pin_memory=device.type == "cuda",
        persistent_workers=cfg.num_workers > 0,
        # BatchNorm in the neck needs >1 row: drop a ragged last batch when there is a full one.
        drop_last=shuffle and per_rank >= batch_size,
        generator=generator,
    )
    return loader, sampler


def _epoch_eval_metrics(pred: Predictions, heads: list[str]) -> dict[str, float]:
    out = {"test_loss": pred.loss}
    for j, h in enumerate(heads):
        y = pred.targets[:, j]
        mask = y != cdata.IGNORE_INDEX
        out[f"test_acc_{h}"] = (
            float((pred.probs[h].argmax(1)[mask] == y[mask]).mean()) if mask.any() else float("nan")
        )
    return out


def check_model_name(name: str, what: str = "model_name") -> str:
    """A model name becomes a folder and an MLflow name: letters, digits, '_', '.', '-' only."""
    if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
        raise ConfigError(
            f"{what} {name!r} must start with a letter or digit and contain only letters, digits, "
            "'_', '.', '-'"
        )
    return name


def arcface_spec(cfg: TrainConfig, label_maps: dict[str, list[str]]) -> ArcFaceSpec | None:
    """The ArcMargin head of this configuration (None unless metric_loss is arcface)."""
    if cfg.metric_loss != "arcface":
        return None
    column = cfg.metric_target()
    return ArcFaceSpec(column, len(label_maps[column]), cfg.arc_margin, cfg.arc_scale, cfg.arc_easy_margin)


def metric_loss_of(cfg: TrainConfig) -> MetricLoss | None:
    """The metric loss engine.train_one_epoch adds (None for metric_loss 'none')."""
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


def metric_manifest(cfg: TrainConfig, arcface: ArcFaceSpec | None) -> dict:
    """model.json's "metric": how the embedding was trained, and the ArcMargin head to rebuild (or None)."""
    return {
        "loss": cfg.metric_loss,
        "column": cfg.metric_target(),
        "weight": cfg.metric_weight,
        "arc_margin": cfg.arc_margin,
        "arc_scale": cfg.arc_scale,
        "arc_easy_margin": cfg.arc_easy_margin,
        "triplet_margin": cfg.triplet_margin,
        "triplet_distance": cfg.triplet_distance,
        "samples_per_class": cfg.samples_per_class,
        "head": None if arcface is None else {"type": "arc_margin", **dataclasses.asdict(arcface)},
    }


def _stderr_log(info: DistInfo) -> Log:
    def log(msg: str) -> None:
        if info.is_main:
            print(f"[classifier] {msg}", file=sys.stderr, flush=True)

    return log


def train(
    cfg: TrainConfig,
    catalog_dir: Path | str,
    models_dir: Path | str,
    *,
    device: str = "auto",
    resume: str | Path | None = None,
    mlflow_tracking_uri: str | None = None,
    mlflow_artifacts_uri: str | None = None,
    register: bool = True,
    log: Log | None = None,
    allow_download: bool = True,
    model_name: str = MODEL_NAME,
    registered_model: str = REGISTERED_MODEL,
) -> TrainResult:
    """Train, evaluate and write a model version folder; log to MLflow and maybe promote the champion.

    `model_name` is the folder under `models_dir` (with its LATEST file) and the MLflow experiment;
    `registered_model` is the MLflow registered model whose `champion` alias may move. Another catalog
    (e.g. `product_recognizer`) thus never touches the attribute classifier's versions or champion.

    Only rank 0 returns a complete result under DDP (other ranks return after the last barrier with the
    same version and history but without files written by them).
    """
    cfg = cfg.validate()
    check_model_name(model_name)
    check_model_name(registered_model, "registered_model")
    info = init_distributed(device)
    log = log or _stderr_log(info)
    try:
        return _train(
            cfg,
            Path(catalog_dir),
            Path(models_dir),
            info,
            resolve_device(device, info),
            resume,
            mlflow_tracking_uri,
            mlflow_artifacts_uri,
            register,
            log,
            allow_download,
            model_name=model_name,
            registered_model=registered_model,
        )
    finally:
        if info.initialized_here:
            dist.destroy_process_group()


def _train(
    cfg: TrainConfig,
    catalog_dir: Path,
    models_dir: Path,
    info: DistInfo,
    device: torch.device,
    resume,
    tracking_uri,
    artifacts_uri,
    register: bool,
    log: Log,
    allow_download: bool,
    *,
    model_name: str = MODEL_NAME,
    registered_model: str = REGISTERED_MODEL,
) -> TrainResult:
    _seed_everything(cfg.seed + info.rank)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    heads = cfg.head_specs()
    head_names = [h.column for h in heads]
    catalog = cdata.load_catalog(catalog_dir)
    cdata.check_heads(heads, catalog)
    label_maps = {h: catalog.label_maps[h] for h in head_names}
    train_rows = cdata.cap_rows(catalog.split("train"), cfg.max_train_rows, cfg.seed)
    if cfg.gallery_repeats:
        gallery_rows = cdata.gallery_training_rows(catalog, head_names, cfg.gallery_repeats)
        train_rows = pd.concat([train_rows, gallery_rows], ignore_index=True)
        log(f"gallery: {len(gallery_rows)} training rows ({cfg.gallery_repeats} x gallery.parquet)")
    test_rows = cdata.cap_rows(catalog.split("test"), cfg.max_test_rows, cfg.seed)
    if len(train_rows) == 0:
        raise ConfigError(f"no training rows (split == 'train') in {catalog_dir}/splits.parquet")

    ckpt = load_checkpoint(resume) if resume else None
    if ckpt is not None:
        _check_resume_config(ckpt, cfg)
    arcface = arcface_spec(cfg, label_maps)
    metric = metric_loss_of(cfg)
    metric_index = head_names.index(cfg.metric_target())
    model, weights_source = build_model(
        cfg.backbone,
        {h: len(label_maps[h]) for h in head_names},
        cfg.embedding_dim,
        cfg.dropout,
        pretrained="none" if ckpt is not None else cfg.pretrained,
        weights_file="" if ckpt is not None else cfg.weights_file,
        freeze_stages=cfg.freeze_stages,
        log=log,
        allow_download=allow_download,
        arcface=arcface,
    )
    state = TrainState()
    if ckpt is not None:
        state = restore_checkpoint(ckpt, model)
        weights_source = state.weights_source
        log(f"resuming {state.version} after phase {state.phase + 1} epoch {state.phase_epoch}")
    else:
        state.weights_source = weights_source
        state.version = _broadcast(
            _new_version(models_dir / model_name, catalog.data_version) if info.is_main else None, info
        )
    log(f"weights: {weights_source}")
    version_dir = models_dir / model_name / state.version
    if info.is_main:
        version_dir.mkdir(parents=True, exist_ok=True)

    model.to(device)
    if cfg.channels_last:
        model.to(memory_format=torch.channels_last)
    ddp_model = (
        torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )
        if info.enabled
        else model
    )

    mean, std = model.mean, model.std
    train_tf = cdata.build_transform(cfg.image_size, True, mean, std, cfg.crop_scale_min)
    test_tf = cdata.build_transform(cfg.image_size, False, mean, std)
    test_ds = cdata.make_dataset(test_rows, heads, label_maps, test_tf)
    test_loader, _ = _loader(test_ds, cfg.batch_size * 2, False, cfg, info, device, cfg.seed)
    amp = cfg.amp and device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=amp)

    logger = RunLogger(tracking_uri if info.is_main else None, artifacts_uri, experiment=model_name)
    params = {
        **cfg.to_dict(),
        "data_version": catalog.data_version,
        "n_train": len(train_rows),
        "n_test": len(test_rows),
        "world_size": info.world_size,
        "device": device.type,
        "weights_source": weights_source,
        "model_name": model_name,
        "registered_model": registered_model,
    }
    state.mlflow_run_id = (
        logger.start(
            state.version,
            params,
            {"data_version": catalog.data_version, "model_version_dir": str(version_dir)},
            resume_run_id=state.mlflow_run_id,
        )
        or state.mlflow_run_id
    )
    last_pred: Predictions | None = None
    last_pred_epoch = -1
    try:
        phases = phases_of(cfg)
        for p_idx, phase in enumerate(phases):
            if p_idx < state.phase or phase.epochs == 0:
                continue
            if p_idx > state.phase:
                state.phase, state.phase_epoch = p_idx, 0
            if state.phase_epoch >= phase.epochs:
                continue
            rows = cdata.phase_rows(train_rows, phase.rows, catalog.top_subset)
            if len(rows) < 2:
                log(f"{phase.name}: only {len(rows)} training rows for '{phase.rows}', skipping the phase")
                continue
            ds = cdata.make_dataset(rows, heads, label_maps, train_tf)
            balance_by = ds.labels[:, metric_index].numpy() if cfg.samples_per_class else None
            loader, sampler = _loader(
                ds, cfg.batch_size, True, cfg, info, device, cfg.seed + p_idx, balance_by
            )
            if isinstance(sampler, cdata.ClassBalancedBatchSampler) and sampler.n_unlabelled:
                log(
                    f"{phase.name}: {sampler.n_unlabelled} rows without a {cfg.metric_target()} label are "
                    "left out of the class-balanced batches"
                )
            params_to_train = [p for p in ddp_model.parameters() if p.requires_grad]
            optimizer = torch.optim.SGD(
                params_to_train, lr=phase.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay
            )
            steps = max(1, len(loader) * phase.epochs)
            scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps)
            if ckpt is not None and ckpt["state"]["phase"] == p_idx and state.phase_epoch > 0:
                restore_checkpoint(ckpt, model, optimizer, scheduler, scaler)
            log(f"{phase.name}: {len(rows)} rows ({phase.rows}), {phase.epochs} epochs, lr {phase.lr}")
            for epoch in range(state.phase_epoch, phase.epochs):
                if sampler is not None:
                    sampler.set_epoch(epoch)
                stats = train_one_epoch(
                    ddp_model,
                    loader,
                    optimizer,
                    heads,
                    device,
                    scaler=scaler,
                    scheduler=scheduler,
                    amp=amp,
                    channels_last=cfg.channels_last,
                    label_smoothing=cfg.label_smoothing,
                    epoch=state.global_epoch + 1,
                    metric=metric,
                )
                state.phase_epoch = epoch + 1
                state.global_epoch += 1
                entry = {
                    "epoch": state.global_epoch,
                    "phase": phase.name,
                    "phase_epoch": epoch + 1,
                    "lr": optimizer.param_groups[0]["lr"],
                    "train_loss": stats.loss,
                    "images_per_s": stats.images_per_s * info.world_size,
                    "seconds": stats.seconds,
                    **{f"train_acc_{h}": v for h, v in stats.head_acc.items()},
                }
                if metric is not None:
                    entry["train_metric_loss"] = stats.metric_loss
                if info.is_main:
                    if state.global_epoch % cfg.eval_every == 0 or epoch + 1 == phase.epochs:
                        last_pred = predict(
                            model, test_loader, heads, device, amp=amp, channels_last=cfg.channels_last
                        )
                        last_pred_epoch = state.global_epoch
                        entry.update(_epoch_eval_metrics(last_pred, head_names))
                    state.history.append(entry)
                    logger.log_metrics(
                        {k: v for k, v in entry.items() if isinstance(v, float)}, state.global_epoch
                    )
                    save_checkpoint(
                        version_dir / "checkpoint.pt", model, optimizer, scheduler, scaler, state, cfg
                    )
                    log(
                        " ".join(
                            f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in entry.items()
                        )
                    )
                state.history = _broadcast(state.history, info)
                if info.enabled:
                    dist.barrier()
        if not info.is_main:
            return TrainResult(
                state.version,
                version_dir,
                None,
                state.history,
                {},
                float("nan"),
                weights_source,
                state.mlflow_run_id,
                model=model,
            )
        if last_pred is None or last_pred_epoch != state.global_epoch:  # e.g. resumed after the last epoch
            last_pred = predict(model, test_loader, heads, device, amp=amp, channels_last=cfg.channels_last)
        result = _finish(
            cfg,
            model,
            catalog,
            train_rows,
            test_rows,
            heads,
            label_maps,
            last_pred,
            state,
            version_dir,
            weights_source,
            logger,
            tracking_uri,
            register,
            log,
            model_name=model_name,
            registered_model=registered_model,
            arcface=arcface,
        )
        logger.end("FINISHED")
        return result
    except BaseException:
        logger.end("FAILED")
        raise


def _finish(
    cfg,
    model,
    catalog,
    train_rows,
    test_rows,
    heads,
    label_maps,
    pred: Predictions,
    state: TrainState,
    version_dir: Path,
    weights_source: str,
    logger: RunLogger,
    tracking_uri,
    register: bool,
    log: Log,
    *,
    model_name: str = MODEL_NAME,
    registered_model: str = REGISTERED_MODEL,
    arcface: ArcFaceSpec | None = None,
) -> TrainResult:
    """Evaluate, write the model version folder, register the model and decide the champion.

    Nothing here assumes the fashion catalog: the primary head is the first of `heads`, and a catalog
    whose rows are all one subset (no "rest") gets NaN for the rest metrics (null in model.json).
    """
    head_names = [h.column for h in heads]
    train_targets = cdata.encode_labels(train_rows, heads, label_maps)
    groups = test_rows["subset"].astype(str).to_numpy(dtype=object)
    evaluation = evaluate_model(
        "image", pred.probs, pred.targets, head_names, label_maps, groups, train_targets
    )
    primary = head_names[0]
    top = catalog.top_subset
    metrics = {
        "test_top1": evaluation.metric(primary, "all"),
        "test_top5": evaluation.metric(primary, "all", "top5"),
        f"test_top1_{top}": evaluation.metric(primary, top),
        f"test_top5_{top}": evaluation.metric(primary, top, "top5"),
        "test_top1_rest": evaluation.metric(primary, "rest"),
        "test_top5_rest": evaluation.metric(primary, "rest", "top5"),
        "test_macro_top1": evaluation.metric(primary, "all", "macro_top1"),
    }
    for h in head_names:  # every head, the primary included (equal to test_top1)
        metrics[f"test_top1_{h}"] = evaluation.metric(h, "all")
    majority = majority_rate(train_targets[:, 0], pred.targets[:, 0])
    metrics["majority_rate"] = majority

    files = {}
    torch.save(model.state_dict(), version_dir / "model.pt")
    files["history"] = version_dir / "history.json"
    files["history"].write_text(json.dumps(state.history, indent=1))
    for name, frame in (
        ("results", evaluation.results),
        ("per_class", evaluation.per_class),
        ("confused_pairs", evaluation.confused),
    ):
        files[name] = version_dir / f"{name}.csv"
        frame.to_csv(files[name], index=False)
    np.savez_compressed(
        version_dir / "test_predictions.npz",
        ids=test_rows["id"].to_numpy(dtype=np.int64),
        **{f"probs__{h}": pred.probs[h].astype(np.float32) for h in head_names},
    )
    from product_attrs.classification import report  # matplotlib: only where pictures are drawn

    files["curves"] = report.plot_curves(state.history, head_names, version_dir / "curves.png")
    files["samples"] = _plot_samples(
        test_rows, pred, primary, label_maps[primary], version_dir / "samples.png", cfg.seed
    )

    manifest = {
        "name": model_name,
        "version": state.version,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "config": cfg.to_dict(),
        "heads": [{"column": h.column, "weight": h.weight} for h in heads],
        "label_maps": label_maps,
        "backbone": cfg.backbone,
        "embedding_dim": cfg.embedding_dim,
        # The retrieval embedding is model.embed(x): the neck output L2-normalised, matched by cosine.
        "embedding_normalized": True,
        "similarity": "cosine",
        "metric": metric_manifest(cfg, arcface),
        "image_size": cfg.image_size,
        "normalization": {"mean": list(model.mean), "std": list(model.std)},
        "weights_source": weights_source,
        "data_version": catalog.data_version,
        "catalog_dir": str(catalog.catalog_dir),
        "n_train": len(train_rows),
        "n_test": len(test_rows),
        "world_size": dist.get_world_size() if dist.is_initialized() else 1,
        "metrics": metrics,
        "missing_from_train": evaluation.missing_from_train,
        "epochs": state.global_epoch,
        "mlflow": {"run_id": state.mlflow_run_id, "registered_model": None, "version": None},
        "promotion": None,
    }
    _write_manifest(version_dir, manifest)
    for name, path in files.items():
        logger.log_artifact(path, "model_version" if name not in ("curves", "samples") else "plots")
    logger.log_metrics({f"final_{k}": v for k, v in metrics.items()}, state.global_epoch)

    registered_version, promotion = None, None
    if register and logger.enabled:
        cpu_model = copy.deepcopy(model).cpu().eval().to(memory_format=torch.contiguous_format)
        registered_version = logger.log_model(
            cpu_model,
            registered_model,
            {
                "test_top1": f"{metrics['test_top1']:.6f}",
                "data_version": catalog.data_version,
                "model_version_dir": str(version_dir),
            },
            extra_files=[version_dir / "model.pt", version_dir / "model.json"],
        )
        promotion = promote_if_better(
            tracking_uri, registered_version, metrics["test_top1"], name=registered_model
        )
        log(f"registry: {registered_model} v{registered_version}; champion: {promotion.reason}")
        manifest["mlflow"].update(registered_model=registered_model, version=registered_version)
        manifest["promotion"] = promotion.to_dict()
        _write_manifest(version_dir, manifest)
    logger.log_artifact(version_dir / "model.json", "model_version")
    (version_dir.parent / LATEST_FILE).write_text(state.version + "\n")
    log(f"wrote {version_dir}: test top-1 {metrics['test_top1']:.4f} (majority rate {majority:.4f})")
    return TrainResult(
        state.version,
        version_dir,
        evaluation,
        state.history,
        metrics,
        majority,
        weights_source,
        state.mlflow_run_id,
        registered_version,
        promotion,
        model,
    )


def _write_manifest(version_dir: Path, manifest: dict) -> None:
    def clean(v):
        if isinstance(v, float) and not np.isfinite(v):
            return None
        if isinstance(v, dict):
            return {k: clean(x) for k, x in v.items()}
        if isinstance(v, list):
            return [clean(x) for x in v]
        return v

    (version_dir / "model.json").write_text(json.dumps(clean(manifest), indent=1))


def _plot_samples(
    test_rows, pred: Predictions, head: str, classes: list[str], path: Path, seed: int, n: int = 16
) -> Path:
    rng = np.random.default_rng(seed)
    idx = (
        np.sort(rng.choice(len(test_rows), size=min(n, len(test_rows)), replace=False))
        if len(test_rows)
        else []
    )
    probs = pred.probs[head]
    true = [str(test_rows[head].iloc[i]) for i in idx]
    from product_attrs.classification import report

    return report.plot_samples(
        [str(test_rows["image_path"].iloc[i]) for i in idx],
        true,
        [classes[int(probs[i].argmax())] for i in idx],
        [float(probs[i].max()) for i in idx],
        path,
        title=f"test predictions: {head}",
    )


# ---- reading a model version -----------------------------------------------------------------------------


def latest_version_dir(models_dir: Path | str, model_name: str = MODEL_NAME) -> Path | None:
    """The folder of the most recently finished training of `model_name`, or None."""
    root = Path(models_dir) / check_model_name(model_name)
    latest = root / LATEST_FILE
    if not latest.exists():
        return None
    path = root / latest.read_text().strip()
    return path if (path / "model.json").exists() else None


def load_model_version(version_dir: Path | str, device: str = "cpu") -> tuple[MultiTaskClassifier, dict]:
    """Rebuild the classifier of a version folder (no pretrained download) and its manifest.

    The ArcMargin metric head recorded in model.json ("metric"."head") is rebuilt too, so model.pt loads
    strictly; older manifests without "metric" load as before.
    """
    version_dir = Path(version_dir)
    manifest = json.loads((version_dir / "model.json").read_text())
    heads = {h["column"]: len(manifest["label_maps"][h["column"]]) for h in manifest["heads"]}
    head = (manifest.get("metric") or {}).get("head")
    arcface = (
        ArcFaceSpec(**{f.name: head[f.name] for f in dataclasses.fields(ArcFaceSpec)}) if head else None
    )
    model = MultiTaskClassifier(manifest["backbone"], heads, manifest["embedding_dim"], arcface=arcface)
    model.load_state_dict(torch.load(version_dir / "model.pt", map_location=device, weights_only=True))
    return model.to(device).eval(), manifest


# ---- command line ----------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m product_attrs.classification.train",
        description="Train and evaluate the multitask product classifier (alone or under torchrun).",
    )
    run = parser.add_argument_group("run (paths and devices; not hyperparameters)")
    run.add_argument(
        "--catalog-dir", default=None, help="folder with splits.parquet (default: <data_dir>/catalog)"
    )
    run.add_argument(
        "--models-dir", default=None, help="where model versions go (default: <data_dir>/models)"
    )
    run.add_argument("--device", default="auto", help="auto, cpu, cuda")
    run.add_argument("--resume", default=None, help="checkpoint.pt or a model version folder to continue")
    run.add_argument("--no-mlflow", action="store_true", help="do not log to MLflow (nor register)")
    run.add_argument("--no-register", action="store_true", help="log to MLflow but do not register the model")
    run.add_argument("--offline", action="store_true", help="never try to download pretrained weights")
    run.add_argument(
        "--model-name",
        default=MODEL_NAME,
        help=f"folder under --models-dir and MLflow experiment (default: {MODEL_NAME})",
    )
    run.add_argument(
        "--registered-model",
        default=REGISTERED_MODEL,
        help=f"MLflow registered model with the champion alias (default: {REGISTERED_MODEL})",
    )
    add_config_arguments(
        parser.add_argument_group("hyperparameters (defaults come from --profile)"), TrainConfig
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    from product_attrs.settings import get_settings

    args = build_parser().parse_args(argv)
    settings = get_settings()
    try:
        cfg = config_from_args(args, TrainConfig)
        result = train(
            cfg,
            Path(args.catalog_dir) if args.catalog_dir else settings.catalog_out_dir,
            Path(args.models_dir) if args.models_dir else settings.models_dir,
            device=args.device,
            resume=args.resume,
            mlflow_tracking_uri=None if args.no_mlflow else settings.mlflow_tracking_uri,
            mlflow_artifacts_uri=settings.mlflow_artifacts_uri,
            register=not args.no_register,
            allow_download=not args.offline,
            model_name=args.model_name,
            registered_model=args.registered_model,
        )
    except (ConfigError, WeightsUnavailableError, cdata.CatalogNotReadyError, NonFiniteLossError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1 if isinstance(exc, NonFiniteLossError) else 2
    if int(os.environ.get("RANK", "0")) == 0:
        print(result.evaluation.results.to_string(index=False))
        print(
            json.dumps(
                {
                    "version_dir": str(result.version_dir),
                    **{k: round(v, 4) for k, v in result.metrics.items() if math.isfinite(v)},
                }
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
