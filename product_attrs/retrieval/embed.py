"""Embeddings (and head predictions) for files and for in-memory crops, with the classifier as it is served.

Files go through ``extraction.batch.classify_images`` (decoding in loader workers, an unreadable file
is an error row); crops cut from shelf photos are already decoded and go through the same transform.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from product_attrs.extraction.batch import ClassifierBundle, classify_images, forward_batch


@dataclass
class Embedded:
    """Unit-length embeddings, per-head class index and confidence, and errors by input position."""

    embeddings: np.ndarray
    predictions: dict[str, np.ndarray]
    errors: dict[int, str]

    def labels(self, bundle: ClassifierBundle, head: str) -> list[str | None]:
        names = bundle.label_maps[head]
        return [names[k] if k >= 0 else None for k in self.predictions[head]]


def embed_files(
    bundle: ClassifierBundle, paths: Sequence[str | Path], *, batch_size: int = 64, workers: int = 1,
    device: str = "cpu",
) -> Embedded:
    preds, emb, errors = classify_images(
        bundle, [str(p) for p in paths], batch_size=batch_size, workers=workers, device=device
    )
    return Embedded(emb, preds, errors)


@torch.inference_mode()
def embed_crops(
    bundle: ClassifierBundle, crops: Sequence[Image.Image], *, batch_size: int = 64, device: str = "cpu"
) -> Embedded:
    dev = torch.device(device)
    model = bundle.model.to(dev).eval()
    transform = bundle.transform()
    n = len(crops)
    preds = {h: np.full(n, -1, dtype=np.int64) for h in bundle.heads}
    conf = {h: np.full(n, np.nan, dtype=np.float32) for h in bundle.heads}
    chunks: list[np.ndarray] = []
    for start in range(0, n, batch_size):
        x = torch.stack([transform(c.convert("RGB")) for c in crops[start : start + batch_size]]).to(dev)
        emb, best = forward_batch(model, x, bundle.heads)
        chunks.append(emb)
        for h, (k, c) in best.items():
            preds[h][start : start + len(x)] = k
            conf[h][start : start + len(x)] = c
    dim = bundle.model.neck[0].out_features
    emb = np.concatenate(chunks) if chunks else np.zeros((0, dim), np.float32)
    return Embedded(emb, preds | {f"{h}__confidence": conf[h] for h in bundle.heads}, {})
