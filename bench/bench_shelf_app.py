"""Shelf app speed: ms per frame in headless Chromium (onnxruntime-web, WASM, 2 threads) against the same
ONNX graph in Python's onnxruntime (CPU, 2 threads) on the same machine, at the app's input size.

    python bench/bench_shelf_app.py --version-dir data/models/product_detector/<demo Faster R-CNN> \
        --fcos-version-dir data/models/product_detector/<fcos_lite0_fpn> \
        --browser-version-dir <versions of --profile browser> [--int8] [--frames 20] [--screenshot PNG]

Models, all at the demo scenes' 320 x 240: the demo detector (the `demo` profile's EfficientNet-Lite0 FPN
Faster R-CNN), the single-stage `fcos_lite0_fpn` on the same backbone (both trained by the pipeline when
their version folders are given; otherwise built with the wheel's ImageNet Lite0 backbone and untrained
heads, and an untrained FCOS's thousands of candidate boxes make its NMS slower than a trained one's), and
a light real detector, torchvision's Faster R-CNN MobileNetV3-Large FPN, randomly initialised (no
download; speed only: its heads' work is fixed by the 300 RoIs the RPN keeps, not by the weights). Each
model is built into an app folder exactly as the `shelf_app` asset builds it (WASM runtime only) and
served by the app's dev server (COOP/COEP: 2 threads).

Also the `browser` profile's light FCOS (224 x 168, heads on stride 8 only), one row per version given
(keyed by input width; built untrained when none is), and with --int8 the first of them statically
quantised (QDQ, Conv only, calibrated on the demo photos).

Browser ms/frame = the page's whole detection of one demo photo (integer area resize to the input size,
the graph, threshold and counts); `model` is the graph alone. Python = `processing.detect` (the same
steps). The two alternate, `--rounds` rounds of `--frames` frames each, so that the other jobs of a shared
machine weigh on both alike; medians and bests (the least disturbed frame) are reported. Also the Python
profile of the trained graphs: which op types take the time. Writes bench/results/shelf_app.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.bench_results import write_result  # noqa: E402
from product_attrs.shelf_app import processing as P  # noqa: E402
from product_attrs.shelf_app.build import AppModel, app_model_from_version, build_app  # noqa: E402

GOAL_MS = 100.0
THREADS = 2


def export_model(
    arch: str, out_dir: Path, num_classes: int = 6, version_dir: Path | None = None, profile: str = "demo"
):
    """(onnx path, AppModel): the given version's graph, or a freshly built `arch` of `profile` (no
    download)."""
    import torch

    from product_attrs.detection.config import PROFILES, DetectorConfig
    from product_attrs.detection.export import export_onnx
    from product_attrs.detection.model import build_detector
    from product_attrs.modeling.config import resolve

    torch.manual_seed(0)
    if version_dir is not None:
        from product_attrs.detection.export import export_version

        if not (version_dir / "model.onnx").is_file():
            export_version(version_dir)
        return version_dir / "model.onnx", app_model_from_version(version_dir)
    cfg = resolve(
        DetectorConfig,
        PROFILES,
        profile,
        None,
        {"arch": arch, "pretrained": arch.startswith(("eff", "fcos"))},
    )
    model, info = build_detector(cfg, num_classes, allow_download=False)
    path = export_onnx(model, out_dir / f"{arch}.onnx", sample=torch.rand(3, cfg.min_size, cfg.max_size))
    labels = {i + 1: f"class_{i + 1}" for i in range(num_classes)}
    return path, AppModel(f"{arch} ({info.weights_source})", cfg.min_size, cfg.max_size, labels)


def quantize_int8(onnx_path: Path, model: AppModel, photos: list[Path], out: Path) -> Path:
    """Static int8 (QDQ, per-channel weights, Conv only: the rest is boxes and NMS), calibrated on the
    demo photos at the model's input size: onnxruntime's own quantiser, for the int8 row."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Photos(CalibrationDataReader):
        def __init__(self) -> None:
            self.it = iter([{"image": P.prepare(P.load_rgb(p), model)[0]} for p in photos])

        def get_next(self):
            return next(self.it, None)

    pre = out.with_suffix(".pre.onnx")
    quant_pre_process(str(onnx_path), str(pre), skip_symbolic_shape=True)
    quantize_static(
        str(pre),
        str(out),
        Photos(),
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        op_types_to_quantize=["Conv"],
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
    )
    return out


