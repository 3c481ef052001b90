"""Train the multitask classifier (or the recognizer): `train()` and the command around it.

    python -m product_attrs.classification.train --profile demo
    python -m product_attrs.classification.train --model-name product_recognizer  (grocery catalog, overlay)
    torchrun --nproc_per_node 4 -m product_attrs.classification.train --profile full

The lifecycle (modeling.lifecycle) does the rest the same way for every model: DDP from torchrun's
environment, a checkpoint per epoch, a killed run resumed by the next with the same settings, a version
folder committed whole, MLflow, and the champion moved only by a better test top-1.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from product_attrs.classification.config import (
    ATTRIBUTE_CLASSIFIER,
    CATALOG_OF,
    MODELS,
    PROFILES,
    TrainConfig,
    model_spec,
)
from product_attrs.classification.task import ClassificationTask
from product_attrs.modeling import command, lifecycle
from product_attrs.modeling import config as mconfig
from product_attrs.modeling.registry import ModelSpec, Registry
from product_attrs.modeling.runner import RunnerOptions


def train(
    cfg: TrainConfig,
    catalog_dir: Path | str,
    registry: Registry,
    *,
    model: str | ModelSpec = ATTRIBUTE_CLASSIFIER,
    device: str = "auto",
    resume: str | Path = "auto",
    register: bool = True,
    allow_download: bool = True,
    log: Callable[[str], None] | None = None,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
    data_dir: Path | None = None,
) -> lifecycle.TrainResult:
    """Train `cfg` on the catalog folder (splits.parquet + label_maps.json) as the model `model`.

    `data_dir`: where `corrections='auto'` looks for the checked corrections (default: the settings')."""
    spec = model_spec(model) if isinstance(model, str) else model
    cfg = for_refresh(cfg.validate(), registry, spec, data_dir, log or print)
    return lifecycle.train(
        spec,
        lambda info, dev, log: ClassificationTask(cfg, catalog_dir, info, dev, log, allow_download),
        registry,
        config=cfg.to_dict(),
        options=RunnerOptions(
            amp=cfg.amp, channels_last=cfg.channels_last, eval_every=cfg.eval_every, seed=cfg.seed
        ),
        device=device,
        threads=cfg.threads,
        resume=resume,
        register=register,
        log=log,
        on_epoch=on_epoch,
    )


def for_refresh(
    cfg: TrainConfig, registry: Registry, spec: ModelSpec, data_dir: Path | None, log: Callable[[str], None]
) -> TrainConfig:
    """`cfg` with its refresh settings made concrete: start_from='champion' becomes the champion's weights
    file (recorded in the manifest as the weights source), corrections='auto' the data root's checked
    corrections (none yet: trains without, and says so)."""
    from product_attrs.catalog.corrections import clean_path
    from product_attrs.modeling.versions import WEIGHTS

    changes: dict[str, Any] = {}
    if cfg.start_from == "champion":
        if registry.champion(spec.name) is None:
            raise mconfig.ConfigError(
                f"start_from 'champion': {spec.name} has no champion yet; train one first"
            )
        changes["weights_file"] = str(registry.champion_dir(spec.name) / WEIGHTS)
    if cfg.corrections == "auto":
        if data_dir is None:
            from product_attrs.settings import get_settings

            data_dir = get_settings().data_dir
        path = clean_path(data_dir)
        changes["corrections"] = str(path) if path.is_file() else ""
        if not path.is_file():
            log(f"corrections 'auto': no {path} yet, training without corrections")
    return dataclasses.replace(cfg, **changes).validate() if changes else cfg


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m product_attrs.classification.train",
        description="Train and evaluate the multitask product classifier (alone or under torchrun).",
    )
    run = command.add_run_arguments(parser)
    run.add_argument(
        "--model-name",
        default=ATTRIBUTE_CLASSIFIER.name,
        help=f"the model to train: {', '.join(MODELS)} (its overlay and catalog are the defaults)",
    )
    run.add_argument(
        "--catalog-dir",
        default=None,
        help="folder with splits.parquet (default: <data_dir>/catalog, or <data_dir>/grocery for the "
        "recognizer)",
    )
    run.add_argument(
        "--no-register",
        action="store_true",
        help="log to MLflow but do not register the model (it cannot become champion)",
    )
    mconfig.add_arguments(parser, TrainConfig, PROFILES)
    return parser


def main(argv: list[str] | None = None) -> int:
    from product_attrs.settings import get_settings

    args = build_parser().parse_args(argv)
    settings = get_settings()
    try:
        spec = model_spec(args.model_name)
        cfg = mconfig.from_args(args, TrainConfig, PROFILES, overlay=spec.overlay)
        catalog = args.catalog_dir or settings.data_dir / CATALOG_OF.get(spec.name, "catalog")
        result = train(
            cfg,
            catalog,
            command.registry_of(args, settings),
            model=spec,
            device=args.device,
            resume=args.resume,
            register=not args.no_register,
            allow_download=command.allow_download(args, settings),
        )
    except Exception as exc:
        if command.exit_code(exc) is None:
            raise
        print(f"error: {exc}", file=sys.stderr)
        return command.exit_code(exc)
    if int(os.environ.get("RANK", "0")) == 0:
        print(result.details.results.to_string(index=False))
        print(
            json.dumps(
                {
                    "version_dir": str(result.version_dir),
                    **{k: round(v, 4) for k, v in result.metrics.items() if math.isfinite(v)},
                    "champion": result.promotion.reason if result.promotion else None,
                }
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
