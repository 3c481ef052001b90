"""Metric learning for retrieval: the ArcMargin head, batch-hard triplets, class-balanced batches, their
settings, and the evaluation of a catalog without a top-k / rest split."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from product_attrs.classification.config import PROFILES, ConfigError, TrainConfig
from product_attrs.classification.data import IGNORE_INDEX, ClassBalancedBatchSampler
from product_attrs.classification.evaluate import evaluate_model, majority_rate
from product_attrs.classification.metric import ArcMarginHead, batch_hard_triplet_loss
from product_attrs.classification.train import build_parser
from product_attrs.modeling.config import from_args, resolve

GROCERY_HEADS = "fine_label:1.0,coarse_label:0.5"


# ---- ArcMargin head --------------------------------------------------------------------------------------


def _arc_head(margin: float = 0.3, scale: float = 16.0, easy_margin: bool = False) -> ArcMarginHead:
    """Two classes along the axes of the plane, so an embedding at angle t is t away from class 0."""
    head = ArcMarginHead(2, 2, margin, scale, easy_margin)
    with torch.no_grad():
        head.weight.copy_(torch.tensor([[3.0, 0.0], [0.0, 0.5]]))  # norms must not matter
    return head


def _at(theta: float, norm: float = 2.0) -> torch.Tensor:
    return torch.tensor([[math.cos(theta), math.sin(theta)]], dtype=torch.float64).float() * norm


@pytest.mark.parametrize("theta", [0.2, 0.6, 1.2])
def test_arc_margin_lowers_the_target_logit_by_the_angular_margin(theta):
    m, s = 0.3, 16.0
    logits = _arc_head(m, s)(_at(theta), torch.tensor([0]))
    assert logits[0, 0].item() == pytest.approx(s * math.cos(theta + m), abs=1e-4)
    assert logits[0, 1].item() == pytest.approx(s * math.sin(theta), abs=1e-4)  # non-target: plain s cos
    plain = _arc_head(m, s)(_at(theta), torch.tensor([IGNORE_INDEX]))  # no label: no margin anywhere
    assert plain[0, 0].item() - logits[0, 0].item() == pytest.approx(
        s * (math.cos(theta) - math.cos(theta + m)), abs=1e-4
    )


def test_arc_margin_past_pi_minus_m_falls_back_and_easy_margin_skips_obtuse_angles():
    m, s = 0.5, 10.0
    theta = math.pi - 0.2  # theta + m > pi: cos(theta + m) would rise again
    logits = _arc_head(m, s)(_at(theta), torch.tensor([0]))
    assert logits[0, 0].item() == pytest.approx(s * (math.cos(theta) - m * math.sin(m)), abs=1e-4)
    easy = _arc_head(m, s, easy_margin=True)(_at(2.0), torch.tensor([0]))
    assert easy[0, 0].item() == pytest.approx(s * math.cos(2.0), abs=1e-4)


@pytest.mark.parametrize("theta", [0.0, 1e-4, math.pi - 1e-4, math.pi])
def test_arc_margin_gradients_are_finite_at_the_poles(theta):
    head = _arc_head(0.5, 30.0)
    emb = _at(theta).requires_grad_(True)
    loss = F.cross_entropy(head(emb, torch.tensor([0])), torch.tensor([0]))
    loss.backward()
    assert torch.isfinite(loss)
    assert torch.isfinite(emb.grad).all() and torch.isfinite(head.weight.grad).all()


# ---- batch-hard triplet loss -----------------------------------------------------------------------------


def _ring(angles: list[float], scale: float = 3.0) -> torch.Tensor:
    a = torch.tensor(angles, dtype=torch.float64)
    return (torch.stack([a.cos(), a.sin()], dim=1) * scale).float()


@pytest.mark.parametrize("distance", ["cosine", "euclidean"])
def test_batch_hard_triplet_loss_known_answer(distance):
    # Classes 0 and 1 on an arc; a class-2 singleton far away (no positive: no anchor, never hardest
    # negative) and an unlabelled row next to the first anchor (ignored entirely).
    angles = [0.0, 0.2, 1.0, 1.5, math.pi, 0.05]
    labels = torch.tensor([0, 0, 1, 1, 2, IGNORE_INDEX])
    d = (lambda x: 1 - math.cos(x)) if distance == "cosine" else (lambda x: 2 * math.sin(x / 2))
    margin = 0.5  # some anchors inside the margin, some beyond it, for both distances
    # anchor: (hardest positive angle, hardest negative angle)
    pairs = [(0.2, 1.0), (0.2, 0.8), (0.5, 0.8), (0.5, 1.3)]
    expected = np.mean([max(0.0, d(p) - d(n) + margin) for p, n in pairs])
    loss = batch_hard_triplet_loss(_ring(angles), labels, margin, distance)
    assert loss.item() == pytest.approx(expected, abs=1e-5)
    assert 0 < expected and any(d(p) - d(n) + margin < 0 for p, n in pairs)


def test_triplet_loss_without_valid_anchor_is_zero_with_a_gradient():
    emb = _ring([0.0, 1.0, 2.0]).requires_grad_(True)
    loss = batch_hard_triplet_loss(emb, torch.tensor([0, 1, IGNORE_INDEX]))
    loss.backward()
    assert loss.item() == 0.0 and emb.grad is not None and torch.isfinite(emb.grad).all()


def test_triplet_gradients_finite_for_identical_rows():
    emb = _ring([0.3, 0.3, 0.3, 2.0]).requires_grad_(True)
    batch_hard_triplet_loss(emb, torch.tensor([0, 0, 1, 1]), distance="euclidean").backward()
    assert torch.isfinite(emb.grad).all()


# ---- class-balanced batches ------------------------------------------------------------------------------


def _labels(counts: list[int]) -> np.ndarray:
    return np.concatenate([np.full(n, c) for c, n in enumerate(counts)])


@pytest.mark.parametrize("counts", [[8, 8, 8, 8], [13, 2, 7, 5, 9], [40, 3, 3, 3]])
def test_every_batch_has_k_rows_of_p_classes_and_every_row_is_seen(counts):
    labels = np.concatenate([_labels(counts), [IGNORE_INDEX, IGNORE_INDEX]])
    p, k = 3, 4
    sampler = ClassBalancedBatchSampler(labels, p, k, seed=1)
    batches = list(sampler)
    assert (
        len(batches)
        == len(sampler)
        == max(
            math.ceil(sum(max(1, math.ceil(n / k)) for n in counts) / p),
            max(math.ceil(n / k) for n in counts),
        )
    )
    for batch in batches:
        classes, per_class = np.unique(labels[batch], return_counts=True)
        assert len(classes) == p and (per_class == k).all()
    seen = set(np.concatenate(batches).tolist())
    assert seen == set(np.flatnonzero(labels != IGNORE_INDEX).tolist())  # all labelled rows, no unlabelled
    assert sampler.n_unlabelled == 2


def test_balanced_batches_change_with_the_epoch_and_repeat_with_the_seed():
    labels = _labels([9, 9, 9, 9])
    a, b = ClassBalancedBatchSampler(labels, 2, 3, seed=5), ClassBalancedBatchSampler(labels, 2, 3, seed=5)
    assert list(a) == list(b)
    first = list(a)
    a.set_epoch(1)
    assert list(a) != first


def test_balanced_batches_shard_across_ranks():
    labels = _labels([10, 6, 9, 4, 7])
    full = ClassBalancedBatchSampler(labels, 2, 4, seed=3)
    ranks = [ClassBalancedBatchSampler(labels, 2, 4, seed=3, rank=r, world_size=2) for r in (0, 1)]
    shards = [list(r) for r in ranks]
    assert len(shards[0]) == len(shards[1]) == len(ranks[0]) == math.ceil(len(full) / 2)
    everything = full.epoch_batches()
    padded = everything + everything[: 2 * len(ranks[0]) - len(everything)]  # equal steps on both ranks
    assert shards == [padded[0::2], padded[1::2]]


def test_too_few_classes_for_a_batch_is_a_config_error():
    with pytest.raises(ConfigError, match="only 2 labelled classes"):
        ClassBalancedBatchSampler(_labels([5, 5]), 4, 2)


# ---- configuration ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"metric_loss": "cosface"}, "unknown metric_loss 'cosface'"),
        ({"metric_loss": "arcface", "metric_weight": 0.0}, "metric_weight must be a positive"),
        ({"arc_margin": -0.1}, "arc_margin must be in"),
        ({"arc_margin": 2.0}, "arc_margin must be in"),
        ({"arc_scale": 0.0}, "arc_scale must be a positive"),
        ({"triplet_margin": float("nan")}, "triplet_margin must be a positive"),
        ({"triplet_distance": "manhattan"}, "unknown triplet_distance"),
        ({"metric_column": "colour"}, "metric_column 'colour' is not one of the heads"),
        ({"samples_per_class": 1}, "samples_per_class must be 0"),
        ({"samples_per_class": 5, "batch_size": 32}, "multiple of it"),
        ({"samples_per_class": 16, "batch_size": 16}, "at least 2 classes"),
        ({"metric_loss": "triplet"}, "metric_loss=triplet needs positives"),
    ],
)
def test_bad_metric_settings_are_named(overrides, message):
    with pytest.raises(ConfigError, match=message):
        resolve(TrainConfig, PROFILES, "demo", None, overrides)


def test_metric_defaults_change_nothing_and_flags_exist():
    cfg = resolve(TrainConfig, PROFILES, "demo")
    assert (cfg.metric_loss, cfg.samples_per_class, cfg.metric_column) == ("none", 0, "")
    assert cfg.metric_target() == "article_type"
    args = build_parser().parse_args(
        [
            "--metric-loss",
            "triplet",
            "--samples-per-class",
            "4",
            "--heads",
            GROCERY_HEADS,
            "--metric-column",
            "coarse_label",
            "--model-name",
            "product_recognizer",
        ]
    )
    cfg = from_args(args, TrainConfig, PROFILES)
    assert (cfg.metric_loss, cfg.classes_per_batch(), cfg.metric_target()) == ("triplet", 8, "coarse_label")
    assert args.model_name == "product_recognizer"


# ---- evaluation on a catalog without a top-k / rest split ------------------------------------------------


def test_all_rows_one_subset_gives_one_group_and_nan_rest():
    probs = np.eye(3)[[0, 1, 2, 0]] * 0.9 + 0.05
    targets = np.array([[0], [1], [1], [0]])
    ev = evaluate_model(
        "image",
        {"fine_label": probs},
        targets,
        ["fine_label"],
        {"fine_label": ["a", "b", "c"]},
        np.array(["all"] * 4, dtype=object),
        np.array([[0], [0], [1]]),
    )
    assert ev.results["group"].tolist() == ["all"]
    assert ev.metric("fine_label", "all") == pytest.approx(0.75)
    assert math.isnan(ev.metric("fine_label", "rest"))
    assert majority_rate(np.array([0, 0, 1]), targets[:, 0]) == pytest.approx(0.5)
