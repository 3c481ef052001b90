"""Share of shelf for the analysts: the champion detector over the shelf photos, per image and per class."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from product_attrs.detection.dataset import read_detection_dataset
from product_attrs.detection.shelf import shelf_share, shelf_summary
from product_attrs.extraction.models import DETECTOR, champion_dir


def shelf_tables(
    detection_out_dir: Path, models_dir: Path, tracking_uri: str, score_thresh: float = 0.5, batch_size: int = 4
) -> tuple[pd.DataFrame, pd.DataFrame, str]:
    """(per image and class, per class summary, detector version) for every shelf photo of the dataset."""
    from product_attrs.detection.inference import Detector

    version_dir, how = champion_dir(tracking_uri, models_dir, DETECTOR)
    if version_dir is None:
        raise FileNotFoundError(f"no product_detector version to count shelves with ({how})")
    data = read_detection_dataset(detection_out_dir)
    images = data.images.reset_index(drop=True)
    detector = Detector.from_version_dir(version_dir)
    detections = detector.detect(images["file_path"].tolist(), batch_size=batch_size, score_thresh=score_thresh)
    shares = shelf_share(detections, score_thresh=score_thresh, label_map=data.label_map)
    shares = shares.merge(
        images[["image_id", "file_name", "split"]].rename_axis("image").reset_index(), on="image", how="left"
    ).drop(columns="image")
    front = ["image_id", "file_name", "split"]
    shares = shares[front + [c for c in shares.columns if c not in front]]
    return shares, shelf_summary(shares.rename(columns={"image_id": "image"})), f"{DETECTOR}/{version_dir.name}"
