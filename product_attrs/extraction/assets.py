"""Dagster assets of batch extraction: one partition per batch of images, then one table for analysts."""

import time

from dagster import (
    AssetCheckResult,
    AssetCheckSpec,
    AssetExecutionContext,
    Backoff,
    Config,
    DynamicPartitionsDefinition,
    Failure,
    MaterializeResult,
    MetadataValue,
    RetryPolicy,
    asset,
)

from product_attrs.resources import (
    DUCKDB_POOL,
    ComputeResource,
    PathsResource,
    RegistryResource,
    WarehouseResource,
)

image_batches = DynamicPartitionsDefinition(name="image_batches")
GROUP = "extraction"


class ExtractionConfig(Config):
    """Batch sizes and loader workers. On 2 CPU cores one decoding worker leaves the model a core (2x
    faster than two workers, measured); on a GPU host raise both (AMP is automatic on CUDA).

    `detect`: which batches the champion detector runs on: "incoming" (default: folders of photos, which
    may show shelves), "always" or "never". A catalog image is a studio shot of the product itself: the
    shelf detector found nothing in 73% of the demo catalog and "soda_can" boxes on clothes in the rest,
    at 3 of the 3.2 minutes the demo spent extracting."""

    batch_size: int = 128
    workers: int = 1
    #: On Ray (PRODUCT_ATTRS_RAY_ADDRESS set): model actors (0 = one per GPU, else one per two CPUs) and
    #: GPUs per actor (0 = CPU; 1 on a GPU node, 0.5 to share one between two actors).
    ray_actors: int = 0
    ray_gpus_per_actor: float = 0.0
    detect: str = "incoming"
    detector_batch_size: int = 8
    score_threshold: float = 0.5


@asset(
    partitions_def=image_batches,
    deps=["catalog_splits", "attribute_classifier", "product_detector"],
    group_name=GROUP,
    kinds={"pytorch", "parquet"},
    retry_policy=RetryPolicy(max_retries=2, delay=5, backoff=Backoff.EXPONENTIAL),
)
def product_attributes(
    context: AssetExecutionContext,
    config: ExtractionConfig,
    paths: PathsResource,
    models: RegistryResource,
    compute: ComputeResource,
) -> MaterializeResult:
    """Attributes, confidences, detected objects and the embedding of every image of one batch, by the
    champion classifier and detector."""
    from product_attrs.catalog.ingest import CatalogFiles
    from product_attrs.classification import serve as classifier_serve
    from product_attrs.detection import serve as detector_serve
    from product_attrs.extraction.batches import UnsafePartitionKey
    from product_attrs.extraction.extract import CHUNK_ROWS, batch_output, extract_to_parquet, items_for_batch
    from product_attrs.io import write_parquet
    from product_attrs.modeling.registry import NoChampionError

    settings = paths.settings()
    registry = models.registry()
    key = context.partition_key
    out_dir = settings.data_dir / "extraction"
    try:  # a key typed in the UI is refused before any model is loaded or any file read
        out_path = batch_output(key, out_dir)
        quarantine_path = batch_output(key, out_dir, ".quarantine.parquet")
    except UnsafePartitionKey as exc:
        raise Failure(str(exc), allow_retries=False) from None
    device = compute.torch_device()
    try:
        classifier = classifier_serve.load_champion(registry, device=device)
    except NoChampionError as exc:
        raise Failure(str(exc), allow_retries=False) from None
    context.log.info(f"classifier {classifier.version} (champion)")
    from product_attrs.extraction.batches import INCOMING_PREFIX

    if config.detect not in ("incoming", "always", "never"):
        raise Failure(
            f"detect must be 'incoming', 'always' or 'never', not {config.detect!r}", allow_retries=False
        )
    detector = None
    if config.detect == "always" or (config.detect == "incoming" and key.startswith(INCOMING_PREFIX)):
        try:
            detector = detector_serve.load_champion(registry, device=device)
            context.log.info(f"detector {detector.version} (champion)")
        except NoChampionError as exc:
            context.log.warning(f"{exc}: extracting without detection")

    try:
        items = items_for_batch(
            key, CatalogFiles(settings.catalog_out_dir).splits, settings.data_dir / "incoming"
        )
    except UnsafePartitionKey as exc:
        raise Failure(str(exc), allow_retries=False) from None
    from product_attrs.engines.ray_inference import RAY_CHUNK_ROWS, predictor_for

    engine = compute.ray()
    # On Ray the classifier runs in actors; the file is still written here, whole or not at all.
    predict = predictor_for(
        classifier,
        engine,
        batch_size=config.batch_size,
        actors=config.ray_actors,
        num_gpus_per_actor=config.ray_gpus_per_actor,
    )
    if predict is not None:
        context.log.info(f"Ray {engine}: {predict.cluster}, {predict.actors} model actor(s)")
    t = time.perf_counter()
    result = extract_to_parquet(
        items,
        classifier,
        detector,
        out_path,
        batch_size=config.batch_size,
        workers=config.workers,
        detector_batch_size=config.detector_batch_size,
        score_threshold=config.score_threshold,
        predict=predict,
        # A Ray run starts its actor pool (a model load each): on Ray a run covers many row groups.
        chunk_rows=RAY_CHUNK_ROWS if predict is not None else CHUNK_ROWS,
    )
    seconds = time.perf_counter() - t
    if predict is not None:
        result.seconds |= predict.seconds
    write_parquet(result.quarantine, quarantine_path)
    primary = classifier.heads[0]
    preview = result.preview.drop(columns=["embedding", "image_path"], errors="ignore")
    return MaterializeResult(
        metadata={
            "dagster/row_count": result.rows,
            "images": len(items),
            "extracted": result.n_new,
            "reused": result.n_reused,
            "chunks": result.chunks,
            "unreadable": len(result.quarantine),
            "seconds": round(seconds, 2),
            "images_per_second": round(result.n_new / seconds, 1) if result.n_new and seconds > 0 else 0.0,
            "seconds_by_stage": MetadataValue.json({k: round(v, 2) for k, v in result.seconds.items()}),
            "device": str(classifier.device),
            "engine": f"ray {engine} ({predict.actors} actors)" if predict is not None else "in-process",
            "classifier": classifier.version,
            "detector": detector.version if detector is not None else "none",
            f"{primary}_counts": MetadataValue.json(
                {str(k): int(v) for k, v in result.counts.most_common(20)}
            ),
            "preview": MetadataValue.md(preview.to_markdown(index=False)),
            "path": str(out_path),
        }
    )


