"""Extraction throughput: batched loading with workers under inference_mode vs a plain per-image loop.

Usage: python bench/bench_extraction.py [--images DIR] [--classifier-dir VERSION_DIR] [--n 1200]
Defaults: the demo catalog's images under $PRODUCT_ATTRS_DATA_DIR (generated if absent) and the
latest trained classifier there, else an untrained network of the demo profile's shape (the
throughput does not depend on the weights). Both sides run in this process on the same files.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch

from product_attrs.extraction.batch import ClassifierBundle, classify_images, classify_plain_loop
from product_attrs.settings import get_settings


def demo_bundle(tmp: Path) -> ClassifierBundle:
    from product_attrs.classification.config import PROFILES
    from product_attrs.classification.model import MultiTaskClassifier

    demo = PROFILES["demo"]
    labels = {"article_type": [f"c{i}" for i in range(26)], "master_category": list("abcde"), "sub_category": list("abcdefghijk")}
    model = MultiTaskClassifier(demo["backbone"], {k: len(v) for k, v in labels.items()}, 512)
    folder = tmp / "attribute_classifier" / "bench"
    folder.mkdir(parents=True)
    torch.save(model.state_dict(), folder / "model.pt")
    (folder / "model.json").write_text(json.dumps({
        "name": "attribute_classifier", "version": "bench", "backbone": demo["backbone"], "embedding_dim": 512,
        "image_size": demo["image_size"], "heads": [{"column": c, "weight": 1.0} for c in labels],
        "label_maps": labels, "normalization": {"mean": list(model.mean), "std": list(model.std)}}))
    return ClassifierBundle.from_version_dir(folder)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=Path)
    parser.add_argument("--classifier-dir", type=Path)
    parser.add_argument("--n", type=int, default=1200)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    settings = get_settings()
    images = args.images or settings.demo_dir / "catalog" / "images"
    if not images.exists():
        from product_attrs.sample_data.catalog import generate_catalog

        generate_catalog(images.parent)
    paths = []
    for p in sorted(images.iterdir()):
        try:
            from PIL import Image

            with Image.open(p) as img:
                img.load()
            paths.append(str(p))
        except Exception:  # noqa: BLE001 - the plain loop would crash on broken files; skip them for both
            pass
    paths = paths[: args.n]
    with tempfile.TemporaryDirectory() as tmp:
        if args.classifier_dir:
            bundle = ClassifierBundle.from_version_dir(args.classifier_dir)
        else:
            from product_attrs.classification.train import latest_version_dir

            found = latest_version_dir(settings.models_dir)
            bundle = ClassifierBundle.from_version_dir(found) if found else demo_bundle(Path(tmp))
        print(f"{len(paths)} images from {images}; classifier {bundle.version} ({bundle.image_size} px); "
              f"torch threads {torch.get_num_threads()}, {os.cpu_count()} cores")
        classify_plain_loop(bundle, paths[:16])  # warm-up
        t = time.perf_counter()
        classify_plain_loop(bundle, paths)
        t_plain = time.perf_counter() - t
        print(f"plain per-image loop:                  {t_plain:7.2f} s  {len(paths) / t_plain:8.1f} images/s")
        t = time.perf_counter()
        classify_images(bundle, paths, batch_size=args.batch_size, workers=args.workers)
        t_ship = time.perf_counter() - t
        print(f"shipped (batch {args.batch_size}, {args.workers} workers, inference_mode): "
              f"{t_ship:7.2f} s  {len(paths) / t_ship:8.1f} images/s   ratio {t_plain / t_ship:.2f}x (target >= 4x)")
        # Where the time goes: decoding + transforms alone, in the same loader.
        from torch.utils.data import DataLoader

        from product_attrs.extraction.batch import ImageListDataset, _collate

        t = time.perf_counter()
        for _ in DataLoader(ImageListDataset(paths, bundle.transform()), batch_size=args.batch_size,
                            num_workers=args.workers, collate_fn=_collate):
            pass
        t_decode = time.perf_counter() - t
        print(f"  of which decode+transform alone:     {t_decode:7.2f} s  {len(paths) / t_decode:8.1f} images/s")


if __name__ == "__main__":
    main()
