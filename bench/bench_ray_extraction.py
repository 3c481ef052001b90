"""Extraction on Ray Data (engines/ray_inference.py) vs in-process, on the same images, one run each.

Usage: python bench/bench_ray_extraction.py [--products 1000] [--batch-size 64] [--results DIR]

The demo catalog generator writes ``--products`` images (its broken files included: they end in the
quarantine on both sides); the classifier is an untrained network of the demo profile's shape (throughput
does not depend on the weights). Each run is the whole `extract_to_parquet` of the batch, the Parquet file
written once at the end, from cold (Ray's model actors start and load the model inside the run: that is
what a partition pays).
1. in-process (`predict_files`, 1 loader worker): the floor.
2. Ray local (``ray.init(num_cpus=2)``), 1 and 2 model actors sized from the cluster (`Cluster.actor_cpus`).
3. The simulated scale curve: 1, 2, 4 model actors pinned at 0.5 CPU each, on a Ray that declares 3
   logical CPUs (4 x 0.5 would leave decoding none of 2) over the same 2 physical cores. Per stage:
   ``decode_busy_s`` and ``model_busy_s`` are the busy seconds summed over decode tasks and actors,
   ``ray_wall_s`` the pipelines' wall time, ``start_up_s`` its start-up (until the first model actor is
   ready: planning, the actor's process and imports, the model load), ``steady_images_per_s`` the rate
   after it (decoding may have begun during start-up, so this is an upper bound),
   ``driver_s`` the rest (frame building and the Parquet commit); ``bottleneck`` the stage with the most
   busy seconds per parallel slot (decode tasks share the CPUs the actors leave).
Writes bench/results/ray_extraction.json; a run at another size writes ray_extraction_<products>.json, and
only where ``--results`` says (``--products 5000 --results bench/results``: where start-up stops mattering).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

# This checkout's code (not an installed copy of the package), and the bench helpers beside this file.
sys.path[:0] = [str(Path(__file__).resolve().parent.parent), str(Path(__file__).resolve().parent)]

import pandas as pd  # noqa: E402

from bench_extraction import demo_classifier  # noqa: E402
from bench_results import write_result  # noqa: E402
from product_attrs.engines.ray_inference import RAY_CHUNK_ROWS  # noqa: E402
from product_attrs.extraction.extract import CHUNK_ROWS, extract_to_parquet, items_for_batch  # noqa: E402

FULL_PRODUCTS = 1000


def _run(items: pd.DataFrame, classifier, out: Path, batch_size: int, predict=None) -> dict[str, Any]:
    t = time.perf_counter()
    # As the asset does: on Ray one run covers RAY_CHUNK_ROWS images (a run starts the actor pool).
    chunk_rows = RAY_CHUNK_ROWS if predict is not None else CHUNK_ROWS
    summary = extract_to_parquet(
        items, classifier, None, out, batch_size=batch_size, workers=1, predict=predict, chunk_rows=chunk_rows
    )
    seconds = time.perf_counter() - t
    rows = len(pd.read_parquet(out, columns=["image_key"]))
    figures = {
        "seconds": seconds,
        "images_per_s": len(items) / seconds,
        "rows": rows,
        "quarantined": len(summary.quarantine),
    }
    if predict is not None:
        wall = predict.seconds.get("ray_wall", 0.0)
        first = predict.seconds.get("ray_start_up", 0.0)
        figures |= {
            "decode_busy_s": predict.seconds.get("ray_decode", 0.0),
            "model_busy_s": predict.seconds.get("ray_model", 0.0),
            "ray_wall_s": wall,
            "start_up_s": first,
            # After the first actor is ready: the pipeline's own rate, what more images would get.
            "steady_images_per_s": len(items) / max(wall - first, 1e-9),
            "driver_s": seconds - wall,
        }
        figures["bottleneck"] = _bottleneck(figures, predict)
    else:
        figures["driver_s"] = seconds - summary.seconds.get("classify", 0.0)
    return figures


def _bottleneck(figures: dict[str, Any], predict) -> str:
    """The stage with the most busy time per parallel slot: decode tasks share what the actors leave."""
    actors = max(1, int(predict.actors))
    actor_cpus = predict.actor_cpus or predict.cluster.actor_cpus(actors)
    spare = predict.cluster.cpus - actors * actor_cpus
    decode_slots = max(1, int(spare / min(1.0, max(spare, 0.25))))
    load = {
        "decode": figures["decode_busy_s"] / decode_slots,
        "model": figures["model_busy_s"] / actors,
        "commit": figures["driver_s"],
        "start-up": figures["start_up_s"],
    }
    return max(load, key=load.get)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--products", type=int, default=FULL_PRODUCTS)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--results", type=Path)
    args = parser.parse_args()
    if args.products != FULL_PRODUCTS and args.results is None:
        parser.error("a run at another size writes its JSON only where --results says")

    import ray

    from product_attrs.engines.ray_cluster import connect
    from product_attrs.engines.ray_inference import RayPredictor

    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        from product_attrs.sample_data.catalog import generate_catalog

        generate_catalog(tmp / "incoming", n_products=args.products)
        items = items_for_batch("incoming-images", tmp / "splits-unused.parquet", tmp / "incoming")
        classifier = demo_classifier(tmp / "models")
        print(f"{len(items)} images; classifier {classifier.version}", flush=True)

        runs: dict[str, dict[str, Any]] = {}
        runs["in_process"] = _run(items, classifier, tmp / "in_process.parquet", args.batch_size)
        print("in_process", runs["in_process"], flush=True)

        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
        t = time.perf_counter()
        cluster = connect("local")
        for actors in (1, 2):
            predict = RayPredictor.for_classifier(
                classifier, cluster, actors=actors, batch_size=args.batch_size
            )
            name = f"ray_local_{actors}_actors"
            runs[name] = _run(items, classifier, tmp / f"{name}.parquet", args.batch_size, predict)
            runs[name]["actor_cpus"] = cluster.actor_cpus(actors)
            print(name, runs[name], flush=True)
        ray.shutdown()

        ray.init(num_cpus=3, include_dashboard=False, log_to_driver=False)
        cluster = connect("local")
        for actors in (1, 2, 4):
            predict = RayPredictor.for_classifier(
                classifier, cluster, actors=actors, batch_size=args.batch_size, actor_cpus=0.5
            )
            name = f"scale_{actors}_actors"
            runs[name] = _run(items, classifier, tmp / f"{name}.parquet", args.batch_size, predict)
            print(name, runs[name], flush=True)
        ray.shutdown()
        ray_seconds = time.perf_counter() - t

        same = all(r["rows"] == runs["in_process"]["rows"] for r in runs.values())
    floor = {f"in_process_{k}": v for k, v in runs["in_process"].items()}
    figures: dict[str, Any] = {}
    for name, run in runs.items():
        if name == "in_process":
            continue
        figures |= {f"{name}_{k}": v for k, v in run.items()}
        figures[f"{name}_ratio_vs_in_process"] = run["images_per_s"] / runs["in_process"]["images_per_s"]
    figures["ray_local_best_ratio_goal_0_8_met"] = (
        max(
            figures["ray_local_1_actors_ratio_vs_in_process"],
            figures["ray_local_2_actors_ratio_vs_in_process"],
        )
        >= 0.8
    )
    figures["same_rows_everywhere"] = same
    command = "python bench/bench_ray_extraction.py" + (
        f" --products {args.products}" if args.products != FULL_PRODUCTS else ""
    )
    out = write_result(
        "ray_extraction" if args.products == FULL_PRODUCTS else f"ray_extraction_{args.products}",
        command,
        figures,
        floor,
        time.perf_counter() - started,
        notes=(
            f"{len(items)} demo images, batch {args.batch_size}, untrained demo-shape classifier, one cold "
            f"run each (actor start and model load included; Ray's own start, {ray_seconds:.0f} s for all "
            "Ray runs, is not); scale curve on 3 logical CPUs over 2 shared cores"
        ),
        results_dir=args.results,
    )
    print(out)


if __name__ == "__main__":
    main()
