"""Dagster assets of recognition by retrieval; the only module here that imports Dagster.

``product_recognizer`` trains the multitask model on the grocery catalog (fine and coarse heads, a
metric-learning loss on the embedding), ``gallery_index`` embeds the gallery with the champion and
publishes it, and ``recognitions`` names the products in a folder of photos (detector boxes when there is
a detector) and counts them per photo.
"""

# No `from __future__ import annotations`: Dagster reads the real type hints (context, resources, Config).

import math
from pathlib import Path
from typing import Any

import dagster as dg
import pandas as pd

from product_attrs.classification.assets import _dagster_config
from product_attrs.classification.config import TrainConfig, resolve_config
from product_attrs.resources import DUCKDB_POOL, GPU_POOL, ComputeResource, PathsResource

GROUP = "recognition"
RECOGNIZER = "product_recognizer"

#: What the recognizer changes from the fashion classifier's profiles: the grocery labels, a metric loss,
#: and the gallery images among the training rows (on the real grocery set, recall@1 of shop photos
#: against the iconic images went from 0.344 to 0.681 with them: bench/bench_recognizer_real.py).
RECOGNIZER_DEFAULTS: dict[str, dict[str, Any]] = {
    "demo": {
        "heads": "fine_label:1.0,coarse_label:0.5",
        "metric_loss": "arcface",
        "gallery_repeats": 3,
        "image_size": 96,
        "phase1_epochs": 6,
        "phase1_lr": 0.03,
        "phase2_epochs": 2,
        "phase2_lr": 0.005,
        "embedding_dim": 256,
    },
    "full": {"heads": "fine_label:1.0,coarse_label:0.5", "metric_loss": "arcface", "gallery_repeats": 3},
}

ProductRecognizerConfig = _dagster_config(
    "ProductRecognizerConfig",
    TrainConfig,
    "Hyperparameters of the recognizer: a profile (demo/full) plus any TrainConfig field to override. "
    "Unset fields take the profile's value with the recognizer's defaults (grocery heads, ArcMargin loss).",
    True,
)


def recognizer_config_from(config) -> TrainConfig:
    values = config.model_dump() if hasattr(config, "model_dump") else dict(config)
    profile = values.pop("profile", "demo")
    defaults = RECOGNIZER_DEFAULTS.get(profile, {})
    merged = {k: (v if v is not None else defaults.get(k)) for k, v in values.items()}
    return resolve_config(TrainConfig, profile, merged)


def _finite(v: Any) -> Any:
    return None if isinstance(v, float) and not math.isfinite(v) else v


@dg.asset(
    deps=["grocery_catalog"],
    group_name=GROUP,
    pool=GPU_POOL,
    kinds={"pytorch", "mlflow"},
    description="Multitask recognizer on the grocery catalog (fine + coarse heads, ArcMargin embedding); "
    "registered in MLflow as product_recognizer.",
)
def product_recognizer(
    context: dg.AssetExecutionContext,
    config: ProductRecognizerConfig,  # type: ignore[valid-type]
    paths: PathsResource,
    compute: ComputeResource,
) -> dg.MaterializeResult:
    from product_attrs.classification.evaluate import to_markdown
    from product_attrs.classification.train import train

    settings = paths.settings()
    cfg = recognizer_config_from(config)
    result = train(
        cfg,
        settings.grocery_out_dir,
        settings.models_dir,
        device=compute.torch_device(),
        mlflow_tracking_uri=settings.mlflow_tracking_uri,
        mlflow_artifacts_uri=settings.mlflow_artifacts_uri,
        log=context.log.info,
        model_name=RECOGNIZER,
        registered_model=RECOGNIZER,
    )
    return dg.MaterializeResult(
        metadata={
            "version": result.version,
            "path": dg.MetadataValue.path(str(result.version_dir)),
            "results": dg.MetadataValue.md(to_markdown(result.evaluation.results)),
            "majority_rate": _finite(result.majority_rate),
            "weights_source": result.weights_source,
            "champion": dg.MetadataValue.json(result.promotion.to_dict() if result.promotion else {}),
            **{k: _finite(float(v)) for k, v in result.metrics.items()},
        }
    )


@dg.asset_check(
    asset=product_recognizer,
    blocking=True,
    description="The new recognizer beats the majority-class rate (else an error: the gallery is not re-embedded) "
    "and became the MLflow champion (else a warning: the gallery keeps the champion's embeddings).",
)
def product_recognizer_is_champion(paths: PathsResource) -> dg.AssetCheckResult:
    from product_attrs.classification.assets import champion_check_result
    from product_attrs.classification.train import latest_version_dir

    return champion_check_result(latest_version_dir(paths.settings().models_dir, model_name=RECOGNIZER))


