"""Dagster assets of the detection domain; the only module here that imports Dagster.

Each asset reads its inputs, calls one plain function of the domain, writes its home on disk and
returns metadata. pandas and torch are imported when an asset runs, so loading the definitions stays
light.
"""

# No `from __future__ import annotations`: Dagster reads the real type hints (context, resources, Config).

from functools import partial
from pathlib import Path

import dagster as dg

from product_attrs.detection.config import PRODUCT_DETECTOR, PROFILES, DetectorConfig
from product_attrs.modeling.assets import (
    TRAINING_RETRY,
    champion_check,
    config_class,
    engine_options,
    finite,
    resolve_config,
    training_metadata,
)
from product_attrs.resources import (
    TRAINING_POOL,
    ComputeResource,
    PathsResource,
    RegistryResource,
    WarehouseResource,
)


def _label_map_markdown(label_map: list[dict]) -> str:
    lines = ["| label | category_id | name |", "|---:|---:|---|"]
    lines += [f"| {m['label']} | {m['category_id']} | {m['name']} |" for m in label_map]
    return "\n".join(lines)


@dg.asset(
    group_name="ingestion",
    kinds={"python", "parquet"},
    description="Clean detection images and boxes (COCO json or CSV), with a quarantine of rejected records.",
)
def detection_dataset(context: dg.AssetExecutionContext, paths: PathsResource) -> dg.MaterializeResult:
    from product_attrs.demo import ensure_shelves
    from product_attrs.detection import dataset as ds
    from product_attrs.detection.sources import load_detection_source

    settings = paths.settings()
    out_dir = settings.detection_out_dir
    ensure_shelves(settings)  # the generated demo scenes, when the default folder is still empty
    # Reuse the stored label map so that labels never shift between runs.
    data = load_detection_source(settings.detection_dir, label_map=ds.read_label_map(out_dir))
    files = ds.write_detection_dataset(data, out_dir)
    s = data.summary()
    reasons = data.quarantine["reason"].value_counts().to_dict()
    context.log.info(f"detection dataset: {s}")
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": s["n_boxes"],
            "n_images": s["n_images"],
            "n_boxes": s["n_boxes"],
            "n_input_boxes": s["n_input_boxes"],
            "n_train_images": s["images_per_split"]["train"],
            "n_test_images": s["images_per_split"]["test"],
            "n_train_boxes": s["boxes_per_split"]["train"],
            "n_test_boxes": s["boxes_per_split"]["test"],
            "n_crowd_boxes": s["n_crowd_boxes"],
            "n_clipped_boxes": s["n_clipped_boxes"],
            "n_negative_images": s["n_negative_images"],
            "n_quarantine": s["n_quarantine"],
            "quarantine_reasons": dg.MetadataValue.json({str(k): int(v) for k, v in reasons.items()}),
            "num_classes": s["num_classes"],
            "label_map": dg.MetadataValue.md(_label_map_markdown(data.label_map)),
            "source": dg.MetadataValue.path(s["source"]),
            "path": dg.MetadataValue.path(str(out_dir)),
            "boxes_parquet": dg.MetadataValue.path(str(files["boxes.parquet"])),
            "data_version": data.data_version(),
        },
        data_version=dg.DataVersion(data.data_version()),
    )


@dg.asset_check(
    asset=detection_dataset, blocking=True, description="Every input box is either clean or quarantined."
)
def detection_boxes_accounted_for(paths: PathsResource) -> dg.AssetCheckResult:
    from product_attrs.detection import dataset as ds
    from product_attrs.detection.sources import count_source_boxes

    settings = paths.settings()
    data = ds.read_detection_dataset(settings.detection_out_dir)
    n_source = count_source_boxes(settings.detection_dir)  # counted again from the source file
    n_out = len(data.boxes) + data.n_quarantined_boxes
    return dg.AssetCheckResult(
        passed=n_out == n_source,
        metadata={
            "source_boxes": n_source,
            "clean_boxes": len(data.boxes),
            "quarantined_boxes": data.n_quarantined_boxes,
        },
    )


# ------------------------------------------------------------------------------------ the detector

ProductDetectorConfig = config_class(
    "ProductDetectorConfig",
    DetectorConfig,
    PROFILES,
    "Hyperparameters of the product detector (mirrors `python -m product_attrs.detection.train --help`).",
    engine=True,
)


def _per_class_markdown(per_class: dict) -> str:
    lines = ["| class | AP |", "|---|---:|"] + [f"| {k} | {v:.3f} |" for k, v in sorted(per_class.items())]
    return "\n".join(lines)


