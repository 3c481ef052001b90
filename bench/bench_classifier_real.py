"""The classifier on the real Fashion Product Images (small) catalog: image, text and fusion, top-20 vs rest.

    # a short smoke (a few minutes on 2 CPU cores): 512 train / 512 test rows, one epoch per phase
    python bench/bench_classifier_real.py --smoke
    # the real thing (GPU; hours on a CPU): the seed's settings
    python bench/bench_classifier_real.py --profile full --device cuda
    # reuse an existing splits folder instead of ingesting again
    python bench/bench_classifier_real.py --splits-dir data/catalog --profile demo
    # the CPU goal: under an hour on 2 cores, with the frozen-feature probe as the floor
    python bench/bench_classifier_real.py --profile cpu

The catalog comes from `$PRODUCT_ATTRS_REAL_DATA/fashion-product-images-small` (or `--real-data`) through
the project's own ingestion (`product_attrs.catalog.ingest.ingest_catalog`), written under `--work-dir`;
or from `--splits-dir`, any folder with splits.parquet + label_maps.json. Training takes every
hyperparameter flag of `python -m product_attrs.classification.train`. `--cpu-profile` runs the training
under cProfile and prints where the time goes. The seed's reference numbers are printed alongside.

The same run measures the floor every profile must beat: the frozen-feature probe (`probe.py`: ImageNet
EfficientNet-Lite0 features at 96x128 and a logistic regression, on the same train / test rows; its
features are cached under --work-dir, so only the first run pays their ~6 minutes; `--no-probe` skips it).
The figures go to bench/results/classifier_real_fashion.json; a --smoke run (or any run on capped rows)
writes its JSON under --work-dir/results instead, so it never replaces a real run's.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import pstats
import sys
import time
from pathlib import Path

from probe import figure_names, frozen_probe, write_bench_json

from product_attrs.classification.config import PROFILES, TextConfig, TrainConfig
from product_attrs.classification.data import load_catalog
from product_attrs.classification.text_baseline import run_text_baseline
from product_attrs.classification.train import train
from product_attrs.modeling.config import add_arguments, from_args
from product_attrs.modeling.registry import Registry

# Seed document 002 (ResNet-50 pretrained, even/odd year split, low-resolution images).
REFERENCE = {("image", "top20"): 0.8701, ("image", "rest"): 0.4296, ("text", "top20"): 0.8523}
SMOKE = {"max_train_rows": 512, "max_test_rows": 512, "phase1_epochs": 1, "phase2_epochs": 1}
#: Settings quoted in the JSON's notes (those the config has; the rest are in the version's manifest).
NOTED = (
    "backbone",
    "image_size",
    "image_height",
    "batch_size",
    "phase1_epochs",
    "phase1_lr",
    "phase2_epochs",
    "phase2_lr",
    "phase2_rows",
    "freeze_stages",
    "feature_cache",
    "optimizer",
    "logit_adjustment",
    "val_fraction",
    "channels_last",
    "threads",
    "max_train_rows",
    "max_test_rows",
)


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
    ap.add_argument("--no-probe", action="store_true", help="skip the frozen-feature probe (the floor)")
    ap.add_argument("--probe-size", default="96x128", help="the probe's input WIDTHxHEIGHT")
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
    started = time.perf_counter()
    primary = cfg.head_specs()[0].column
    probe = None
    if not args.no_probe:
        # First: a broken probe shows in minutes, not after the hour of training. Same rows as the training
        # (its caps and seed), the classifier's thread setting.
        probe = frozen_probe(
            splits_dir,
            [primary],
            size=tuple(int(v) for v in args.probe_size.lower().split("x")),
            cache_dir=work / "probe_features",
            threads=cfg.threads,
            max_rows=cfg.max_train_rows,
            max_test_rows=cfg.max_test_rows,
            seed=cfg.seed,
        )
        print(f"probe: {json.dumps(probe['top1'])} ({probe['seconds']:.0f}s)")
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
    for group in (top, "rest", "all") if probe else ():
        print(f"{'probe':<12}{group:<8}{'':>6}{probe['top1'][primary].get(group, float('nan')):>9.4f}")
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
    if text.fusion is not None:
        f = text.fusion
        chosen = (
            f"chosen on validation: top-1 {f.val_top1:.4f} on {f.n_val} rows (image {f.val_top1_image:.4f}, "
            f"text {f.val_top1_text:.4f}, fixed weight {f.val_top1_fixed:.4f})"
            if f.val_top1 is not None
            else f.source
        )
        print(f"fusion: {f.method}, image weight {f.weight:g}, {chosen}")
    missing = ev.missing_from_train.get(primary, [])
    print(
        f"\n{len(missing)} {primary} classes in test but not in train: "
        f"{missing[:10]}{' ...' if len(missing) > 10 else ''}"
    )
    conf = result.details.confused
    print("most confused (image):")
    print(conf[conf["head"] == primary].head(8).to_string(index=False))

    out = write_json(args, argv, cfg, catalog, result, text, probe, train_s, time.perf_counter() - started)
    print(f"wrote {out}")
    if profiler:
        out = work / "train.prof"
        profiler.dump_stats(out)
        buf = io.StringIO()
        pstats.Stats(profiler, stream=buf).sort_stats("cumulative").print_stats(25)
        print(f"\nCPU profile of train() (saved to {out}; top 25 by cumulative time):")
        print(buf.getvalue())
    return 0


def write_json(args, argv, cfg, catalog, result, text, probe, train_s: float, seconds: float) -> Path:
    """The run's figures (BENCH.md's format): the image model, text and fusion per group, the training's
    speed, and the floor measured in the same run (the frozen-feature probe, the text model alone)."""
    primary, top = cfg.head_specs()[0].column, catalog.top_subset
    ev = text.evaluation

    def metric(model: str, group: str) -> float:
        return ev.metric(primary, group, model=model)

    figures: dict[str, float | int | str] = {
        f"{m}_{name}_top1": metric(m, g)
        for m in ("image", "text", "fusion")
        for name, g in (("top20", top), ("rest", "rest"))
    }
    if text.fusion is not None:
        figures["fusion_image_weight"] = text.fusion.weight
        if text.fusion.val_top1 is not None:
            figures["fusion_val_top1"] = text.fusion.val_top1
    speeds = [h["images_per_s"] for h in result.history if "images_per_s" in h]
    figures |= {
        "train_seconds": train_s,
        "train_images_per_s": float(sorted(speeds)[len(speeds) // 2]) if speeds else float("nan"),
        "epochs": len(result.history),
    }
    floor = {"text_top20_top1": metric("text", top)}
    if probe is not None:
        floor = {
            f"frozen_probe_{k.removeprefix(primary + '_')}": v
            for k, v in figure_names(probe).items()
            if not k.endswith("_all_top1")
        } | floor
    settings = cfg.to_dict()
    noted = ", ".join(f"{k} {settings[k]}" for k in NOTED if k in settings)
    fusion = (
        f"fusion image weight {text.fusion.weight:g} ({text.fusion.source})" if text.fusion else "no fusion"
    )
    probe_note = (
        f"probe {probe['backbone']} {probe['size'][0]}x{probe['size'][1]} C={probe['c']}, features "
        f"{'cached' if probe['features_cached'] else 'extracted'} ({probe['extraction_seconds']:.0f} s)"
        if probe
        else "no probe"
    )
    subset = bool(args.smoke or cfg.max_train_rows or cfg.max_test_rows)
    smoke = "SMOKE: " if args.smoke else ""
    smoke += (
        f"SUBSET: {cfg.max_train_rows or 'all'} train / {cfg.max_test_rows or 'all'} test rows; "
        if subset
        else ""
    )
    command = "python bench/bench_classifier_real.py " + " ".join(sys.argv[1:] if argv is None else argv)
    return write_bench_json(
        "classifier_real_fashion",
        command.strip(),
        figures,
        floor,
        seconds,
        f"{smoke}profile {args.profile}: {noted}; {fusion}; {probe_note}; weights "
        f"{result.manifest.weights_source}; {text.n_test} test rows",
        catalog.data_version,
        # A subset run must not replace a full run's committed figures.
        results_dir=Path(args.work_dir) / "results" if subset else None,
    )


if __name__ == "__main__":
    sys.exit(main())