@asset(
    deps=[product_attributes],
    group_name="warehouse",
    pool=DUCKDB_POOL,
    kinds={"duckdb"},
    check_specs=[AssetCheckSpec("one_row_per_image", asset="warehouse_product_attributes", blocking=True)],
)
def warehouse_product_attributes(paths: PathsResource, warehouse: WarehouseResource) -> MaterializeResult:
    """Table ``product_attributes`` (one partition per batch) and the quarantine with extraction's rejects.

    Only the batches whose Parquet file changed since the last publish are rewritten in the lake (a new
    batch, a batch re-extracted by a new champion); DuckDB streams each file, so memory does not grow with
    the number of batches. The snapshot records the model versions that produced the rows written."""
    from product_attrs.warehouse.catalog_tables import quarantine_files, quarantine_table
    from product_attrs.warehouse.publish import sync_partitions

    settings = paths.settings()
    out_dir = settings.data_dir / "extraction"
    files = {
        p.stem: p for p in sorted(out_dir.glob("*.parquet")) if not p.name.endswith(".quarantine.parquet")
    }
    if not files:
        raise Failure("no extraction output yet: materialize product_attributes for a batch first")
    views = {
        "v_product_attributes": (
            "SELECT a.product_id, a.batch, a.image_key, c.product_display_name, "
            "a.* EXCLUDE (product_id, batch, image_key, embedding, image_path) "
            "FROM product_attributes a LEFT JOIN catalog c ON c.id = a.product_id"
        )
    }
    synced = sync_partitions(
        warehouse.lake(models=_model_versions(tuple(files.values()))),
        "product_attributes",
        files,
        column="batch",
        also={"quarantine": quarantine_table(quarantine_files(settings))},
        views=views,
        casts={"embedding": "FLOAT[]"},  # extraction writes Python floats (DOUBLE): half the bytes as FLOAT
    )
    per_batch = warehouse.read(
        "SELECT batch, count(*) AS n FROM product_attributes GROUP BY batch ORDER BY n DESC"
    )
    dupes = int(
        warehouse.read("SELECT count(*) - count(DISTINCT (batch, image_key)) AS d FROM product_attributes")[
            "d"
        ].iloc[0]
    )
    return MaterializeResult(
        metadata={
            "dagster/row_count": synced.counts["product_attributes"],
            "batches": MetadataValue.json(
                {str(b): int(n) for b, n in zip(per_batch["batch"], per_batch["n"])}
            ),
            "batches_written": MetadataValue.json(list(synced.written)),
            "batches_removed": MetadataValue.json(list(synced.removed)),
            "batches_unchanged": synced.unchanged,
            "embedding_dim": _embedding_dim(tuple(files.values())),
            "example_query": MetadataValue.md(
                "```sql\nSELECT article_type, avg(article_type_confidence), count(*)\n"
                "FROM product_attributes GROUP BY ALL ORDER BY 3 DESC;\n```"
            ),
        },
        check_results=[
            AssetCheckResult(
                check_name="one_row_per_image", passed=dupes == 0, metadata={"duplicates": dupes}
            )
        ],
    )


