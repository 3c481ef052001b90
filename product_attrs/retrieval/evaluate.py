"""How well the recognizer names products: recall@k of photos against the gallery, and head top-1.

recall@k is the share of query photos whose true product is among the k most similar gallery products;
a query whose product has no gallery image counts as a miss (and is reported), since in use it would be
one. The classifier heads' top-1 is reported beside it, so retrieval and classification can be compared
on the same photos. A recognizer trained with `holdout_products` never saw some products: every figure is
also given for the queries of seen and of unseen products apart (the `seen` column), against the same
gallery of all products, since a new product should need a gallery image, not a retraining.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from product_attrs.classification.serve import Classifier
from product_attrs.retrieval.index import GalleryIndex, SearchResult


def recall_at_k(ranked: np.ndarray, truth: Sequence[object], ks: Sequence[int] = (1, 5)) -> dict[int, float]:
    """``ranked``: (queries, >= max k) product keys, best first; ``truth``: the right key of each query."""
    # As str or as object, the keys compare the same.
    truth_arr = np.asarray(list(truth), dtype=object).reshape(-1, 1)  # pragma: no mutate - see above
    if len(truth_arr) != len(ranked):
        raise ValueError(f"{len(ranked)} ranked rows but {len(truth_arr)} true keys")
    if len(ranked) == 0:
        return {k: float("nan") for k in ks}
    hits = ranked == truth_arr
    return {k: float(hits[:, :k].any(axis=1).mean()) for k in ks}


@dataclass
class RetrievalEvaluation:
    metrics: dict[str, float | int]
    per_query: pd.DataFrame


def held_out_products(classifier: Classifier) -> list[str]:
    """The primary-head classes the version was trained without (`holdout_products` in its manifest info;
    none for a version trained on every class or before the setting existed)."""
    holdout = classifier.manifest.info.get("holdout_products") or {}
    if holdout.get("column", classifier.heads[0]) != classifier.heads[0]:
        return []
    return [str(c) for c in holdout.get("classes") or []]


def evaluate_queries(
    index: GalleryIndex,
    embeddings: np.ndarray,
    queries: pd.DataFrame,
    ks: Sequence[int] = (1, 5),
    held_out: Collection[str] = (),
) -> tuple[dict[str, float | int], pd.DataFrame, SearchResult]:
    """recall@k on the key column, plus top-1 agreement of every other label column the gallery has.

    ``held_out``: products the model was not trained on; recall@k is also given for the queries of seen
    and unseen products apart (``recall@k_seen``, ``recall@k_unseen``: NaN when there are none).
    """
    key = index.key
    result = index.search(embeddings, max(ks))
    truth = queries[key].astype(str).tolist()
    recall = recall_at_k(result.products, truth, ks)
    in_gallery = np.isin(np.asarray(truth, dtype=object), index.products)
    unseen_products = set(map(str, held_out))
    seen = np.array([t not in unseen_products for t in truth], dtype=bool)
    metrics: dict[str, float | int] = {f"recall@{k}": v for k, v in recall.items()}
    for name, mask in (("seen", seen), ("unseen", ~seen)):
        part = recall_at_k(result.products[mask], [t for t, m in zip(truth, mask) if m], ks)
        metrics.update({f"recall@{k}_{name}": v for k, v in part.items()})
    metrics["queries"] = len(queries)
    metrics["queries_unseen"] = int((~seen).sum())
    metrics["held_out_products"] = len(unseen_products)
    metrics["queries_without_gallery_product"] = int((~in_gallery).sum())
    metrics["gallery_products"] = len(index.products)
    top_rows = (
        index.items.iloc[result.rows[:, 0]].reset_index(drop=True) if len(queries) else index.items.iloc[:0]
    )
    per_query = queries.reset_index(drop=True).copy()
    per_query["seen"] = seen
    per_query["matched"] = result.products[:, 0] if len(queries) else []
    per_query["similarity"] = result.scores[:, 0] if len(queries) else []
    per_query["top_k"] = [json.dumps(list(map(str, r))) for r in result.products]
    for col in index.items.columns:
        if col.endswith("_label") and col != key and col in queries.columns and len(queries):
            same = top_rows[col].astype(str).to_numpy() == queries[col].astype(str).to_numpy()
            metrics[f"recall@1_{col}"] = float(same.mean())
            per_query[f"matched_{col}"] = top_rows[col].to_numpy()
    return metrics, per_query, result


def evaluate_recognizer(
    classifier: Classifier,
    index: GalleryIndex,
    catalog_dir: Path,
    *,
    split: str = "test",
    ks: Sequence[int] = (1, 5),
    batch_size: int = 64,
    workers: int = 1,
    max_rows: int = 0,
) -> RetrievalEvaluation:
    """Embed the ``split`` photos of a catalog once; score retrieval and every classifier head on them, for
    all photos and (``_seen``/``_unseen``) apart for the products the classifier was trained without."""
    rows = pd.read_parquet(catalog_dir / "splits.parquet")
    rows = rows[(rows["split"] == split).fillna(False)].reset_index(drop=True)
    if max_rows and len(rows) > max_rows:
        rows = rows.sample(n=max_rows, random_state=0).sort_index().reset_index(drop=True)
    done = classifier.predict_files(
        rows["image_path"].astype(str).tolist(), batch_size=batch_size, workers=workers
    )
    ok = np.array([i not in done.errors for i in range(len(rows))], dtype=bool)
    held_out = held_out_products(classifier)
    metrics, per_query, _ = evaluate_queries(index, done.embeddings[ok], rows[ok], ks, held_out)
    metrics["unreadable_queries"] = int((~ok).sum())
    seen = per_query["seen"].to_numpy(dtype=bool)  # pragma: no mutate - the column is bool already
    for head in classifier.heads:
        if head in rows.columns:
            # As str or as object, the labels compare the same.
            pred = np.asarray(classifier.labels(done, head), dtype=object)[ok]  # pragma: no mutate
            right = pred == rows.loc[ok, head].astype(str).to_numpy()
            metrics[f"top1_{head}"] = _mean(right)
            if held_out:  # the fine head cannot name an unseen product; a coarser head may
                metrics[f"top1_{head}_seen"] = _mean(right[seen])
                metrics[f"top1_{head}_unseen"] = _mean(right[~seen])
            per_query[f"predicted_{head}"] = pred
    metrics["split"] = split
    return RetrievalEvaluation(metrics, per_query)


def _mean(hits: np.ndarray) -> float:
    return float(hits.mean()) if len(hits) else float("nan")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m product_attrs.retrieval.evaluate",
        description="recall@k of a catalog split's photos against a gallery, and the classifier heads' top-1",
    )
    parser.add_argument(
        "--model-dir", required=True, help="a classifier version folder (manifest.json, model.pt)"
    )
    parser.add_argument(
        "--catalog-dir", required=True, help="the ingested catalog (splits.parquet, gallery.parquet)"
    )
    parser.add_argument("--gallery", default="iconic", help="iconic, train_photos or both")
    parser.add_argument("--split", default="test")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", default=None, help="write per-query results (Parquet) here")
    args = parser.parse_args(argv)
    from product_attrs.retrieval.gallery import build_gallery, gallery_rows

    classifier = Classifier.load(Path(args.model_dir), device=args.device)
    rows = gallery_rows(Path(args.catalog_dir), args.gallery, classifier.heads[0])
    index, quarantine = build_gallery(classifier, rows, batch_size=args.batch_size, workers=args.workers)
    ev = evaluate_recognizer(
        classifier,
        index,
        Path(args.catalog_dir),
        split=args.split,
        batch_size=args.batch_size,
        workers=args.workers,
    )
    if args.out:
        ev.per_query.to_parquet(args.out, index=False)
    print(
        json.dumps(
            {**ev.metrics, "gallery_rows": len(index), "gallery_quarantined": len(quarantine)}, indent=1
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
