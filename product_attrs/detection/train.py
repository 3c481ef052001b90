"""Train, evaluate and version the product detector; also a command (`python -m product_attrs.detection.train`).

    python -m product_attrs.detection.train --profile demo --dataset data/detection
    torchrun --nproc-per-node 4 -m product_attrs.detection.train --profile full --dataset data/detection

After torchvision references/detection/train.py: DDP from torchrun's environment, aspect-ratio grouped
batches, LR warm-up, AMP with a GradScaler (CUDA), a checkpoint every epoch that `--resume` continues.
The result is a model version folder `<models>/product_detector/<version>/` holding `model.pt`
(state_dict), `config.json`, `label_map.json`, `metrics.json` and `manifest.json` (data version, weights
source, MLflow ids), which needs neither Dagster nor MLflow to be opened.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import random
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch

from product_attrs.detection import distributed as dist_utils
from product_attrs.detection.config import DetectorConfig, add_config_arguments, config_from_args
from product_attrs.detection.dataset import DetectionData, load_detection_source, read_detection_dataset
from product_attrs.detection.engine import evaluate, train_one_epoch
from product_attrs.detection.loader import DetectionTorchDataset, coco_ground_truth, collate, make_eval_loader, make_train_loader
from product_attrs.detection.model import build_detector, count_parameters
from product_attrs.detection.registry import MODEL_NAME, Tracker, should_promote

log = logging.getLogger(__name__)

CHECKPOINT = "checkpoint.pth"
WEIGHTS = "model.pt"


@dataclass
class TrainResult:
    """What a training produced; `metrics` are those of the last evaluation (test split)."""

    version_dir: Path
    metrics: dict[str, Any]
    history: list[dict[str, Any]] = field(default_factory=list)
    build: dict[str, Any] = field(default_factory=dict)
    run_id: str | None = None
    registered_version: str | None = None
    promoted: bool = False
    previous_champion_map: float | None = None
    train_images_per_s: float = 0.0


def load_training_data(path: Path) -> DetectionData:
    """A folder written by the `detection_dataset` asset, or a raw source folder (COCO json / CSV)."""
    path = Path(path)
    if (path / "images.parquet").is_file():
        return read_detection_dataset(path)
    return load_detection_source(path)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _atomic_save(obj: Any, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def save_checkpoint(
    path: Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    scaler: torch.amp.GradScaler | None,
    epoch: int,
    **extra: Any,
) -> None:
    """Everything needed to continue: model, optimizer, LR scheduler, AMP scaler, epoch, plus `extra`."""
    cfg = extra.pop("cfg", None)
    _atomic_save({
        "model": model.state_dict(), "optimizer": optimizer.state_dict(), "lr_scheduler": scheduler.state_dict(),
        "scaler": scaler.state_dict() if scaler is not None else None, "epoch": epoch, "config": cfg, **extra,
    }, Path(path))


def restore_checkpoint(
    ckpt: dict[str, Any],
    model: torch.nn.Module | None,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    scaler: torch.amp.GradScaler | None,
) -> int:
    """Load a checkpoint's states into the given objects; returns the epoch to start from."""
    if model is not None:
        model.load_state_dict(ckpt["model"])
    optimizer.load_state_dict(ckpt["optimizer"])
    scheduler.load_state_dict(ckpt["lr_scheduler"])
    if scaler is not None and ckpt.get("scaler"):
        scaler.load_state_dict(ckpt["scaler"])
    return int(ckpt["epoch"]) + 1


def new_version_name(data_version: str) -> str:
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ") + "-" + data_version[:8]


def _make_optimizer(cfg: DetectorConfig, model: torch.nn.Module) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)


def _make_scheduler(cfg: DetectorConfig, optimizer: torch.optim.Optimizer) -> torch.optim.lr_scheduler.LRScheduler:
    if cfg.lr_scheduler == "multistep":
        return torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=list(cfg.lr_steps), gamma=cfg.lr_gamma)
    return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=cfg.epochs)


def _unwrap(model: torch.nn.Module) -> torch.nn.Module:
    return model.module if hasattr(model, "module") else model