class GalleryConfig(dg.Config):
    """Which images form the gallery, and which split's photos measure recall@k against it."""

    source: str = "iconic"  # iconic, train_photos or both
    evaluate_split: str = "test"  # "" skips the evaluation
    batch_size: int = 64


@dg.asset(
    deps=[product_recognizer],
    group_name=GROUP,
    pool=DUCKDB_POOL,
    kinds={"pytorch", "duckdb"},
    description="The gallery embedded by the champion recognizer (Parquet + npy, and the warehouse table "
    "`gallery`), with recall@1/5 of the test photos against it.",
)
def gallery_index(
    context: dg.AssetExecutionContext, config: GalleryConfig, paths: PathsResource, compute: ComputeResource
) -> dg.MaterializeResult:
    from product_attrs.extraction.batch import ClassifierBundle
    from product_attrs.extraction.models import champion_dir
    from product_attrs.retrieval.evaluate import evaluate_recognizer
    from product_attrs.retrieval.gallery import build_gallery, gallery_rows, gallery_table
    from product_attrs.warehouse.publish import publish_tables

    settings = paths.settings()
    device = compute.torch_device()
    version_dir, how = champion_dir(settings.mlflow_tracking_uri, settings.models_dir, RECOGNIZER)
    if version_dir is None:
        raise FileNotFoundError(f"no {RECOGNIZER} version to embed the gallery with ({how})")
    bundle = ClassifierBundle.from_version_dir(version_dir, device=device)
    rows = gallery_rows(settings.grocery_out_dir, config.source, bundle.heads[0])
    index, quarantine = build_gallery(bundle, rows, batch_size=config.batch_size, workers=1, device=device)
    out = settings.recognition_out_dir / "gallery"
    index.save(out, info={"model_version": bundle.version, "model_version_dir": str(version_dir),
                          "source": config.source,
                          "catalog_dir": str(settings.grocery_out_dir)})
    tables = {"gallery": gallery_table(index), "gallery_quarantine": quarantine}
    ingest_quarantine = settings.grocery_out_dir / "catalog_quarantine.parquet"
    if ingest_quarantine.exists():  # what grocery ingestion rejected (bad list lines, missing images)
        tables["grocery_quarantine"] = pd.read_parquet(ingest_quarantine)
    metrics: dict[str, Any] = {}
    if config.evaluate_split:
        ev = evaluate_recognizer(bundle, index, settings.grocery_out_dir, split=config.evaluate_split,
                                 batch_size=config.batch_size, device=device)
        metrics = ev.metrics
        tables["gallery_evaluation"] = ev.per_query.drop(columns=["line"], errors="ignore")
        context.log.info(f"recall@1 {metrics['recall@1']:.4f}, recall@5 {metrics['recall@5']:.4f}")
    counts = publish_tables(settings.warehouse_path, tables, casts={"gallery": {"embedding": f"FLOAT[{index.dim}]"}})
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": counts["gallery"],
            "products": len(index.products),
            "quarantined": len(quarantine),
            "recognizer": f"{bundle.version} ({how})",
            "path": dg.MetadataValue.path(str(out)),
            **{k: _finite(v) for k, v in metrics.items()},
            "query": dg.MetadataValue.md(
                "```sql\nSELECT fine_label, coarse_label, array_cosine_similarity(g.embedding, q.embedding) AS sim\n"
                "FROM gallery g, (SELECT embedding FROM gallery WHERE fine_label = 'Banana') q\n"
                "ORDER BY sim DESC LIMIT 5;\n```"
            ),
        }
    )


class RecognitionConfig(dg.Config):
    """Which folder, how photos are cut into objects and when a match counts."""

    folder: str = ""  # a folder of incoming photos; empty = PRODUCT_ATTRS_RECOGNITION_DIR (demo: store photos)

    use_detector: bool = True  # crop the champion detector's boxes; False: a photo is one product
    score_thresh: float = 0.5
    # Below it an object is 'unknown': its product may have no gallery image. On the demo store photos the
    # one object whose product lacks a gallery image scored 0.26, the lowest of 116; 5% of the rest < 0.57.
    min_similarity: float = 0.4
    batch_size: int = 64


