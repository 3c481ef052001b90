"""Detector throughput on CPU: inference batched as shipped vs a plain per-image loop, and training.

    python bench/bench_detection.py                       # demo model on 32 generated shelf scenes
    python bench/bench_detection.py --version-dir data/models/product_detector/<version> --threads 2

Both inference paths run in the same process on the same images, interleaved over a few rounds after a
warm-up; the best round of each is reported, as wall-clock images/s and as images per CPU-second of
this process (steadier on a shared machine, whose load average is printed). Prints figures; not a test.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from product_attrs.detection.config import PROFILES, DetectorConfig  # noqa: E402
from product_attrs.detection.loader import read_image  # noqa: E402
from product_attrs.detection.model import build_detector  # noqa: E402
from product_attrs.detection.serve import Detector  # noqa: E402
from product_attrs.detection.task import DetectionTask  # noqa: E402
from product_attrs.modeling.config import resolve  # noqa: E402
from product_attrs.modeling.distributed import DistInfo  # noqa: E402
from product_attrs.modeling.runner import Runner, RunnerOptions  # noqa: E402


def _scenes(n: int) -> Path:
    from product_attrs.sample_data.shelves import generate_shelves

    out = Path(tempfile.mkdtemp(prefix="bench_det_")) / "shelves"
    generate_shelves(out, n_images=max(n, 5), seed=1)
    return out


def _timed(fn) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process) of one call."""
    w, c = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - w, time.process_time() - c


def bench_inference(det: Detector, paths: list[Path], batch_size: int, rounds: int) -> dict[str, float]:
    """Best-of-`rounds` throughput of both paths, interleaved (A B A B ...) so load changes hit both."""
    det.detect(paths[:2], batch_size=2)  # warm-up (allocator, mkldnn kernels)

    def plain_loop() -> None:  # decode one image, run it, next
        with torch.inference_mode():
            for p in paths:
                det.model([read_image(str(p))])

    def shipped() -> None:  # Detector.detect: batched, decoding overlapped with the network
        det.detect(paths, batch_size=batch_size)

    loop, batched = [], []
    for _ in range(rounds):
        loop.append(_timed(plain_loop))
        batched.append(_timed(shipped))
    n = len(paths)
    return {
        "loop_img_s": n / min(w for w, _ in loop),
        "batched_img_s": n / min(w for w, _ in batched),
        "loop_img_cpu_s": n / min(c for _, c in loop),
        "batched_img_cpu_s": n / min(c for _, c in batched),
    }


def bench_training(cfg: DetectorConfig, source: Path, steps: int) -> float:
    """Training images/s of the shipped loop: the detector's task in the shared runner (no evaluation)."""
    device = torch.device("cpu")
    task = DetectionTask(cfg, source, DistInfo(), device, lambda m: None)
    task.evaluate = lambda model, device: {}  # throughput only
    model, _ = task.build(resuming=False)
    for n in (1, steps):  # warm-up, then the measured steps
        runner = Runner(
            model,
            task,
            RunnerOptions(max_steps=n, eval_every=10**6),
            device,
            DistInfo(),
            None,
            lambda m: None,
        )
        state = runner.run()
    return state.history[-1]["images_per_s"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--version-dir",
        type=Path,
        default=None,
        help="a trained model version (default: the demo model, untrained head)",
    )
    p.add_argument("--images", type=int, default=32)
    p.add_argument("--batch-size", type=int, default=4, help="as Detector.detect ships (4)")
    p.add_argument(
        "--rounds", type=int, default=3, help="interleaved rounds; the best of each path is reported"
    )
    p.add_argument("--train-steps", type=int, default=4)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()

    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)
    source = _scenes(args.images)
    paths = sorted((source / "images").glob("*.jpg"))[: args.images]
    if args.version_dir:
        det = Detector.load(args.version_dir)
        what = f"trained version {args.version_dir.name}"
    else:
        cfg = resolve(DetectorConfig, PROFILES, "demo")
        model, info = build_detector(cfg, 6)
        det = Detector(model, [{"label": i, "category_id": i, "name": f"c{i}"} for i in range(1, 7)], cfg)
        what = f"demo model, {info.weights_source} backbone, untrained head"
    cfg = det.config
    print(
        f"torch {torch.__version__}, {args.threads} threads, {os.cpu_count()} CPUs, "
        f"load average {os.getloadavg()}"
    )
    print(f"model: {cfg.arch} ({what}), input {cfg.min_size}-{cfg.max_size} px, {len(paths)} images 320x240")
    inf = bench_inference(det, paths, args.batch_size, args.rounds)
    print(
        f"inference, plain per-image loop:          {inf['loop_img_s']:6.2f} images/s wall, "
        f"{inf['loop_img_cpu_s']:6.2f} images per CPU-second"
    )
    print(
        f"inference, batched as shipped (bs={args.batch_size}):    "
        f"{inf['batched_img_s']:6.2f} images/s wall, "
        f"{inf['batched_img_cpu_s']:6.2f} images per CPU-second "
        f"(x{inf['batched_img_s'] / inf['loop_img_s']:.2f} wall, "
        f"x{inf['batched_img_cpu_s'] / inf['loop_img_cpu_s']:.2f} CPU)"
    )
    train_cfg = resolve(DetectorConfig, PROFILES, "demo", None, {"epochs": 1})
    rate = bench_training(train_cfg, source, args.train_steps)
    print(
        f"training (demo profile, batch {train_cfg.batch_size}, {args.train_steps} steps): "
        f"{rate:.2f} images/s"
    )
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
