"""Builds the static shelf app: the page, its modules, the onnxruntime-web files it loads, the model.

    python -m product_attrs.shelf_app.build [--version-dir DIR] [--out DIR] [--no-webgpu]

Without --version-dir the champion detector of the data root is built (the `shelf_app` asset calls
`build_app` the same way). The folder it writes is complete: any static host serves it, and after the
first load the service worker keeps it working offline. onnxruntime-web comes from the npm registry,
pinned in package.json and package-lock.json next to this file; `npm ci` runs here when node_modules is
missing (node and npm: Debian's `nodejs npm` packages, `scripts/apt_install.sh nodejs npm`).

Only the runtime variants the page loads are copied: the WASM build (`ort.wasm.min.mjs` and
`ort-wasm-simd-threaded.{mjs,wasm}`, about 14 MB) and, unless --no-webgpu, the WebGPU build
(`ort.webgpu.min.mjs` and `ort-wasm-simd-threaded.asyncify.{mjs,wasm}`, about 27 MB), which a browser
fetches only when it has a WebGPU adapter.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from product_attrs.shelf_app.processing import DEFAULT_THRESHOLD, AppModel

HERE = Path(__file__).resolve().parent
WEB = HERE / "web"
ORT_PACKAGE = "onnxruntime-web"
WASM_FILES = ("ort.wasm.min.mjs", "ort-wasm-simd-threaded.mjs", "ort-wasm-simd-threaded.wasm")
WEBGPU_FILES = (
    "ort.webgpu.min.mjs",
    "ort-wasm-simd-threaded.asyncify.mjs",
    "ort-wasm-simd-threaded.asyncify.wasm",
)
PAGE_FILES = ("index.html", "app.js", "processing.mjs")
MODEL_FILE = "model.onnx"  # the name detection.export writes too (ONNX_FILE; export imports torch)
MODEL_JSON = "model.json"
BUILD_JSON = "build.json"


class BuildError(RuntimeError):
    """The app cannot be built (no npm, no model): the message says what to do."""


def ort_dist(npm_install: bool = True) -> Path:
    """onnxruntime-web's dist folder, running `npm ci` from the lockfile first when it is not installed."""
    dist = HERE / "node_modules" / ORT_PACKAGE / "dist"
    if not dist.is_dir() and npm_install:
        npm = shutil.which("npm")
        if npm is None:
            raise BuildError(
                "npm is not installed: `scripts/apt_install.sh nodejs npm` (Debian packages), then build"
            )
        proc = subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund", "--ignore-scripts"],
            cwd=HERE,
            capture_output=True,
            text=True,
            timeout=600,
        )
        if proc.returncode != 0:
            raise BuildError(f"npm ci failed in {HERE}:\n{proc.stderr[-2000:]}")
    if not dist.is_dir():
        raise BuildError(f"{dist} is missing: run `npm ci` in {HERE}")
    return dist


def ort_version() -> str:
    lock = json.loads((HERE / "package-lock.json").read_text())
    return lock["packages"][f"node_modules/{ORT_PACKAGE}"]["version"]


def app_model_from_version(version_dir: Path, threshold: float = DEFAULT_THRESHOLD) -> AppModel:
    """What the page needs from a detector version folder (its manifest: no torch)."""
    from product_attrs.modeling.versions import VersionManifest

    m = VersionManifest.read(version_dir)
    return AppModel(
        version=f"{m.name}/{m.version}",
        min_size=int(m.config["min_size"]),
        max_size=int(m.config["max_size"]),
        labels={int(e["label"]): str(e["name"]) for e in m.info["label_map"]},
        threshold=threshold,
    )


