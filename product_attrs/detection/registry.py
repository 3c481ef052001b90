"""MLflow tracking and the model registry for the detector (imported lazily: mlflow is slow to import).

The registered model is `product_detector`; alias `champion` moves to a new version only when its mAP
beats the current champion's (stored as the version's `mAP` tag, so no run lookup is needed).
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

MODEL_NAME = "product_detector"
EXPERIMENT = "product_detector"
CHAMPION = "champion"


def should_promote(new_map: float, champion_map: float | None) -> bool:
    """A new version becomes champion when there is none, or when its mAP is strictly higher."""
    if new_map is None or not math.isfinite(new_map):
        return False
    return champion_map is None or not math.isfinite(champion_map) or new_map > champion_map


class Tracker:
    """One MLflow run of a training; all methods are no-ops when `tracking_uri` is None."""

    def __init__(self, tracking_uri: str | None, artifacts_uri: str | None = None, experiment: str = EXPERIMENT) -> None:
        self.enabled = bool(tracking_uri)
        self.run_id: str | None = None
        if not self.enabled:
            return
        import mlflow
        from mlflow.tracking import MlflowClient

        if tracking_uri.startswith("sqlite:///"):
            Path(tracking_uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        self.mlflow = mlflow
        self.client = MlflowClient(tracking_uri=tracking_uri)
        mlflow.set_tracking_uri(tracking_uri)
        exp = self.client.get_experiment_by_name(experiment)
        if exp is None:
            location = f"{artifacts_uri.rstrip('/')}/{experiment}" if artifacts_uri else None
            self.experiment_id = self.client.create_experiment(experiment, artifact_location=location)
        else:
            self.experiment_id = exp.experiment_id

    def start(self, run_name: str, run_id: str | None = None) -> str | None:
        """Start a run, or reopen `run_id` when resuming an interrupted training."""
        if not self.enabled:
            return None
        if run_id:
            self.run_id = run_id
        else:
            self.run_id = self.client.create_run(self.experiment_id, run_name=run_name).info.run_id
        return self.run_id

    def log_params(self, params: dict[str, Any]) -> None:
        if self.enabled:
            from mlflow.entities import Param

            existing = self.client.get_run(self.run_id).data.params
            fresh = [Param(k, str(v)[:6000]) for k, v in params.items() if k not in existing]
            for i in range(0, len(fresh), 100):
                self.client.log_batch(self.run_id, params=fresh[i : i + 100])

    def log_metrics(self, metrics: dict[str, Any], step: int) -> None:
        if self.enabled:
            from mlflow.entities import Metric
            import time

            now = int(time.time() * 1000)
            rows = [Metric(k, float(v), now, step) for k, v in metrics.items()
                    if isinstance(v, (int, float)) and math.isfinite(float(v))]
            if rows:
                self.client.log_batch(self.run_id, metrics=rows)

    def set_tags(self, tags: dict[str, str]) -> None:
        if self.enabled:
            for k, v in tags.items():
                self.client.set_tag(self.run_id, k, v)

    def log_version_folder(self, folder: Path) -> None:
        if self.enabled:
            self.client.log_artifacts(self.run_id, str(folder), artifact_path="model")

    def register(self, metrics: dict[str, Any], tags: dict[str, str], name: str = MODEL_NAME) -> tuple[str | None, bool, float | None]:
        """Register the run's `model` artifacts as a new version; move `champion` if it is better.

        Returns (version, promoted, previous champion mAP).
        """
        if not self.enabled:
            return None, False, None
        from mlflow.exceptions import MlflowException

        try:
            self.client.get_registered_model(name)
        except MlflowException:
            self.client.create_registered_model(name, description="Product detector (Faster R-CNN); alias champion = best mAP")
        source = f"{self.client.get_run(self.run_id).info.artifact_uri}/model"
        mv = self.client.create_model_version(name, source=source, run_id=self.run_id,
                                              tags={**tags, "mAP": repr(float(metrics["mAP"]))})
        try:
            champ = self.client.get_model_version_by_alias(name, CHAMPION)
            champ_map: float | None = float(champ.tags.get("mAP", "nan"))
        except MlflowException:
            champ_map = None
        promoted = should_promote(float(metrics["mAP"]), champ_map)
        if promoted:
            self.client.set_registered_model_alias(name, CHAMPION, mv.version)
        log.info("registered %s version %s (mAP %.4f); champion %s (previous champion mAP %s)",
                 name, mv.version, metrics["mAP"], "moved to it" if promoted else "kept", champ_map)
        return str(mv.version), promoted, champ_map

    def end(self, status: str = "FINISHED") -> None:
        if self.enabled and self.run_id:
            self.client.set_terminated(self.run_id, status=status)
