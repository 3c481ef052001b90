"""The review queue's ranking: the obviously uncertain rows first."""

from __future__ import annotations

import numpy as np

from product_attrs.classification.uncertainty import (
    DISAGREEMENT_BONUS,
    rank,
    reasons,
    top2,
    uncertainty_score,
)


def test_top2_of_a_probability_matrix():
    probs = np.array([[0.1, 0.7, 0.2], [0.4, 0.4, 0.2], [0.0, 0.0, 1.0]])
    k1, p1, k2, p2 = top2(probs)
    assert k1.tolist() == [1, 0, 2] and k2.tolist() == [2, 1, 0]
    assert np.allclose(p1, [0.7, 0.4, 1.0]) and np.allclose(p2, [0.2, 0.4, 0.0])
    k1, p1, k2, p2 = top2(np.ones((2, 1)))
    assert k2.tolist() == [-1, -1] and p2.tolist() == [0, 0]


def test_the_obviously_uncertain_rows_rank_first():
    # A tie between two classes, a close call, a confident one, a sure one.
    probs = np.array(
        [
            [0.98, 0.01, 0.01],  # sure
            [0.47, 0.42, 0.11],  # close call
            [0.80, 0.10, 0.10],  # confident
            [0.34, 0.34, 0.32],  # no idea
        ]
    )
    _, p1, _, p2 = top2(probs)
    score = uncertainty_score(p1, p2)
    assert rank(score, 4).tolist() == [3, 1, 2, 0]
    assert 0 <= score.min() and score.max() <= 1


def test_disagreeing_models_outrank_agreeing_ones_of_equal_margin():
    score = uncertainty_score(
        np.array([0.9, 0.9, 0.6]), np.array([0.05, 0.05, 0.1]), np.array([False, True, False])
    )
    assert rank(score, 3).tolist() == [1, 2, 0]
    assert np.isclose(score[1] - score[0], DISAGREEMENT_BONUS)


def test_missing_predictions_never_outrank_real_ones():
    score = uncertainty_score(np.array([np.nan, 0.9]), np.array([np.nan, 0.05]))
    assert rank(score, 1).tolist() == [1]


def test_reasons_name_each_signal():
    assert reasons(
        np.array([0.3, 0.9, 0.9, 0.95]), np.array([0.5, 0.1, 0.8, 0.9]), np.array([0, 0, 1, 0])
    ) == [
        "low_confidence",
        "small_margin",
        "models_disagree",
        "",
    ]


def test_rank_breaks_ties_by_position_and_clips_k():
    assert rank(np.array([0.5, 0.5, 0.9]), 5).tolist() == [2, 0, 1]
    assert rank(np.array([0.5]), 0).tolist() == []
