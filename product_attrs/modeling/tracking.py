"""The one wrapper around MLflow: runs (params, metrics, artifacts), registered versions, the champion alias.

MLflow is imported only when a tracking URI is given (it costs seconds). A registered version carries
the version folder's name as the tag `version` and the judged metric as a tag written with the
promotion rule's precision, so deciding and serving never need to look a run up. An error of the store
(an unreachable server, a locked SQLite file) is raised as `RegistryError`: it must never read as
"there is no champion yet", which would promote whatever was trained last.
"""

from __future__ import annotations

import contextlib
import fcntl
import math
import time
from pathlib import Path
from typing import Any

ALIAS = "champion"
VERSION_TAG = "version"


class RegistryError(RuntimeError):
    """The model registry could not answer; the message says which store and what failed."""


class Tracker:
    """MLflow runs and registered models for one tracking URI (artifacts under `artifacts_uri`)."""

    def __init__(self, tracking_uri: str, artifacts_uri: str | None = None) -> None:
        import mlflow
        from mlflow.tracking import MlflowClient

        self.uri = tracking_uri
        self.artifacts_uri = artifacts_uri
        self._mlflow = mlflow
        with _creation_lock(tracking_uri):
            self.client = self._call("opening the store", MlflowClient, tracking_uri=tracking_uri)

    def _call(self, what: str, fn, *args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - every store failure becomes one clear error
            raise RegistryError(
                f"MLflow at {self.uri}: {what} failed ({type(exc).__name__}: "
                f"{str(exc).splitlines()[0][:300] if str(exc) else ''})"
            ) from exc

    # ---- runs ---------------------------------------------------------------------------------------
    def _experiment(self, name: str) -> str:
        exp = self._call("reading the experiment", self.client.get_experiment_by_name, name)
        if exp is not None:
            return exp.experiment_id
        location = f"{self.artifacts_uri.rstrip('/')}/{name}" if self.artifacts_uri else None
        return self._call(
            "creating the experiment", self.client.create_experiment, name, artifact_location=location
        )

    def start_run(
        self,
        experiment: str,
        run_name: str,
        params: dict[str, Any],
        tags: dict[str, str],
        run_id: str | None = None,
    ) -> str:
        """A new run, or `run_id` reopened (a resumed training keeps its run)."""
        if run_id:
            self._call("reopening the run", self.client.update_run, run_id, status="RUNNING")
            return run_id
        run = self._call(
            "starting a run",
            self.client.create_run,
            self._experiment(experiment),
            run_name=run_name,
            tags=tags,
        )
        from mlflow.entities import Param

        rows = [Param(k, str(v)[:6000]) for k, v in params.items()]
        for i in range(0, len(rows), 100):
            self._call("logging params", self.client.log_batch, run.info.run_id, params=rows[i : i + 100])
        return run.info.run_id

    def log_metrics(self, run_id: str, metrics: dict[str, Any], step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        rows = [
            Metric(k, float(v), now, step)
            for k, v in metrics.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(float(v))
        ]
        if rows:
            self._call("logging metrics", self.client.log_batch, run_id, metrics=rows)

    def log_artifacts(
        self, run_id: str, folder: Path, artifact_path: str = "model", skip: tuple[str, ...] = ()
    ) -> None:
        for path in sorted(Path(folder).iterdir()):
            if path.is_file() and path.name not in skip and not path.name.startswith("."):
                self._call("logging artifacts", self.client.log_artifact, run_id, str(path), artifact_path)

    def end_run(self, run_id: str, status: str = "FINISHED") -> None:
        self._call("ending the run", self.client.set_terminated, run_id, status=status)

    # ---- registry -----------------------------------------------------------------------------------
    def register(self, name: str, run_id: str, tags: dict[str, str], artifact_path: str = "model") -> str:
        """A new registered version of `name` from the run's logged version folder."""
        from mlflow.exceptions import MlflowException

        try:
            self.client.get_registered_model(name)
        except MlflowException as exc:
            if _not_found(exc):
                self._call("creating the registered model", self.client.create_registered_model, name)
            else:
                raise RegistryError(
                    f"MLflow at {self.uri}: reading registered model {name} failed ({exc})"
                ) from exc
        run = self._call("reading the run", self.client.get_run, run_id)
        mv = self._call(
            "registering the version",
            self.client.create_model_version,
            name,
            source=f"{run.info.artifact_uri}/{artifact_path}",
            run_id=run_id,
            tags=tags,
        )
        return str(mv.version)

    def champion(self, name: str) -> tuple[str, dict[str, str]] | None:
        """(registered version, its tags) behind the alias, or None when there is no champion yet."""
        from mlflow.exceptions import MlflowException

        try:
            mv = self.client.get_model_version_by_alias(name, ALIAS)
        except MlflowException as exc:
            if _not_found(exc):
                return None
            raise RegistryError(
                f"MLflow at {self.uri}: reading the champion of {name} failed ({exc})"
            ) from exc
        except Exception as exc:  # noqa: BLE001 - e.g. sqlite "database is locked"
            raise RegistryError(
                f"MLflow at {self.uri}: reading the champion of {name} failed ({type(exc).__name__}: {exc})"
            ) from exc
        return str(mv.version), dict(mv.tags)

    def set_champion(self, name: str, registered_version: str, tags: dict[str, str]) -> None:
        for k, v in tags.items():
            self._call(
                "tagging the version", self.client.set_model_version_tag, name, registered_version, k, v
            )
        self._call(
            "moving the champion alias",
            self.client.set_registered_model_alias,
            name,
            ALIAS,
            registered_version,
        )

    def download(self, name: str, registered_version: str, dest: Path) -> Path:
        """The registered version's files, for a machine that lacks the version folder."""
        source = self._call(
            "reading the version", self.client.get_model_version, name, registered_version
        ).source
        dest.mkdir(parents=True, exist_ok=True)
        return Path(
            self._call(
                "downloading artifacts",
                self._mlflow.artifacts.download_artifacts,
                artifact_uri=source,
                dst_path=str(dest),
                tracking_uri=self.uri,
            )
        )


@contextlib.contextmanager
def _creation_lock(tracking_uri: str):
    """One process at a time opens a SQLite store: the first open creates its tables, and two trainings
    starting together both tried to (alembic: "expected to match one row ... 0 found")."""
    if not tracking_uri.startswith("sqlite:///"):
        yield
        return
    db = Path(tracking_uri.removeprefix("sqlite:///"))
    db.parent.mkdir(parents=True, exist_ok=True)
    with open(db.with_name(db.name + ".lock"), "a+") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        yield


def _not_found(exc: Exception) -> bool:
    """Whether MLflow said that the model or its alias does not exist, and nothing else: a proxy's
    "404 Not Found" page or a server error whose text says "not found" is a failure of the store, and read
    as "no champion yet" it would promote whatever was trained last."""
    code = getattr(exc, "error_code", "")
    if code == "RESOURCE_DOES_NOT_EXIST":
        return True
    # MLflow's SQL store reports a missing alias as INVALID_PARAMETER_VALUE "Registered model alias ... not
    # found."; other invalid parameters are errors.
    text = str(exc).lower()
    return code == "INVALID_PARAMETER_VALUE" and "alias" in text and "not found" in text
