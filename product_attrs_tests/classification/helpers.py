"""Small settings shared by the classification tests: the fastest configuration that still learns."""

from __future__ import annotations

from product_attrs.classification.config import TrainConfig, resolve_config

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
}


def fast_config(**overrides) -> TrainConfig:
    return resolve_config(TrainConfig, "demo", {**FAST, **overrides})
