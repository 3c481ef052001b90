"""Which predictions a label would teach the model most: the review queue's ranking (pure numpy).

The score is the *margin* between the two most probable classes, turned around so that higher means more
uncertain, plus a fixed bonus when the image and the text model disagree:

    score = (1 - (p_top1 - p_top2)) + DISAGREEMENT_BONUS * [image top-1 != text top-1]

Why the margin and not the entropy or the top-1 probability: with ~140 article types the entropy is
dominated by the long tail of tiny probabilities (a confident prediction over many rare classes looks
"uncertain"), and the top-1 probability alone cannot tell "two plausible classes" (a label decides it)
from "mass spread everywhere" (often an odd image a label helps little). The margin looks exactly at the
decision a label can flip; margin sampling is the strong simple baseline of pool-based active learning
(Scheffer et al. 2001; Settles 2009, section 3.1). A disagreement between two models that see different
evidence (pixels, product name) marks a row where at least one is wrong whatever their confidences, so it
outranks every row where they agree with the same margin. Scores are in [0, 1 + DISAGREEMENT_BONUS].
"""

from __future__ import annotations

import numpy as np

#: Added to the score when the image and text models name different classes.
DISAGREEMENT_BONUS = 0.5
#: A row joins the review queue when its top-1 probability is under this ...
LOW_CONFIDENCE = 0.5
#: ... or its top-1 / top-2 margin is under this, or the two models disagree.
SMALL_MARGIN = 0.2


def top2(probs: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(top-1 index, top-1 probability, top-2 index, top-2 probability) per row of a (rows, classes)
    probability matrix; a single-class matrix has top-2 index -1 and probability 0."""
    probs = np.asarray(probs, dtype=np.float64)
    n, k = probs.shape
    if k == 1:
        return np.zeros(n, np.int64), probs[:, 0], np.full(n, -1, np.int64), np.zeros(n)
    part = np.argpartition(-probs, 1, axis=1)[:, :2]
    vals = np.take_along_axis(probs, part, axis=1)
    order = np.argsort(-vals, axis=1, kind="stable")
    idx, vals = np.take_along_axis(part, order, axis=1), np.take_along_axis(vals, order, axis=1)
    return idx[:, 0], vals[:, 0], idx[:, 1], vals[:, 1]


def uncertainty_score(
    confidence: np.ndarray, second: np.ndarray, disagree: np.ndarray | None = None
) -> np.ndarray:
    """The ranking score from top-1 and top-2 probabilities (and an optional image/text disagreement
    flag); NaN confidences (no prediction) score 0, so they never outrank a real prediction."""
    p1 = np.nan_to_num(np.asarray(confidence, dtype=np.float64), nan=1.0)
    p2 = np.nan_to_num(np.asarray(second, dtype=np.float64), nan=0.0)
    score = 1.0 - np.clip(p1 - p2, 0.0, 1.0)
    if disagree is not None:
        score = score + DISAGREEMENT_BONUS * np.asarray(disagree, dtype=bool)
    return score


def reasons(confidence: np.ndarray, margin: np.ndarray, disagree: np.ndarray | None = None) -> list[str]:
    """Why each row is uncertain ('low_confidence', 'small_margin', 'models_disagree', comma-joined; ''
    for a row that is none of them)."""
    conf = np.nan_to_num(np.asarray(confidence, dtype=np.float64), nan=1.0)
    marg = np.nan_to_num(np.asarray(margin, dtype=np.float64), nan=1.0)
    dis = np.zeros(len(conf), bool) if disagree is None else np.asarray(disagree, dtype=bool)
    out = []
    for c, m, d in zip(conf, marg, dis, strict=True):
        why = [
            name
            for name, hit in (("low_confidence", c < LOW_CONFIDENCE), ("small_margin", m < SMALL_MARGIN))
            if hit
        ]
        out.append(",".join([*why, *(["models_disagree"] if d else [])]))
    return out


def rank(scores: np.ndarray, k: int) -> np.ndarray:
    """Positions of the k highest scores, highest first (ties: lower position first)."""
    scores = np.asarray(scores, dtype=np.float64)
    order = np.lexsort((np.arange(len(scores)), -scores))
    return order[: max(0, int(k))]
