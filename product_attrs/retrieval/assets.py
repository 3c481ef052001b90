"""Dagster assets of recognition by retrieval; the only module here that imports Dagster.

``gallery_index`` embeds the gallery with the champion recognizer (trained by the classification
domain's ``product_recognizer``) and publishes it, and ``recognitions`` names the products in a folder
of photos (the champion detector's boxes, or whole photos) and counts them per photo.
"""

# No `from __future__ import annotations`: Dagster reads the real type hints (context, resources, Config).

from pathlib import Path
from typing import Any

import dagster as dg

from product_attrs.classification.config import PRODUCT_RECOGNIZER
from product_attrs.detection.config import PRODUCT_DETECTOR
from product_attrs.modeling.assets import finite
from product_attrs.resources import (
    ComputeResource,
    PathsResource,
    RegistryResource,
    WarehouseResource,
)

GROUP = "recognition"


class GalleryConfig(dg.Config):
    """Which images form the gallery, and which split's photos measure recall@k against it."""

    source: str = "iconic"  # iconic, train_photos or both
    evaluate_split: str = "test"  # "" skips the evaluation
    batch_size: int = 64


@dg.asset(
    deps=[PRODUCT_RECOGNIZER.name],
    group_name=GROUP,
    kinds={"pytorch", "duckdb"},
    description="The gallery embedded by the champion recognizer (Parquet + npy, and the warehouse table "
    "`gallery`), with recall@1/5 of the test photos against it, apart for the products the recognizer was "
    "never trained on (`holdout_products`; table `gallery_evaluation`, column `seen`).",
)
def gallery_index(
    context: dg.AssetExecutionContext,
    config: GalleryConfig,
    paths: PathsResource,
    models: RegistryResource,
    warehouse: WarehouseResource,
    compute: ComputeResource,
) -> dg.MaterializeResult:
    import pandas as pd

    from product_attrs.classification.serve import load_champion
    from product_attrs.retrieval.evaluate import evaluate_recognizer
    from product_attrs.retrieval.gallery import build_gallery, gallery_rows, gallery_table

    settings = paths.settings()
    classifier = load_champion(models.registry(), PRODUCT_RECOGNIZER.name, device=compute.torch_device())
    rows = gallery_rows(settings.grocery_out_dir, config.source, classifier.heads[0])
    from product_attrs.engines.ray_inference import predictor_for

    predict = predictor_for(classifier, compute.ray(), batch_size=config.batch_size)  # None: in-process
    index, quarantine = build_gallery(
        classifier, rows, batch_size=config.batch_size, workers=1, predict=predict
    )
    out = settings.recognition_out_dir / "gallery"
    index.save(
        out,
        info={
            "model_version": classifier.version,
            "model_version_dir": str(classifier.version_dir),
            "source": config.source,
            "catalog_dir": str(settings.grocery_out_dir),
        },
    )
    tables = {"gallery": gallery_table(index), "gallery_quarantine": quarantine}
    ingest_quarantine = settings.grocery_out_dir / "catalog_quarantine.parquet"
    if ingest_quarantine.exists():  # what grocery ingestion rejected (bad list lines, missing images)
        tables["grocery_quarantine"] = pd.read_parquet(ingest_quarantine)
    metrics: dict[str, Any] = {}
    if config.evaluate_split:
        ev = evaluate_recognizer(
            classifier,
            index,
            settings.grocery_out_dir,
            split=config.evaluate_split,
            batch_size=config.batch_size,
        )
        metrics = ev.metrics
        tables["gallery_evaluation"] = ev.per_query.drop(columns=["line"], errors="ignore")
        context.log.info(
            f"recall@1 {metrics['recall@1']:.4f}, recall@5 {metrics['recall@5']:.4f}; "
            f"seen products {metrics['recall@1_seen']:.4f} / {metrics['recall@5_seen']:.4f}, "
            f"{metrics['held_out_products']} products never trained on ({metrics['queries_unseen']} photos) "
            f"{metrics['recall@1_unseen']:.4f} / {metrics['recall@5_unseen']:.4f}"
        )
    counts = warehouse.publish(
        tables, casts={"gallery": {"embedding": f"FLOAT[{index.dim}]"}}, recognizer=classifier.version
    )
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": counts["gallery"],
            "products": len(index.products),
            "quarantined": len(quarantine),
            "recognizer": f"{classifier.version} (champion)",
            "path": dg.MetadataValue.path(str(out)),
            **{k: finite(v) for k, v in metrics.items()},
            "query": dg.MetadataValue.md(
                "```sql\n"
                "SELECT fine_label, coarse_label, list_cosine_similarity(g.embedding, q.embedding) AS sim\n"
                "FROM gallery g, (SELECT embedding FROM gallery WHERE fine_label = 'Banana') q\n"
                "ORDER BY sim DESC LIMIT 5;\n```"
            ),
        }
    )


