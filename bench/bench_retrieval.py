"""Recognition by retrieval: gallery search time on 100k generated embeddings, and query photos/s.

Usage: python bench/bench_retrieval.py [--gallery 100000] [--dim 256] [--queries 1000]
                                       [--photos DIR] [--recognizer-dir VERSION_DIR] [--n-photos 200]

1. Search: exact cosine top-5 over a gallery of ``--gallery`` random unit vectors (clustered, so that
   there are near ties as in a real catalog), for ``--queries`` queries, with ``GalleryIndex.search``
   (blocks of queries, one matrix product, torch.topk) against the simple way (one query at a time,
   a full argsort) and against the SQL an analyst would write in DuckDB (array_cosine_similarity,
   ORDER BY ... LIMIT 5), all in this process; results are checked equal.
2. Query photos/s: decode + embed + search of ``--n-photos`` photos against an 81-product gallery,
   batched (``recognize_photos``) vs a per-photo loop. Photos default to the grocery test photos under
   $PRODUCT_ATTRS_REAL_DATA, else the demo's; the recognizer defaults to an untrained network of the
   recognizer's demo shape (throughput does not depend on the weights).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import torch

from product_attrs.classification.serve import Classifier
from product_attrs.retrieval.index import GalleryIndex, l2_normalize, search_baseline


def clustered_embeddings(n: int, dim: int, seed: int, centres: int = 5000) -> np.ndarray:
    rng = np.random.default_rng(seed)
    c = l2_normalize(rng.normal(size=(centres, dim)))
    x = c[rng.integers(0, centres, n)] + 0.3 * rng.normal(size=(n, dim)).astype(np.float32) / np.sqrt(dim)
    return l2_normalize(x)


def bench_search(n: int, dim: int, n_queries: int, k: int = 5) -> dict:
    gallery = clustered_embeddings(n, dim, seed=0)
    queries = clustered_embeddings(n_queries, dim, seed=1)
    index = GalleryIndex(gallery, pd.DataFrame({"product_id": np.arange(n)}))
    index.search(queries[:8], k)  # warm-up
    t = time.perf_counter()
    found = index.search(queries, k)
    batched = time.perf_counter() - t
    n_base = min(n_queries, 200)
    t = time.perf_counter()
    base = search_baseline(index.embeddings, queries[:n_base], k)
    baseline = time.perf_counter() - t
    assert (found.rows[:n_base] == base).all(), "batched search disagrees with the baseline"
    con = duckdb.connect()
    frame = pd.DataFrame({"product_id": np.arange(n), "embedding": list(gallery)})  # noqa: F841 - read by DuckDB by name
    con.execute(
        "CREATE OR REPLACE TABLE gallery AS "
        f"SELECT product_id, embedding::FLOAT[{dim}] AS embedding FROM frame"
    )
    n_sql = min(n_queries, 20)
    sql = (
        f"SELECT product_id FROM gallery ORDER BY array_cosine_similarity(embedding, ?::FLOAT[{dim}]) DESC, "
        f"product_id LIMIT {k}"
    )
    t = time.perf_counter()
    sql_rows = [[r[0] for r in con.execute(sql, [queries[i].tolist()]).fetchall()] for i in range(n_sql)]
    duck = time.perf_counter() - t
    agree = np.mean([set(sql_rows[i]) == set(found.rows[i].tolist()) for i in range(n_sql)])
    return {
        "gallery": n,
        "dim": dim,
        "queries": n_queries,
        "batched_ms_per_query": 1000 * batched / n_queries,
        "batched_queries_per_s": n_queries / batched,
        "baseline_ms_per_query": 1000 * baseline / n_base,
        "speedup_vs_baseline": (baseline / n_base) / (batched / n_queries),
        "duckdb_sql_ms_per_query": 1000 * duck / n_sql,
        "duckdb_agrees_with_index": float(agree),
    }


def untrained_recognizer(tmp: Path, image_size: int, embedding_dim: int, n_products: int) -> Classifier:
    from bench_extraction import untrained_version

    labels = {
        "fine_label": [f"p{i}" for i in range(n_products)],
        "coarse_label": [f"c{i}" for i in range(42)],
    }
    return Classifier.load(
        untrained_version(tmp, "product_recognizer", "efficientnet_lite0", image_size, labels, embedding_dim),
        device="cpu",
    )


def find_photos(args) -> tuple[Path, list[Path]]:
    if args.photos:
        root = args.photos
    else:
        real = os.environ.get("PRODUCT_ATTRS_REAL_DATA")
        root = (
            Path(real) / "grocery-store" / "test"
            if real and (Path(real) / "grocery-store").is_dir()
            else None
        )
        if root is None:
            from product_attrs.settings import get_settings

            root = get_settings().demo_dir / "grocery" / "test"
    photos = sorted(p for p in Path(root).rglob("*.jpg") if p.stat().st_size > 0)
    rng = np.random.default_rng(0)
    picked = sorted(rng.choice(len(photos), size=min(args.n_photos, len(photos)), replace=False))
    return Path(root), [photos[i] for i in picked]


def bench_queries(args) -> dict:
    from product_attrs.retrieval.recognize import _open, recognize_photos

    root, photos = find_photos(args)
    with tempfile.TemporaryDirectory() as tmp:
        classifier = (
            Classifier.load(args.recognizer_dir, device="cpu")
            if args.recognizer_dir
            else untrained_recognizer(Path(tmp), args.image_size, args.dim, 81)
        )
        dim = classifier.model.neck[0].out_features
        gallery = GalleryIndex(
            clustered_embeddings(81, dim, 2),
            pd.DataFrame({"fine_label": [f"p{i}" for i in range(81)]}),
            key="fine_label",
        )
        recognize_photos(photos[:4], classifier, gallery)  # warm-up
        t = time.perf_counter()
        batched = recognize_photos(photos, classifier, gallery, batch_size=args.batch_size)
        t_batched = time.perf_counter() - t
        model, transform = classifier.model.eval(), classifier.transform()
        t = time.perf_counter()
        plain = []
        with torch.no_grad():
            for p in photos:
                emb = model.embed(transform(_open(p)[0]).unsqueeze(0)).numpy()
                plain.append(gallery.search(emb, 1).products[0, 0])
        t_plain = time.perf_counter() - t
    return {
        "photos": len(photos),
        "image_size": classifier.manifest.info["image_size"],
        "source": str(root),
        "batched_photos_per_s": len(photos) / t_batched,
        "per_photo_loop_photos_per_s": len(photos) / t_plain,
        "speedup": t_plain / t_batched,
        "same_answers": float(
            np.mean(np.asarray(plain, dtype=object) == batched.rows["product"].to_numpy(dtype=object))
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--gallery", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=256)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--photos", type=Path)
    parser.add_argument("--recognizer-dir", type=Path)
    parser.add_argument("--n-photos", type=int, default=200)
    parser.add_argument("--image-size", type=int, default=96)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--skip-photos", action="store_true")
    args = parser.parse_args()
    print(f"torch threads: {torch.get_num_threads()}")
    search = bench_search(args.gallery, args.dim, args.queries)
    print(json.dumps({"search": search}, indent=1))
    if not args.skip_photos:
        print(json.dumps({"query_photos": bench_queries(args)}, indent=1))


if __name__ == "__main__":
    main()
