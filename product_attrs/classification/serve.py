"""The classifier as it is served: load a version (the champion by default), predict batches of images.

Extraction, the gallery, recognition and the text fusion all go through here, so they read a version
the same way and never import the trainer. Files are decoded in loader workers while the network runs
whole batches under `inference_mode` (channels_last; AMP on CUDA); an unreadable file becomes an error
for its row, never a crashed batch.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from product_attrs import decode
from product_attrs.catalog.clean import to_rgb
from product_attrs.classification.config import ATTRIBUTE_CLASSIFIER
from product_attrs.classification.data import build_transform
from product_attrs.classification.metric import ArcFaceSpec
from product_attrs.classification.model import MultiTaskClassifier
from product_attrs.modeling.distributed import DistInfo, resolve_device
from product_attrs.modeling.registry import Registry
from product_attrs.modeling.versions import WEIGHTS, VersionManifest
from product_attrs.modeling.weights import load_weights

Transform = Callable[[Image.Image], torch.Tensor]


@dataclass
class Served:
    """Per input: unit-length embedding, per-head class index (-1 if unreadable) and confidence; errors by
    input position."""

    embeddings: np.ndarray
    # head -> class index; f"{head}__confidence" -> max probability; where the runner-up was computed,
    # f"{head}__second" -> its class index (-1 if none) and f"{head}__second_confidence" -> its probability
    predictions: dict[str, np.ndarray]
    errors: dict[int, str]


@dataclass(frozen=True)
class Classifier:
    """A loaded classifier version with what is needed to feed it and read its outputs."""

    model: MultiTaskClassifier
    manifest: VersionManifest
    version_dir: Path
    device: torch.device

    @classmethod
    def load(cls, version_dir: Path | str, device: str = "auto") -> Classifier:
        """Rebuild the network a version folder describes (no pretrained download) and load its weights."""
        version_dir = Path(version_dir)
        manifest = VersionManifest.read(version_dir)
        info = manifest.info
        heads = {h["column"]: len(info["label_maps"][h["column"]]) for h in info["heads"]}
        head = (info.get("metric") or {}).get("head")
        arcface = ArcFaceSpec(**head) if head else None  # rebuilt so that model.pt loads strictly
        model = MultiTaskClassifier(info["backbone"], heads, info["embedding_dim"], arcface=arcface)
        model.load_state_dict(load_weights(version_dir / WEIGHTS))
        dev = resolve_device(device, DistInfo())
        # channels_last helps oneDNN on CPU too (measured ~14% at 64 px), not only cuDNN.
        return cls(model.to(dev).eval().to(memory_format=torch.channels_last), manifest, version_dir, dev)

    @property
    def heads(self) -> list[str]:
        return [h["column"] for h in self.manifest.info["heads"]]

    @property
    def label_maps(self) -> dict[str, list[str]]:
        return self.manifest.info["label_maps"]

    @property
    def version(self) -> str:
        return f"{self.manifest.name}/{self.manifest.version}"

    def transform(self) -> Transform:
        info = self.manifest.info
        size = int(info["image_size"])
        return build_transform(
            (int(info.get("image_height") or size), size),
            train=False,
            mean=tuple(info["normalization"]["mean"]),
            std=tuple(info["normalization"]["std"]),
        )

    def labels(self, served: Served, head: str) -> list[str | None]:
        names = self.label_maps[head]
        return [names[k] if k >= 0 else None for k in served.predictions[head]]

    def labels_of(self, head: str, indices: np.ndarray) -> list[str | None]:
        names = self.label_maps[head]
        return [names[k] if k >= 0 else None for k in indices]

    def forward(self, x: torch.Tensor) -> tuple[np.ndarray, dict[str, tuple[np.ndarray, np.ndarray]]]:
        """One batch: L2-normalised embeddings and, per head, (class index, confidence)."""
        emb, best = self.forward_top2(x)
        return emb, {h: (k, c) for h, (k, c, _, _) in best.items()}

    @torch.inference_mode()
    def forward_top2(
        self, x: torch.Tensor
    ) -> tuple[np.ndarray, dict[str, tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]]:
        """One batch: embeddings and, per head, (class, confidence, runner-up class, its probability): the
        margin between the two is what the review queue ranks by."""
        x = x.to(self.device, non_blocking=True).to(memory_format=torch.channels_last)
        amp = (
            torch.autocast("cuda", dtype=torch.float16)
            if self.device.type == "cuda"
            else contextlib.nullcontext()
        )
        with amp:
            emb, logits = self.model.forward_all(x)
        best = {}
        for h in self.heads:
            probs = torch.softmax(logits[h].float(), dim=1)
            if probs.shape[1] > 1:
                conf, k = probs.topk(2, dim=1)
                best[h] = tuple(t.cpu().numpy() for t in (k[:, 0], conf[:, 0], k[:, 1], conf[:, 1]))
            else:
                conf, k = probs.max(dim=1)
                n = len(k)
                best[h] = (k.cpu().numpy(), conf.cpu().numpy(), np.full(n, -1), np.zeros(n, np.float32))
        return torch.nn.functional.normalize(emb.float(), dim=1).cpu().numpy(), best

    def _empty(self, n: int) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        return (
            {h: np.full(n, -1, dtype=np.int64) for h in self.heads},
            {h: np.full(n, np.nan, dtype=np.float32) for h in self.heads},
        )

    def predict_files(
        self, paths: Sequence[str | Path], *, batch_size: int = 128, workers: int = 1
    ) -> Served:
        """Every file, decoded in `workers` loader processes; unreadable files are errors by position."""
        loader = DataLoader(
            _Files([str(p) for p in paths], self.transform()),
            batch_size=batch_size,
            num_workers=workers,
            collate_fn=_collate,
            pin_memory=self.device.type == "cuda",
        )
        n = len(paths)
        pred, conf = self._empty(n)
        second, second_conf = self._empty(n)
        embeddings = np.zeros((n, self.model.neck[0].out_features), dtype=np.float32)
        errors: dict[int, str] = {}
        for idx, images, errs in loader:
            errors.update(dict(errs))
            if len(idx):
                rows = idx.numpy()
                embeddings[rows], best = self.forward_top2(images)
                for h, (k, c, k2, c2) in best.items():
                    pred[h][rows], conf[h][rows] = k, c
                    second[h][rows], second_conf[h][rows] = k2, c2
        return Served(embeddings, self._predictions(pred, conf, second, second_conf), errors)

    def _predictions(self, pred, conf, second, second_conf) -> dict[str, np.ndarray]:
        return (
            pred
            | {f"{h}__confidence": conf[h] for h in self.heads}
            | {f"{h}__second": second[h] for h in self.heads}
            | {f"{h}__second_confidence": second_conf[h] for h in self.heads}
        )

    def predict_images(self, images: Sequence[Image.Image], *, batch_size: int = 64) -> Served:
        """Already decoded images (crops cut from shelf photos), through the same transform."""
        transform, n = self.transform(), len(images)
        pred, conf = self._empty(n)
        second, second_conf = self._empty(n)
        embeddings = np.zeros((n, self.model.neck[0].out_features), dtype=np.float32)
        for start in range(0, n, batch_size):
            x = torch.stack([transform(im.convert("RGB")) for im in images[start : start + batch_size]])
            rows = slice(start, start + len(x))
            embeddings[rows], best = self.forward_top2(x)
            for h, (k, c, k2, c2) in best.items():
                pred[h][rows], conf[h][rows] = k, c
                second[h][rows], second_conf[h][rows] = k2, c2
        return Served(embeddings, self._predictions(pred, conf, second, second_conf), {})

    def predict_one_by_one(self, paths: Sequence[str]) -> int:
        """The benchmark's floor: one image at a time, decoded in this process."""
        transform = self.transform()
        for p in paths:
            with decode.open_image(p) as img:
                self.forward(transform(to_rgb(img)).unsqueeze(0))
        return len(paths)