def train_detector(
    cfg: DetectorConfig,
    dataset_dir: Path,
    models_dir: Path,
    *,
    tracking_uri: str | None = None,
    artifacts_uri: str | None = None,
    resume: Path | None = None,
    keep_checkpoint: bool = False,
    stop_after_epochs: int | None = None,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
) -> TrainResult:
    """Train `cfg` on the train split of `dataset_dir`, evaluate on its test split, write a version folder.

    `resume`: a checkpoint.pth of an interrupted run; training continues in its version folder.
    `stop_after_epochs`: stop (leaving the checkpoint) after that many epochs of this call, as an
    interruption would; used to test resuming.
    `tracking_uri`: MLflow tracking URI; None disables MLflow (no run, no registration).
    """
    distributed, device = dist_utils.init_distributed(cfg.device)
    if cfg.num_threads > 0:
        torch.set_num_threads(cfg.num_threads)
    if device.type == "cpu":
        torch.set_flush_denormal(True)  # denormal gradients made CPU conv backward several times slower
    seed_everything(cfg.seed + dist_utils.rank())
    data = load_training_data(dataset_dir)
    data_version = data.data_version()

    # ---- resume state, version folder
    ckpt: dict[str, Any] | None = None
    if resume is not None:
        ckpt = torch.load(Path(resume), map_location="cpu", weights_only=False)
        saved_cfg = DetectorConfig.from_dict(ckpt["config"])
        if saved_cfg != cfg:
            log.warning("resuming with the checkpoint's config (it differs from the one given)")
            cfg = saved_cfg
        if ckpt["label_map"] != data.label_map:
            raise ValueError(f"cannot resume {resume}: its label map differs from the dataset's")
        version_dir = Path(resume).parent
    else:
        version_dir = Path(models_dir) / MODEL_NAME / dist_utils.broadcast_object(new_version_name(data_version))
    if dist_utils.is_main():
        version_dir.mkdir(parents=True, exist_ok=True)

    # ---- data
    train_ds = DetectionTorchDataset(data, "train", train=True, hflip_prob=cfg.hflip_prob)
    eval_split = "test" if (data.images["split"] == "test").any() else "train"
    if eval_split != "test":
        log.warning("the dataset has no test images: evaluating on the training images (optimistic)")
    test_ds = DetectionTorchDataset(data, eval_split, train=False)
    if len(train_ds) == 0:
        raise ValueError(f"no training images in {dataset_dir}")
    train_loader, train_sampler = make_train_loader(train_ds, cfg.batch_size, cfg.workers, cfg.aspect_ratio_group_factor, cfg.seed, distributed)
    if distributed:
        eval_sampler = torch.utils.data.DistributedSampler(test_ds, shuffle=False)
        eval_loader = torch.utils.data.DataLoader(test_ds, batch_size=cfg.batch_size, sampler=eval_sampler,
                                                  num_workers=cfg.workers, collate_fn=collate)
    else:
        eval_loader = make_eval_loader(test_ds, cfg.batch_size, cfg.workers)
    gt = coco_ground_truth(data, eval_split)

    # ---- model, optimisation
    model, info = build_detector(dataclasses.replace(cfg, weights_path="") if ckpt is not None else cfg, data.num_classes)
    if ckpt is not None:
        model.load_state_dict(ckpt["model"])  # before DDP wraps it and before the optimizer is built
    model.to(device)
    n_params, n_trainable = count_parameters(model)
    if distributed:
        model = torch.nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    optimizer = _make_optimizer(cfg, _unwrap(model))
    scheduler = _make_scheduler(cfg, optimizer)
    scaler = torch.amp.GradScaler("cuda") if cfg.amp and device.type == "cuda" else None
    start_epoch, history, run_id = 0, [], None
    if ckpt is not None:
        start_epoch = restore_checkpoint(ckpt, None, optimizer, scheduler, scaler)
        history = list(ckpt.get("history", []))
        run_id = ckpt.get("mlflow_run_id")
        info_dict = ckpt.get("build", info.to_dict())
    else:
        info_dict = info.to_dict()

    tracker = Tracker(tracking_uri, artifacts_uri) if dist_utils.is_main() else Tracker(None)
    run_id = tracker.start(run_name=version_dir.name, run_id=run_id)
    tracker.log_params({**cfg.to_dict(), "data_version": data_version, "num_classes": data.num_classes,
                        "weights_source": info_dict["weights_source"], "world_size": dist_utils.world_size(),
                        "n_train_images": len(train_ds), "n_eval_images": len(test_ds), "eval_split": eval_split})
    log.info("training %s: %d train / %d %s images, K=%d, %d params (%d trainable), device %s, world %d, from epoch %d",
             cfg.arch, len(train_ds), len(test_ds), eval_split, data.num_classes, n_params, n_trainable, device,
             dist_utils.world_size(), start_epoch)

    metrics: dict[str, Any] = history[-1].get("eval", {}) if history else {}
    epochs_run = 0
    try:
        for epoch in range(start_epoch, cfg.epochs):
            if distributed and hasattr(train_sampler, "set_epoch"):
                train_sampler.set_epoch(epoch)
            stats = train_one_epoch(model, optimizer, train_loader, device, epoch, scaler=scaler,
                                    warmup_iters=cfg.warmup_iters, warmup_factor=cfg.warmup_factor,
                                    clip_grad_norm=cfg.clip_grad_norm, max_steps=cfg.max_steps_per_epoch)
            stats["images_per_s"] *= dist_utils.world_size()  # all ranks together
            scheduler.step()
            record: dict[str, Any] = {"epoch": epoch, "train": stats}
            last = epoch == cfg.epochs - 1
            if last or (cfg.eval_every > 0 and (epoch + 1) % cfg.eval_every == 0):
                metrics = evaluate(_unwrap(model), eval_loader, device, gt)
                record["eval"] = {k: v for k, v in metrics.items() if k != "summary"}
                if dist_utils.is_main():
                    log.info("epoch %d: loss %.4f, %.2f img/s, mAP %.4f AP50 %.4f", epoch, stats["loss"], stats["images_per_s"],
                             metrics["mAP"], metrics["AP50"])
            history.append(record)
            if dist_utils.is_main():
                tracker.log_metrics({f"train_{k}": v for k, v in stats.items()}, step=epoch)
                if "eval" in record:
                    tracker.log_metrics({k: v for k, v in record["eval"].items() if k != "per_class_AP"}, step=epoch)
                save_checkpoint(version_dir / CHECKPOINT, _unwrap(model), optimizer, scheduler, scaler, epoch,
                                cfg=cfg.to_dict(), label_map=data.label_map, history=history, build=info_dict,
                                mlflow_run_id=run_id, data_version=data_version)
            if on_epoch is not None:
                on_epoch(record)
            epochs_run += 1
            if stop_after_epochs is not None and epochs_run >= stop_after_epochs and not last:
                log.info("stopping after %d epoch(s) as asked; resume from %s", epochs_run, version_dir / CHECKPOINT)
                tracker.end("KILLED")
                return TrainResult(version_dir, metrics, history, info_dict, run_id)
    except BaseException:
        tracker.end("FAILED")
        raise
    dist_utils.barrier()

    result = TrainResult(version_dir, metrics, history, info_dict, run_id)
    train_rates = [h["train"]["images_per_s"] for h in history if h["train"].get("images_per_s")]
    result.train_images_per_s = float(np.median(train_rates)) if train_rates else 0.0
    if dist_utils.is_main():
        write_version_folder(version_dir, _unwrap(model), cfg, data, metrics, info_dict, history, run_id)
        tracker.log_version_folder(version_dir)
        tags = {"data_version": data_version, "version_dir": str(version_dir), "arch": cfg.arch, "profile": cfg.profile}
        result.registered_version, result.promoted, result.previous_champion_map = tracker.register(metrics, tags)
        registry = {"model_name": MODEL_NAME, "version": result.registered_version, "champion": result.promoted,
                    "previous_champion_mAP": result.previous_champion_map, "mlflow_run_id": run_id}
        if not tracker.enabled:  # no registry: decide against the local champion's metrics
            result.previous_champion_map = local_champion_map(version_dir.parent.parent)
            result.promoted = should_promote(float(metrics.get("mAP", float("nan"))), result.previous_champion_map)
            registry["champion"], registry["previous_champion_mAP"] = result.promoted, result.previous_champion_map
        (version_dir / "registry.json").write_text(json.dumps(registry, indent=2))
        update_pointers(version_dir, result.promoted)
        tracker.end("FINISHED")
        if not keep_checkpoint:
            (version_dir / CHECKPOINT).unlink(missing_ok=True)
    dist_utils.barrier()
    return result


