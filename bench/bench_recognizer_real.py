"""The recognizer on the real Grocery Store Dataset: fine / coarse top-1 and recall@1/5 against the iconic
gallery on the test split, next to a baseline of ImageNet features without any training.

The recognizer overlay keeps 20% of the products out of training (`--holdout-products`, a fixed choice):
recall@1/5 is reported for the test photos of seen and of unseen products apart, both against the
gallery of all 81 products, and the ImageNet baseline is split by the same products. Unseen recall is
what a new product gets from a gallery image alone, without a retraining.

    # CPU (about half an hour on 2 cores): EfficientNet-Lite0 ImageNet, 128 px, ArcMargin
    python bench/bench_recognizer_real.py --work-dir /tmp/grocery-run
    # GPU, the full profile (ResNet-50 224 px; needs the torchvision weights in the hub cache)
    python bench/bench_recognizer_real.py --work-dir /tmp/grocery-run --profile full --device cuda
    # a few minutes, to check the script end to end (figures meaningless, bench/results untouched)
    python bench/bench_recognizer_real.py --work-dir /tmp/grocery-smoke --smoke

The catalog comes from `$PRODUCT_ATTRS_REAL_DATA/grocery-store` (or `--real-data`) through the project's
own ingestion, written under `--work-dir`; training takes every flag of
`python -m product_attrs.classification.train`, with the recognizer's defaults (grocery heads, ArcMargin)
under the profile. The baseline embeds gallery and queries with the same backbone's ImageNet weights
(pooled features, no neck): what retrieval gives with no training on this catalog at all.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from product_attrs.classification.config import PROFILES, TrainConfig
from product_attrs.classification.serve import Classifier
from product_attrs.classification.train import train
from product_attrs.modeling.config import add_arguments, field_specs, resolve
from product_attrs.modeling.registry import Registry
from product_attrs.modeling.versions import VersionManifest
from product_attrs.retrieval.evaluate import evaluate_queries, evaluate_recognizer, held_out_products
from product_attrs.retrieval.gallery import build_gallery, gallery_rows
from product_attrs.retrieval.index import GalleryIndex

# Published references (see ../shared/data/README.md and the issue).
REFERENCE = {
    "fine_top1": 0.8604,
    "coarse_top1": 0.9199,
    "recall@1 (Aliproduct)": 0.839,
    "recall@1 (In-shop)": 0.892,
}
RECOGNIZER_CPU = {
    "image_size": 128,
    "phase1_epochs": 6,
    "phase1_lr": 0.03,
    "phase2_epochs": 2,
    "phase2_lr": 0.005,
    "eval_every": 8,
    "threads": 1,
}
#: --smoke: a frozen backbone, 64 px, one epoch on a few hundred photos, a few hundred queries.
SMOKE = {
    "image_size": 64,
    "freeze_stages": 8,
    "embedding_dim": 128,
    "batch_size": 32,
    "phase1_epochs": 1,
    "phase2_epochs": 0,
    "max_train_rows": 300,
    "max_test_rows": 100,
    "threads": 1,
}
SMOKE_QUERIES = 200


def imagenet_baseline(
    catalog_dir: Path,
    backbone: str,
    image_size: int,
    batch_size: int,
    device: str,
    held_out: list[str],
    max_rows: int = 0,
) -> dict:
    """recall@k with the backbone's ImageNet pooled features: no training on this catalog. Split by the
    recognizer's held-out products, so that its unseen recall reads against the same photos."""
    from product_attrs.classification.data import build_transform
    from product_attrs.classification.model import Backbone, _load_backbone_state, imagenet_state_dict
    from product_attrs.classification.serve import _collate, _Files

    net = Backbone(backbone)
    state, source = imagenet_state_dict(backbone, allow_download=False)
    _load_backbone_state(net, state, source)
    net = net.to(device).eval()
    tf = build_transform(image_size, False, net.mean, net.std)

    def embed(paths: list[str]) -> np.ndarray:
        out = np.zeros((len(paths), net.out_features), np.float32)
        loader = torch.utils.data.DataLoader(_Files(paths, tf), batch_size=batch_size, collate_fn=_collate)
        with torch.inference_mode():
            for idx, x, _ in loader:
                out[idx.numpy()] = (
                    torch.nn.functional.normalize(net(x.to(device)).float(), dim=1).cpu().numpy()
                )
        return out

    gallery = pd.read_parquet(catalog_dir / "gallery.parquet")
    queries = pd.read_parquet(catalog_dir / "splits.parquet")
    queries = queries[queries["split"] == "test"].reset_index(drop=True)
    if max_rows and len(queries) > max_rows:  # the rows evaluate_recognizer(max_rows=...) takes
        queries = queries.sample(n=max_rows, random_state=0).sort_index().reset_index(drop=True)
    index = GalleryIndex(
        embed(gallery["image_path"].tolist()),
        gallery.assign(fine_label=gallery["fine_label"].astype(str)),
        key="fine_label",
    )
    metrics, _, _ = evaluate_queries(index, embed(queries["image_path"].tolist()), queries, held_out=held_out)
    return {k: v for k, v in metrics.items() if k.startswith("recall")} | {"weights": source}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--real-data",
        default=None,
        help="grocery-store folder (default: $PRODUCT_ATTRS_REAL_DATA/grocery-store)",
    )
    ap.add_argument("--work-dir", default="data-grocery", help="catalog, models and results go here")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--model-dir", default=None, help="evaluate this version folder instead of training")
    ap.add_argument("--skip-baseline", action="store_true")
    ap.add_argument(
        "--smoke",
        action="store_true",
        help=f"a few minutes: {SMOKE} and {SMOKE_QUERIES} test photos; nothing written under bench/results",
    )
    # --holdout-products (share of products never trained on) is one of TrainConfig's flags below; the
    # recognizer overlay's 0.2 is its default.
    add_arguments(ap, TrainConfig, PROFILES)
    args = ap.parse_args(argv)
    started = time.perf_counter()
    root = Path(
        args.real_data or Path(os.environ.get("PRODUCT_ATTRS_REAL_DATA", "../shared/data")) / "grocery-store"
    )
    if not (root / "classes.csv").exists():
        print(
            f"no Grocery Store Dataset at {root}: set PRODUCT_ATTRS_REAL_DATA or --real-data", file=sys.stderr
        )
        return 2
    work = Path(args.work_dir).resolve()
    catalog_dir = work / "grocery"
    from product_attrs.catalog.grocery import ingest_grocery

    t = time.perf_counter()
    counts = ingest_grocery(root, catalog_dir, workers=2)
    print(f"ingested {root} in {time.perf_counter() - t:.1f}s: {json.dumps(counts)}", flush=True)

    if args.model_dir:
        version_dir = Path(args.model_dir)
    else:
        given = {spec.name: getattr(args, spec.name) for spec in field_specs(TrainConfig)}
        cpu = {**(RECOGNIZER_CPU if args.profile == "demo" else {}), **(SMOKE if args.smoke else {})}
        overrides = {k: (v if v is not None else cpu.get(k)) for k, v in given.items()}
        cfg = resolve(TrainConfig, PROFILES, args.profile, args.overlay or "recognizer", overrides)
        print(f"config: {json.dumps(cfg.to_dict())}", flush=True)
        t = time.perf_counter()
        result = train(
            cfg,
            catalog_dir,
            Registry(work / "models"),
            model="product_recognizer",
            device=args.device,
            allow_download=False,
        )
        print(f"trained in {time.perf_counter() - t:.0f}s: {result.version_dir}", flush=True)
        version_dir = result.version_dir
    classifier = Classifier.load(version_dir, device=args.device)
    held_out = held_out_products(classifier)  # the version's own, also with --model-dir
    max_rows = SMOKE_QUERIES if args.smoke else 0
    t = time.perf_counter()
    index, quarantine = build_gallery(classifier, gallery_rows(catalog_dir, "iconic", classifier.heads[0]))
    ev = evaluate_recognizer(classifier, index, catalog_dir, split="test", max_rows=max_rows)
    ev.per_query.to_parquet(work / "test_recognitions.parquet", index=False)
    index_b, _ = build_gallery(classifier, gallery_rows(catalog_dir, "both", classifier.heads[0]))
    ev_b = evaluate_recognizer(classifier, index_b, catalog_dir, split="test", max_rows=max_rows)
    seconds = time.perf_counter() - t
    report = {
        "model": str(version_dir),
        "holdout_products": held_out,
        "iconic_gallery": ev.metrics,
        "iconic_plus_train_photos_gallery": {k: v for k, v in ev_b.metrics.items() if k.startswith("recall")},
        "evaluation_seconds": round(seconds, 1),
        "reference": REFERENCE,
    }
    if not args.skip_baseline:
        info = VersionManifest.read(version_dir).info
        report["imagenet_features_baseline_iconic"] = imagenet_baseline(
            catalog_dir, info["backbone"], int(info["image_size"]), 64, args.device, held_out, max_rows
        )
    print(json.dumps(report, indent=1, default=str))
    (work / "recognizer_report.json").write_text(json.dumps(report, indent=1, default=str))
    if args.smoke:
        print(f"smoke run: {work / 'recognizer_report.json'} only, bench/results untouched")
    else:
        print(f"wrote {write_bench_result(report, catalog_dir, time.perf_counter() - started, argv)}")
    return 0