class PythonRunner:
    """The same steps as the page, in Python onnxruntime (2 threads): `frames(n)` -> ms of each frame."""

    def __init__(self, onnx_path: Path, model: AppModel, rgb) -> None:
        self.session, self.model, self.rgb = P.session(onnx_path, threads=THREADS), model, rgb

    def frames(self, n: int) -> list[float]:
        out = []
        for _ in range(n):
            t = time.perf_counter()
            P.detect(self.session, self.rgb, self.model)
            out.append((time.perf_counter() - t) * 1000)
        return out


def op_profile(onnx_path: Path, model: AppModel, rgb, runs: int = 5) -> str:
    """Shares of the graph's time by op type, the six largest (Python onnxruntime's profiler, 2 threads)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = THREADS
    opts.enable_profiling = True
    opts.profile_file_prefix = str(Path(tempfile.mkdtemp()) / "prof")
    opts.log_severity_level = 3
    session = ort.InferenceSession(str(onnx_path), opts, providers=["CPUExecutionProvider"])
    x, _, _ = P.prepare(rgb, model)
    for _ in range(runs):
        session.run(None, {"image": x})
    events = json.loads(Path(session.end_profiling()).read_text())
    by_op: dict[str, float] = defaultdict(float)
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            by_op[e["args"]["op_name"]] += e["dur"]
    total = sum(by_op.values()) or 1.0
    top = sorted(by_op.items(), key=lambda kv: -kv[1])[:6]
    return ", ".join(f"{k} {100 * v / total:.0f}%" for k, v in top)


def measure(folder: Path, photo: str, py: PythonRunner, frames: int, rounds: int, tmp: Path, shot) -> dict:
    """Browser and Python frames interleaved, `rounds` times `frames` each, after 3 warm-up frames of each:
    load from the other jobs on a shared machine then falls on both alike."""
    from product_attrs_tests.shelf_app import browser as B

    out: dict = {"browser_total": [], "browser_model": [], "python": []}
    with B.served(folder) as server, B.chromium(tmp, 1040, 600) as driver:
        out["runtime"] = B.open_app(driver, server.url + f"?ep=wasm&threads={THREADS}")
        B.call(driver, f"window.shelfApp.benchmark({json.dumps(photo)}, 3, 0)")
        py.frames(3)
        for _ in range(rounds):
            b = B.call(driver, f"window.shelfApp.benchmark({json.dumps(photo)}, {frames}, 0)")
            out["browser_total"] += b["total"]
            out["browser_model"] += b["model"]
            out["python"] += py.frames(frames)
        if shot is not None:
            B.call(driver, f"window.shelfApp.detectUrl({json.dumps(photo)})")
            shot.parent.mkdir(parents=True, exist_ok=True)
            driver.save_screenshot(str(shot))
            from PIL import Image

            with Image.open(shot) as im:  # a palette PNG: a fraction of the bytes, for the README
                im.convert("RGB").quantize(96).save(shot, optimize=True)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--version-dir", type=Path, help="the demo detector (default: built, untrained heads)")
    p.add_argument("--fcos-version-dir", type=Path, help="a trained fcos_lite0_fpn version folder")
    p.add_argument(
        "--browser-version-dir",
        type=Path,
        nargs="+",
        default=[],
        help="trained versions of the `browser` profile (FCOS, heads on stride 8; any input size)",
    )
    p.add_argument("--int8", action="store_true", help="also the first browser model, int8 (static QDQ)")
    p.add_argument("--frames", type=int, default=5, help="frames per round, in each runtime")
    p.add_argument("--rounds", type=int, default=4, help="rounds of browser then Python frames")
    p.add_argument("--screenshot", type=Path, help="save the demo model's page, counting a demo photo")
    p.add_argument("--screenshot-only", action="store_true", help="only the demo model's screenshot")
    p.add_argument("--results-dir", type=Path, help="where the JSON goes (default bench/results)")
    args = p.parse_args(argv)
    os.environ.setdefault("PRODUCT_ATTRS_OFFLINE", "1")
    from product_attrs.sample_data.shelves import generate_shelves

    start, load_before = time.perf_counter(), os.getloadavg()[0]
    tmp = Path(tempfile.mkdtemp(prefix="bench_shelf_app_"))
    generate_shelves(tmp / "shelves", n_images=5, seed=11)
    photo_src = sorted((tmp / "shelves" / "images").glob("*.jpg"))[1]
    rgb = P.load_rgb(photo_src)
    models = {  # key: (arch, version folder, profile)
        "demo_lite0_frcnn": ("efficientnet_lite0_fpn", args.version_dir, "demo"),
        "fcos_lite0": ("fcos_lite0_fpn", args.fcos_version_dir, "demo"),
        "mobilenet_v3_frcnn": ("fasterrcnn_mobilenet_v3_large_320_fpn", None, "demo"),
    }
    for d in args.browser_version_dir or [None]:  # keyed by input width: fcos_browser_224, fcos_browser_320
        width = json.loads((d / "manifest.json").read_text())["config"]["max_size"] if d else 224
        models[f"fcos_browser_{width}"] = ("fcos_lite0_fpn", d, "browser")
    figures: dict = {}
    floor: dict = {}
    if args.int8:  # the first browser model, quantised
        key = next(k for k in models if k.startswith("fcos_browser"))
        models[f"{key}_int8"] = models[key]
    for key, (arch, version_dir, profile) in models.items():
        onnx_path, model = export_model(arch, tmp, version_dir=version_dir, profile=profile)
        if key.endswith("_int8"):
            calib = sorted((tmp / "shelves" / "images").glob("*.jpg"))
            onnx_path = quantize_int8(onnx_path, model, calib, tmp / f"{key}.onnx")
        folder = tmp / f"app_{key}"
        build_app(onnx_path, model, folder, webgpu=False, demo_images=[photo_src])
        photo = json.loads((folder / "model.json").read_text())["demos"][0]
        shot = args.screenshot if key == "demo_lite0_frcnn" else None
        py = PythonRunner(onnx_path, model, rgb)
        if args.screenshot_only:
            measure(folder, photo, py, 1, 0, tmp / f"chrome_{key}", shot)
            return 0
        m = measure(folder, photo, py, args.frames, args.rounds, tmp / f"chrome_{key}", shot)
        w, h = P.fit_size(*rgb.shape[1::-1], model.min_size, model.max_size)
        ms, best = statistics.median(m["browser_total"]), min(m["browser_total"])
        py_ms, py_best = statistics.median(m["python"]), min(m["python"])
        figures |= {
            f"{key}_input": f"{w}x{h}",
            f"{key}_onnx_mb": round(onnx_path.stat().st_size / 1e6, 1),
            f"{key}_browser_ms_per_frame": ms,
            f"{key}_browser_best_ms": best,
            f"{key}_browser_model_ms": statistics.median(m["browser_model"]),
            f"{key}_browser_frames_per_s": 1000 / ms,
            f"{key}_browser_goal_met": ms <= GOAL_MS,
            f"{key}_browser_over_python": ms / py_ms,
            f"{key}_browser_over_python_best": best / py_best,
        }
        if version_dir is not None and not key.endswith(
            "_int8"
        ):  # the pipeline's evaluation of that version (test split)
            figures[f"{key}_mAP"] = json.loads((version_dir / "manifest.json").read_text())["metrics"]["mAP"]
        floor |= {f"{key}_python_ms_per_frame": py_ms, f"{key}_python_best_ms": py_best}
        print(
            f"{key} ({model.version}) at {w}x{h}: browser {ms:.0f} ms/frame (best {best:.0f}; "
            f"{1000 / ms:.1f} frames/s), Python onnxruntime {py_ms:.0f} ms/frame (best {py_best:.0f}), "
            f"browser/Python {ms / py_ms:.2f} (best {best / py_best:.2f}); runtime {m['runtime']}; "
            f"load {os.getloadavg()[0]:.1f}",
            flush=True,
        )
        if key != "mobilenet_v3_frcnn":
            figures[f"{key}_python_op_share"] = op_profile(onnx_path, model, rgb)
            print(f"  Python op time shares: {figures[f'{key}_python_op_share']}")
    load = os.getloadavg()[0]
    trained = [k for k, (_, v, _) in models.items() if v is not None]
    out = write_result(
        "shelf_app",
        "python bench/bench_shelf_app.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        figures,
        floor,
        time.perf_counter() - start,
        notes=(
            f"headless Chromium (Debian) onnxruntime-web WASM {THREADS} threads vs Python onnxruntime CPU "
            f"{THREADS} threads, same graph and input, {args.rounds} interleaved rounds of {args.frames} "
            "frames of one demo photo each (median and best); "
            f"mobilenet_v3 has random weights (speed only); trained: {', '.join(trained) or 'none'}; "
            f"load average {load_before:.1f} before, {load:.1f} after (2 cores shared with other jobs)"
        ),
        results_dir=args.results_dir,
    )
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
