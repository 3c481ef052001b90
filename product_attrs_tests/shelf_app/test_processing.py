"""The app's pre/post-processing: Python's processing.py and the page's processing.mjs give the same bits.

The JavaScript module runs in node (the same V8 as Chromium); skipped with a reason where node is absent.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from product_attrs.shelf_app import processing as P

WEB = Path(P.__file__).parent / "web"
NODE = shutil.which("node")


def naive_area_resize(rgb: np.ndarray, out_w: int, out_h: int) -> np.ndarray:
    """The definition, one window at a time."""
    h, w = rgb.shape[:2]
    out = np.zeros((3, out_h, out_w), np.float32)
    for oy in range(out_h):
        y0, y1 = oy * h // out_h, max((oy + 1) * h // out_h, oy * h // out_h + 1)
        for ox in range(out_w):
            x0, x1 = ox * w // out_w, max((ox + 1) * w // out_w, ox * w // out_w + 1)
            win = rgb[y0:y1, x0:x1].astype(np.int64)
            out[:, oy, ox] = (win.sum(axis=(0, 1)) / (win.shape[0] * win.shape[1] * 255)).astype(np.float32)
    return out


@pytest.mark.parametrize(
    ("size", "expected"),
    [
        ((320, 240), (320, 240)),  # the demo scenes: already the model's size
        ((4000, 3000), (320, 240)),
        ((3000, 4000), (240, 320)),  # portrait
        ((1000, 200), (320, 64)),  # long: bounded by max_size
        ((128, 96), (320, 240)),  # small photos are scaled up, as the graph would
        ((641, 480), (320, 240)),  # 240 * 641 / 480 = 320.5: rounds half up, then max_size caps it
        ((1, 1), (240, 240)),
    ],
)
def test_fit_size(size, expected):
    assert P.fit_size(*size, min_size=240, max_size=320) == expected


@pytest.mark.parametrize(("src", "dst"), [((37, 23), (16, 11)), ((10, 7), (25, 13)), ((64, 48), (64, 48))])
def test_area_resize_is_the_window_mean(src, dst):
    rgb = np.random.default_rng(1).integers(0, 256, (src[1], src[0], 3), dtype=np.uint8)
    got = P.area_resize(rgb, *dst)
    assert got.shape == (3, dst[1], dst[0]) and got.dtype == np.float32
    np.testing.assert_array_equal(got, naive_area_resize(rgb, *dst))
    if src == dst:
        np.testing.assert_array_equal(got, (rgb.transpose(2, 0, 1) / 255).astype(np.float32))


def test_summarize_counts_shares_and_scales_boxes():
    boxes = np.array([[0, 0, 10, 5], [10, 0, 40, 5], [0, 0, 1, 1], [5, 5, 6, 6]], np.float32)
    labels = np.array([1, 2, 2, 1], np.int64)
    scores = np.array([0.9, 0.5, 0.49999, 0.7], np.float32)
    r = P.summarize(boxes, labels, scores, 0.5, 2.0, 3.0, {1: "can", 2: "box", 3: "jar"})
    assert r["labels"] == [1, 2, 1] and r["boxes"][1] == [20.0, 0.0, 80.0, 15.0]
    assert r["counts"] == {"can": 2, "box": 1, "jar": 0}
    assert r["share_facings"] == pytest.approx({"can": 2 / 3, "box": 1 / 3, "jar": 0.0})
    assert r["share_width"] == pytest.approx({"can": 22 / 82, "box": 60 / 82, "jar": 0.0})
    empty = P.summarize(boxes[:0], labels[:0], scores[:0], 0.5, 1.0, 1.0, {1: "can"})
    assert empty["counts"] == {"can": 0} and empty["share_facings"] == {"can": 0.0}


NODE_SCRIPT = """
import * as P from '%s';
import { readFileSync } from 'node:fs';
const cases = JSON.parse(readFileSync(0, 'utf8'));
const out = cases.map((c) => {
  const rgba = new Uint8ClampedArray(c.w * c.h * 4);
  c.rgb.forEach((v, i) => {
    rgba[Math.floor(i / 3) * 4 + (i %% 3)] = v;
    rgba[Math.floor(i / 3) * 4 + 3] = 255;
  });
  const [inW, inH] = P.fitSize(c.w, c.h, c.min_size, c.max_size);
  const data = P.areaResize(rgba, c.w, c.h, inW, inH);
  const s = P.summarize(new Float32Array(c.boxes.flat()), c.labels.map(BigInt), new Float32Array(c.scores),
                        c.threshold, c.w / inW, c.h / inH, c.names);
  return { size: [inW, inH], bits: Array.from(new Uint32Array(data.buffer)),
           checksum: P.pixelChecksum(rgba, c.w, c.h), summary: s };
});
process.stdout.write(JSON.stringify(out));
"""


@pytest.mark.skipif(NODE is None, reason="node is not installed: scripts/install_node_deps.sh installs it")
def test_javascript_mirror_gives_the_same_bits(tmp_path: Path):
    rng = np.random.default_rng(7)
    names = {1: "can", 2: "box", 5: "jar"}
    cases = []
    for w, h, mn, mx in [(50, 37, 12, 16), (9, 31, 20, 40), (16, 12, 12, 16), (7, 5, 30, 40)]:
        rgb = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        n = 12
        xy = rng.uniform(0, min(mn, mx), (n, 2)).astype(np.float32)
        boxes = np.concatenate([xy, xy + rng.uniform(0, 5, (n, 2)).astype(np.float32)], axis=1)
        cases.append(
            {
                "w": w, "h": h, "min_size": mn, "max_size": mx, "rgb": rgb.ravel().tolist(),
                "boxes": boxes.tolist(), "labels": rng.choice([1, 2, 5], n).tolist(),
                "scores": rng.uniform(0, 1, n).astype(np.float32).tolist(), "threshold": 0.5,
                "names": {str(k): v for k, v in names.items()},
                "_rgb": rgb, "_boxes": boxes,
            }
        )  # fmt: skip
    script = tmp_path / "mirror.mjs"
    script.write_text(NODE_SCRIPT % (WEB / "processing.mjs").as_uri())
    payload = json.dumps([{k: v for k, v in c.items() if not k.startswith("_")} for c in cases])
    proc = subprocess.run([NODE, str(script)], input=payload, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr[-2000:]
    for c, js in zip(cases, json.loads(proc.stdout), strict=True):
        in_w, in_h = P.fit_size(c["w"], c["h"], c["min_size"], c["max_size"])
        assert js["size"] == [in_w, in_h]
        py = P.area_resize(c["_rgb"], in_w, in_h)
        assert js["bits"] == py.ravel().view(np.uint32).tolist()  # bit for bit, not approximately
        assert js["checksum"] == P.pixel_checksum(c["_rgb"])
        ps = P.summarize(
            c["_boxes"], np.array(c["labels"]), np.array(c["scores"], np.float32), 0.5,
            c["w"] / in_w, c["h"] / in_h, names,
        )  # fmt: skip
        assert js["summary"]["counts"] == ps["counts"] and js["summary"]["labels"] == ps["labels"]
        assert js["summary"]["boxes"] == ps["boxes"]  # the same float64 products
        assert js["summary"]["share_width"] == ps["share_width"]
        assert sum(ps["counts"].values()) > 0
