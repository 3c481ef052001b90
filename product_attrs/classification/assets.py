"""Dagster assets of the classification domain; the only module here that imports Dagster.

`attribute_classifier` (fashion) and `product_recognizer` (grocery, the `recognizer` overlay; shown in the
recognition group) train with the same `train()` the command runs: in-process, or on Ray Train's workers
when PRODUCT_ATTRS_RAY_ADDRESS names a cluster (`ray_workers` in the config; torchrun also works). Their
Config is generated from `TrainConfig`, the dataclass that also generates the command's flags. torch is
imported when an asset runs, never when the definitions load.
"""

# No `from __future__ import annotations`: Dagster reads the real type hints (context, resources, Config).

from functools import partial

import dagster as dg

from product_attrs.classification.config import (
    ATTRIBUTE_CLASSIFIER,
    PRODUCT_RECOGNIZER,
    PROFILES,
    TEXT_PROFILES,
    TextConfig,
    TrainConfig,
)
from product_attrs.modeling.assets import (
    TRAINING_RETRY,
    champion_check,
    config_class,
    engine_options,
    finite,
    resolve_config,
    training_metadata,
)
from product_attrs.resources import TRAINING_POOL, ComputeResource, PathsResource, RegistryResource

GROUP = "training"

#: One launchpad Config for both classifier assets: a profile (demo/full) and any TrainConfig field; the
#: recognizer adds its overlay (grocery heads, ArcMargin loss, gallery images in training) underneath.
ClassifierConfig = config_class(
    "ClassifierConfig",
    TrainConfig,
    PROFILES,
    "Hyperparameters of the classifier: a profile (demo/full) plus any TrainConfig field to override.",
    engine=True,
)
TextBaselineConfig = config_class(
    "TextBaselineConfig",
    TextConfig,
    TEXT_PROFILES,
    "Naive Bayes on product names and its late fusion with the image model.",
)


def _image_md(path, alt: str) -> str:
    import base64

    return f"![{alt}](data:image/png;base64,{base64.b64encode(path.read_bytes()).decode()})"


def _train(context, spec, config, catalog_dir, paths: PathsResource, models, compute) -> dict:
    """Train `spec` from a launchpad config; the metadata every classifier asset shows."""
    from product_attrs.classification.evaluate import to_markdown
    from product_attrs.classification.train import train

    cfg = resolve_config(config, TrainConfig, PROFILES, spec.overlay)
    settings = paths.settings()
    result, engine = compute.train(
        partial(
            train,
            cfg,
            catalog_dir,
            models.registry(),
            model=spec,
            device=compute.torch_device(),
            allow_download=not settings.offline,
            data_dir=settings.data_dir,
        ),
        name=spec.name,
        storage=settings.data_dir / "ray",
        log=context.log.info,
        **engine_options(config),
    )
    ev = result.details
    primary = cfg.head_specs()[0].column
    return training_metadata(
        result,
        {
            **engine,
            "results": dg.MetadataValue.md(to_markdown(ev.results)),
            "most_confused": dg.MetadataValue.md(
                to_markdown(ev.confused[ev.confused["head"] == primary].head(10))
            ),
            "classes_missing_from_train": dg.MetadataValue.json(ev.missing_from_train),
            "curves": dg.MetadataValue.md(_image_md(result.version_dir / "curves.png", "curves")),
            "samples": dg.MetadataValue.md(
                _image_md(result.version_dir / "samples.png", "sample predictions")
            ),
        },
    )


@dg.asset(
    deps=["catalog_splits", "label_corrections"],
    group_name=GROUP,
    pool=TRAINING_POOL,
    kinds={"pytorch", "mlflow"},
    retry_policy=TRAINING_RETRY,
    description="Multitask CNN (article type, master and sub category) with a 512-d embedding neck; "
    "registered in MLflow as attribute_classifier. The `refresh` profile starts from the champion and "
    "trains with the checked label corrections (the version's manifest lists their ids).",
)
def attribute_classifier(
    context: dg.AssetExecutionContext,
    config: ClassifierConfig,  # type: ignore[valid-type]
    paths: PathsResource,
    models: RegistryResource,
    compute: ComputeResource,
) -> dg.MaterializeResult:
    metadata = _train(
        context, ATTRIBUTE_CLASSIFIER, config, paths.settings().catalog_out_dir, paths, models, compute
    )
    return dg.MaterializeResult(metadata=metadata)


