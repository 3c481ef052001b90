"""Dagster assets of the classification domain; the only module here that imports Dagster.

`attribute_classifier` trains in-process with the same `train()` the command runs (torchrun is the way to
several GPUs: `python -m product_attrs.classification.train`). Its Config is generated from
`TrainConfig`, the dataclass that also generates the command's flags, so the two cannot drift.
"""

# No `from __future__ import annotations`: Dagster reads the real type hints (context, resources, Config).

import base64
import json
import math
from pathlib import Path
from typing import Optional

import dagster as dg
import pydantic

from product_attrs.classification.config import (
    PROFILES,
    TextConfig,
    TrainConfig,
    config_field_specs,
    resolve_config,
)
from product_attrs.resources import GPU_POOL, ComputeResource, PathsResource

GROUP = "training"


def _dagster_config(name: str, cls: type, doc: str, with_profile: bool) -> type:
    """A Dagster Config whose fields are the dataclass's; None means 'the profile's value'."""
    fields: dict = {}
    if with_profile:
        fields["profile"] = (str, pydantic.Field(default="demo", description=f"one of {sorted(PROFILES)}"))
    for field_name, tp, default, help_text in config_field_specs(cls):
        demo = PROFILES["demo"].get(field_name, default)
        fields[field_name] = (
            Optional[tp],  # noqa: UP045 - a runtime type object built from the dataclass's hint
            pydantic.Field(default=None, description=f"{help_text} [full: {default!r}, demo: {demo!r}]"),
        )
    model = pydantic.create_model(name, __base__=dg.Config, **fields)
    model.__doc__ = doc
    return model


AttributeClassifierConfig = _dagster_config(
    "AttributeClassifierConfig",
    TrainConfig,
    "Hyperparameters of the classifier: a profile (demo/full) plus any TrainConfig field to override.",
    True,
)
TextBaselineConfig = _dagster_config(
    "TextBaselineConfig",
    TextConfig,
    "Naive Bayes on product names and its late fusion with the image model.",
    False,
)


def train_config_from(config) -> TrainConfig:
    """The validated TrainConfig a Dagster config stands for (profile, then explicit values)."""
    values = config.model_dump() if hasattr(config, "model_dump") else dict(config)
    profile = values.pop("profile", "demo")
    return resolve_config(TrainConfig, profile, values)


def text_config_from(config) -> TextConfig:
    values = config.model_dump() if hasattr(config, "model_dump") else dict(config)
    values.pop("profile", None)
    return resolve_config(TextConfig, "full", values)


def _image_md(path: Path, alt: str) -> str:
    return f"![{alt}](data:image/png;base64,{base64.b64encode(path.read_bytes()).decode()})"


def _finite(v: float) -> float | None:
    return float(v) if v is not None and math.isfinite(v) else None


@dg.asset(
    deps=["catalog_splits"],
    group_name=GROUP,
    pool=GPU_POOL,
    kinds={"pytorch", "mlflow"},
    description="Multitask CNN (article type, master and sub category) with a 512-d embedding neck; "
    "registered in MLflow as attribute_classifier.",
)
def attribute_classifier(
    context: dg.AssetExecutionContext,
    config: AttributeClassifierConfig,  # type: ignore[valid-type]
    paths: PathsResource,
    compute: ComputeResource,
) -> dg.MaterializeResult:
    from product_attrs.classification.evaluate import to_markdown
    from product_attrs.classification.train import train

    settings = paths.settings()
    cfg = train_config_from(config)
    result = train(
        cfg,
        settings.catalog_out_dir,
        settings.models_dir,
        device=compute.torch_device(),
        mlflow_tracking_uri=settings.mlflow_tracking_uri,
        mlflow_artifacts_uri=settings.mlflow_artifacts_uri,
        log=context.log.info,
    )
    ev = result.evaluation
    primary = cfg.head_specs()[0].column
    metadata = {
        "version": result.version,
        "path": dg.MetadataValue.path(str(result.version_dir)),
        "results": dg.MetadataValue.md(to_markdown(ev.results)),
        "most_confused": dg.MetadataValue.md(
            to_markdown(ev.confused[ev.confused["head"] == primary].head(10))
        ),
        "classes_missing_from_train": dg.MetadataValue.json(ev.missing_from_train),
        "majority_rate": _finite(result.majority_rate),
        "weights_source": result.weights_source,
        "epochs": len(result.history),
        "curves": dg.MetadataValue.md(_image_md(result.version_dir / "curves.png", "curves")),
        "samples": dg.MetadataValue.md(_image_md(result.version_dir / "samples.png", "sample predictions")),
        "mlflow_run_id": result.mlflow_run_id or "",
        "registered_version": result.registered_version or "",
        "champion": dg.MetadataValue.json(result.promotion.to_dict() if result.promotion else {}),
        **{k: _finite(v) for k, v in result.metrics.items()},
    }
    return dg.MaterializeResult(metadata=metadata)


