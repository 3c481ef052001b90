"""Per-class top-1/top-5 for each head, averaged over the top-k classes and the rest, and confusions.

Works on probability matrices, so the image model, the text baseline and their fusion are scored by the
same code. Rows are grouped by the catalog's `subset` column (top20 / rest), and also as a whole ('all').
Two averages are reported: `top1` over rows (what the seed quotes) and `macro_top1` over classes. A class
with test rows but no training row is listed in `missing_from_train` and scored like any other.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from product_attrs.classification.data import IGNORE_INDEX

RESULT_COLUMNS = [
    "model",
    "head",
    "group",
    "n",
    "top1",
    "top5",
    "macro_top1",
    "macro_top5",
    "n_classes",
    "n_missing_from_train",
]


def topk_hits(probs: np.ndarray, targets: np.ndarray, k: int) -> np.ndarray:
    """Boolean per row: is the target among the k most probable classes (k capped at the class count)."""
    k = max(1, min(k, probs.shape[1]))
    if len(targets) == 0:
        return np.zeros(0, dtype=bool)
    top = (
        np.argpartition(-probs, kth=k - 1, axis=1)[:, :k]
        if k < probs.shape[1]
        else np.tile(np.arange(probs.shape[1]), (len(probs), 1))
    )
    return (top == targets[:, None]).any(axis=1)


@dataclass
class HeadEvaluation:
    head: str
    summary: pd.DataFrame
    per_class: pd.DataFrame
    confused: pd.DataFrame
    missing_from_train: list[str]


def evaluate_head(
    model_name: str,
    head: str,
    probs: np.ndarray,
    targets: np.ndarray,
    class_names: list[str],
    groups: np.ndarray,
    train_counts: np.ndarray,
    n_confused: int = 10,
) -> HeadEvaluation:
    """Scores of one head; rows with a missing label are left out."""
    mask = targets != IGNORE_INDEX
    probs, targets, groups = probs[mask], targets[mask], np.asarray(groups, dtype=object)[mask]
    hit1, hit5 = topk_hits(probs, targets, 1), topk_hits(probs, targets, 5)
    pred = probs.argmax(1) if len(probs) else np.zeros(0, dtype=np.int64)
    missing_idx = sorted({int(t) for t in targets if train_counts[t] == 0})
    missing = [class_names[i] for i in missing_idx]

    per_class_rows, summary_rows = [], []
    # A catalog without a top-k/rest split (every row "all") gets the "all" group once, not twice.
    present = set(groups) - {"all"}
    group_names = [g for g in sorted(present) if g != "rest"] + (["rest"] if "rest" in present else [])
    for group in [*group_names, "all"]:
        in_group = np.ones(len(targets), bool) if group == "all" else groups == group
        t, h1, h5 = targets[in_group], hit1[in_group], hit5[in_group]
        classes = np.unique(t)
        rows = []
        for c in classes:
            m = t == c
            rows.append(
                {
                    "head": head,
                    "group": group,
                    "class": class_names[c],
                    "n_test": int(m.sum()),
                    "n_train": int(train_counts[c]),
                    "top1": float(h1[m].mean()),
                    "top5": float(h5[m].mean()),
                    "missing_from_train": bool(train_counts[c] == 0),
                }
            )
        per_class_rows += rows
        summary_rows.append(
            {
                "model": model_name,
                "head": head,
                "group": group,
                "n": int(in_group.sum()),
                "top1": float(h1.mean()) if len(t) else float("nan"),
                "top5": float(h5.mean()) if len(t) else float("nan"),
                "macro_top1": float(np.mean([r["top1"] for r in rows])) if rows else float("nan"),
                "macro_top5": float(np.mean([r["top5"] for r in rows])) if rows else float("nan"),
                "n_classes": len(rows),
                "n_missing_from_train": sum(r["missing_from_train"] for r in rows),
            }
        )

    wrong = pred != targets
    pairs = pd.DataFrame({"true": targets[wrong], "pred": pred[wrong]})
    if len(pairs):
        counts = pairs.value_counts().reset_index(name="count").head(n_confused)
        per_true = np.bincount(targets, minlength=len(class_names))
        confused = pd.DataFrame(
            {
                "model": model_name,
                "head": head,
                "true": [class_names[i] for i in counts["true"]],
                "predicted": [class_names[i] for i in counts["pred"]],
                "count": counts["count"].astype(int),
                "share_of_true": [c / per_true[t] for c, t in zip(counts["count"], counts["true"])],
            }
        )
    else:
        confused = pd.DataFrame(columns=["model", "head", "true", "predicted", "count", "share_of_true"])
    per_class = pd.DataFrame(
        per_class_rows,
        columns=["head", "group", "class", "n_test", "n_train", "top1", "top5", "missing_from_train"],
    )
    per_class.insert(0, "model", model_name)
    return HeadEvaluation(
        head, pd.DataFrame(summary_rows, columns=RESULT_COLUMNS), per_class, confused, missing
    )


@dataclass
class Evaluation:
    """All heads of one model: the results table, per-class scores, confused pairs, classes unseen in
    train."""

    results: pd.DataFrame
    per_class: pd.DataFrame
    confused: pd.DataFrame
    missing_from_train: dict[str, list[str]] = field(default_factory=dict)

    def metric(self, head: str, group: str = "all", column: str = "top1", model: str | None = None) -> float:
        r = self.results
        sel = (r["head"] == head) & (r["group"] == group)
        if model is not None:
            sel &= r["model"] == model
        values = r.loc[sel, column]
        return float(values.iloc[0]) if len(values) else float("nan")


def evaluate_model(
    model_name: str,
    probs: dict[str, np.ndarray],
    targets: np.ndarray,
    heads: list[str],
    label_maps: dict[str, list[str]],
    groups: np.ndarray,
    train_targets: np.ndarray,
) -> Evaluation:
    """Evaluate every head; `targets`/`train_targets` are (rows, heads) encoded labels."""
    evals = []
    for j, head in enumerate(heads):
        n_classes = len(label_maps[head])
        t = train_targets[:, j]
        train_counts = np.bincount(t[t != IGNORE_INDEX], minlength=n_classes)
        evals.append(
            evaluate_head(
                model_name, head, probs[head], targets[:, j], label_maps[head], groups, train_counts
            )
        )
    return Evaluation(
        results=pd.concat([e.summary for e in evals], ignore_index=True),
        per_class=pd.concat([e.per_class for e in evals], ignore_index=True),
        confused=pd.concat([e.confused for e in evals if len(e.confused)], ignore_index=True)
        if any(len(e.confused) for e in evals)
        else evals[0].confused,
        missing_from_train={e.head: e.missing_from_train for e in evals},
    )


def combine(*evaluations: Evaluation) -> Evaluation:
    """Several models' evaluations in one table, side by side."""
    return Evaluation(
        results=pd.concat([e.results for e in evaluations], ignore_index=True),
        per_class=pd.concat([e.per_class for e in evaluations], ignore_index=True),
        confused=pd.concat([e.confused for e in evaluations], ignore_index=True),
        missing_from_train=evaluations[0].missing_from_train if evaluations else {},
    )


