"""Train the product detector: `train()` and the command around it.

    python -m product_attrs.detection.train --profile demo --dataset data/detection
    torchrun --nproc-per-node 4 -m product_attrs.detection.train --profile full --dataset data/detection

The lifecycle (modeling.lifecycle) does the rest the same way for every model: DDP from torchrun's
environment, a checkpoint per epoch that a retry resumes, a version folder committed whole, MLflow, and
the champion moved only by a better mAP.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from product_attrs.detection.config import PRODUCT_DETECTOR, PROFILES, DetectorConfig
from product_attrs.detection.task import DetectionTask
from product_attrs.modeling import command, lifecycle
from product_attrs.modeling import config as mconfig
from product_attrs.modeling.registry import ModelSpec, Registry
from product_attrs.modeling.runner import RunnerOptions


def train(
    cfg: DetectorConfig,
    dataset_dir: Path | str,
    registry: Registry,
    *,
    model: ModelSpec = PRODUCT_DETECTOR,
    device: str = "auto",
    resume: str | Path = "auto",
    register: bool = True,
    allow_download: bool = True,
    keep_checkpoint: bool = False,
    log: Callable[[str], None] | None = None,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
) -> lifecycle.TrainResult:
    """Train `cfg` on the train split of `dataset_dir`, evaluate on its test split, commit a version."""
    cfg = cfg.validate()
    return lifecycle.train(
        model,
        lambda info, dev, log: DetectionTask(cfg, dataset_dir, info, dev, log, allow_download),
        registry,
        config=cfg.to_dict(),
        options=RunnerOptions(
            amp=cfg.amp,
            channels_last=cfg.channels_last,
            eval_every=cfg.eval_every,
            clip_grad_norm=cfg.clip_grad_norm,
            max_steps=cfg.max_steps_per_epoch,
            seed=cfg.seed,
        ),
        device=device,
        threads=cfg.threads,
        resume=resume,
        register=register,
        keep_checkpoint=keep_checkpoint,
        log=log,
        on_epoch=on_epoch,
    )


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m product_attrs.detection.train",
        description=(
            "Train the product detector (Faster R-CNN); under torchrun, DDP (nccl on GPU, gloo on CPU)."
        ),
    )
    run = command.add_run_arguments(p)
    run.add_argument(
        "--dataset",
        type=Path,
        default=None,
        help="folder written by the detection_dataset asset, or a raw COCO/CSV source folder "
        "(default: <data_dir>/detection)",
    )
    run.add_argument(
        "--keep-checkpoint", action="store_true", help="keep checkpoint.pt in the version folder"
    )
    mconfig.add_arguments(p, DetectorConfig, PROFILES)
    return p


def main(argv: list[str] | None = None) -> int:
    from product_attrs.settings import get_settings

    args = build_parser().parse_args(argv)
    settings = get_settings()
    t0 = time.perf_counter()
    try:
        cfg = mconfig.from_args(args, DetectorConfig, PROFILES)
        result = train(
            cfg,
            args.dataset or settings.detection_out_dir,
            command.registry_of(args, settings),
            device=args.device,
            resume=args.resume,
            keep_checkpoint=args.keep_checkpoint,
            allow_download=command.allow_download(args, settings),
        )
    except Exception as exc:
        if command.exit_code(exc) is None:
            raise
        print(f"error: {exc}", file=sys.stderr)
        return command.exit_code(exc)
    if result.manifest is not None:
        m, info = result.metrics, result.manifest.info
        print(
            json.dumps(
                {
                    "version_dir": str(result.version_dir),
                    **{k: m.get(k) for k in ("mAP", "AP50", "AP75", "AR100")},
                    "train_images_per_s": info.get("train_images_per_s"),
                    "weights_source": result.manifest.weights_source,
                    "champion": result.promotion.reason if result.promotion else None,
                    "seconds": round(time.perf_counter() - t0, 1),
                },
                indent=2,
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
