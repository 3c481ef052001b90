"""The classifier on the real Fashion Product Images (small) catalog: image, text and fusion, top-20 vs rest.

    # a short smoke (a few minutes on 2 CPU cores): 512 train / 512 test rows, one epoch per phase
    python bench/bench_classifier_real.py --smoke
    # the real thing (GPU; hours on a CPU): the seed's settings
    python bench/bench_classifier_real.py --profile full --device cuda
    # reuse an existing splits folder instead of ingesting again
    python bench/bench_classifier_real.py --splits-dir data/catalog --profile demo

The catalog comes from `$PRODUCT_ATTRS_REAL_DATA/fashion-product-images-small` (or `--real-data`) through
the project's own ingestion (`product_attrs.catalog.ingest.ingest_catalog`), written under `--work-dir`;
or from `--splits-dir`, any folder with splits.parquet + label_maps.json. Training takes every
hyperparameter flag of `python -m product_attrs.classification.train`. `--cpu-profile` runs the training
under cProfile and prints where the time goes. The seed's reference numbers are printed alongside.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import sys
import time
from pathlib import Path

from product_attrs.classification.config import PROFILES, TextConfig, TrainConfig
from product_attrs.classification.data import load_catalog
from product_attrs.classification.text_baseline import run_text_baseline
from product_attrs.classification.train import train
from product_attrs.modeling.config import add_arguments, from_args
from product_attrs.modeling.registry import Registry

# Seed document 002 (ResNet-50 pretrained, even/odd year split, low-resolution images).
REFERENCE = {("image", "top20"): 0.8701, ("image", "rest"): 0.4296, ("text", "top20"): 0.8523}
SMOKE = {"max_train_rows": 512, "max_test_rows": 512, "phase1_epochs": 1, "phase2_epochs": 1}


def ingest(real_dir: Path, out_dir: Path, workers: int) -> Path:
    from product_attrs.catalog.ingest import ingest_catalog

    if (out_dir / "splits.parquet").exists():
        print(f"reusing {out_dir}/splits.parquet (delete it to ingest again)")
        return out_dir
    start = time.perf_counter()
    counts = ingest_catalog(real_dir, out_dir, workers=workers)
    print(f"ingested {real_dir} in {time.perf_counter() - start:.1f}s: {counts}")
    return out_dir


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--real-data",
        default=None,
        help="fashion-product-images-small folder "
        "(default: $PRODUCT_ATTRS_REAL_DATA/fashion-product-images-small)",
    )
    ap.add_argument("--splits-dir", default=None, help="use this splits folder instead of ingesting")
    ap.add_argument("--work-dir", default="/tmp/product_attrs_bench_real", help="ingestion output and models")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--smoke", action="store_true", help=f"overrides {SMOKE} (explicit flags still win)")
    ap.add_argument("--cpu-profile", action="store_true", help="profile the training with cProfile")
    ap.add_argument("--offline", action="store_true", help="never try to download pretrained weights")
    add_arguments(ap, TrainConfig, PROFILES)
    args = ap.parse_args(argv)
    if args.smoke:
        for key, value in SMOKE.items():
            if getattr(args, key) is None:
                setattr(args, key, value)
    cfg = from_args(args, TrainConfig, PROFILES)
    work = Path(args.work_dir)

    if args.splits_dir:
        splits_dir = Path(args.splits_dir)
    else:
        real = (
            Path(args.real_data)
            if args.real_data
            else (
                Path(os.environ["PRODUCT_ATTRS_REAL_DATA"]) / "fashion-product-images-small"
                if os.environ.get("PRODUCT_ATTRS_REAL_DATA")
                else None
            )
        )
        if real is None or not (real / "styles.csv").exists():
            print(
                "no real data: set PRODUCT_ATTRS_REAL_DATA (the folder holding fashion-product-images-small) "
                "or pass --real-data / --splits-dir",
                file=sys.stderr,
            )
            return 2
        splits_dir = ingest(real, work / "catalog", workers=max(1, (os.cpu_count() or 1)))

    print(f"config: {cfg}")
    profiler = cProfile.Profile() if args.cpu_profile else None
    start = time.perf_counter()
    if profiler:
        profiler.enable()
    result = train(
        cfg, splits_dir, Registry(work / "models"), device=args.device, allow_download=not args.offline
    )
    if profiler:
        profiler.disable()
    train_s = time.perf_counter() - start
    catalog = load_catalog(splits_dir)
    text = run_text_baseline(catalog, TextConfig(heads=cfg.heads), result.version_dir)

    primary = cfg.head_specs()[0].column
    top = catalog.top_subset
    ev = text.evaluation
    speed = [h["images_per_s"] for h in result.history]
    print(
        f"\ntrained {len(result.history)} epochs in {train_s:.0f}s "
        f"({min(speed):.1f}-{max(speed):.1f} img/s); "
        f"weights: {result.manifest.weights_source}; version: {result.version_dir}"
    )
    print(f"test rows scored: {text.n_test}; majority-class rate: {result.metrics['majority_rate']:.4f}\n")
    print(f"{primary:<12}{'group':<8}{'n':>6}{'top1':>9}{'top5':>9}{'macro1':>9}{'seed top1':>11}")
    for model in ("image", "text", "fusion"):
        for group in (top, "rest", "all"):
            sel = ev.results[
                (ev.results["model"] == model)
                & (ev.results["head"] == primary)
                & (ev.results["group"] == group)
            ]
            if sel.empty:
                continue
            r = sel.iloc[0]
            ref = REFERENCE.get((model, "top20" if group == top else group))
            print(
                f"{model:<12}{group:<8}{r['n']:>6}{r['top1']:>9.4f}{r['top5']:>9.4f}{r['macro_top1']:>9.4f}"
                f"{(f'{ref:.4f}' if ref else ''):>11}"
            )
    missing = ev.missing_from_train.get(primary, [])
    print(
        f"\n{len(missing)} {primary} classes in test but not in train: "
        f"{missing[:10]}{' ...' if len(missing) > 10 else ''}"
    )
    conf = result.details.confused
    print("most confused (image):")
    print(conf[conf["head"] == primary].head(8).to_string(index=False))

    if profiler:
        out = work / "train.prof"
        profiler.dump_stats(out)
        buf = io.StringIO()
        pstats.Stats(profiler, stream=buf).sort_stats("cumulative").print_stats(25)
        print(f"\nCPU profile of train() (saved to {out}; top 25 by cumulative time):")
        print(buf.getvalue())
    return 0


if __name__ == "__main__":
    sys.exit(main())
