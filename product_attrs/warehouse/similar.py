"""Similar products by embedding: the batch table for the whole catalog and the one-product macro.

``similar_products`` is a blocked matrix product over the whole catalog, in float32 blocks of rows sized to
a fixed memory budget; the warehouse macro
``similar_to`` answers for one product with DuckDB's ``array_cosine_similarity`` (or
``list_cosine_similarity`` for FLOAT[] lists). A DuckDB self-join for the whole table measured
~0.4M pairs/s on 2 cores, i.e. ~80 minutes for 44k products (1.9B pairs).
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

SIMILAR_COLUMNS = ["product_id", "rank", "similar_product_id", "similarity"]


#: The most bytes one block's temporaries may take, whatever the catalog's size (the old blocks of 1024 rows
#: in float64 took 1.5 GB a temporary at 44k products, 8 GB at 1M).
BLOCK_BYTES = 64 * 1024 * 1024
#: Bytes a block holds per score: the float32 score, its partitioned copy, the candidate mask, slack.
_BYTES_PER_SCORE = 12
#: Rounding to 1e-6 moves a score by at most 5e-7: a column more than this below a row's k-th best raw score
#: cannot reach its top k once rounded.
_ROUNDING_SLACK = 2e-6


def block_rows(n: int, budget: int = BLOCK_BYTES) -> int:
    """Rows per block so that a block of ``n`` columns stays under ``budget`` bytes."""
    return max(1, min(n, budget // (_BYTES_PER_SCORE * max(n, 1))))


def _top_k_block(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Each row's k best columns (best first, ties to the lower column) and their scores rounded to 1e-6.

    The k-th best raw score comes from a partition (linear, float32); only the columns within the rounding
    slack of it are rounded and sorted. A row where more than a few columns tie (a zero vector ties with
    everything) is sorted whole, one row at a time.
    """
    n = scores.shape[1]
    kth = np.partition(scores, n - k, axis=1)[:, n - k]
    candidates = scores >= (kth - _ROUNDING_SLACK)[:, None]
    counts = candidates.sum(axis=1)
    crowded = np.flatnonzero(counts > 4 * k + 64)
    candidates[crowded] = False
    r, c = np.nonzero(candidates)
    del candidates
    vals = np.round(scores[r, c].astype(np.float64), 6)
    order = np.lexsort((c, -vals, r))
    r, c, vals = r[order], c[order], vals[order]
    first = np.concatenate([[0], np.cumsum(np.bincount(r, minlength=len(scores)))[:-1]])
    keep = (np.arange(len(r)) - first[r]) < k
    top = np.empty((len(scores), k), dtype=np.int64)
    top_vals = np.empty((len(scores), k), dtype=np.float64)
    light = np.setdiff1d(np.arange(len(scores)), crowded)
    top[light], top_vals[light] = c[keep].reshape(-1, k), vals[keep].reshape(-1, k)
    for row in crowded:
        rounded = np.round(scores[row].astype(np.float64), 6)
        top[row] = np.argsort(-rounded, kind="stable")[:k]
        top_vals[row] = rounded[top[row]]
    return top, top_vals


def similar_products(
    product_ids: np.ndarray,
    embeddings: np.ndarray,
    k: int = 10,
    *,
    of: np.ndarray | None = None,
    budget: int = BLOCK_BYTES,
) -> pd.DataFrame:
    """Each product's k nearest others by cosine similarity (SIMILAR_COLUMNS), ties to the lower id.

    Rows are normalised here, so unnormalised embeddings work too; a zero vector, or one with a NaN or an
    infinity, is similar to nothing (similarity 0). Similarities are rounded to 1e-6, the precision float32
    embeddings support. ``of``: only these products' neighbours (among all products); default every one.
    Scores are float32 in blocks of rows sized to ``budget`` bytes, so memory does not grow with the
    catalog beyond the embeddings and the result.
    """
    ids = np.asarray(product_ids, dtype=np.int64)
    order = np.argsort(ids, kind="stable")
    ids = ids[order]
    emb = np.asarray(embeddings, dtype=np.float32)[order]  # a copy (fancy indexing): ours to change
    emb[~np.isfinite(emb).all(axis=1)] = 0.0
    norms = np.linalg.norm(emb, axis=1, keepdims=True)
    emb = np.divide(emb, norms, out=np.zeros_like(emb), where=norms > 0)
    n = len(ids)
    queries = np.arange(n) if of is None else np.flatnonzero(np.isin(ids, np.asarray(of, dtype=np.int64)))
    if n < 2 or len(queries) == 0:
        return pd.DataFrame(
            {c: pd.Series(dtype="int64" if c != "similarity" else "float64") for c in SIMILAR_COLUMNS}
        )
    k = min(k, n - 1)
    neighbours = np.empty((len(queries), k), dtype=np.int64)
    similarity = np.empty((len(queries), k), dtype=np.float64)
    step = block_rows(n, budget)
    for start in range(0, len(queries), step):
        rows = queries[start : start + step]
        scores = emb[rows] @ emb.T
        scores[np.arange(len(rows)), rows] = -np.inf
        top, vals = _top_k_block(scores, k)
        del scores
        neighbours[start : start + len(rows)], similarity[start : start + len(rows)] = top, vals
    return pd.DataFrame(
        {
            "product_id": np.repeat(ids[queries], k),
            "rank": np.tile(np.arange(1, k + 1), len(queries)),
            "similar_product_id": ids[neighbours].reshape(-1),
            "similarity": similarity.reshape(-1),
        }
    )[SIMILAR_COLUMNS]


def similar_to_macro(embedding_type: str = "FLOAT[]") -> str:
    """``SELECT * FROM similar_to(15970)`` (or ``similar_to(15970, k := 5)``): one product's nearest
    neighbours by cosine similarity of ``product_attributes.embedding``, computed now; agrees with the
    ``similar_products`` table. Fixed-size arrays (``FLOAT[512]``) use ``array_cosine_similarity``,
    lists (``FLOAT[]``) ``list_cosine_similarity``."""
    fixed = re.fullmatch(r"(FLOAT|DOUBLE)\[\d+\]", embedding_type.strip().upper()) is not None
    cosine = "array_cosine_similarity" if fixed else "list_cosine_similarity"
    return f"""
CREATE OR REPLACE MACRO similar_to(pid, k := 10) AS TABLE
SELECT pid AS product_id, row_number() OVER (ORDER BY similarity DESC, similar_product_id) AS rank,
       similar_product_id, similarity
FROM (
    SELECT similar_product_id, round(CASE WHEN isnan(s) OR s IS NULL THEN 0 ELSE s END, 6) AS similarity
    FROM (
        SELECT b.product_id AS similar_product_id, {cosine}(a.embedding, b.embedding) AS s
        FROM product_attributes a JOIN product_attributes b ON b.product_id <> a.product_id
        WHERE a.product_id = pid
    )
    ORDER BY similarity DESC, similar_product_id
    LIMIT k
)
ORDER BY rank
"""