@dg.asset(
    deps=[gallery_index, "product_detector"],
    group_name=GROUP,
    pool=DUCKDB_POOL,
    kinds={"pytorch", "duckdb"},
    description="Every photo of the recognition folder: detected boxes matched to the gallery; tables "
    "`recognitions` (one row per object) and `shelf_product_counts` (facings and share per product).",
)
def recognitions(
    context: dg.AssetExecutionContext, config: RecognitionConfig, paths: PathsResource, compute: ComputeResource
) -> dg.MaterializeResult:
    from product_attrs.demo import ensure_store_photos
    from product_attrs.extraction.batch import ClassifierBundle
    from product_attrs.extraction.models import DETECTOR, champion_dir
    from product_attrs.io import write_parquet
    from product_attrs.retrieval.index import GalleryIndex
    from product_attrs.retrieval.recognize import (
        count_accuracy,
        list_photos,
        product_counts,
        recognize_photos,
        replace_folder,
    )
    from product_attrs.warehouse.publish import publish_tables

    settings = paths.settings()
    device = compute.torch_device()
    folder = Path(config.folder).expanduser().resolve() if config.folder else ensure_store_photos(settings)
    index = GalleryIndex.load(settings.recognition_out_dir / "gallery")
    # The gallery's own model: query and gallery embeddings must come from the same network.
    version_dir = Path(index.info["model_version_dir"])
    bundle = ClassifierBundle.from_version_dir(version_dir, device=device)
    detector, detector_version = None, None
    if config.use_detector:
        from product_attrs.detection.inference import Detector

        det_dir, how = champion_dir(settings.mlflow_tracking_uri, settings.models_dir, DETECTOR)
        if det_dir is None:
            raise FileNotFoundError(f"use_detector is on but there is no {DETECTOR} version ({how})")
        detector, detector_version = Detector.from_version_dir(det_dir, device=device), f"{DETECTOR}/{det_dir.name}"
    photos = list_photos(folder)
    result = recognize_photos(photos, bundle, index, detector=detector, score_thresh=config.score_thresh,
                              min_similarity=config.min_similarity, batch_size=config.batch_size,
                              device=device, root=folder)
    new_rows = result.rows.assign(folder=str(folder), detector_version=detector_version)
    new_rows = new_rows[["folder", *[c for c in new_rows.columns if c != "folder"]]]
    # Each folder is a unit: recognizing it again replaces its rows and keeps every other folder's.
    out = settings.recognition_out_dir
    previous = pd.read_parquet(out / "recognitions.parquet") if (out / "recognitions.parquet").exists() else None
    rows = replace_folder(previous, new_rows, str(folder))
    counts = product_counts(rows)
    prev_q = (pd.read_parquet(out / "recognition_quarantine.parquet")
              if (out / "recognition_quarantine.parquet").exists() else None)
    quarantine = replace_folder(prev_q, result.quarantine.assign(folder=str(folder)), str(folder))
    write_parquet(rows, out / "recognitions.parquet")
    write_parquet(counts, out / "shelf_product_counts.parquet")
    write_parquet(quarantine, out / "recognition_quarantine.parquet")
    published = publish_tables(settings.warehouse_path, {
        "recognitions": rows, "shelf_product_counts": counts, "recognition_quarantine": quarantine})
    folder_counts = product_counts(new_rows)
    metadata: dict[str, Any] = {
        "dagster/row_count": published["recognitions"],
        "folder": str(folder),
        "photos": len(photos),
        "objects": len(new_rows),
        "unreadable_photos": len(result.quarantine),
        "unknown_objects": int((new_rows["product"] == "unknown").sum()) if len(new_rows) else 0,
        "recognizer": bundle.version,
        "detector": detector_version or "none (whole photos)",
        "top_products": dg.MetadataValue.md(
            folder_counts.groupby("product")["facings"].sum().sort_values(ascending=False).head(10)
            .reset_index().to_markdown(index=False) if len(folder_counts) else "none"),
    }
    truth_path = folder / "truth.csv"
    if truth_path.exists():  # a labelled folder (the demo's store photos): score the counts end to end
        truth = pd.read_csv(truth_path).rename(columns={"sku": "product"})
        metadata.update({f"counts_{k}": v for k, v in count_accuracy(folder_counts, truth).items()})
    return dg.MaterializeResult(metadata=metadata)


recognition_assets = [product_recognizer, gallery_index, recognitions]
recognition_checks = [product_recognizer_is_champion]
