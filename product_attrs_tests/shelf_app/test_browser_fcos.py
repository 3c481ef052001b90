"""The `browser` profile's detector (single-stage FCOS, 224 x 168, heads on stride 8 only) in the app:
trained by the pipeline's `train`, exported by `export_version` (parity with PyTorch), built by `build_app`,
and headless Chromium counts the same products as Python's onnxruntime on the same graph. Slow (a short
training run), so `-m slow`; the default suite covers the app with the demo Faster R-CNN."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from product_attrs.shelf_app import processing as P
from product_attrs_tests.shelf_app import browser as B
from product_attrs_tests.shelf_app.conftest import node_deps_missing
from product_attrs_tests.shelf_app.test_browser import assert_same, split_threshold

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(B.missing_browser() is not None, reason=B.missing_browser() or ""),
]


def test_browser_profile_fcos_counts_equal_python(tmp_path: Path) -> None:
    if node_deps_missing():
        pytest.skip(node_deps_missing())
    import torch

    from product_attrs.detection import dataset as ds
    from product_attrs.detection.config import PROFILES, DetectorConfig
    from product_attrs.detection.export import export_version
    from product_attrs.detection.sources import load_detection_source
    from product_attrs.detection.train import train
    from product_attrs.modeling.config import resolve
    from product_attrs.modeling.registry import Registry
    from product_attrs.sample_data.shelves import generate_shelves
    from product_attrs.shelf_app.build import app_model_from_version, build_app
    from product_attrs_tests.detection.conftest import quiet

    shelves = tmp_path / "shelves"
    generate_shelves(shelves, n_images=16, seed=3)
    ds.write_detection_dataset(load_detection_source(shelves), tmp_path / "detection")
    cfg = resolve(DetectorConfig, PROFILES, "browser", None, {"epochs": 4, "batch_size": 2, "eval_every": 4})
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        result = train(cfg, tmp_path / "detection", Registry(tmp_path / "models"), device="cpu", log=quiet)
    finally:
        torch.set_num_threads(threads)
    photos = sorted((shelves / "images").glob("*.jpg"))[:6]
    report = export_version(result.version_dir, photos[:2])
    assert report["ok"], report["problems"][:5]
    model = app_model_from_version(result.version_dir)
    assert (model.min_size, model.max_size) == (168, 224)
    folder = tmp_path / "app"
    build_app(result.version_dir / "model.onnx", model, folder, webgpu=False, demo_images=photos)
    names = json.loads((folder / "model.json").read_text())["demos"]
    session = P.session(folder / "model.onnx", threads=2)
    rgbs = {n: P.load_rgb(folder / n) for n in names}
    every = [s for n in names for s in P.detect(session, rgbs[n], model, threshold=0.0)["scores"]]
    # FCOS keeps up to 100 boxes per photo down to 0.05, packed too close below; split among the upper ones.
    threshold = split_threshold([s for s in every if s >= 0.3])
    with B.served(folder) as server, B.chromium(tmp_path / "chrome") as driver:
        B.open_app(driver, server.url + "?ep=wasm&threads=2")
        total = 0
        for n in names:
            js = B.call(driver, f"window.shelfApp.detectUrl({json.dumps(n)}, {threshold!r})")
            py = P.detect(session, rgbs[n], model, threshold)
            assert py["input_size"] == [224, 168]  # the 320 x 240 demo photos at the profile's size
            assert_same(js, py, n)
            total += sum(js["counts"].values())
    assert 0 < total < len(every)
