"""Dagster assets of the detection domain; the only module here that imports Dagster.

Each asset reads its inputs, calls one plain function of the domain, writes its home on disk and
returns metadata.
"""

# No `from __future__ import annotations`: Dagster reads the real type hints (context, resources, Config).

import dagster as dg

from product_attrs.detection import dataset as ds
from product_attrs.resources import PathsResource


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


detection_assets = [detection_dataset]
detection_checks = [detection_boxes_accounted_for]
