"""The classifier's training loss: the weighted cross-entropy of every head, missing labels ignored."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from product_attrs.classification.config import HeadSpec
from product_attrs.classification.metric import IGNORE_INDEX


def multitask_loss(
    logits: dict[str, torch.Tensor],
    targets: torch.Tensor,
    heads: list[HeadSpec],
    label_smoothing: float = 0.0,
    logit_offsets: dict[str, torch.Tensor] | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """sum_h weight_h * CE_h, ignoring missing labels; with `logit_offsets` (tau * log prior per head) the
    logit-adjusted cross-entropy, which trains the plain logits to be balanced across classes.

    A head with no labelled row in the batch contributes 0 * logits, not NaN, so every parameter still
    gets a gradient (DDP requires it) and the total stays finite.
    """
    total = logits[heads[0].column].new_zeros(())
    parts: dict[str, torch.Tensor] = {}
    for j, h in enumerate(heads):
        out, y = logits[h.column].float(), targets[:, j]
        if logit_offsets is not None:
            out = out + logit_offsets[h.column]
        if bool((y != IGNORE_INDEX).any()):
            loss = F.cross_entropy(out, y, ignore_index=IGNORE_INDEX, label_smoothing=label_smoothing)
        else:
            loss = out.sum() * 0.0
        parts[h.column] = loss.detach()
        total = total + h.weight * loss
    return total, parts
