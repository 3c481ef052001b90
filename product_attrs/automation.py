"""Jobs, their executors, the nightly retraining schedule, the sensor that turns new image folders into
batches, and the instance set-up (`python -m product_attrs.automation [BATCH ...]`, run by `make`).

Executors: light jobs (ingestion, customer analytics) run their steps in one process, so a click on
Materialize costs one start-up, not one per step. Jobs that train or run models keep one process per
step (a crashed training step is retried and resumes from its checkpoint without killing the run);
their processes fork from a server that has already loaded these definitions (`forkserver`), so a
step starts in a fraction of a second instead of re-importing everything.
"""

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from dagster import (
    AssetSelection,
    DagsterInstance,
    in_process_executor,
    multiprocess_executor,
    DefaultScheduleStatus,
    DefaultSensorStatus,
    RunRequest,
    ScheduleEvaluationContext,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    OpExecutionContext,
    define_asset_job,
    job,
    op,
    schedule,
    sensor,
)

from product_attrs.extraction.assets import image_batches
from product_attrs.extraction.batches import CATALOG_KEY, UnsafePartitionKey, check_key, incoming_key
from product_attrs.resources import DUCKDB_POOL, TRAINING_POOL, WarehouseResource
from product_attrs.data_root import mark as mark_data_root
from product_attrs.paths import is_within
from product_attrs.settings import get_settings

#: One process per step, forked from a server that has imported the definitions, pandas and torch once:
#: a step that trains or runs a model would otherwise spend 3-9 s importing torch and torchvision (measured
#: on the 2-core machine), and the demo has eight of them; the price is those few seconds once per run.
#: Up to four steps at once: the `training` pool bounds the trainings (see pool_limits), so light steps are
#: not left queuing behind two long trainings for the executor's slots.
PRELOADED = ["product_attrs.definitions", "pandas", "torch", "torchvision"]
default_executor = multiprocess_executor.configured(
    {"max_concurrent": 4, "start_method": {"forkserver": {"preload_modules": PRELOADED}}},
    name="forkserver_multiprocess",
)

TRAINING_ASSETS = ["attribute_classifier", "text_baseline", "product_detector", "product_detector_onnx"]
EXTRACTION_ASSETS = ["product_attributes", "warehouse_product_attributes"]
#: The warehouse assets that follow new attributes (recommendations, similar products, ...).
AFTER_EXTRACTION = AssetSelection.assets(*EXTRACTION_ASSETS).downstream()

ingest_catalog_job = define_asset_job(
    name="ingest_catalog",
    selection=AssetSelection.assets(
        "raw_styles", "image_manifest", "catalog", "catalog_splits", "detection_dataset", "warehouse_catalog"
    ),
    executor_def=in_process_executor,
    description=(
        "Parse, check and clean the catalog and detection data; publish catalog and quarantine to DuckDB."
    ),
)

train_models_job = define_asset_job(
    name="train_models",
    selection=AssetSelection.assets(*TRAINING_ASSETS),
    description=(
        "Train the attribute classifier, the text baseline and the detector (MLflow runs, champion alias)."
    ),
)

extract_attributes_job = define_asset_job(
    name="extract_attributes",
    selection=AFTER_EXTRACTION,
    description="Extract attributes for one batch of images and refresh the warehouse tables built on them.",
)

#: Recognition by retrieval on the grocery catalog: ingest, train, embed the gallery, recognize the photo
#: folder.
RECOGNITION_ASSETS = ["grocery_catalog", "product_recognizer", "gallery_index", "recognitions"]
recognize_products_job = define_asset_job(
    name="recognize_products",
    selection=AssetSelection.assets(*RECOGNITION_ASSETS),
    description=(
        "Ingest the grocery catalog, train the recognizer, embed the gallery and recognize the photo folder "
        "(needs a product_detector version for shelf photos)."
    ),
)

nightly_job = define_asset_job(
    name="nightly_retrain_and_extract",
    selection=AssetSelection.assets(*TRAINING_ASSETS, "shelf_share", *RECOGNITION_ASSETS) | AFTER_EXTRACTION,
    description=(
        "Retrain the models on the full data (full profile), then re-extract the catalog and re-embed the "
        "gallery."
    ),
)

#: The improvement loop's retraining: the corrections checked again, then the classifier trained with the
#: `refresh` profile (from the champion, backbone stages frozen, corrections weighted), which becomes the
#: champion only if it beats it on the test split (corrections never touch it); then the review queue of
#: the catalog's images is rebuilt from whichever model is champion.
REFRESH_RUN_CONFIG = {"ops": {"attribute_classifier": {"config": {"profile": "refresh"}}}}
refresh_job = define_asset_job(
    name="refresh_classifier",
    selection=AssetSelection.assets("label_corrections", "attribute_classifier"),
    config=REFRESH_RUN_CONFIG,
    description=(
        "Check the label corrections, then retrain the attribute classifier from the champion on the catalog "
        "plus the corrections (refresh profile); the champion moves only if the new version is better."
    ),
)

