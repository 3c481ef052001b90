"""The Dagster side of the model lifecycle, shared by every training asset.

- `config_class`: the launchpad Config of a task, generated from its dataclass (plus `profile`), so the
  asset and the command line cannot drift; the model's overlay comes from its ModelSpec, as on the
  command line (the recognizer is always the `recognizer` overlay);
- `TRAINING_RETRY`: a training step whose process dies (killed, out of memory) is retried, and the
  retry resumes the unfinished version from its last checkpoint (modeling.lifecycle);
- `champion_check`: the blocking check every model version gets (it must beat its floor; not becoming
  champion is a warning, since the champion keeps being served);
- `ENGINE_FIELDS`: how many Ray workers train (when PRODUCT_ATTRS_RAY_ADDRESS names a cluster); they lay
  the training out and are not hyperparameters, so they stay out of the settings (and the resume key).
"""

# No `from __future__ import annotations`: Dagster and pydantic read the real type hints.

import math
import typing
from typing import Any, Optional

import dagster as dg
import pydantic

from product_attrs.modeling.config import Profiles, field_specs, resolve
from product_attrs.modeling.registry import ModelSpec
from product_attrs.resources import RegistryResource

#: A killed training step is retried twice; each retry continues the same version from its checkpoint.
TRAINING_RETRY = dg.RetryPolicy(max_retries=2, delay=2)

#: Launchpad fields of every training asset that choose the Ray layout (ignored in-process).
ENGINE_FIELDS: dict[str, Any] = {
    "ray_workers": (
        int,
        pydantic.Field(default=1, ge=1, description="Ray Train workers (ranks) when a Ray cluster is set"),
    ),
    "ray_use_gpu": (
        Optional[bool],  # noqa: UP045 - a runtime type for pydantic
        pydantic.Field(default=None, description="one GPU per Ray worker; unset = when the cluster has them"),
    ),
}


def config_class(name: str, cls: type, profiles: Profiles, doc: str, engine: bool = False) -> type:
    """A Dagster Config whose fields are the dataclass's (None = the profile's value), plus the profile;
    with ``engine``, the Ray layout (ENGINE_FIELDS) of a training asset."""
    fields: dict[str, Any] = {
        "profile": (
            str,
            pydantic.Field(
                default=profiles.default_profile, description=f"one of {sorted(profiles.profiles)}"
            ),
        ),
        **(ENGINE_FIELDS if engine else {}),
    }
    for spec in field_specs(cls):
        tp = list[typing.get_args(spec.type)[0]] if typing.get_origin(spec.type) is tuple else spec.type
        shown = ", ".join(f"{p}: {v[spec.name]!r}" for p, v in profiles.profiles.items() if spec.name in v)
        fields[spec.name] = (
            Optional[tp],  # noqa: UP045 - a runtime type object built from the dataclass's hint
            pydantic.Field(
                default=None,
                description=f"{spec.help} [default {spec.default!r}{'; ' + shown if shown else ''}]",
            ),
        )
    model = pydantic.create_model(name, __base__=dg.Config, **fields)
    model.__doc__ = doc
    return model


def resolve_config(config: dg.Config, cls: type, profiles: Profiles, overlay: Optional[str] = None):
    """The validated dataclass a launchpad config stands for: the profile, the model's overlay, then the
    values given."""
    values = config.model_dump() if hasattr(config, "model_dump") else dict(config)
    profile = values.pop("profile", None)
    for name in ENGINE_FIELDS:
        values.pop(name, None)
    return resolve(cls, profiles, profile, overlay, values)


def engine_options(config: dg.Config) -> dict[str, Any]:
    """The Ray layout a launchpad config asks for: ``workers`` and ``use_gpu`` (None = the cluster's)."""
    values = config.model_dump() if hasattr(config, "model_dump") else dict(config)
    return {"workers": values.get("ray_workers") or 1, "use_gpu": values.get("ray_use_gpu")}


def finite(value: Any) -> Any:
    return None if isinstance(value, float) and not math.isfinite(value) else value


def champion_check(
    spec: ModelSpec, floor: Optional[str] = None, description: str = ""
) -> dg.AssetChecksDefinition:
    """Blocking check of the newest version of `spec`: ERROR when its metric does not beat the metric
    named `floor` (e.g. the majority-class rate), WARN when it did not become the champion."""

    @dg.asset_check(
        asset=spec.name,
        name=f"{spec.name}_is_champion",
        blocking=True,
        description=description or f"The newest {spec.name} beats its floor and became the champion.",
    )
    def _check(models: RegistryResource) -> dg.AssetCheckResult:
        store = models.registry().store(spec.name)
        latest = store.latest()
        if latest is None:
            return dg.AssetCheckResult(passed=False, description=f"no {spec.name} version found")
        manifest = store.manifest(latest)
        promotion = manifest.promotion or {}
        value = manifest.metric(spec.rule.metric)
        floor_value = manifest.metric(floor) if floor else math.nan
        beats_floor = math.isfinite(value) and (not math.isfinite(floor_value) or value > floor_value)
        promoted = bool(promotion.get("promoted"))
        return dg.AssetCheckResult(
            passed=beats_floor and promoted,
            # A retrain that does not beat the champion is worth a warning, not a failed nightly run.
            severity=dg.AssetCheckSeverity.ERROR if not beats_floor else dg.AssetCheckSeverity.WARN,
            description=promotion.get("reason", "no promotion decision recorded"),
            metadata={
                "version": manifest.version,
                spec.rule.metric: finite(value),
                **({floor: finite(floor_value), "beats_floor": beats_floor} if floor else {}),
                "promoted": promoted,
                "registered_version": str(manifest.registered_version or ""),
                "champion_before": str(promotion.get("champion_version") or ""),
                "champion_before_value": finite(promotion.get("champion_value")),
            },
        )

    return _check


def training_metadata(result, extra: Optional[dict[str, Any]] = None) -> dict[str, Any]:
    """What every training asset shows: the version, its metrics, the champion decision, the MLflow ids."""
    manifest = result.manifest
    promotion = manifest.promotion or {}
    return {
        "version": manifest.version,
        "path": dg.MetadataValue.path(str(result.version_dir)),
        "epochs": manifest.epochs,
        "attempts": dg.MetadataValue.json(manifest.attempts),
        "weights_source": manifest.weights_source,
        "mlflow_run_id": manifest.mlflow_run_id or "",
        "registered_version": manifest.registered_version or "",
        "champion": dg.MetadataValue.json(promotion),
        **{k: finite(v) for k, v in manifest.metrics.items()},
        **(extra or {}),
    }