@dg.asset_check(
    asset=attribute_classifier,
    blocking=True,
    description="The new model beats the majority-class rate (else downstream assets do not run: an error), "
    "and became the MLflow champion by beating the previous champion's test top-1 (else a warning: "
    "extraction keeps using the champion, so a model that did not improve never reaches the warehouse).",
)
def attribute_classifier_is_champion(paths: PathsResource) -> dg.AssetCheckResult:
    from product_attrs.classification.train import latest_version_dir

    return champion_check_result(latest_version_dir(paths.settings().models_dir))


def champion_check_result(version_dir: Path | None) -> dg.AssetCheckResult:
    """ERROR when the newest version does not beat the majority rate; WARN when it did not become champion."""
    if version_dir is None:
        return dg.AssetCheckResult(passed=False, description="no trained model version found")
    manifest = json.loads((version_dir / "model.json").read_text())
    metrics, promotion = manifest.get("metrics", {}), manifest.get("promotion") or {}
    top1, majority = metrics.get("test_top1"), metrics.get("majority_rate")
    beats_majority = top1 is not None and (majority is None or top1 > majority)
    promoted = bool(promotion.get("promoted"))
    return dg.AssetCheckResult(
        passed=beats_majority and promoted,
        # A retrain that does not beat the champion is worth a warning, not a failed nightly run.
        severity=dg.AssetCheckSeverity.ERROR if not beats_majority else dg.AssetCheckSeverity.WARN,
        description=promotion.get("reason", "model was not registered"),
        metadata={
            "version": manifest["version"],
            "test_top1": top1,
            "majority_rate": majority,
            "beats_majority": beats_majority,
            "promoted": promoted,
            "registered_version": str(promotion.get("version") or ""),
            "champion_before": str(promotion.get("champion_version") or ""),
            "champion_before_top1": promotion.get("champion_value"),
        },
    )


@dg.asset(
    deps=["catalog_splits", attribute_classifier],
    group_name=GROUP,
    kinds={"scikit-learn", "mlflow"},
    description="Naive Bayes on product_display_name, and its late fusion with the image model's test "
    "probabilities, side by side with the image model.",
)
def text_baseline(
    context: dg.AssetExecutionContext,
    config: TextBaselineConfig,  # type: ignore[valid-type]
    paths: PathsResource,
) -> dg.MaterializeResult:
    from product_attrs.classification.data import load_catalog
    from product_attrs.classification.evaluate import to_markdown
    from product_attrs.classification.text_baseline import (
        log_text_baseline,
        run_text_baseline,
        write_text_baseline,
    )
    from product_attrs.classification.train import latest_version_dir

    settings = paths.settings()
    cfg = text_config_from(config)
    catalog = load_catalog(settings.catalog_out_dir)
    image_dir = latest_version_dir(settings.models_dir)
    result = run_text_baseline(catalog, cfg, image_dir)
    out = write_text_baseline(result, cfg, catalog, settings.models_dir)
    run_id = log_text_baseline(
        result, cfg, catalog, out, settings.mlflow_tracking_uri, settings.mlflow_artifacts_uri
    )
    if result.fused_with is None:
        context.log.warning("no image model predictions matching this catalog: text baseline only, no fusion")
    ev = result.evaluation
    primary = cfg.head_specs()[0].column
    top = catalog.top_subset
    metadata = {
        "path": dg.MetadataValue.path(str(out)),
        "side_by_side": dg.MetadataValue.md(to_markdown(result.side_by_side)),
        "n_test": result.n_test,
        "fused_with": result.fused_with or "",
        "mlflow_run_id": run_id or "",
    }
    for model_name in ev.results["model"].unique():
        for group in (top, "rest", "all"):
            metadata[f"{model_name}_top1_{group}"] = _finite(
                ev.metric(primary, group, "top1", model=model_name)
            )
    return dg.MaterializeResult(metadata=metadata)


classification_assets = [attribute_classifier, text_baseline]
classification_checks = [attribute_classifier_is_champion]
