"""Small settings shared by the classification tests: the fastest configuration that still learns."""

from __future__ import annotations

from product_attrs.classification.config import PROFILES, TrainConfig
from product_attrs.modeling.config import resolve

#: Offline-pretrained EfficientNet-Lite0, all but its last stage frozen, 32 px: learns the fixture in seconds.
FAST = {
    "backbone": "efficientnet_lite0",
    "pretrained": "auto",
    "freeze_stages": 8,
    "image_size": 32,
    "batch_size": 16,
    "phase1_epochs": 3,
    "phase1_lr": 0.1,
    "phase2_epochs": 1,
    "phase2_lr": 0.05,
    "embedding_dim": 64,
    "num_workers": 0,
    "eval_every": 1,
}


def fast_config(**overrides) -> TrainConfig:
    return resolve(TrainConfig, PROFILES, "demo", None, {**FAST, **overrides})


def write_classifier_version(
    models_dir,
    name: str,
    labels: dict[str, list[str]],
    *,
    backbone: str = "resnet18",
    embedding_dim: int = 16,
    image_size: int = 32,
    seed: int = 0,
    champion: bool = True,
    metrics: dict | None = None,
):
    """A randomly initialised classifier committed as a version of `name` (through the version store), with
    the manifest info `classification.serve.Classifier.load` reads."""
    import torch

    from product_attrs.classification.model import MultiTaskClassifier, normalization
    from product_attrs_tests.modeling.helpers import commit_version

    torch.manual_seed(seed)
    model = MultiTaskClassifier(
        backbone, {k: len(v) for k, v in labels.items()}, embedding_dim=embedding_dim
    ).eval()
    mean, std = normalization(backbone)
    info = {
        "heads": [{"column": c, "weight": 1.0} for c in labels],
        "label_maps": labels,
        "backbone": backbone,
        "embedding_dim": embedding_dim,
        "image_size": image_size,
        "normalization": {"mean": list(mean), "std": list(std)},
        "metric": {"head": None},
    }
    return commit_version(
        models_dir,
        name,
        "classification",
        model,
        config={"seed": seed},
        info=info,
        metrics=metrics or {"test_top1": 0.5},
        champion=champion,
    )


def grocery_catalog_from(tiny_catalog, out, data_version: str, gallery: bool = False):
    """The tiny catalog's images relabelled as a grocery catalog: fine_label (colour+shape), coarse_label
    (shape), subset all; with `gallery`, a gallery.parquet of one image per product, as grocery ingestion
    writes it."""
    import json

    import pandas as pd

    frame = pd.read_parquet(tiny_catalog / "splits.parquet")
    frame = frame.rename(columns={"article_type": "fine_label", "master_category": "coarse_label"})
    frame["subset"] = pd.Series(["all"] * len(frame), dtype="string")
    out.mkdir(parents=True, exist_ok=True)
    frame.to_parquet(out / "splits.parquet", index=False)
    maps = {c: sorted(frame[c].dropna().unique().tolist()) for c in ("fine_label", "coarse_label")}
    (out / "label_maps.json").write_text(json.dumps(maps))
    (out / "data_version.txt").write_text(f"{data_version}\n")
    if gallery:
        images = frame.drop_duplicates("fine_label")[["fine_label", "coarse_label", "image_path"]]
        images.assign(product_id=range(len(images))).to_parquet(out / "gallery.parquet", index=False)
    return out
