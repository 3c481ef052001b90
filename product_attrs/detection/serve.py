"""The detector as it is served: load a version (the champion by default), detect products in batches.

Extraction, recognition, share of shelf and the ONNX export all load the detector here, so they serve
the same version and never import the trainer.

Batching here means: images are decoded by a small thread pool while the model runs on the previous
batch, and each batch goes through the network as one padded tensor. On 2 CPU cores this is worth little
(bench/bench_detection.py: 0.9-1.1x wall, 1.1-1.25x per CPU-second against a plain loop); on a GPU it is
what keeps the device busy.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from PIL import Image
from torchvision.transforms import functional as TF

from product_attrs import decode
from product_attrs.detection.config import PRODUCT_DETECTOR, DetectorConfig
from product_attrs.detection.model import build_detector
from product_attrs.modeling.distributed import DistInfo, resolve_device
from product_attrs.modeling.registry import Registry
from product_attrs.modeling.versions import WEIGHTS, VersionManifest
from product_attrs.modeling.weights import load_weights

DETECTION_COLUMNS = ["image", "label", "category_id", "category_name", "score", "x1", "y1", "x2", "y2"]
ImageLike = str | Path | Image.Image | torch.Tensor


def _to_tensor(img: ImageLike) -> torch.Tensor:
    if isinstance(img, torch.Tensor):
        return img
    if isinstance(img, Image.Image):
        return TF.to_tensor(img.convert("RGB"))
    with decode.open_image(img) as im:  # a regular file, the pixel and time limits
        return TF.to_tensor(decode.to_8bit(im).convert("RGB"))


class Detector:
    """A trained detector with its label map; `detect` returns one row per detection."""

    def __init__(
        self,
        model: torch.nn.Module,
        label_map: list[dict[str, Any]],
        config: DetectorConfig,
        device: str | torch.device = "cpu",
        version: str = "",
    ) -> None:
        self.device = resolve_device(str(device), DistInfo())
        self.model = model.to(self.device).eval()
        self.label_map = label_map
        self.config = config
        self.version = version
        self._by_label = {int(m["label"]): m for m in label_map}

    @classmethod
    def load(cls, version_dir: Path | str, device: str | torch.device = "cpu") -> Detector:
        """Rebuild the network a version folder describes (no pretrained download) and load model.pt."""
        version_dir = Path(version_dir)
        manifest = VersionManifest.read(version_dir)
        cfg = DetectorConfig.from_dict(manifest.config)
        label_map = manifest.info["label_map"]
        model, _ = build_detector(
            replace(cfg, pretrained=False, weights_file=""), len(label_map), allow_download=False
        )
        model.load_state_dict(load_weights(version_dir / WEIGHTS))
        return cls(model, label_map, cfg, device, f"{manifest.name}/{manifest.version}")

    @torch.inference_mode()
    def predict_tensors(self, images: Sequence[torch.Tensor]) -> list[dict[str, torch.Tensor]]:
        """Raw torchvision outputs for already decoded images (one network call)."""
        outs = self.model([i.to(self.device) for i in images])
        return [{k: v.cpu() for k, v in o.items()} for o in outs]

    def iter_batches(
        self, images: Sequence[ImageLike], batch_size: int = 4, decode_threads: int = 2
    ) -> Iterator[tuple[int, list[dict[str, torch.Tensor]]]]:
        """(start index, outputs) per batch; decoding of the next batch overlaps the current one."""
        batches = [images[i : i + batch_size] for i in range(0, len(images), batch_size)]
        if not batches:
            return
        with ThreadPoolExecutor(max(1, decode_threads)) as pool:
            pending = pool.submit(lambda b: list(map(_to_tensor, b)), batches[0])
            for i in range(len(batches)):
                tensors = pending.result()
                if i + 1 < len(batches):
                    pending = pool.submit(lambda b: list(map(_to_tensor, b)), batches[i + 1])
                yield i * batch_size, self.predict_tensors(tensors)

    def detect(
        self,
        images: Sequence[ImageLike],
        batch_size: int = 4,
        score_thresh: float = 0.0,
        decode_threads: int = 2,
    ) -> pd.DataFrame:
        """One row per detection: `image` (the index in `images`), label, category id/name, score, box."""
        rows: list[dict[str, Any]] = []
        for start, outs in self.iter_batches(images, batch_size, decode_threads):
            for j, out in enumerate(outs):
                rows.extend(self._rows(start + j, out, score_thresh))
        return pd.DataFrame(rows, columns=DETECTION_COLUMNS)

    def _rows(self, image: int, out: dict[str, torch.Tensor], score_thresh: float) -> list[dict[str, Any]]:
        rows = []
        for (x1, y1, x2, y2), s, lab in zip(
            out["boxes"].tolist(), out["scores"].tolist(), out["labels"].tolist()
        ):
            if s < score_thresh:
                continue
            m = self._by_label.get(int(lab), {"category_id": -1, "name": f"label_{lab}"})
            rows.append(
                {
                    "image": image,
                    "label": int(lab),
                    "category_id": int(m["category_id"]),
                    "category_name": m["name"],
                    "score": float(s),
                    "x1": x1,
                    "y1": y1,
                    "x2": x2,
                    "y2": y2,
                }
            )
        return rows


def load_champion(
    registry: Registry, name: str = PRODUCT_DETECTOR.name, device: str | torch.device = "cpu"
) -> Detector:
    """The version of the detector every consumer serves (NoChampionError when none is promoted yet)."""
    return Detector.load(registry.champion_dir(name), device)