class _Files(Dataset):
    """(index, tensor or None, error or None): a broken file is reported, not raised, so a batch survives."""

    def __init__(self, paths: list[str], transform: Transform) -> None:
        self.paths, self.transform = paths, transform

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[int, torch.Tensor | None, str | None]:
        return (i, *decode_file(self.paths[i], self.transform))


def decode_file(path: str, transform: Transform) -> tuple[torch.Tensor | None, str | None]:
    """(tensor, None) or (None, error): every engine decodes here, so a broken file gets the same reason."""
    try:
        with decode.open_image(path) as img:  # never blocks on a FIFO, never decodes a bomb
            return transform(to_rgb(img)), None
    except Exception as exc:  # noqa: BLE001 - recorded per image
        return None, f"{type(exc).__name__}: {exc}"[:300]


def _collate(batch: list[tuple[int, torch.Tensor | None, str | None]]):
    good = [(i, x) for i, x, _ in batch if x is not None]
    errors = [(i, e) for i, x, e in batch if x is None]
    idx = torch.tensor([i for i, _ in good], dtype=torch.long)
    return idx, (torch.stack([x for _, x in good]) if good else torch.empty(0)), errors


def load_champion(
    registry: Registry, name: str = ATTRIBUTE_CLASSIFIER.name, device: str = "auto"
) -> Classifier:
    """The version of `name` every consumer serves (NoChampionError when none is promoted yet)."""
    return Classifier.load(registry.champion_dir(name), device)