@dg.asset(
    group_name="training",
    deps=[detection_dataset],
    pool=TRAINING_POOL,
    kinds={"pytorch", "mlflow"},
    retry_policy=TRAINING_RETRY,
    description=(
        "Faster R-CNN product detector trained on detection_dataset; a model version folder + MLflow model."
    ),
)
def product_detector(
    context: dg.AssetExecutionContext,
    config: ProductDetectorConfig,  # type: ignore[valid-type]
    paths: PathsResource,
    models: RegistryResource,
    compute: ComputeResource,
) -> dg.MaterializeResult:
    from product_attrs.detection.train import train

    cfg = resolve_config(config, DetectorConfig, PROFILES)
    settings = paths.settings()
    result, engine = compute.train(
        partial(
            train,
            cfg,
            settings.detection_out_dir,
            models.registry(),
            device=compute.torch_device(),
            allow_download=not settings.offline,
        ),
        name=PRODUCT_DETECTOR.name,
        storage=settings.data_dir / "ray",
        log=context.log.info,
        **engine_options(config),
    )
    info = result.manifest.info
    return dg.MaterializeResult(
        metadata=training_metadata(
            result,
            {
                **engine,
                "per_class_AP": dg.MetadataValue.md(_per_class_markdown(info.get("per_class_AP", {}))),
                "train_images_per_s": finite(info.get("train_images_per_s")),
                "arch": cfg.arch,
                "config": dg.MetadataValue.json(cfg.to_dict()),
            },
        )
    )


product_detector_is_champion = champion_check(
    PRODUCT_DETECTOR,
    description="The newest detector has a measured mAP and became the champion by beating the "
    "champion's mAP (else a warning: the champion keeps being served).",
)


@dg.asset(
    group_name="training",
    deps=[product_detector],
    kinds={"onnx"},
    description="ONNX export of the champion detector, checked against PyTorch with onnxruntime.",
    check_specs=[
        dg.AssetCheckSpec(
            "onnx_parity", asset="product_detector_onnx", description="ONNX and PyTorch detections agree"
        )
    ],
)
def product_detector_onnx(paths: PathsResource, models: RegistryResource) -> dg.MaterializeResult:
    from product_attrs.detection.dataset import read_detection_dataset
    from product_attrs.detection.export import export_version

    settings = paths.settings()
    version_dir = models.registry().champion_dir(PRODUCT_DETECTOR.name)
    data = read_detection_dataset(settings.detection_out_dir)
    test = data.images[data.images["split"] == "test"]
    sample = (test if len(test) else data.images)["file_path"].head(4).tolist()
    report = export_version(version_dir, [Path(p) for p in sample])
    return dg.MaterializeResult(
        metadata={
            "path": dg.MetadataValue.path(report["onnx"]),
            "detector": version_dir.name,
            "max_box_diff_px": report["max_box_diff"],
            "max_score_diff": report["max_score_diff"],
            "detections_compared": report["compared"],
        },
        check_results=[
            dg.AssetCheckResult(
                check_name="onnx_parity",
                passed=bool(report["ok"]),
                metadata={
                    "problems": len(report["problems"]),
                    "box_atol_px": report["box_atol"],
                    "score_atol": report["score_atol"],
                },
            )
        ],
    )


@dg.asset(
    deps=[product_detector, detection_dataset, "warehouse_catalog"],
    group_name="warehouse",
    kinds={"pytorch", "duckdb"},
)
def shelf_share(
    paths: PathsResource, models: RegistryResource, warehouse: WarehouseResource, compute: ComputeResource
) -> dg.MaterializeResult:
    """Tables ``shelf_share`` (facings and share of shelf per photo and class, by the champion detector)
    and ``shelf_share_summary``."""
    from product_attrs.detection.dataset import read_detection_dataset
    from product_attrs.detection.serve import load_champion
    from product_attrs.detection.shelf import shelf_tables

    detector = load_champion(models.registry(), device=compute.torch_device())
    shares, summary = shelf_tables(detector, read_detection_dataset(paths.settings().detection_out_dir))
    counts = warehouse.publish(
        {"shelf_share": shares, "shelf_share_summary": summary}, detector=detector.version
    )
    return dg.MaterializeResult(
        metadata={
            "detector": detector.version,
            "rows": counts["shelf_share"],
            "photos": int(shares["image_id"].nunique()) if len(shares) else 0,
            "summary": dg.MetadataValue.md(summary.to_markdown(index=False, floatfmt=".3f")),
        }
    )


detection_assets = [detection_dataset, product_detector, product_detector_onnx, shelf_share]
detection_checks = [detection_boxes_accounted_for, product_detector_is_champion]
