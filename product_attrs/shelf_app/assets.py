"""The `shelf_app` asset: the static browser app, built from the champion detector's ONNX export.

The only module of shelf_app that imports Dagster; the build itself is `build.build_champion`, which the
command `python -m product_attrs.shelf_app.build` (and `make shelf-app`) runs the same way.
"""

# No `from __future__ import annotations`: Dagster reads the real type hints.

from pathlib import Path

import dagster as dg

from product_attrs.resources import PathsResource, RegistryResource

DEMO_PHOTOS = 3


@dg.asset(
    group_name="serving",
    deps=["product_detector_onnx", "detection_dataset"],
    kinds={"onnx", "javascript"},
    description=(
        "Static web app (onnxruntime-web, WASM or WebGPU) that counts facings and share of shelf on a photo "
        "or the camera, offline after the first load; built from the champion detector's ONNX export into "
        "<data root>/shelf_app. `make shelf-app` serves it."
    ),
)
def shelf_app(paths: PathsResource, models: RegistryResource) -> dg.MaterializeResult:
    from product_attrs.detection.dataset import read_detection_dataset
    from product_attrs.shelf_app.build import build_champion

    settings = paths.settings()
    out_dir = settings.data_dir / "shelf_app"
    # A few test-split photos go with the app, so an auditor can try it (offline) before the aisle.
    images = read_detection_dataset(settings.detection_out_dir).images
    test = images[images["split"] == "test"]
    demos = [Path(p) for p in (test if len(test) else images)["file_path"].head(DEMO_PHOTOS)]
    info = build_champion(models.registry(), out_dir, demo_images=demos)
    return dg.MaterializeResult(
        metadata={
            "path": dg.MetadataValue.path(str(out_dir)),
            "detector": info["model_version"],
            "onnxruntime_web": info["onnxruntime_web"],
            "megabytes": round(info["bytes"] / 1e6, 1),
            "files": len(info["files"]),
            "build": info["build"],
        },
        data_version=dg.DataVersion(info["build"]),
    )


shelf_app_assets = [shelf_app]
