"""The `shelf_app` asset writes a complete static folder from the champion's ONNX export, and nothing more."""

from __future__ import annotations

import json
import re

import dagster as dg

from product_attrs.shelf_app import build
from product_attrs.shelf_app.assets import DEMO_PHOTOS


def test_shelf_app_is_downstream_of_the_champion_export():
    from product_attrs.definitions import defs
    from product_attrs.shelf_app.assets import shelf_app

    assert shelf_app.asset_deps[dg.AssetKey("shelf_app")] >= {dg.AssetKey("product_detector_onnx")}
    graph = defs.resolve_asset_graph()
    assert dg.AssetKey("product_detector_onnx") in graph.get(dg.AssetKey("shelf_app")).parent_keys


def test_the_asset_builds_a_complete_offline_folder(built_app):
    folder = built_app.folder
    model = json.loads((folder / "model.json").read_text())
    champion = built_app.version_dir
    assert model["version"] == f"product_detector/{champion.name}" == built_app.metadata["detector"]
    assert (folder / "model.onnx").read_bytes() == (champion / "model.onnx").read_bytes()
    assert model["labels"] == {str(m["label"]): m["name"] for m in json.loads(
        (champion / "manifest.json").read_text())["info"]["label_map"]}  # fmt: skip
    assert (model["min_size"], model["max_size"]) == (240, 320)
    assert 0 < len(model["demos"]) <= DEMO_PHOTOS and all((folder / d).is_file() for d in model["demos"])
    # Exactly the runtime variants the page loads: WASM, and the WebGPU build.
    assert sorted(p.name for p in (folder / "ort").iterdir()) == sorted(build.WASM_FILES + build.WEBGPU_FILES)
    # The service worker caches what exists, under a name that changes with the files.
    sw = (folder / "sw.js").read_text()
    precache = json.loads(re.search(r"const PRECACHE = (\[.*?\]);", sw).group(1))
    assert "model.onnx" in precache and "ort/ort-wasm-simd-threaded.wasm" in precache
    assert all((folder / p).exists() for p in precache)
    assert f"shelf-app-{built_app.metadata['build']}" in sw and "__" not in sw
    info = json.loads((folder / "build.json").read_text())
    files = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())
    assert sorted(info["files"]) == files and info["onnxruntime_web"] == build.ort_version() == "1.30.0"
    # No CDN: nothing the page loads names another host.
    for name in ("index.html", "app.js", "processing.mjs", "sw.js"):
        assert "http://" not in (folder / name).read_text() and "https://" not in (folder / name).read_text()


def test_build_refuses_a_missing_model(tmp_path):
    import pytest

    model = build.AppModel("product_detector/x", 240, 320, {1: "can"})
    with pytest.raises(build.BuildError, match="materialize product_detector_onnx"):
        build.build_app(tmp_path / "nope.onnx", model, tmp_path / "out", npm_install=False)
    assert not (tmp_path / "out").exists()


def test_build_champion_takes_the_champion_not_the_newest(tmp_path):
    import torch

    from product_attrs.modeling.registry import Registry
    from product_attrs.modeling.versions import VersionStore
    from product_attrs_tests.modeling.helpers import commit_version

    models = tmp_path / "models"
    cfg = {"min_size": 240, "max_size": 320}
    info = {"label_map": [{"label": 1, "category_id": 7, "name": "can"}]}
    versions = [
        commit_version(
            models, "product_detector", "detection", torch.nn.Linear(1, 1), config=cfg, info=info,
            champion=champion, write=lambda d, tag=tag: (d / "model.onnx").write_bytes(tag),
        )
        for champion, tag in ((True, b"champion graph"), (False, b"newer, worse graph"))
    ]  # fmt: skip
    assert VersionStore(models, "product_detector").latest() == versions[1].name
    out = tmp_path / "app"
    info = build.build_champion(Registry(models), out, webgpu=False)
    assert (out / "model.onnx").read_bytes() == b"champion graph"
    assert info["model_version"] == f"product_detector/{versions[0].name}"
    assert not (out / "ort" / build.WEBGPU_FILES[0]).exists() and (out / "ort" / build.WASM_FILES[0]).exists()