def _sha(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def build_app(
    onnx_path: Path,
    model: AppModel,
    out_dir: Path,
    webgpu: bool = True,
    npm_install: bool = True,
    demo_images: Sequence[Path] = (),
) -> dict[str, Any]:
    """Write the app to `out_dir` (replaced whole, through a sibling temporary folder); returns build.json.

    `demo_images` are copied to `demo/` and offered as buttons on the page (and cached for offline use)."""
    onnx_path, out_dir = Path(onnx_path), Path(out_dir)
    if not onnx_path.is_file():
        raise BuildError(f"{onnx_path} does not exist: materialize product_detector_onnx first")
    dist = ort_dist(npm_install)
    tmp = out_dir.with_name(out_dir.name + ".building")
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "ort").mkdir(parents=True)
    for name in PAGE_FILES:
        shutil.copyfile(WEB / name, tmp / name)
    runtime = WASM_FILES + (WEBGPU_FILES if webgpu else ())
    for name in runtime:
        shutil.copyfile(dist / name, tmp / "ort" / name)
    shutil.copyfile(onnx_path, tmp / MODEL_FILE)
    demos = []
    for i, src in enumerate(demo_images):
        name = f"demo/{i:02d}_{Path(src).name}"
        (tmp / "demo").mkdir(exist_ok=True)
        shutil.copyfile(src, tmp / name)
        demos.append(name)
    (tmp / MODEL_JSON).write_text(json.dumps(model.to_dict() | {"demos": demos}, indent=2))
    # The service worker caches, at install, every file but the WebGPU runtime (fetched and cached only by
    # the browsers that use it); its cache name changes with any file, so a new build replaces the old cache.
    precache = ["./", *PAGE_FILES, MODEL_JSON, MODEL_FILE, *(f"ort/{n}" for n in WASM_FILES), *demos]
    files = sorted(p for p in tmp.rglob("*") if p.is_file())
    digest = hashlib.sha256("".join(f"{p.relative_to(tmp)}:{_sha(p)}\n" for p in files).encode()).hexdigest()[
        :16
    ]
    sw = (WEB / "sw.js").read_text()
    sw = sw.replace("'__CACHE_NAME__'", json.dumps(f"shelf-app-{digest}"))
    sw = sw.replace("__PRECACHE__", json.dumps(precache))
    (tmp / "sw.js").write_text(sw)
    files = sorted(p for p in tmp.rglob("*") if p.is_file())
    info = {
        "model_version": model.version,
        "onnxruntime_web": ort_version(),
        "webgpu": webgpu,
        "build": digest,
        "bytes": sum(p.stat().st_size for p in files),
        "files": [str(p.relative_to(tmp)) for p in files] + [BUILD_JSON],
    }
    (tmp / BUILD_JSON).write_text(json.dumps(info, indent=2))
    old = out_dir.with_name(out_dir.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if out_dir.exists():
        os.replace(out_dir, old)
    os.replace(tmp, out_dir)
    shutil.rmtree(old, ignore_errors=True)
    return info


def build_champion(
    registry: Any,
    out_dir: Path,
    threshold: float = DEFAULT_THRESHOLD,
    webgpu: bool = True,
    demo_images: Sequence[Path] = (),
) -> dict[str, Any]:
    """Build the app from the champion detector's ONNX export (`registry`: a modeling.registry.Registry)."""
    from product_attrs.detection.config import PRODUCT_DETECTOR

    version_dir = registry.champion_dir(PRODUCT_DETECTOR.name)
    return build_app(
        version_dir / MODEL_FILE,
        app_model_from_version(version_dir, threshold),
        out_dir,
        webgpu=webgpu,
        demo_images=demo_images,
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m product_attrs.shelf_app.build", description=__doc__.split("\n\n")[0]
    )
    p.add_argument(
        "--version-dir", type=Path, help="a detector version with model.onnx (default: the champion)"
    )
    p.add_argument("--out", type=Path, help="output folder (default: <data root>/shelf_app)")
    p.add_argument("--no-webgpu", action="store_true", help="WASM runtime only (a 27 MB smaller folder)")
    p.add_argument("--demo-images", type=Path, nargs="*", default=[], help="photos offered on the page")
    p.add_argument("--threshold", type=float, default=DEFAULT_THRESHOLD, help="initial score threshold")
    args = p.parse_args(argv)
    from product_attrs.modeling.registry import Registry
    from product_attrs.settings import Settings

    settings = Settings.from_env()
    out = args.out or settings.data_dir / "shelf_app"
    try:
        if args.version_dir:
            model = app_model_from_version(args.version_dir, args.threshold)
            info = build_app(
                args.version_dir / MODEL_FILE,
                model,
                out,
                webgpu=not args.no_webgpu,
                demo_images=args.demo_images,
            )
        else:
            registry = Registry(
                settings.models_dir, settings.mlflow_tracking_uri, settings.mlflow_artifacts_uri
            )
            info = build_champion(
                registry, out, args.threshold, webgpu=not args.no_webgpu, demo_images=args.demo_images
            )
    except BuildError as exc:
        print(f"shelf app: {exc}", file=sys.stderr)
        return 1
    print(json.dumps({k: v for k, v in info.items() if k != "files"} | {"path": str(out)}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