attribute_classifier_is_champion = champion_check(
    ATTRIBUTE_CLASSIFIER,
    floor="majority_rate",
    description="The new model beats the majority-class rate (else downstream assets do not run: an error), "
    "and became the champion by beating the previous champion's test top-1 (else a warning: extraction keeps "
    "serving the champion, so a model that did not improve never reaches the warehouse).",
)


@dg.asset(
    deps=["catalog_splits", attribute_classifier],
    group_name=GROUP,
    kinds={"scikit-learn", "mlflow"},
    description=(
        "Naive Bayes on product_display_name, and its late fusion with the champion image model's test "
        "probabilities, side by side with the image model."
    ),
)
def text_baseline(
    context: dg.AssetExecutionContext,
    config: TextBaselineConfig,  # type: ignore[valid-type]
    paths: PathsResource,
    models: RegistryResource,
) -> dg.MaterializeResult:
    from product_attrs.classification.data import load_catalog
    from product_attrs.classification.evaluate import to_markdown
    from product_attrs.classification.text_baseline import (
        log_text_baseline,
        run_text_baseline,
        write_text_baseline,
    )

    settings = paths.settings()
    registry = models.registry()
    cfg = resolve_config(config, TextConfig, TEXT_PROFILES)
    catalog = load_catalog(settings.catalog_out_dir)
    champion = (
        registry.champion_dir(ATTRIBUTE_CLASSIFIER.name)
        if registry.champion(ATTRIBUTE_CLASSIFIER.name)
        else None
    )
    result = run_text_baseline(catalog, cfg, champion)
    out = write_text_baseline(result, cfg, catalog, registry.models_dir)
    run_id = log_text_baseline(result, cfg, catalog, out, registry.tracking_uri, registry.artifacts_uri)
    if result.fused_with is None:
        context.log.warning("no champion image model matching this catalog: text baseline only, no fusion")
    ev = result.evaluation
    primary = cfg.head_specs()[0].column
    metadata = {
        "path": dg.MetadataValue.path(str(out)),
        "side_by_side": dg.MetadataValue.md(to_markdown(result.side_by_side)),
        "n_test": result.n_test,
        "fused_with": result.fused_with or "",
        "mlflow_run_id": run_id or "",
    }
    for model_name in ev.results["model"].unique():
        for group in (catalog.top_subset, "rest", "all"):
            metadata[f"{model_name}_top1_{group}"] = finite(
                ev.metric(primary, group, "top1", model=model_name)
            )
    return dg.MaterializeResult(metadata=metadata)


@dg.asset(
    deps=["grocery_catalog"],
    group_name="recognition",
    pool=TRAINING_POOL,
    kinds={"pytorch", "mlflow"},
    retry_policy=TRAINING_RETRY,
    description="Multitask recognizer on the grocery catalog (fine + coarse heads, ArcMargin embedding); "
    "registered in MLflow as product_recognizer.",
)
def product_recognizer(
    context: dg.AssetExecutionContext,
    config: ClassifierConfig,  # type: ignore[valid-type]
    paths: PathsResource,
    models: RegistryResource,
    compute: ComputeResource,
) -> dg.MaterializeResult:
    metadata = _train(
        context, PRODUCT_RECOGNIZER, config, paths.settings().grocery_out_dir, paths, models, compute
    )
    return dg.MaterializeResult(metadata=metadata)


product_recognizer_is_champion = champion_check(
    PRODUCT_RECOGNIZER,
    floor="majority_rate",
    description=(
        "The new recognizer beats the majority-class rate (else an error: the gallery is not re-embedded) "
        "and became the champion (else a warning: the gallery keeps the champion's embeddings)."
    ),
)


classification_assets = [attribute_classifier, text_baseline, product_recognizer]
classification_checks = [attribute_classifier_is_champion, product_recognizer_is_champion]
