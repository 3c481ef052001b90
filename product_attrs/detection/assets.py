"""Dagster assets of the detection domain; the only module here that imports Dagster.

Each asset reads its inputs, calls one plain function of the domain, writes its home on disk and
returns metadata. torch is imported inside the training/export assets so that loading the code
location stays light.
"""

# No `from __future__ import annotations`: Dagster reads the real type hints (context, resources, Config).

import dataclasses
import math
import typing
from pathlib import Path
from typing import Optional

import dagster as dg
import pydantic

from product_attrs.detection import dataset as ds
from product_attrs.detection.config import DetectorConfig, config_field_specs
from product_attrs.detection.dataset import read_detection_dataset
from product_attrs.demo import ensure_shelves
from product_attrs.resources import GPU_POOL, ComputeResource, PathsResource


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
    settings = paths.settings()
    out_dir = settings.detection_out_dir
    # Reuse the stored label map so that labels never shift between runs.
    ensure_shelves(settings)  # the generated demo scenes, when the default folder is still empty
    data = ds.load_detection_source(settings.detection_dir, label_map=ds.read_label_map(out_dir))
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


@dg.asset_check(asset=detection_dataset, blocking=True, description="Every input box is either clean or quarantined.")
def detection_boxes_accounted_for(paths: PathsResource) -> dg.AssetCheckResult:
    settings = paths.settings()
    data = ds.read_detection_dataset(settings.detection_out_dir)
    n_source = ds.count_source_boxes(settings.detection_dir)  # counted again from the source file
    n_out = len(data.boxes) + data.n_quarantined_boxes
    return dg.AssetCheckResult(
        passed=n_out == n_source,
        metadata={"source_boxes": n_source, "clean_boxes": len(data.boxes), "quarantined_boxes": data.n_quarantined_boxes},
    )




# ------------------------------------------------------------------------------------ the detector


def _dagster_config_fields() -> dict:
    """Dagster Config fields generated from DetectorConfig: one source of truth for hyperparameters.

    Every field but `profile` defaults to None, meaning "the profile's value".
    """
    fields: dict = {}
    for name, py_type, default in config_field_specs():
        if name == "profile":
            fields[name] = (str, pydantic.Field(default="demo", description="demo (CPU, minutes) or full (GPU, nightly)"))
            continue
        if typing.get_origin(py_type) is tuple:
            py_type = list[int]
        fields[name] = (Optional[py_type], pydantic.Field(default=None, description=f"None = the profile's value (demo: {default})"))
    return fields


class _DetectorConfigBase(dg.Config):
    def to_detector_config(self) -> DetectorConfig:
        values = dict(self)
        return DetectorConfig.for_profile(values.pop("profile"), **values)


ProductDetectorConfig = pydantic.create_model("ProductDetectorConfig", __base__=_DetectorConfigBase, **_dagster_config_fields())
ProductDetectorConfig.__doc__ = "Hyperparameters of the product detector (mirrors `python -m product_attrs.detection.train --help`)."


def _per_class_markdown(per_class: dict) -> str:
    lines = ["| class | AP |", "|---|---:|"] + [f"| {k} | {v:.3f} |" for k, v in sorted(per_class.items())]
    return "\n".join(lines)


def _num(v) -> float:
    return float(v) if v is not None and math.isfinite(float(v)) else 0.0


@dg.asset(
    group_name="training",
    deps=[detection_dataset],
    pool=GPU_POOL,
    kinds={"pytorch", "mlflow"},
    description="Faster R-CNN product detector trained on detection_dataset; a model version folder + MLflow model.",
)
def product_detector(
    context: dg.AssetExecutionContext,
    config: ProductDetectorConfig,
    paths: PathsResource,
    compute: ComputeResource,
) -> dg.MaterializeResult:
    from product_attrs.detection.train import train_detector  # torch is imported when the asset runs, not at load

    settings = paths.settings()
    cfg = config.to_detector_config()
    if config.device is None:  # the compute resource decides unless the run config says otherwise
        cfg = dataclasses.replace(cfg, device=compute.torch_device())
    result = train_detector(
        cfg,
        settings.detection_out_dir,
        settings.models_dir,
        tracking_uri=settings.mlflow_tracking_uri,
        artifacts_uri=settings.mlflow_artifacts_uri,
        on_epoch=lambda rec: context.log.info(
            f"epoch {rec['epoch']}: loss {rec['train']['loss']:.4f}, {rec['train']['images_per_s']:.2f} img/s"
            + (f", mAP {rec['eval']['mAP']:.4f}" if "eval" in rec else "")
        ),
    )
    m = result.metrics
    return dg.MaterializeResult(
        metadata={
            "mAP": _num(m.get("mAP")),
            "AP50": _num(m.get("AP50")),
            "AP75": _num(m.get("AP75")),
            "AR100": _num(m.get("AR100")),
            "per_class_AP": dg.MetadataValue.md(_per_class_markdown(m.get("per_class_AP", {}))),
            "train_images_per_s": result.train_images_per_s,
            "epochs": len(result.history),
            "profile": cfg.profile,
            "arch": cfg.arch,
            "weights_source": str(result.build.get("weights_source")),
            "version_dir": dg.MetadataValue.path(str(result.version_dir)),
            "mlflow_run_id": str(result.run_id),
            "registered_version": str(result.registered_version),
            "champion": result.promoted,
            "config": dg.MetadataValue.json(cfg.to_dict()),
        }
    )


@dg.asset(
    group_name="training",
    deps=[product_detector],
    kinds={"onnx"},
    description="ONNX export of the latest detector version, checked against PyTorch with onnxruntime.",
    check_specs=[dg.AssetCheckSpec("onnx_parity", asset="product_detector_onnx", description="ONNX and PyTorch detections agree")],
)
def product_detector_onnx(paths: PathsResource) -> dg.MaterializeResult:
    from product_attrs.detection.export import export_version
    from product_attrs.detection.train import resolve_version

    settings = paths.settings()
    version_dir = resolve_version(settings.models_dir, "latest")
    data = read_detection_dataset(settings.detection_out_dir)
    test = data.images[data.images["split"] == "test"]
    sample = (test if len(test) else data.images)["file_path"].head(4).tolist()
    report = export_version(version_dir, [Path(p) for p in sample])
    return dg.MaterializeResult(
        metadata={"path": dg.MetadataValue.path(report["onnx"]), "max_box_diff_px": report["max_box_diff"],
                  "max_score_diff": report["max_score_diff"], "detections_compared": report["compared"]},
        check_results=[dg.AssetCheckResult(
            check_name="onnx_parity", passed=bool(report["ok"]),
            metadata={"problems": len(report["problems"]), "box_atol_px": report["box_atol"], "score_atol": report["score_atol"]},
        )],
    )


detection_assets = [detection_dataset, product_detector, product_detector_onnx]
detection_checks = [detection_boxes_accounted_for]
