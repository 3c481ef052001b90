"""Extraction throughput: batched loading with workers under inference_mode vs a plain per-image loop.

Usage: python bench/bench_extraction.py [--images DIR] [--classifier-dir VERSION_DIR] [--n 1200]
Defaults: the demo catalog's images under $PRODUCT_ATTRS_DATA_DIR (generated if absent) and the
champion classifier there, else an untrained network of the demo profile's shape (the throughput does
not depend on the weights). Both sides run in this process on the same files, through the served
classifier (classification/serve.py): `predict_files` (batches, loader workers) vs `predict_one_by_one`.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import torch

from product_attrs.classification.serve import Classifier, load_champion
from product_attrs.modeling.registry import NoChampionError, Registry
from product_attrs.settings import get_settings


def untrained_version(
    models: Path,
    name: str,
    backbone: str,
    image_size: int,
    labels: dict[str, list[str]],
    embedding_dim: int = 512,
) -> Path:
    """An untrained classifier of the given shape, committed through the version store."""
    from product_attrs.classification.model import MultiTaskClassifier
    from product_attrs.modeling.versions import WEIGHTS, VersionManifest, VersionStore, resume_key

    model = MultiTaskClassifier(backbone, {k: len(v) for k, v in labels.items()}, embedding_dim)
    store = VersionStore(models, name)
    draft = store.begin(resume_key(name, {}, "bench"), "bench", "never")
    torch.save(model.state_dict(), draft.dir / WEIGHTS)
    info = {
        "backbone": backbone,
        "embedding_dim": embedding_dim,
        "image_size": image_size,
        "label_maps": labels,
        "heads": [{"column": c, "weight": 1.0} for c in labels],
        "normalization": {"mean": list(model.mean), "std": list(model.std)},
    }
    manifest = VersionManifest(
        name=name,
        version=draft.version,
        task="classification",
        created="bench",
        data_version="bench",
        config={},
        metrics={},
        info=info,
    )
    return store.commit(draft, manifest)


def demo_classifier(tmp: Path) -> Classifier:
    from product_attrs.classification.config import PROFILES

    demo = PROFILES.profiles["demo"]
    labels = {
        "article_type": [f"c{i}" for i in range(26)],
        "master_category": list("abcde"),
        "sub_category": list("abcdefghijk"),
    }
    return Classifier.load(
        untrained_version(tmp, "attribute_classifier", demo["backbone"], demo["image_size"], labels),
        device="cpu",
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
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
            classifier = Classifier.load(args.classifier_dir, device="cpu")
        else:
            try:
                classifier = load_champion(Registry(settings.models_dir), device="cpu")
            except NoChampionError:
                classifier = demo_classifier(Path(tmp))
        print(
            f"{len(paths)} images from {images}; classifier {classifier.version} "
            f"({classifier.manifest.info['image_size']} px); torch threads {torch.get_num_threads()}, "
            f"{os.cpu_count()} cores"
        )
        classifier.predict_one_by_one(paths[:16])  # warm-up
        t = time.perf_counter()
        classifier.predict_one_by_one(paths)
        t_plain = time.perf_counter() - t
        print(
            f"plain per-image loop:                  {t_plain:7.2f} s  {len(paths) / t_plain:8.1f} images/s"
        )
        t = time.perf_counter()
        classifier.predict_files(paths, batch_size=args.batch_size, workers=args.workers)
        t_ship = time.perf_counter() - t
        print(
            f"shipped (batch {args.batch_size}, {args.workers} workers, inference_mode): "
            f"{t_ship:7.2f} s  {len(paths) / t_ship:8.1f} images/s   "
            f"ratio {t_plain / t_ship:.2f}x (target >= 4x)"
        )
        # Where the time goes: decoding + transforms alone, in the same loader.
        from torch.utils.data import DataLoader

        from product_attrs.classification.serve import _collate, _Files

        t = time.perf_counter()
        for _ in DataLoader(
            _Files(paths, classifier.transform()),
            batch_size=args.batch_size,
            num_workers=args.workers,
            collate_fn=_collate,
        ):
            pass
        t_decode = time.perf_counter() - t
        print(
            f"  of which decode+transform alone:     {t_decode:7.2f} s  {len(paths) / t_decode:8.1f} images/s"
        )


if __name__ == "__main__":
    main()