def write_version_folder(
    version_dir: Path,
    model: torch.nn.Module,
    cfg: DetectorConfig,
    data: DetectionData,
    metrics: dict[str, Any],
    build: dict[str, Any],
    history: list[dict[str, Any]],
    run_id: str | None,
) -> None:
    """The model version's home on disk: weights + json of config, label map, metrics, provenance."""
    version_dir.mkdir(parents=True, exist_ok=True)
    _atomic_save(model.state_dict(), version_dir / WEIGHTS)
    (version_dir / "config.json").write_text(cfg.to_json())
    (version_dir / "label_map.json").write_text(json.dumps(data.label_map, indent=2))
    (version_dir / "metrics.json").write_text(json.dumps({k: v for k, v in metrics.items() if k != "summary"}, indent=2, default=float))
    (version_dir / "history.json").write_text(json.dumps(history, indent=2, default=float))
    manifest = {
        "model_name": MODEL_NAME,
        "version": version_dir.name,
        "created": datetime.now(timezone.utc).isoformat(),
        "data_version": data.data_version(),
        "dataset_source": data.source,
        "num_classes": data.num_classes,
        "build": build,
        "mlflow_run_id": run_id,
        "torch": torch.__version__,
    }
    (version_dir / "manifest.json").write_text(json.dumps(manifest, indent=2))


