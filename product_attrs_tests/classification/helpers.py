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


def set_ddp_env(rank: int, world: int, port: int) -> None:
    """The environment torchrun gives each process, for tests that start ranks with multiprocessing."""
    import os

    import torch

    os.environ.update(
        RANK=str(rank),
        WORLD_SIZE=str(world),
        LOCAL_RANK=str(rank),
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
    )
    torch.set_num_threads(1)


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