def write_bench_result(report: dict, catalog_dir: Path, seconds: float, argv: list[str] | None) -> Path:
    from bench_results import write_result

    iconic, both = report["iconic_gallery"], report["iconic_plus_train_photos_gallery"]
    held_out = report["holdout_products"]
    # recall against the iconic gallery of all products; "seen"/"unseen": the test photos of the products
    # trained on / held out. fine_top1 counts every test photo (an unseen product cannot be named).
    figures = {
        **_recall_figures("", iconic),
        "fine_top1": iconic["top1_fine_label"],
        "coarse_top1": iconic["top1_coarse_label"],
        "fine_top1_seen": iconic.get("top1_fine_label_seen", iconic["top1_fine_label"]),
        "coarse_top1_unseen": iconic.get("top1_coarse_label_unseen"),
        **_recall_figures("iconic_and_train_photos_", both),
        "held_out_products": len(held_out),
        "unseen_queries": iconic["queries_unseen"],
    }
    floor = _recall_figures("imagenet_", report.get("imagenet_features_baseline_iconic", {}))
    args = " ".join(sys.argv[1:] if argv is None else argv)
    cfg = VersionManifest.read(Path(report["model"])).config
    recipe = ", ".join(
        f"{k} {cfg.get(k)}"
        for k in (
            "backbone",
            "image_size",
            "freeze_stages",
            "feature_cache",
            "phase1_epochs",
            "phase2_epochs",
        )
    )
    # With products held out, fine/coarse top-1 count photos no head was trained to name: the figures for
    # the classification goals come from a run that holds none out, kept in its own file.
    name = "recognizer_real_grocery" if held_out else "recognizer_real_grocery_all_products"
    return write_result(
        name,
        f"PRODUCT_ATTRS_REAL_DATA=../shared/data python bench/bench_recognizer_real.py {args}".strip(),
        figures,
        floor,
        seconds,
        notes=f"{recipe}, {cfg.get('metric_loss')}; test split ({iconic['queries']} photos) against the "
        f"81 iconic images; {len(held_out)} products held out of training "
        "(holdout_products); floor: ImageNet features without training, split by the same products",
        data_version=(catalog_dir / "data_version.txt").read_text().strip(),
    )


def _recall_figures(prefix: str, metrics: dict) -> dict:
    """recall@k, recall@k_seen and recall@k_unseen as figure names: recall_at_1, seen_recall_at_1, ..."""
    out = {}
    for part in ("", "seen", "unseen"):
        for k in (1, 5):
            name = f"recall@{k}" + (f"_{part}" if part else "")
            if name in metrics:  # NaN (no photo of an unseen product) is null: strict JSON
                value = metrics[name]
                finite = not isinstance(value, float) or math.isfinite(value)
                out[f"{prefix}{part + '_' if part else ''}recall_at_{k}"] = value if finite else None
    return out


if __name__ == "__main__":
    sys.exit(main())
