"""What Ray Train costs for a tiny classifier training: in-process vs a TorchTrainer with 1 and 2 workers.

Usage: python bench/bench_ray_train.py [--epochs 3] [--results DIR]

The same training (the test suite's tiny catalog, scale 2, and its FAST settings: EfficientNet-Lite0 at
32 px, one phase of ``--epochs``) runs three ways into fresh registries: in-process (one torch thread, as
a Ray worker of under 2 CPUs gets), then through ``engines.ray_train`` on a local Ray (``num_cpus`` = the
machine's cores, no dashboard) with 1 worker and with 2 workers (gloo). Reported per way: the wall time of
the whole training call (``*_train_s``: for Ray, start of the worker group, imports, the training, the
result handed back) and the median epoch (``*_epoch_s``, the loop's own ``seconds``, evaluation excluded).
``ray_init_s``: starting the local Ray, paid once per process. ``floor`` is the in-process run.
Writes bench/results/ray_train.json (elsewhere with ``--results`` or another ``--epochs``).
"""

from __future__ import annotations

import argparse
import functools
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the tests' tiny catalog

from bench_results import write_result  # noqa: E402

DEFAULT_EPOCHS = 3


def _figures(prefix: str, seconds: float, result: Any) -> dict[str, float]:
    epochs = [e["seconds"] for e in result.history]
    return {f"{prefix}_train_s": seconds, f"{prefix}_epoch_s": statistics.median(epochs)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=DEFAULT_EPOCHS)
    parser.add_argument("--results", type=Path, default=None)
    args = parser.parse_args(argv)

    import ray
    import torch

    from product_attrs.classification.train import train
    from product_attrs.engines import ray_train
    from product_attrs.engines.ray_cluster import Cluster
    from product_attrs.modeling.registry import Registry
    from product_attrs_tests.classification.conftest import make_tiny_catalog
    from product_attrs_tests.classification.helpers import fast_config

    began = time.perf_counter()
    load = os.getloadavg()[0]
    work = Path(tempfile.mkdtemp(prefix="bench_ray_train_"))
    catalog = make_tiny_catalog(work, scale=2)
    cfg = fast_config(phase1_epochs=args.epochs, phase2_epochs=0)

    def call(models: str):
        return functools.partial(
            train, cfg, catalog, Registry(work / models), device="cpu", allow_download=False, resume="never"
        )

    torch.set_num_threads(1)
    start = time.perf_counter()
    inproc = call("inprocess")(log=lambda m: None)
    floor = _figures("inprocess", time.perf_counter() - start, inproc)

    cores = os.cpu_count() or 1
    start = time.perf_counter()
    ray.init(
        num_cpus=cores,
        include_dashboard=False,
        log_to_driver=False,
        runtime_env={"env_vars": {"PYTHONPATH": str(ROOT)}},
    )
    figures: dict[str, Any] = {"ray_init_s": time.perf_counter() - start}
    cluster = Cluster(cpus=float(cores), gpus=0.0)
    try:
        for workers in (1, 2):
            layout = ray_train.plan(cluster, workers, use_gpu=False)
            start = time.perf_counter()
            result = ray_train.train_on_ray(call(f"ray{workers}"), layout, storage=work / "ray", name="bench")
            figures.update(_figures(f"ray_{workers}w", time.perf_counter() - start, result))
            figures[f"ray_{workers}w_cpus_per_worker"] = layout.cpus_per_worker
    finally:
        ray.shutdown()
    out = write_result(
        "ray_train",
        "python bench/bench_ray_train.py"
        + ("" if args.epochs == DEFAULT_EPOCHS else f" --epochs {args.epochs}"),
        figures,
        floor,
        time.perf_counter() - began,
        notes=(
            f"tiny catalog (scale 2), FAST settings, {args.epochs} epochs, CPU; local Ray with {cores} CPUs; "
            f"load average {load:.1f} at start (the machine is shared)"
        ),
        results_dir=args.results if args.results or args.epochs == DEFAULT_EPOCHS else work,
    )
    print(out.read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