def majority_rate(
    train_targets: np.ndarray, test_targets: np.ndarray, groups: np.ndarray | None = None, group: str = "all"
) -> float:
    """Top-1 of always predicting the most frequent training class (the bar a model must clear)."""
    train = train_targets[train_targets != IGNORE_INDEX]
    mask = test_targets != IGNORE_INDEX
    if groups is not None and group != "all":
        mask &= np.asarray(groups, dtype=object) == group
    if len(train) == 0 or not mask.any():
        return float("nan")
    return float((test_targets[mask] == np.bincount(train).argmax()).mean())


def results_pivot(results: pd.DataFrame) -> pd.DataFrame:
    """One row per (head, group), one column per model and metric: the side-by-side view."""
    wide = results.pivot_table(
        index=["head", "group", "n"], columns="model", values=["top1", "top5"], aggfunc="first", sort=False
    )
    wide.columns = [f"{model}_{metric}" for metric, model in wide.columns]
    return wide.reset_index()


def to_markdown(frame: pd.DataFrame, digits: int = 4) -> str:
    """A GitHub-flavoured table without the `tabulate` dependency."""

    def fmt(v) -> str:
        if isinstance(v, (float, np.floating)):
            return "" if np.isnan(v) else f"{v:.{digits}f}"
        return str(v)

    cols = list(frame.columns)
    lines = ["| " + " | ".join(map(str, cols)) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join(lines)