ANALYTICS_ASSETS = [
    "customer_interactions",
    "customer_attribute_affinity",
    "recommendations",
    "similar_products",
]
customer_analytics_job = define_asset_job(
    name="customer_analytics",
    selection=AssetSelection.assets(*ANALYTICS_ASSETS),
    executor_def=in_process_executor,
    description=(
        "Reload customer events; refresh affinity, recommendations (with hit rate/NDCG) and similar products."
    ),
)

FULL_PROFILE_RUN_CONFIG = {
    "ops": {
        "attribute_classifier": {"config": {"profile": "full"}},
        "product_detector": {"config": {"profile": "full"}},
        "product_recognizer": {"config": {"profile": "full"}},
    }
}


@schedule(
    job=nightly_job,
    cron_schedule="0 2 * * *",
    execution_timezone="UTC",
    default_status=DefaultScheduleStatus.STOPPED,
    description="Every night at 02:00 UTC: retrain on the full data set (full profile) and re-extract.",
)
def nightly_retrain(context: ScheduleEvaluationContext) -> RunRequest:
    context.instance.add_dynamic_partitions(image_batches.name, [CATALOG_KEY])
    return RunRequest(
        run_key=f"nightly-{context.scheduled_execution_time:%Y-%m-%d}",
        partition_key=CATALOG_KEY,
        run_config=FULL_PROFILE_RUN_CONFIG,
        tags={"trigger": "nightly"},
    )


def ready_folders(incoming: Path, min_age_seconds: float, now: float | None = None) -> list[str]:
    """Sub-folders of ``incoming`` that hold files and have not changed for ``min_age_seconds``
    (a folder still being copied into is left for the next tick). A symlink to a folder elsewhere is no
    batch: extraction reads only under ``incoming``."""
    if not incoming.is_dir():
        return []
    now = time.time() if now is None else now
    ready = []
    for folder in sorted(
        p for p in incoming.iterdir() if p.is_dir() and not p.name.startswith(".") and is_within(incoming, p)
    ):
        files = [f for f in folder.rglob("*") if f.is_file()]
        newest = max([folder.stat().st_mtime, *(f.stat().st_mtime for f in files)])
        if files and now - newest >= min_age_seconds:
            ready.append(folder.name)
    return ready


def incoming_keys(folders: list[str]) -> tuple[list[str], list[str]]:
    """The batch keys of ``folders``, and why each folder whose name cannot be a key was left out (a name
    such as ``../x`` or ``café`` would become a path or a partition nobody can type back)."""
    keys, refused = [], []
    for name in folders:
        try:
            keys.append(incoming_key(name))
        except UnsafePartitionKey as exc:
            refused.append(str(exc))
    return keys, refused


@sensor(
    job=extract_attributes_job,
    minimum_interval_seconds=60,
    default_status=DefaultSensorStatus.STOPPED,
    description="A new folder under <data>/incoming becomes a batch (dynamic partition) and is extracted.",
)
def incoming_images_sensor(context: SensorEvaluationContext):
    settings = get_settings()
    folders = ready_folders(settings.data_dir / "incoming", min_age_seconds=30)
    known = set(context.instance.get_dynamic_partitions(image_batches.name))
    keys, refused = incoming_keys(folders)
    for reason in refused:
        context.log.warning(f"incoming folder skipped: {reason}")
    new = [key for key in keys if key not in known]
    if not new:
        return SkipReason(f"no new folder under {settings.data_dir / 'incoming'}")
    return SensorResult(
        run_requests=[RunRequest(run_key=key, partition_key=key) for key in new],
        dynamic_partitions_requests=[image_batches.build_add_request(new)],
    )


def correction_fingerprints(folder: Path, min_age_seconds: float, now: float | None = None) -> list[str]:
    """Fingerprints (name, size, content hash) of the correction files under ``folder`` that have not
    changed for ``min_age_seconds`` (a file still being written waits for the next tick)."""
    from product_attrs.catalog.corrections import correction_files, fingerprint

    now = time.time() if now is None else now
    return sorted(
        fingerprint(p) for p in correction_files(folder) if now - p.stat().st_mtime >= min_age_seconds
    )


def new_corrections(fingerprints: list[str], cursor: str | None) -> list[str]:
    """The fingerprints the cursor (a JSON list of those already answered) has not seen."""
    seen = set(json.loads(cursor)) if cursor else set()
    return [f for f in fingerprints if f not in seen]


