"""The shelf app built by the pipeline: demo shelf photos, a tiny detector trained on them (the champion),
then a real Dagster `materialize` of `product_detector_onnx` and `shelf_app` into a private data root."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from product_attrs.shelf_app.build import ort_dist


@dataclass(frozen=True)
class BuiltApp:
    data_dir: Path
    folder: Path  # <data>/shelf_app
    version_dir: Path  # the champion detector that was exported
    metadata: dict


def node_deps_missing() -> str | None:
    try:
        ort_dist(npm_install=False)
    except Exception as exc:  # noqa: BLE001 - the reason is the message
        return f"onnxruntime-web is not installed ({exc}): scripts/install_node_deps.sh (make node-deps)"
    return None


@pytest.fixture(scope="session")
def built_app(tmp_path_factory: pytest.TempPathFactory) -> BuiltApp:
    why = node_deps_missing()
    if why:
        pytest.skip(why)
    import dagster as dg
    import torch

    from product_attrs.detection import dataset as ds
    from product_attrs.detection.assets import product_detector_onnx
    from product_attrs.detection.sources import load_detection_source
    from product_attrs.detection.train import train
    from product_attrs.modeling.registry import Registry
    from product_attrs.resources import PathsResource, RegistryResource
    from product_attrs.sample_data.shelves import generate_shelves
    from product_attrs.shelf_app.assets import shelf_app
    from product_attrs_tests.detection.conftest import quiet, tiny_config

    root = tmp_path_factory.mktemp("shelf_app")
    shelves = root / "shelves"
    generate_shelves(shelves, n_images=16, seed=3)
    data = root / "data"
    ds.write_detection_dataset(load_detection_source(shelves), data / "detection")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        # The demo scenes' size (320 x 240) and enough steps that the detector finds products.
        cfg = tiny_config(min_size=240, max_size=320, epochs=3, max_steps_per_epoch=6, batch_size=2)
        result = train(cfg, data / "detection", Registry(data / "models"), device="cpu", log=quiet)
        run = dg.materialize(
            [product_detector_onnx, shelf_app],
            resources={
                "paths": PathsResource(data_dir=str(data), detection_dir=str(shelves)),
                "models": RegistryResource(data_dir=str(data), tracking_uri="none"),
            },
        )
    finally:
        torch.set_num_threads(threads)
    assert run.success
    md = {k: v.value for k, v in run.asset_materializations_for_node("shelf_app")[0].metadata.items()}
    return BuiltApp(data, data / "shelf_app", result.version_dir, md)
