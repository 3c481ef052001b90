"""What every training command shares: the run flags (where versions go, device, resume, MLflow,
offline), the registry they describe, and one exit code per kind of failure.

Exit codes: 2 when the settings or the inputs must change (a bad setting, missing data or weights, a
checkpoint of another training), 1 when the run itself failed (the loss diverged, the registry could not
be reached). Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from product_attrs.modeling.checkpoint import CheckpointError
from product_attrs.modeling.config import ConfigError
from product_attrs.modeling.registry import Registry
from product_attrs.modeling.runner import NonFiniteLossError
from product_attrs.modeling.tracking import RegistryError
from product_attrs.modeling.weights import WeightsUnavailableError

if TYPE_CHECKING:
    from product_attrs.settings import Settings


def add_run_arguments(parser: argparse.ArgumentParser) -> argparse._ArgumentGroup:
    """The flags that are not hyperparameters; the task adds its own (its data folder) to the group."""
    run = parser.add_argument_group("run (paths and devices; not hyperparameters)")
    run.add_argument(
        "--models-dir", type=Path, default=None, help="where model versions go (default <data>/models)"
    )
    run.add_argument("--device", default="auto", help="auto, cpu, cuda")
    run.add_argument(
        "--resume",
        default="auto",
        help="auto: continue an unfinished training with the same settings and data (default); "
        "never: always a new version; or a draft folder to continue",
    )
    run.add_argument(
        "--no-mlflow", action="store_true", help="no MLflow: the store's CHAMPION pointer decides"
    )
    run.add_argument("--offline", action="store_true", help="never try to download pretrained weights")
    return run


def registry_of(args: argparse.Namespace, settings: Settings) -> Registry:
    return Registry(
        args.models_dir or settings.models_dir,
        None if args.no_mlflow else settings.mlflow_tracking_uri,
        settings.mlflow_artifacts_uri,
    )


def allow_download(args: argparse.Namespace, settings: Settings) -> bool:
    return not args.offline and not settings.offline


def exit_code(exc: BaseException) -> int | None:
    """The command's exit code for a failure it reports in one line, or None for a bug."""
    if isinstance(exc, (NonFiniteLossError, RegistryError)):
        return 1
    if isinstance(exc, (ConfigError, WeightsUnavailableError, CheckpointError, FileNotFoundError)):
        return 2
    return None
