"""Peak memory of recognition over a big folder and of similar products over a big catalog.

Usage: python bench/bench_memory.py [--smoke] [--results DIR]

Each measurement runs in a fresh child process, which reports its peak RSS (VmHWM) twice: after importing
and loading what it needs (the floor: models and gallery, or the input embeddings) and at the end.
1. Recognition: ``recognize_photos`` (the asset's code path) over 1,000 copies (hard links) of one synthetic
   12-MP JPEG in /tmp, with an untrained light detector (EfficientNet-Lite0 FPN at 128 px, 5 boxes a photo)
   and an untrained recognizer on CPU: memory is the point, not the answers. Beside it, the old unbounded
   path (every photo of the folder decoded at once, ``photo_batch`` = the folder) on a smaller folder.
2. Similar products: ``similar_products`` over 200k products (128-d embeddings), the neighbours of the first
   4,096 (the blocks are those of a full run, which takes ~N^2: ~5.5 min on 2 cores); beside it, the first
   block of the old float64 code (1024 rows) at 50k products.
``--smoke``: 20 photos of 1 MP and 20k products, without the old paths, in ~20 s (the test runs it).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

# This checkout's code (not an installed copy of the package), and the bench helpers beside this file.
sys.path[:0] = [str(Path(__file__).resolve().parent.parent), str(Path(__file__).resolve().parent)]

MB = 1024 * 1024


def peak_rss_mb() -> float:
    """This process's peak resident set (VmHWM), in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# --- children -------------------------------------------------------------------------------------------


def _models(tmp: Path):
    import pandas as pd
    import torch
    from bench_extraction import untrained_version

    from product_attrs.classification.serve import Classifier
    from product_attrs.detection.config import DetectorConfig
    from product_attrs.detection.model import build_detector
    from product_attrs.detection.serve import Detector
    from product_attrs.retrieval.index import GalleryIndex

    torch.manual_seed(0)
    labels = {"fine_label": [f"p{i}" for i in range(81)], "coarse_label": [f"c{i}" for i in range(42)]}
    classifier = Classifier.load(
        untrained_version(tmp, "product_recognizer", "resnet18", 64, labels, 64), device="cpu"
    )
    cfg = DetectorConfig(
        pretrained=False, min_size=128, max_size=160, box_detections_per_img=5, box_score_thresh=0.0
    )
    model, _ = build_detector(cfg, 1, allow_download=False)
    detector = Detector(model, [{"label": 1, "category_id": 1, "name": "product"}], cfg, "cpu", "bench")
    rng = np.random.default_rng(0)
    gallery = rng.normal(size=(81, 64)).astype(np.float32)
    gallery /= np.linalg.norm(gallery, axis=1, keepdims=True)
    index = GalleryIndex(gallery, pd.DataFrame({"fine_label": labels["fine_label"]}), "fine_label")
    return classifier, detector, index


def child_recognize(folder: Path, unbounded: bool) -> dict:
    from product_attrs.retrieval.recognize import list_photos, recognize_photos

    with tempfile.TemporaryDirectory() as tmp:
        classifier, detector, index = _models(Path(tmp))
        photos = list_photos(folder)
        floor = peak_rss_mb()
        t = time.perf_counter()
        found = recognize_photos(
            photos,
            classifier,
            index,
            detector=detector,
            score_thresh=0.0,
            root=folder,
            **({"photo_batch": len(photos)} if unbounded else {}),
        )
        seconds = time.perf_counter() - t
    return {
        "photos": len(photos),
        "objects": len(found.rows),
        "quarantined": len(found.quarantine),
        "floor_mb": floor,
        "peak_mb": peak_rss_mb(),
        "seconds": seconds,
    }


