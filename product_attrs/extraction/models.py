"""Which model versions extraction uses: the MLflow ``champion`` of each model, else the latest version.

A model version is a folder on disk (weights + json); the registry's champion alias points at one through
the version's ``model_version_dir`` tag, or through its artifacts, which are downloaded to a local cache.
"""

from __future__ import annotations

import logging
from pathlib import Path

log = logging.getLogger(__name__)

CLASSIFIER = "attribute_classifier"
DETECTOR = "product_detector"
_DIR_TAGS = ("model_version_dir", "version_dir")


def _latest(models_dir: Path, name: str) -> Path | None:
    for marker in ("LATEST", "latest.txt"):  # the classifier's and the detector's pointer files
        latest = models_dir / name / marker
        if latest.exists():
            path = models_dir / name / latest.read_text().strip()
            if path.is_dir():
                return path
    root = models_dir / name
    versions = sorted(p for p in root.glob("*") if p.is_dir() and not p.name.startswith(".")) if root.exists() else []
    return versions[-1] if versions else None


def champion_dir(tracking_uri: str, models_dir: Path, name: str) -> tuple[Path | None, str]:
    """(version folder, how it was chosen). None when no version of ``name`` exists at all."""
    try:
        import mlflow
        from mlflow.exceptions import MlflowException

        client = mlflow.MlflowClient(tracking_uri=tracking_uri)
        mv = client.get_model_version_by_alias(name, "champion")
    except Exception as exc:  # noqa: BLE001 - no store, no model, no alias: fall back below
        mv = None
        reason = f"no champion in the registry ({type(exc).__name__})"
    else:
        for tag in _DIR_TAGS:
            path = mv.tags.get(tag)
            if path and Path(path).is_dir():
                return Path(path), f"registry champion v{mv.version}"
        try:
            cache = models_dir / ".registry_cache" / name / str(mv.version)
            if not cache.exists():
                mlflow.artifacts.download_artifacts(artifact_uri=mv.source, dst_path=str(cache), tracking_uri=tracking_uri)
            found = [p.parent for p in cache.rglob("model.pt")]
            if found:
                return found[0], f"registry champion v{mv.version} (artifacts)"
        except (MlflowException, OSError) as exc:
            log.warning("champion v%s of %s has no readable folder: %s", mv.version, name, exc)
        reason = f"champion v{mv.version} has no readable folder"
    latest = _latest(models_dir, name)
    return latest, (f"latest version ({reason})" if latest else reason)