class RecognitionConfig(dg.Config):
    """Which folder, how photos are cut into objects and when a match counts."""

    # A folder of incoming photos; empty = PRODUCT_ATTRS_RECOGNITION_DIR (demo: store photos). It must lie
    # under the data root, PRODUCT_ATTRS_RECOGNITION_DIR or a folder of PRODUCT_ATTRS_RECOGNITION_ROOTS.
    folder: str = ""

    use_detector: bool = True  # crop the champion detector's boxes; False: a photo is one product
    score_thresh: float = 0.5
    # Below it an object is 'unknown': its product may have no gallery image. On the demo store photos the
    # one object whose product lacks a gallery image scored 0.26, the lowest of 116; 5% of the rest < 0.57.
    min_similarity: float = 0.4
    batch_size: int = 64
    ray_actors: int = 0  # with PRODUCT_ATTRS_RAY_ADDRESS set: model actors, 0 = one per GPU or two CPUs


@dg.asset(
    deps=[gallery_index, "product_detector"],
    group_name=GROUP,
    kinds={"pytorch", "duckdb"},
    description="Every photo of the recognition folder: detected boxes matched to the gallery; tables "
    "`recognitions` (one row per object) and `shelf_product_counts` (facings and share per product).",
)
def recognitions(
    context: dg.AssetExecutionContext,
    config: RecognitionConfig,
    paths: PathsResource,
    models: RegistryResource,
    warehouse: WarehouseResource,
    compute: ComputeResource,
) -> dg.MaterializeResult:
    import pandas as pd

    from product_attrs.classification.serve import Classifier
    from product_attrs.demo import ensure_store_photos
    from product_attrs.detection import serve as detector_serve
    from product_attrs.io import write_parquet
    from product_attrs.paths import is_within
    from product_attrs.retrieval.index import GalleryIndex
    from product_attrs.warehouse.publish import Partition
    from product_attrs.retrieval.recognize import (
        allowed_folder,
        count_accuracy,
        list_photos,
        product_counts,
        recognize_photos,
        replace_folder,
    )

    settings = paths.settings()
    device = compute.torch_device()
    # Run config is typed by anyone in the UI: a folder outside the configured roots is refused unread.
    folder = (
        allowed_folder(config.folder, settings.recognition_roots)
        if config.folder
        else ensure_store_photos(settings)
    )
    index = GalleryIndex.load(settings.recognition_out_dir / "gallery")
    # The gallery's own model (the champion when the gallery was embedded): queries and gallery embeddings
    # must come from the same network.
    # A path read back from a file is confined like any outside name: only a model version may be loaded.
    model_dir = Path(index.info["model_version_dir"])
    if not is_within(settings.models_dir, model_dir):
        raise dg.Failure(f"the gallery names model folder {model_dir}, outside {settings.models_dir}")
    classifier = Classifier.load(model_dir, device=device)
    # One look-up of the champion: the version served in-process and the folder Ray actors load agree.
    detector_dir = models.registry().champion_dir(PRODUCT_DETECTOR.name) if config.use_detector else None
    detector = detector_serve.Detector.load(detector_dir, device=device) if detector_dir else None
    photos = list_photos(folder)
    options: dict[str, Any] = {
        "score_thresh": config.score_thresh,
        "min_similarity": config.min_similarity,
        "batch_size": config.batch_size,
        "root": folder,
    }
    from product_attrs.engines.ray_recognize import recognizer_for

    engine = recognizer_for(classifier, compute.ray(), actors=config.ray_actors)  # None: in-process
    if engine is None:
        result = recognize_photos(photos, classifier, index, detector=detector, **options)
        engine_name = "in-process"
    else:
        # The actors load the detector from its version folder: a model is never pickled.
        result = engine.recognize(photos, classifier, index, detector=detector_dir, **options)
        engine_name = f"ray {compute.ray()} ({engine.actors} actors)"
    detector_version = detector.version if detector is not None else None
    new_rows = result.rows.assign(folder=str(folder), detector_version=detector_version)
    new_rows = new_rows[["folder", *[c for c in new_rows.columns if c != "folder"]]]
    # Each folder is a unit: recognizing it again replaces its rows and keeps every other folder's.
    out = settings.recognition_out_dir
    previous = (
        pd.read_parquet(out / "recognitions.parquet") if (out / "recognitions.parquet").exists() else None
    )
    rows = replace_folder(previous, new_rows, str(folder))
    counts = product_counts(rows)
    prev_q = (
        pd.read_parquet(out / "recognition_quarantine.parquet")
        if (out / "recognition_quarantine.parquet").exists()
        else None
    )
    quarantine = replace_folder(prev_q, result.quarantine.assign(folder=str(folder)), str(folder))
    write_parquet(rows, out / "recognitions.parquet")
    write_parquet(counts, out / "shelf_product_counts.parquet")
    write_parquet(quarantine, out / "recognition_quarantine.parquet")
    # The lake gets this folder's rows only: other folders' rows are neither read nor rewritten.
    published = warehouse.publish(
        {"shelf_product_counts": counts},
        partitions={
            "recognitions": Partition(new_rows, "folder", str(folder)),
            "recognition_quarantine": Partition(
                result.quarantine.assign(folder=str(folder)), "folder", str(folder)
            ),
        },
        recognizer=classifier.version,
        detector=detector_version or "none",
    )
    folder_counts = product_counts(new_rows)
    metadata: dict[str, Any] = {
        "dagster/row_count": len(rows),
        "folder_rows_published": published["recognitions"],
        "folder": str(folder),
        "photos": len(photos),
        "objects": len(new_rows),
        "unreadable_photos": len(result.quarantine),
        "unreadable_reasons": ", ".join(
            f"{k} {v}" for k, v in result.quarantine["reason"].value_counts().sort_index().items()
        )
        or "none",
        "unknown_objects": int((new_rows["product"] == "unknown").sum()) if len(new_rows) else 0,
        "recognizer": classifier.version,
        "detector": detector_version or "none (whole photos)",
        "engine": engine_name,
        "top_products": dg.MetadataValue.md(
            folder_counts.groupby("product")["facings"]
            .sum()
            .sort_values(ascending=False)
            .head(10)
            .reset_index()
            .to_markdown(index=False)
            if len(folder_counts)
            else "none"
        ),
    }
    truth_path = folder / "truth.csv"
    if truth_path.exists():  # a labelled folder (the demo's store photos): score the counts end to end
        truth = pd.read_csv(truth_path).rename(columns={"sku": "product"})
        metadata.update({f"counts_{k}": v for k, v in count_accuracy(folder_counts, truth).items()})
    return dg.MaterializeResult(metadata=metadata)


recognition_assets = [gallery_index, recognitions]
