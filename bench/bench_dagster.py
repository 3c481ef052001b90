"""What Dagster costs around the work: loading the code location, the ingest job, the whole demo.

    PRODUCT_ATTRS_REAL_DATA=../shared/data .venv/bin/python bench/bench_dagster.py [--skip-demo]

Three figures, each beside its floor measured in the same run:
1. loading the code location (a fresh `python`: import product_attrs.definitions, build every job) vs
   importing dagster alone: the part that is ours. Target < 1.5 s.
2. `dagster job execute -j ingest_catalog` on the real 44k catalog (tiny-coco as its detection data) vs
   the same ingestion steps called as plain Python in this process (parse, decode, hash, clean, split,
   as bench_ingest.py). Targets: < 12 s wall, job / work < 2.5x.
3. the `make demo` materialization (`dagster asset materialize --select '*' --partition catalog` on the
   generated demo data, after the instance set-up) vs the sum of its steps' own run time from the event
   log. Target < 5 min on 2 cores.
Writes bench/results/dagster_overhead.json.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FLOORS = ("dagster_import_s", "ingest_work_s", "demo_steps_work_s")
BIN = Path(sys.executable).parent


def _timed(cmd: list[str], env: dict[str, str], cwd: Path = REPO, timeout: int = 3600) -> float:
    start = time.perf_counter()
    out = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    seconds = time.perf_counter() - start
    if out.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed ({out.returncode}):\n{out.stderr[-3000:]}")
    return seconds


def code_location(repeats: int) -> dict[str, float]:
    env = dict(os.environ)
    load = [
        _timed(
            [
                sys.executable,
                "-c",
                "import product_attrs.definitions as d; d.defs.get_repository_def().get_all_jobs()",
            ],
            env,
        )
        for _ in range(repeats)
    ]
    floor = [_timed([sys.executable, "-c", "import dagster"], env) for _ in range(repeats)]
    return {"code_location_load_s": statistics.median(load), "dagster_import_s": statistics.median(floor)}


def _fresh_env(root: Path, **extra: str) -> dict[str, str]:
    home = root / "dagster_home"
    home.mkdir(parents=True)
    (home / "dagster.yaml").write_text((REPO / "dagster.yaml").read_text())
    return {**os.environ, "PRODUCT_ATTRS_DATA_DIR": str(root), "DAGSTER_HOME": str(home), **extra}


def ingest(real: Path) -> dict[str, float]:
    from product_attrs.catalog.ingest import ingest_catalog

    catalog = real / "fashion-product-images-small"
    for p in (catalog / "images").iterdir():  # warm the page cache for both sides
        p.read_bytes()
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        ingest_catalog(catalog, Path(tmp) / "catalog", workers=os.cpu_count() or 1)
        work = time.perf_counter() - start
    with tempfile.TemporaryDirectory() as tmp:
        env = _fresh_env(
            Path(tmp),
            PRODUCT_ATTRS_CATALOG_DIR=str(catalog),
            PRODUCT_ATTRS_DETECTION_DIR=str(real / "tiny-coco"),
        )
        wall = _timed(
            [
                str(BIN / "dagster"),
                "job",
                "execute",
                "-m",
                "product_attrs.definitions",
                "-j",
                "ingest_catalog",
            ],
            env,
        )
    return {"ingest_job_wall_s": wall, "ingest_work_s": work, "ingest_job_over_work": wall / work}


def demo(keep: Path | None) -> dict[str, float]:
    from dagster import DagsterEventType, DagsterInstance

    with tempfile.TemporaryDirectory() as tmp:
        root = keep or Path(tmp)
        env = _fresh_env(root)
        _timed([sys.executable, "-m", "product_attrs.sample_data", "--out", str(root / "demo")], env)
        _timed([sys.executable, "-m", "product_attrs.automation", "catalog"], env)
        wall = _timed(
            [
                str(BIN / "dagster"),
                "asset",
                "materialize",
                "-m",
                "product_attrs.definitions",
                "--select",
                "*",
                "--partition",
                "catalog",
            ],
            env,
        )
        os.environ["DAGSTER_HOME"] = env["DAGSTER_HOME"]
        with DagsterInstance.get() as instance:
            (run,) = instance.get_runs()
            starts, work = {}, 0.0
            for record in instance.all_logs(run.run_id):
                event = record.dagster_event
                if event is None or event.step_key is None:
                    continue
                if event.event_type == DagsterEventType.STEP_START:
                    starts[event.step_key] = record.timestamp
                elif event.event_type == DagsterEventType.STEP_SUCCESS:
                    work += record.timestamp - starts.pop(event.step_key)
    return {"demo_materialize_s": wall, "demo_steps_work_s": work, "demo_wall_over_steps": wall / work}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--skip-demo", action="store_true")
    parser.add_argument(
        "--keep-demo", type=Path, default=None, help="a new folder: keep the demo's data root there"
    )
    args = parser.parse_args()
    started = time.perf_counter()
    figures = code_location(args.repeats)
    print(
        f"code location load: {figures['code_location_load_s']:.2f} s (median of {args.repeats}; "
        f"import dagster alone {figures['dagster_import_s']:.2f} s, ratio "
        f"{figures['code_location_load_s'] / figures['dagster_import_s']:.2f}x); target < 1.5 s"
    )
    real = os.environ.get("PRODUCT_ATTRS_REAL_DATA")
    if real and (Path(real) / "fashion-product-images-small").is_dir():
        figures |= ingest(Path(real))
        print(
            f"ingest_catalog on the real catalog: job {figures['ingest_job_wall_s']:.1f} s wall, ingest work "
            f"{figures['ingest_work_s']:.1f} s, ratio {figures['ingest_job_over_work']:.2f}x; "
            "targets < 12 s, < 2.5x"
        )
    else:
        print("PRODUCT_ATTRS_REAL_DATA is not set: the ingest figure is skipped")
    if not args.skip_demo:
        figures |= demo(args.keep_demo)
        print(
            f"make demo materialization: {figures['demo_materialize_s']:.0f} s wall for "
            f"{figures['demo_steps_work_s']:.0f} s of step run time "
            f"(ratio {figures['demo_wall_over_steps']:.2f}); "
            "target < 300 s"
        )
    write_result(figures, time.perf_counter() - started, args)


def write_result(figures: dict[str, float], seconds: float, args: argparse.Namespace) -> None:
    from bench_results import write_result as write

    out = write(
        "dagster_overhead",
        "python bench/bench_dagster.py" + (" --skip-demo" if args.skip_demo else ""),
        {k: v for k, v in figures.items() if k not in FLOORS},
        {k: v for k, v in figures.items() if k in FLOORS},
        seconds,
        notes="ratios: code location / import dagster, ingest job wall / ingest work, "
        "demo wall / step run time",
    )
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
