"""The built shelf app in a real headless Chromium: the same counts as Python's onnxruntime, offline too.

The app the pipeline built (conftest.built_app) is served by its own dev server; the page runs the
champion detector with onnxruntime-web (WASM, 2 threads) through its test hook `shelfApp.detectUrl`, and
Python runs the same ONNX file through `processing.detect` on the same demo shelf photos (JPEG, decoded by
Chromium and by PIL: the test checks both decodes give the same pixels, so a difference in counts could
only come from the app). Skips with a reason where Chromium, chromedriver, selenium or the npm packages
are not installed (`make test` installs them).
"""

from __future__ import annotations

import json
import shutil
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from product_attrs.shelf_app import processing as P
from product_attrs_tests.shelf_app import browser as B
from product_attrs_tests.ui_browser import wait_for

pytestmark = pytest.mark.skipif(B.missing_browser() is not None, reason=B.missing_browser() or "")

BOX_ATOL_PX = 1.0


def split_threshold(scores: list[float], margin: float = 1e-3) -> float:
    """A threshold that keeps some detections and drops others, at least `margin` from every score (the
    runtimes' kernels differ by ~1e-6; a score sitting on the threshold would test rounding, not the app)."""
    s = sorted(set(scores), reverse=True)
    for i in range(len(s) // 2, len(s) - 1):
        if s[i] - s[i + 1] > 2 * margin:
            return (s[i] + s[i + 1]) / 2
    raise AssertionError(f"no gap of {2 * margin} between scores {s[:20]}...")


def assert_same(js: dict, py: dict, where: str) -> None:
    assert js["input_size"] == py["input_size"], where
    assert js["counts"] == py["counts"], where  # exactly
    assert sorted(js["labels"]) == sorted(py["labels"]), where
    used: set[int] = set()
    for b, lab in zip(js["boxes"], js["labels"], strict=True):
        candidates = [j for j, pl in enumerate(py["labels"]) if pl == lab and j not in used]
        diffs = [float(np.abs(np.subtract(b, py["boxes"][j])).max()) for j in candidates]
        k = int(np.argmin(diffs))
        used.add(candidates[k])
        assert diffs[k] <= BOX_ATOL_PX, f"{where}: box {b} is {diffs[k]:.3f} px from Python's"
    for name in py["counts"]:
        assert js["share_facings"][name] == pytest.approx(py["share_facings"][name], abs=1e-12), where
        assert js["share_width"][name] == pytest.approx(py["share_width"][name], abs=1e-3), where


@pytest.fixture(scope="module")
def app_with_photos(built_app, tmp_path_factory) -> tuple[Path, list[str]]:
    """A copy of the built app with six demo shelf photos beside it (the app's own demos among them)."""
    folder = tmp_path_factory.mktemp("served") / "app"
    shutil.copytree(built_app.folder, folder)
    model = json.loads((folder / "model.json").read_text())
    photos = list(model["demos"])
    shelves = sorted((built_app.data_dir.parent / "shelves" / "images").glob("*.jpg"))
    (folder / "photos").mkdir()
    for src in shelves[: 6 - len(photos)]:
        shutil.copyfile(src, folder / "photos" / src.name)
        photos.append(f"photos/{src.name}")
    return folder, photos


def test_browser_counts_equal_python_onnxruntime(app_with_photos, tmp_path):
    folder, photos = app_with_photos
    model = P.AppModel.from_dict(json.loads((folder / "model.json").read_text()))
    session = P.session(folder / "model.onnx", threads=2)
    rgbs = {p: P.load_rgb(folder / p) for p in photos}
    every = [s for p in photos for s in P.detect(session, rgbs[p], model, threshold=0.0)["scores"]]
    threshold = split_threshold(every)
    with B.served(folder) as server, B.chromium(tmp_path) as driver:
        runtime = B.open_app(driver, server.url + "?ep=wasm&threads=2")
        assert runtime == {"ep": "wasm", "threads": 2, "isolated": True, "ort_version": "1.30.0"}
        assert model.version in driver.find_element("id", "version").text  # the page shows the model version
        total = 0
        for p in photos:
            js = B.call(driver, f"window.shelfApp.detectUrl({json.dumps(p)}, {threshold!r})")
            assert js["pixel_checksum"] == P.pixel_checksum(rgbs[p]), f"{p}: Chromium decoded other pixels"
            py = P.detect(session, rgbs[p], model, threshold)
            assert_same(js, py, p)
            total += sum(js["counts"].values())
        # Not vacuous: products were counted, and the threshold dropped some detections too.
        assert 0 < total < len(every)
        shown = driver.find_element("id", "counts").text
        assert f"all {sum(js['counts'].values())}" in shown


def test_counts_with_the_network_cut_after_the_first_load(app_with_photos, tmp_path):
    folder, photos = app_with_photos
    model = P.AppModel.from_dict(json.loads((folder / "model.json").read_text()))
    session = P.session(folder / "model.onnx", threads=2)
    demos = json.loads((folder / "model.json").read_text())["demos"]  # the app's own: cached at install
    found = {d: len(P.detect(session, P.load_rgb(folder / d), model, 0.0)["scores"]) for d in demos}
    demo = max(found, key=found.get)
    assert found[demo] > 0, found
    with B.served(folder) as server, B.chromium(tmp_path) as driver:
        url = server.url + "?ep=wasm&threads=2"
        B.open_app(driver, url)
        assert B.call(driver, "window.shelfApp.offlineReady()") is True
        # Every detection the graph returns (its own floor, 0.05): the tiny test detector scores low.
        online = B.call(driver, f"window.shelfApp.detectUrl({json.dumps(demo)}, 0)")
        B.stop(server)
        with pytest.raises(OSError):  # the network is really gone
            urllib.request.build_opener(urllib.request.ProxyHandler({})).open(server.url, timeout=5)
        driver.execute_cdp_cmd(
            "Network.emulateNetworkConditions",
            {"offline": True, "latency": 0, "downloadThroughput": -1, "uploadThroughput": -1},
        )
        runtime = B.open_app(driver, url)  # a reload: page, runtime and model from the service worker
        offline = B.call(driver, f"window.shelfApp.detectUrl({json.dumps(demo)}, 0)")
    assert runtime["isolated"] and runtime["threads"] == 2  # the cached page kept its COOP/COEP headers
    assert offline["counts"] == online["counts"] and sum(offline["counts"].values()) > 0
    assert offline["boxes"] == online["boxes"]


def test_without_isolation_headers_it_runs_on_one_thread_and_says_so(app_with_photos, tmp_path):
    folder, photos = app_with_photos
    with B.served(folder, isolation=False) as server, B.chromium(tmp_path) as driver:
        runtime = B.open_app(driver, server.url + "?ep=wasm&threads=2")
        said = driver.find_element("id", "runtime").text
        result = B.call(driver, f"window.shelfApp.detectUrl({json.dumps(photos[0])}, 0)")
    assert runtime["isolated"] is False and runtime["threads"] == 1
    assert "1 thread" in said and "cross-origin isolation" in said
    assert result["input_size"] == [320, 240]  # and it still detects


@pytest.mark.slow  # 20 s: a second browser with a fake camera; the detection itself is tested above
def test_the_camera_runs_frame_after_frame(app_with_photos, tmp_path):
    folder, _ = app_with_photos
    with B.served(folder) as server, B.chromium(tmp_path, camera=True) as driver:
        B.open_app(driver, server.url + "?ep=wasm&threads=2")
        driver.find_element("id", "camera").click()
        frames = wait_for(
            driver,
            lambda d: (
                "camera:" in d.find_element("id", "status").text and d.find_element("id", "status").text
            ),
            120,
            "camera frames to be counted",
        )
        size = driver.execute_script("const c = document.getElementById('view'); return [c.width, c.height]")
        driver.find_element("id", "camera").click()  # stop
        assert driver.find_element("id", "camera").text == "Start camera"
    assert "frames/s" in frames and "products" in frames
    assert size == [640, 480]  # the fake camera's frames, drawn at their own size