def _model_versions(files: tuple) -> dict[str, list[str]]:
    """The classifier and detector versions found in the batches (one column each, not the table)."""
    import pyarrow.parquet as pq

    found: dict[str, set[str]] = {}
    for path in files:
        schema = pq.read_schema(path)
        for column in ("classifier_version", "detector_version"):
            if column in schema.names:
                values = pq.read_table(path, columns=[column]).column(column).unique().to_pylist()
                found.setdefault(column, set()).update(str(v) for v in values if v is not None)
    return {k: sorted(v) for k, v in found.items()}


def _embedding_dim(files: tuple) -> int:
    """The embedding width, from the first batch with a row (read one column of one file, not the table)."""
    import pyarrow.parquet as pq

    for path in files:
        column = pq.read_table(path, columns=["embedding"]).column("embedding")
        if len(column):
            return len(column[0].as_py())
    return 0


class ReviewQueueConfig(Config):
    """`head`: the label the queue asks about; `limit`: how many products the queue and its export hold."""

    head: str = "article_type"
    limit: int = 500


@asset(
    deps=[warehouse_product_attributes, "catalog_splits", "text_baseline"],
    group_name="warehouse",
    pool=DUCKDB_POOL,
    kinds={"duckdb", "html"},
)
def review_queue(
    context: AssetExecutionContext,
    config: ReviewQueueConfig,
    paths: PathsResource,
    warehouse: WarehouseResource,
) -> MaterializeResult:
    """Table ``review_queue``: extracted products whose prediction is uncertain (low confidence, small
    top-1/top-2 margin, image and text models disagreeing), most uncertain first, with the image path and
    the current predictions; exported for labelling as <data>/review/review_queue.csv (image links) and
    review_queue.html (the images beside the predicted labels). Test-split products are left out: they are
    the fixed evaluation set that corrections never touch."""
    import pandas as pd

    from product_attrs.classification.text_baseline import load_latest_text_model, text_labels
    from product_attrs.extraction.review import build_review_queue, export_csv, export_html

    settings = paths.settings()
    out_dir = settings.data_dir / "extraction"
    files = [p for p in sorted(out_dir.glob("*.parquet")) if not p.name.endswith(".quarantine.parquet")]
    if not files:
        raise Failure("no extraction output yet: materialize product_attributes for a batch first")
    frames = []
    for path in files:
        frame = pd.read_parquet(path)
        frames.append(frame.drop(columns=["embedding", "objects"], errors="ignore").assign(batch=path.stem))
    attributes = pd.concat(frames, ignore_index=True)
    if f"{config.head}_confidence" not in attributes:
        raise Failure(f"head {config.head!r} is not among the extracted attributes", allow_retries=False)
    splits_path = settings.catalog_out_dir / "splits.parquet"
    splits = (
        pd.read_parquet(splits_path, columns=["id", "split", "product_display_name"])
        if splits_path.exists()
        else pd.DataFrame({"id": [], "split": [], "product_display_name": []})
    )
    evaluation_ids = set(splits.loc[splits["split"] == "test", "id"].astype("int64"))
    # The text model (a small Naive Bayes) is read from the models folder; no model runtime, so no
    # `models` resource held while the writer slot is.
    text_model, text_version = load_latest_text_model(settings.models_dir)
    text = None
    if text_model is not None:
        names = attributes[["product_id"]].merge(
            splits[["id", "product_display_name"]], left_on="product_id", right_on="id", how="left"
        )
        text = text_labels(text_model, names, config.head).where(names["id"].notna().to_numpy(), None)
    queue = build_review_queue(attributes, config.head, text, evaluation_ids, config.limit)
    review_dir = settings.data_dir / "review"
    csv_path = export_csv(queue, review_dir / "review_queue.csv")
    html_path = export_html(queue, review_dir / "review_queue.html")
    classifiers = sorted({str(v) for v in queue["classifier_version"].dropna().unique()})
    counts = warehouse.publish({"review_queue": queue}, classifier_version=classifiers)
    reasons = queue["reasons"].str.split(",").explode().value_counts() if len(queue) else pd.Series()
    return MaterializeResult(
        metadata={
            "dagster/row_count": counts["review_queue"],
            "extracted_rows": len(attributes),
            "evaluation_products_left_out": len(evaluation_ids),
            "reasons": MetadataValue.json({str(k): int(v) for k, v in reasons.items()}),
            "text_model": text_version or "none (no disagreement term)",
            "csv": MetadataValue.path(str(csv_path)),
            "html": MetadataValue.path(str(html_path)),
            "preview": MetadataValue.md(
                queue.drop(columns=["image_path", "predictions"]).head(10).to_markdown(index=False)
            ),
        }
    )


extraction_assets = [product_attributes, warehouse_product_attributes, review_queue]