def _embeddings(n: int, dim: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.permutation(np.arange(n, dtype=np.int64)), rng.normal(size=(n, dim)).astype(np.float32)


def child_similar(n: int, dim: int, queries: int) -> dict:
    from product_attrs.warehouse.similar import block_rows, similar_products

    ids, emb = _embeddings(n, dim)
    floor = peak_rss_mb()
    t = time.perf_counter()
    sims = similar_products(ids, emb, k=10, of=np.sort(ids)[:queries])
    seconds = time.perf_counter() - t
    return {
        "products": n,
        "queries": queries,
        "rows": len(sims),
        "block_rows": block_rows(n),
        "floor_mb": floor,
        "peak_mb": peak_rss_mb(),
        "seconds": seconds,
        "projected_full_seconds": seconds * n / queries,
    }


def child_similar_old(n: int, dim: int) -> dict:
    """The first block of the code before this bench: float64 scores of 1024 rows x N, argpartition."""
    ids, emb = _embeddings(n, dim)
    floor = peak_rss_mb()
    t = time.perf_counter()
    order = np.argsort(ids, kind="stable")
    emb = np.asarray(emb, dtype=np.float32)[order]
    emb = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    block, k = 1024, 10
    sims = np.round((emb[:block] @ emb.T).astype(np.float64), 6)
    sims[np.arange(block), np.arange(block)] = -np.inf
    slack = k + 8
    part = np.argpartition(-sims, slack - 1, axis=1)[:, :slack]
    vals = np.take_along_axis(sims, part, axis=1)
    top = np.take_along_axis(part, np.lexsort((part, -vals), axis=1), axis=1)[:, :k]
    kth = np.take_along_axis(sims, top[:, -1:], axis=1)
    assert ((sims >= kth).sum(axis=1) <= slack).all()
    return {
        "products": n,
        "rows": block,
        "floor_mb": floor,
        "peak_mb": peak_rss_mb(),
        "seconds": time.perf_counter() - t,
    }


# --- parent ---------------------------------------------------------------------------------------------


def run_child(*args: str) -> dict:
    """One measurement in a fresh process; its last line of output is the JSON it measured."""
    done = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--child", *args],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"child {args} failed:\n{done.stderr[-3000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    print(args[0], json.dumps(result), flush=True)
    return result


def synthetic_folder(root: Path, n: int, size: tuple[int, int]) -> Path:
    """ONE JPEG of ``size`` (a smooth picture with some noise, as a photo compresses) hard-linked n times."""
    from PIL import Image

    w, h = size
    rng = np.random.default_rng(0)
    x = np.linspace(0, 255, w, dtype=np.float32)[None, :, None]
    y = np.linspace(0, 255, h, dtype=np.float32)[:, None, None]
    pixels = x * 0.6 + y * 0.4 + np.array([0, 60, 120], dtype=np.float32)  # (h, w, 3) colour gradient
    pixels += rng.normal(0, 12, size=(h, w, 1)).astype(np.float32)
    folder = root / "photos"
    folder.mkdir(parents=True)
    first = folder / "photo_0000.jpg"
    Image.fromarray(np.clip(pixels % 256, 0, 255).astype(np.uint8)).save(first, quality=90)
    for i in range(1, n):
        os.link(first, folder / f"photo_{i:04d}.jpg")
    return folder


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--smoke", action="store_true", help="20 photos of 1 MP, 20k products")
    parser.add_argument(
        "--results", type=Path, default=None, help="folder of the JSON (default bench/results)"
    )
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        kind, *rest = args.child
        if kind == "recognize":
            out = child_recognize(Path(rest[0]), unbounded=rest[1] == "unbounded")
        elif kind == "similar":
            out = child_similar(int(rest[0]), int(rest[1]), int(rest[2]))
        else:
            out = child_similar_old(int(rest[0]), int(rest[1]))
        print(json.dumps(out))
        return 0

    from bench_results import write_result

    photos, size, old_photos = (20, (1000, 1000), 0) if args.smoke else (1000, (4000, 3000), 24)
    products, queries, old_products, dim = (
        (20_000, 512, 5_000, 32) if args.smoke else (200_000, 4096, 50_000, 128)
    )
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench_memory_", dir="/tmp") as tmp:
        folder = synthetic_folder(Path(tmp) / "big", photos, size)
        small = synthetic_folder(Path(tmp) / "small", old_photos, size) if not args.smoke else None
        rec = run_child("recognize", str(folder), "bounded")
        if not args.smoke:  # the comparisons: the old paths, and the new ones on the same smaller inputs
            old = run_child("recognize", str(small), "unbounded")
            new_small = run_child("recognize", str(small), "bounded")
    sim = run_child("similar", str(products), str(dim), str(queries))
    if not args.smoke:
        sim_old = run_child("similar_old", str(old_products), str(dim))
        sim_new_small = run_child("similar", str(old_products), str(dim), "1024")
    mp = size[0] * size[1] / 1e6
    figures = {
        f"recognize_{photos}_photos_peak_rss_mb": rec["peak_mb"],
        "recognize_photos_per_s": rec["photos"] / rec["seconds"],
        "recognize_objects": rec["objects"],
        f"similar_{products // 1000}k_products_peak_rss_mb": sim["peak_mb"],
        "similar_block_rows": sim["block_rows"],
        "similar_rows_per_s": sim["queries"] / sim["seconds"],
        "similar_projected_full_run_seconds": sim["projected_full_seconds"],
    }
    floor = {
        "recognize_models_loaded_rss_mb": rec["floor_mb"],
        "similar_embeddings_allocated_rss_mb": sim["floor_mb"],
    }
    if not args.smoke:
        figures[f"recognize_{old_photos}_photos_peak_rss_mb"] = new_small["peak_mb"]
        figures[f"similar_{old_products // 1000}k_products_first_1024_rows_peak_rss_mb"] = sim_new_small[
            "peak_mb"
        ]
        floor[f"old_unbounded_recognize_{old_photos}_photos_peak_rss_mb"] = old["peak_mb"]
        floor[f"old_float64_similar_{old_products // 1000}k_products_first_1024_rows_peak_rss_mb"] = sim_old[
            "peak_mb"
        ]
    notes = (
        f"{'SMOKE run; ' if args.smoke else ''}{photos} hard links of one {mp:.0f}-MP JPEG, untrained lite0 "
        f"detector at 128 px (5 boxes a photo) + untrained resnet18 recognizer at 64 px, CPU; similar: "
        f"{dim}-d embeddings, neighbours of the first {queries} of {products} products (blocks as in a full "
        f"run; the full result adds ~{products * 10 * 32 / MB:.0f} MB of rows); the old paths run on smaller "
        f"inputs; floors are the same child's peak before the work; 2 cores shared with other jobs"
    )
    out = write_result(
        "memory",
        "python bench/bench_memory.py" + (" --smoke" if args.smoke else ""),
        figures,
        floor,
        time.perf_counter() - start,
        notes=notes,
        results_dir=args.results,
    )
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
