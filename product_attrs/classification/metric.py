"""Metric learning on the embedding: an ArcFace (additive angular margin) head and batch-hard triplet loss.

Both shape the neck's output for retrieval by cosine similarity (the embedding L2-normalised), next to
the cross-entropy heads, which stay so that the per-head top-1 can still be reported. Everything here
computes in float32 even under AMP: margins on cosines near +-1 are lost in float16.

ArcFace (Deng et al. 2019): logits are s * cos(theta_j) with theta_j the angle between the normalised
embedding and the normalised weight of class j; the target class gets s * cos(theta_y + m) instead.
cos(theta + m) is not monotonic once theta + m > pi, so past theta = pi - m the usual fallback
cos(theta) - m sin(m) keeps the target logit decreasing in theta (or, with `easy_margin`, the margin is
only applied where cos(theta) > 0).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from product_attrs.classification.config import TRIPLET_DISTANCES

IGNORE_INDEX = -100  # data.IGNORE_INDEX (not imported: data.py pulls in torchvision and PIL)
# sin(theta)^2 is clamped above this, so d sin / d cos stays finite at theta = 0 and pi (where it is 0).
_SIN2_EPS = 1e-6


@dataclass(frozen=True)
class ArcFaceSpec:
    """What an ArcMargin head needs; recorded in the version manifest so that serving rebuilds it."""

    column: str
    n_classes: int
    margin: float
    scale: float
    easy_margin: bool = False


class ArcMarginHead(nn.Module):
    """Additive angular margin logits over L2-normalised embeddings and L2-normalised class weights.

    Only used for the training loss: at inference the embedding (`model.embed`) is what is matched.
    """

    def __init__(
        self, in_features: int, n_classes: int, margin: float, scale: float, easy_margin: bool = False
    ) -> None:
        super().__init__()
        self.in_features, self.n_classes = in_features, n_classes
        self.margin, self.scale, self.easy_margin = float(margin), float(scale), bool(easy_margin)
        self.weight = nn.Parameter(torch.empty(n_classes, in_features))
        nn.init.xavier_uniform_(self.weight)
        self.cos_m, self.sin_m = math.cos(margin), math.sin(margin)
        self.threshold = math.cos(math.pi - margin)  # beyond it theta + m > pi
        self.mm = math.sin(math.pi - margin) * margin

    def cosine(self, emb: torch.Tensor) -> torch.Tensor:
        """cos(theta) between each embedding and each class weight, (rows, classes), float32."""
        with torch.autocast(device_type=emb.device.type, enabled=False):
            return F.linear(F.normalize(emb.float(), dim=1), F.normalize(self.weight.float(), dim=1))

    def forward(self, emb: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Scaled logits with the margin on each row's target class (rows labelled IGNORE_INDEX get none)."""
        cos = self.cosine(emb)
        with torch.autocast(device_type=emb.device.type, enabled=False):
            sin = torch.sqrt((1.0 - cos * cos).clamp(min=_SIN2_EPS))
            phi = cos * self.cos_m - sin * self.sin_m  # cos(theta + m)
            if self.easy_margin:
                phi = torch.where(cos > 0, phi, cos)
            else:
                phi = torch.where(cos > self.threshold, phi, cos - self.mm)
            valid = targets != IGNORE_INDEX
            one_hot = F.one_hot(targets.clamp(min=0), self.n_classes).bool() & valid[:, None]
            return torch.where(one_hot, phi, cos) * self.scale

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, n_classes={self.n_classes}, margin={self.margin}, "
            f"scale={self.scale}, easy_margin={self.easy_margin}"
        )


def arcface_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of ArcMargin logits; 0 (with a gradient) when no row of the batch is labelled."""
    if bool((targets != IGNORE_INDEX).any()):
        return F.cross_entropy(logits.float(), targets, ignore_index=IGNORE_INDEX)
    return logits.sum() * 0.0


def pairwise_distance(emb: torch.Tensor, distance: str = "cosine") -> torch.Tensor:
    """Distances between L2-normalised rows: 1 - cos (in [0, 2]) or Euclidean sqrt(2 - 2 cos) (in [0, 2])."""
    if distance not in TRIPLET_DISTANCES:
        raise ValueError(f"unknown distance {distance!r}; choose one of: {', '.join(TRIPLET_DISTANCES)}")
    with torch.autocast(device_type=emb.device.type, enabled=False):
        unit = F.normalize(emb.float(), dim=1)
        cos = unit @ unit.T
        if distance == "cosine":
            return 1.0 - cos
        # clamp: zero gradient (not infinite) for identical rows, e.g. an anchor with itself.
        return (2.0 - 2.0 * cos).clamp(min=1e-12).sqrt()


def batch_hard_triplet_loss(
    emb: torch.Tensor, labels: torch.Tensor, margin: float = 0.2, distance: str = "cosine"
) -> torch.Tensor:
    """Batch-hard triplet loss (Hermans et al. 2017) on the L2-normalised embedding.

    For every anchor: the farthest row of its class and the nearest row of another class;
    loss = mean(relu(d_pos - d_neg + margin)) over anchors that have both. Rows labelled IGNORE_INDEX
    are neither anchors nor candidates. With no valid anchor the loss is 0 with a gradient (DDP needs it).
    """
    d = pairwise_distance(emb, distance)
    labels = labels.to(d.device)
    valid = labels != IGNORE_INDEX
    same = labels[:, None] == labels[None, :]
    pair_ok = valid[:, None] & valid[None, :]
    eye = torch.eye(len(labels), dtype=torch.bool, device=d.device)
    pos = same & pair_ok & ~eye
    neg = ~same & pair_ok
    hardest_pos = torch.where(pos, d, torch.full_like(d, -math.inf)).max(dim=1).values
    hardest_neg = torch.where(neg, d, torch.full_like(d, math.inf)).min(dim=1).values
    anchors = pos.any(dim=1) & neg.any(dim=1)
    if not bool(anchors.any()):
        return d.sum() * 0.0
    return F.relu(hardest_pos[anchors] - hardest_neg[anchors] + margin).mean()


@dataclass(frozen=True)
class MetricLoss:
    """The metric loss of a training run: which loss, on which label column (its index in the targets)."""

    kind: str  # "arcface" or "triplet"
    target_index: int
    weight: float = 1.0
    triplet_margin: float = 0.2
    triplet_distance: str = "cosine"

    def __call__(
        self, emb: torch.Tensor, metric_logits: torch.Tensor | None, targets: torch.Tensor
    ) -> torch.Tensor:
        """The unweighted metric loss of a batch; `targets` are all heads' labels (rows, heads)."""
        y = targets[:, self.target_index]
        if self.kind == "arcface":
            if metric_logits is None:
                raise ValueError("metric loss 'arcface' needs a model with a metric_head")
            return arcface_loss(metric_logits, y)
        return batch_hard_triplet_loss(emb, y, self.triplet_margin, self.triplet_distance)