@sensor(
    job=refresh_job,
    minimum_interval_seconds=60,
    default_status=DefaultSensorStatus.STOPPED,
    description="A new or changed file under <data>/corrections starts a refresh of the classifier.",
)
def corrections_sensor(context: SensorEvaluationContext):
    from product_attrs.catalog.corrections import input_folder

    folder = input_folder(get_settings().data_dir)
    prints = correction_fingerprints(folder, min_age_seconds=30)
    new = new_corrections(prints, context.cursor)
    if not new:
        return SkipReason(f"no new corrections file under {folder}")
    # The cursor holds every fingerprint answered so far: a file edited again is new again, a removed one
    # starts nothing.
    seen = set(json.loads(context.cursor)) if context.cursor else set()
    context.update_cursor(json.dumps(sorted(seen | set(prints))))
    key = hashlib.sha1("\n".join(sorted(new)).encode()).hexdigest()[:16]
    return RunRequest(
        run_key=f"refresh-{key}",
        run_config=REFRESH_RUN_CONFIG,
        tags={"trigger": "corrections", "corrections_files": ",".join(f.split(":")[0] for f in new)[:200]},
    )


@op(
    description="Expire lake snapshots older than the retention, merge small files, delete unused files.",
)
def maintain_lake(context: OpExecutionContext, warehouse: WarehouseResource) -> dict:
    from product_attrs.warehouse.lake import exists, maintain

    lake = warehouse.lake()
    if not exists(lake):
        context.log.info(f"no lake yet at {lake.describe()}: nothing to maintain")
        return {}
    done = maintain(lake, retention_days=get_settings().lake_retention_days)
    context.log.info(", ".join(f"{k} {v}" for k, v in done.items()))
    return done


@job(description="Lake upkeep: time travel reaches back PRODUCT_ATTRS_LAKE_RETENTION_DAYS (default 30).")
def lake_maintenance():
    maintain_lake()


@schedule(
    job=lake_maintenance,
    cron_schedule="0 4 * * 0",
    execution_timezone="UTC",
    default_status=DefaultScheduleStatus.STOPPED,
    description="Sundays at 04:00 UTC, after the nightly retrain: expire old snapshots, compact small files.",
)
def weekly_lake_maintenance(context: ScheduleEvaluationContext) -> RunRequest:
    return RunRequest(run_key=f"lake-maintenance-{context.scheduled_execution_time:%Y-%m-%d}")


jobs = [
    lake_maintenance,
    ingest_catalog_job,
    train_models_job,
    extract_attributes_job,
    nightly_job,
    customer_analytics_job,
    recognize_products_job,
    refresh_job,
]
schedules = [nightly_retrain, weekly_lake_maintenance]
sensors = [incoming_images_sensor, corrections_sensor]


# ---- instance set-up ------------------------------------------------------------------------------------


def gpu_count() -> int:
    """GPUs `nvidia-smi` lists (no torch import: this runs at set-up)."""
    if not shutil.which("nvidia-smi"):
        return 0
    try:
        out = subprocess.run(
            ["nvidia-smi", "-L"], capture_output=True, text=True, timeout=20, check=False
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return 0
    return sum(1 for line in out.splitlines() if line.startswith("GPU "))


#: Slots of the `duckdb_writer` pool: dagster.yaml's max_concurrent_runs.
WRITER_SLOTS = 4


def pool_limits() -> dict[str, int]:
    """`duckdb_writer`: as many slots as runs (4). Lake commits need no mutual exclusion (writers of
    different tables or partitions commit side by side, a busy catalog is retried), and the assets that run
    models hold no slot; the pool only bounds how many SQL steps (each with DuckDB's memory) run at once.
    `training`: one slot per GPU or, on a host without one, one per core up to four: the CPU profiles train
    on one thread each, so two trainings on two cores take half the wall time of one after the other, where
    on a GPU they would only fight over its memory."""
    return {DUCKDB_POOL: WRITER_SLOTS, TRAINING_POOL: gpu_count() or max(1, min(os.cpu_count() or 1, 4))}


def register_batches(instance: DagsterInstance, keys: list[str]) -> list[str]:
    """Add the image batches the instance does not know yet (default: the catalog); returns the keys.
    The CLI `dagster asset materialize --select '*' --partition catalog` needs the partition to exist."""
    keys = [check_key(k) for k in keys] or [CATALOG_KEY]
    known = set(instance.get_dynamic_partitions(image_batches.name))
    new = [k for k in keys if k not in known]
    if new:
        instance.add_dynamic_partitions(image_batches.name, new)
    return keys


def main(argv: list[str] | None = None) -> int:
    mark_data_root(get_settings().data_dir)  # `make clean-data` empties only a folder set up here
    limits = pool_limits()
    with DagsterInstance.get() as instance:
        for pool, limit in limits.items():
            instance.event_log_storage.set_concurrency_slots(pool, limit)
        keys = register_batches(instance, sys.argv[1:] if argv is None else argv)
    print(f"pools: {', '.join(f'{k}={v}' for k, v in limits.items())}; image batches: {', '.join(keys)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
