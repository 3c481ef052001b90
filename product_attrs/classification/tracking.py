"""MLflow bookkeeping: one run per training, the registered model, and the `champion` alias.

The alias moves only when a new version's test top-1 beats the current champion's, so the model that
downstream extraction loads (`models:/attribute_classifier@champion`) never gets worse by accident.
Every function takes the registered model's name (`name`, `registered_name`) and RunLogger the
experiment, so another model (e.g. `product_recognizer`) has its own registry entry and champion. The
metric each version is judged on is stored as a tag on the version, so the decision needs no run lookup.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

REGISTERED_MODEL = "attribute_classifier"
EXPERIMENT = "attribute_classifier"
CHAMPION_ALIAS = "champion"
CHAMPION_METRIC_TAG = "test_top1"


def _mlflow():
    import mlflow

    return mlflow


def ensure_experiment(tracking_uri: str, artifacts_uri: str | None, name: str = EXPERIMENT) -> str:
    """The experiment id, creating it with artifacts under `artifacts_uri` (not ./mlruns of the cwd)."""
    mlflow = _mlflow()
    mlflow.set_tracking_uri(tracking_uri)
    if tracking_uri.startswith("sqlite:///"):
        Path(tracking_uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    exp = mlflow.get_experiment_by_name(name)
    if exp is not None:
        return exp.experiment_id
    location = f"{artifacts_uri.rstrip('/')}/{name}" if artifacts_uri else None
    return mlflow.create_experiment(name, artifact_location=location)


class RunLogger:
    """A thin wrapper over the MLflow fluent API; with no tracking URI every call is a no-op."""

    def __init__(
        self, tracking_uri: str | None, artifacts_uri: str | None = None, experiment: str = EXPERIMENT
    ):
        self.enabled = bool(tracking_uri)
        self.tracking_uri = tracking_uri
        self.artifacts_uri = artifacts_uri
        self.experiment = experiment
        self.run_id: str | None = None

    def start(
        self, run_name: str, params: dict[str, Any], tags: dict[str, str], resume_run_id: str | None = None
    ) -> str | None:
        if not self.enabled:
            return None
        mlflow = _mlflow()
        exp_id = ensure_experiment(self.tracking_uri, self.artifacts_uri, self.experiment)
        if resume_run_id:
            run = mlflow.start_run(run_id=resume_run_id)
        else:
            run = mlflow.start_run(experiment_id=exp_id, run_name=run_name, tags=tags)
            mlflow.log_params({k: str(v)[:500] for k, v in params.items()})
        self.run_id = run.info.run_id
        return self.run_id

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        if self.enabled and self.run_id:
            _mlflow().log_metrics(
                {k: float(v) for k, v in metrics.items() if v is not None and math.isfinite(v)}, step=step
            )

    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None:
        if self.enabled and self.run_id:
            _mlflow().log_artifact(str(path), artifact_path=artifact_path)

    def log_model(
        self, model, registered_name: str | None, tags: dict[str, str], extra_files: list[Path] | None = None
    ) -> str | None:
        """Log the PyTorch model (pickle flavour: no example input needed) and register it; its version.

        `extra_files` (the version folder's model.pt and model.json) travel inside the registered model, so
        a machine without the original folder can still rebuild it from the registry's artifacts.
        """
        if not (self.enabled and self.run_id):
            return None
        mlflow = _mlflow()
        import torch
        import torchvision

        info = mlflow.pytorch.log_model(
            model,
            name="model",
            registered_model_name=registered_name,
            serialization_format="pickle",
            extra_files=[str(p) for p in extra_files or []] or None,
            pip_requirements=[
                f"torch=={torch.__version__.split('+')[0]}",
                f"torchvision=={torchvision.__version__.split('+')[0]}",
                "efficientnet-lite-pytorch",
            ],
        )
        version = str(info.registered_model_version) if info.registered_model_version is not None else None
        if version and registered_name:
            client = mlflow.MlflowClient()
            for k, v in tags.items():
                client.set_model_version_tag(registered_name, version, k, str(v))
        return version

    def end(self, status: str = "FINISHED") -> None:
        if self.enabled and self.run_id:
            _mlflow().end_run(status=status)


@dataclass
class PromotionDecision:
    """What `promote_if_better` did and why; stored in the model version json and read by the asset check."""

    promoted: bool
    version: str | None
    value: float
    champion_version: str | None
    champion_value: float | None
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def current_champion(tracking_uri: str, name: str = REGISTERED_MODEL) -> tuple[str | None, float | None]:
    """(version, metric) of the version holding the champion alias, or (None, None)."""
    mlflow = _mlflow()
    from mlflow.exceptions import MlflowException

    client = mlflow.MlflowClient(tracking_uri=tracking_uri)
    try:
        mv = client.get_model_version_by_alias(name, CHAMPION_ALIAS)
    except MlflowException:
        return None, None
    raw = mv.tags.get(CHAMPION_METRIC_TAG)
    return str(mv.version), (float(raw) if raw is not None else None)


def decide_promotion(
    version: str | None, value: float, champion_version: str | None, champion_value: float | None
) -> PromotionDecision:
    """The rule alone (no MLflow): promote when there is no champion or `value` is strictly better."""
    if version is None:
        return PromotionDecision(
            False, None, value, champion_version, champion_value, "model was not registered (MLflow disabled)"
        )
    if champion_version == version:
        return PromotionDecision(
            True, version, value, champion_version, champion_value, "already the champion"
        )
    if not math.isfinite(value):
        return PromotionDecision(
            False, version, value, champion_version, champion_value, "test top-1 is not a number"
        )
    if champion_version is None:
        return PromotionDecision(True, version, value, None, None, "first champion")
    # The champion's value is read back from a tag written with 6 decimals: compare at that precision,
    # or an identical retrain (same top-1) would "beat" its own rounded value.
    if champion_value is not None and not round(value, 6) > round(champion_value, 6):
        return PromotionDecision(
            False,
            version,
            value,
            champion_version,
            champion_value,
            f"test top-1 {value:.4f} does not beat champion v{champion_version} ({champion_value:.4f})",
        )
    previous = f"{champion_value:.4f}" if champion_value is not None else "no recorded top-1"
    return PromotionDecision(
        True,
        version,
        value,
        champion_version,
        champion_value,
        f"test top-1 {value:.4f} beats champion v{champion_version} ({previous})",
    )


def promote_if_better(
    tracking_uri: str, version: str | None, value: float, name: str = REGISTERED_MODEL
) -> PromotionDecision:
    """Point `champion` at `version` only if `value` (test top-1) is strictly better than the champion's."""
    champion_version, champion_value = (
        (None, None) if version is None else current_champion(tracking_uri, name)
    )
    decision = decide_promotion(version, value, champion_version, champion_value)
    if decision.promoted and decision.reason != "already the champion":
        client = _mlflow().MlflowClient(tracking_uri=tracking_uri)
        client.set_model_version_tag(name, version, CHAMPION_METRIC_TAG, f"{value:.6f}")
        client.set_registered_model_alias(name, CHAMPION_ALIAS, version)
    return decision
