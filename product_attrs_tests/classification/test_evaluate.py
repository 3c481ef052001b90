"""Per-class scores, group averages, classes missing from train, confusions: on hand-made probabilities."""

from __future__ import annotations

import numpy as np
import pytest

from product_attrs.classification.data import IGNORE_INDEX
from product_attrs.classification.evaluate import (
    evaluate_model,
    majority_rate,
    results_pivot,
    to_markdown,
    topk_hits,
)

CLASSES = ["a", "b", "c", "d", "e", "f"]


def _onehot(pred: list[int], n: int = 6) -> np.ndarray:
    p = np.full((len(pred), n), 0.01)
    p[np.arange(len(pred)), pred] = 0.9
    return p / p.sum(1, keepdims=True)


def test_topk_caps_k_at_class_count():
    p = np.array([[0.1, 0.2, 0.7], [0.5, 0.3, 0.2]])
    assert topk_hits(p, np.array([1, 1]), 1).tolist() == [False, False]
    assert topk_hits(p, np.array([1, 1]), 2).tolist() == [True, True]
    assert topk_hits(p, np.array([0, 2]), 5).all()


def test_groups_macro_missing_and_confusions():
    targets = np.array([0, 0, 0, 1, 2, 5, 5, IGNORE_INDEX])[:, None]
    pred = [0, 0, 1, 1, 2, 3, 3, 0]
    groups = np.array(["top20"] * 5 + ["rest"] * 3, dtype=object)
    train = np.array([0, 0, 1, 2, 3, 4])[:, None]  # class f (5) never in train
    ev = evaluate_model(
        "image",
        {"article_type": _onehot(pred)},
        targets,
        ["article_type"],
        {"article_type": CLASSES},
        groups,
        train,
    )
    top = ev.results.set_index("group").loc["top20"]
    assert top["n"] == 5 and top["top1"] == pytest.approx(4 / 5)
    assert top["macro_top1"] == pytest.approx(np.mean([2 / 3, 1, 1]))
    rest = ev.results.set_index("group").loc["rest"]
    assert (
        rest["n"] == 2 and rest["top1"] == 0 and rest["n_missing_from_train"] == 1
    )  # the unlabelled row is left out
    assert ev.missing_from_train == {"article_type": ["f"]}
    first = ev.confused.iloc[0]
    assert (first["true"], first["predicted"], first["count"]) == ("f", "d", 2)
    assert first["share_of_true"] == 1.0
    assert "| article_type |" in to_markdown(results_pivot(ev.results))


def test_head_with_one_class_and_empty_test():
    ev = evaluate_model(
        "image",
        {"h": np.ones((0, 1))},
        np.zeros((0, 1), dtype=np.int64),
        ["h"],
        {"h": ["x"]},
        np.array([], dtype=object),
        np.zeros((3, 1), dtype=np.int64),
    )
    assert ev.results["n"].tolist() == [0]


def test_majority_rate():
    train = np.array([1, 1, 2, IGNORE_INDEX])
    test = np.array([1, 2, 2, 1])
    assert majority_rate(train, test) == 0.5
    assert majority_rate(train, test, np.array(["top20", "rest", "rest", "top20"]), "rest") == 0.0