def _write_pointer(path: Path, value: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(value + "\n")
    os.replace(tmp, path)


def update_pointers(version_dir: Path, champion: bool) -> None:
    """`latest.txt` (always) and `champion.txt` (when promoted) name version folders beside them."""
    _write_pointer(version_dir.parent / "latest.txt", version_dir.name)
    if champion:
        _write_pointer(version_dir.parent / "champion.txt", version_dir.name)


def resolve_version(models_dir: Path, which: str = "champion") -> Path:
    """The folder of the `champion` or `latest` version (champion falls back to latest)."""
    root = Path(models_dir) / MODEL_NAME
    for name in ((which, "latest") if which == "champion" else (which,)):
        pointer = root / f"{name}.txt"
        if pointer.is_file():
            return root / pointer.read_text().strip()
    raise FileNotFoundError(f"no trained {MODEL_NAME} under {root} (no {which}.txt)")


def local_champion_map(models_dir: Path) -> float | None:
    """mAP of the version `champion.txt` names, from its metrics.json (None when there is none)."""
    pointer = Path(models_dir) / MODEL_NAME / "champion.txt"
    if not pointer.is_file():
        return None
    metrics_file = pointer.parent / pointer.read_text().strip() / "metrics.json"
    return float(json.loads(metrics_file.read_text())["mAP"]) if metrics_file.is_file() else None


# ------------------------------------------------------------------------------------------- CLI


def build_parser() -> argparse.ArgumentParser:
    from product_attrs.settings import get_settings

    s = get_settings()
    p = argparse.ArgumentParser(
        prog="python -m product_attrs.detection.train",
        description="Train the product detector (Faster R-CNN). Under torchrun, runs DDP (nccl on GPU, gloo on CPU).",
    )
    p.add_argument("--dataset", type=Path, default=s.detection_out_dir,
                   help=f"folder written by the detection_dataset asset, or a raw COCO/CSV source folder (default {s.detection_out_dir})")
    p.add_argument("--models-dir", type=Path, default=s.models_dir, help=f"where model versions go (default {s.models_dir})")
    p.add_argument("--resume", type=Path, default=None, help="checkpoint.pth of an interrupted run")
    p.add_argument("--tracking-uri", default=s.mlflow_tracking_uri, help="MLflow tracking URI (default from settings)")
    p.add_argument("--artifacts-uri", default=s.mlflow_artifacts_uri, help="MLflow artifact root for a new experiment")
    p.add_argument("--no-mlflow", action="store_true", help="do not log to MLflow nor register the model")
    p.add_argument("--keep-checkpoint", action="store_true", help="keep checkpoint.pth in the version folder")
    add_config_arguments(p)
    return p


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    cfg = config_from_args(args)
    t0 = time.perf_counter()
    try:
        result = train_detector(
            cfg, args.dataset, args.models_dir,
            tracking_uri=None if args.no_mlflow else args.tracking_uri,
            artifacts_uri=args.artifacts_uri, resume=args.resume, keep_checkpoint=args.keep_checkpoint,
        )
        main_process = dist_utils.is_main()
    finally:
        dist_utils.cleanup()
    if main_process:
        m = result.metrics
        print(json.dumps({
            "version_dir": str(result.version_dir), "mAP": m.get("mAP"), "AP50": m.get("AP50"), "AP75": m.get("AP75"),
            "AR100": m.get("AR100"), "train_images_per_s": round(result.train_images_per_s, 2),
            "registered_version": result.registered_version, "champion": result.promoted,
            "weights_source": result.build.get("weights_source"), "seconds": round(time.perf_counter() - t0, 1),
        }, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
