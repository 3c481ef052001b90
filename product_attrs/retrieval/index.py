"""Exact cosine search over a gallery of L2-normalised embeddings.

A catalog gallery holds thousands to a few hundred thousand images, so an exact search is one matrix
product per block of queries followed by a partial selection (``torch.topk``): no approximate index to build,
tune or keep in sync, and results are reproducible. Scores of several images of one product are pooled
by their maximum, so a product with more gallery images does not take more of the top k.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from product_attrs.io import write_json, write_parquet

#: Cap on the (queries x gallery) score block held in memory at once, in float32 values.
_BLOCK_VALUES = 32_000_000  # pragma: no mutate - a memory cap: any size gives the same answers


class GalleryError(ValueError):
    """A gallery that cannot be searched (empty, wrong shape, not normalised); the message says which."""


#: Floor of a norm, so that a zero vector stays zero instead of dividing by zero.
_TINY = 1e-12  # pragma: no mutate - any tiny floor gives the same unit vectors and the same zeros


def l2_normalize(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norms, _TINY)


@dataclass
class SearchResult:
    """Per query, the k best products (best first): gallery product keys and cosine similarities."""

    products: np.ndarray  # (queries, k) object array of product keys
    scores: np.ndarray  # (queries, k) float32
    rows: np.ndarray  # (queries, k) int64: the gallery row that gave each product its score


@dataclass
class GalleryIndex:
    """Embeddings (rows, dim), unit length, and a table with one row per embedding (``product_key`` first)."""

    embeddings: np.ndarray
    items: pd.DataFrame
    key: str = "product_id"
    info: dict = field(default_factory=dict)  # what gallery.json says beyond the shape (model, source)

    def __post_init__(self) -> None:
        emb = np.asarray(self.embeddings, dtype=np.float32)  # pragma: no mutate - l2_normalize casts below
        if emb.ndim != 2 or len(emb) == 0:
            raise GalleryError(f"a gallery needs a (rows, dim) matrix with rows > 0, got shape {emb.shape}")
        if len(emb) != len(self.items):
            raise GalleryError(f"{len(emb)} embeddings but {len(self.items)} gallery rows")
        if self.key not in self.items.columns:
            raise GalleryError(f"gallery rows have no {self.key!r} column: {list(self.items.columns)}")
        if not np.isfinite(emb).all():
            raise GalleryError("gallery embeddings contain NaN or infinite values")
        self.embeddings = l2_normalize(emb)
        self.items = self.items.reset_index(drop=True)
        keys = self.items[self.key].to_numpy(dtype=object)  # pragma: no mutate - products are object below
        # Products in first-seen order; rows grouped by product for max-pooling with reduceat.
        self.products, inverse = _unique_in_order(keys)
        self._order = np.argsort(inverse, kind="stable")
        sorted_inverse = inverse[self._order]
        self._starts = np.flatnonzero(np.r_[True, sorted_inverse[1:] != sorted_inverse[:-1]])
        # A fast path only: the general one gives the same answers.
        self._one_row_per_product = len(self.products) == len(keys)  # pragma: no mutate
        # Rows grouped by product, as a tensor once: every search multiplies by it.
        # pragma: no mutate start - the fast path's flag again: the general path gives the same rows
        grouped = self.embeddings if self._one_row_per_product else self.embeddings[self._order]
        # pragma: no mutate end
        self._grouped = torch.from_numpy(np.ascontiguousarray(grouped))

    @property
    def dim(self) -> int:
        return int(self.embeddings.shape[1])

    def __len__(self) -> int:
        return len(self.embeddings)

    def search(self, queries: np.ndarray, k: int = 5) -> SearchResult:
        """The k most similar products of each query (cosine), best first."""
        q = np.asarray(queries, dtype=np.float32)  # pragma: no mutate - l2_normalize makes float32 below
        if q.ndim != 2 or q.shape[1] != self.dim:
            raise GalleryError(f"queries must be (n, {self.dim}), got shape {q.shape}")
        q = l2_normalize(q)
        n_products = len(self.products)
        k = max(1, min(int(k), n_products))
        out_rows = np.zeros((len(q), k), dtype=np.int64)
        out_scores = np.zeros((len(q), k), dtype=np.float32)
        out_products = np.zeros((len(q), k), dtype=np.int64)
        # Queries per block: its size changes the memory held, not the answers.
        block = max(1, _BLOCK_VALUES // max(len(self.embeddings), 1))  # pragma: no mutate - memory only
        gallery = self._grouped
        for start in range(0, len(q), block):  # pragma: no mutate - a step of 1 re-scores: same answers
            scores = torch.from_numpy(q[start : start + block]) @ gallery.T  # (b, rows)
            if self._one_row_per_product:
                pooled = scores
            else:
                pooled = torch.from_numpy(np.maximum.reduceat(scores.numpy(), self._starts, axis=1))
            # torch.topk: a partial selection ~15x faster than numpy's argpartition on 100k columns.
            top_scores, top = torch.topk(pooled, k, dim=1)  # pragma: no mutate - dim 1 is the last of two
            top = top.numpy()
            end = start + len(top)
            out_products[start:end] = top
            out_scores[start:end] = top_scores.numpy()
            if self._one_row_per_product:  # pragma: no mutate - a fast path: _best_rows gives the same rows
                out_rows[start:end] = top
            else:
                out_rows[start:end] = self._best_rows(scores.numpy(), top)
        return SearchResult(self.products[out_products], out_scores, out_rows)

    def _best_rows(self, scores: np.ndarray, top_products: np.ndarray) -> np.ndarray:
        """For each (query, product) pair, the gallery row (original numbering) with the pooled score."""
        ends = np.r_[self._starts[1:], scores.shape[1]]
        rows = np.zeros_like(top_products)
        for i in range(top_products.shape[0]):
            for j, p in enumerate(top_products[i]):
                s, e = self._starts[p], ends[p]
                rows[i, j] = self._order[s + int(np.argmax(scores[i, s:e]))]
        return rows

    # ---- on disk ----------------------------------------------------------------------------------------

    def save(self, folder: Path, info: dict | None = None) -> None:
        """``gallery.parquet`` (rows), ``gallery_embeddings.npy`` and ``gallery.json`` (model, dim, rows)."""
        folder.mkdir(parents=True, exist_ok=True)
        write_parquet(self.items, folder / "gallery.parquet")
        tmp = folder / ".gallery_embeddings.npy.tmp"  # pragma: no mutate - a scratch name, renamed at once
        with open(tmp, "wb") as handle:
            np.save(handle, self.embeddings)
        tmp.replace(folder / "gallery_embeddings.npy")
        write_json(
            {
                **(info or {}),
                "key": self.key,
                "rows": len(self),
                "dim": self.dim,
                "products": len(self.products),
            },
            folder / "gallery.json",
        )

    @classmethod
    def load(cls, folder: Path) -> GalleryIndex:
        info_path = folder / "gallery.json"
        if not info_path.exists():
            raise FileNotFoundError(
                f"no gallery index in {folder}: materialize the `gallery_index` asset first"
            )
        info = json.loads(info_path.read_text())
        return cls(
            np.load(folder / "gallery_embeddings.npy"),
            pd.read_parquet(folder / "gallery.parquet"),
            key=info.get("key", "product_id"),
            info=info,
        )


def _unique_in_order(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    index: dict[object, int] = {}
    # pragma: no mutate start - count only preallocates, and int64 is what numpy infers
    inverse = np.fromiter((index.setdefault(k, len(index)) for k in keys), dtype=np.int64, count=len(keys))
    # pragma: no mutate end
    products = np.empty(len(index), dtype=object)
    for k, i in index.items():
        products[i] = k
    return products, inverse


def search_baseline(gallery: np.ndarray, queries: np.ndarray, k: int = 5) -> np.ndarray:
    """The simple way, for the benchmark: one query at a time, a full argsort of every score."""
    out = np.zeros((len(queries), k), dtype=np.int64)
    for i, q in enumerate(queries):
        out[i] = np.argsort(-(gallery @ q))[:k]
    return out
