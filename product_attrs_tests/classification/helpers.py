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


def set_ddp_env(rank: int, world: int, port: int) -> None:
    """The environment torchrun gives each process, for tests that start ranks with multiprocessing."""
    import os

    import torch

    os.environ.update(
        RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port)
    )
    torch.set_num_threads(1)
