"""What a classifier version folder shows a person: result tables, test probabilities, curves, samples.

results.csv          top-1/top-5 per head and group (top20 / rest / all), rows and classes averaged
per_class.csv        per-class scores; `missing_from_train` marks classes with no training row
confused_pairs.csv   the most confused (true, predicted) pairs per head
test_predictions.npz test ids and per-head probabilities (for late fusion with the text baseline)
curves.png, samples.png
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import matplotlib
import numpy as np

matplotlib.use("Agg")  # files only: no display on servers or in Dagster runs
import matplotlib.pyplot as plt

from product_attrs.classification.data import load_rgb

if TYPE_CHECKING:
    import pandas as pd

    from product_attrs.classification.evaluate import Evaluation
    from product_attrs.classification.task import Predictions


def write_reports(
    folder: Path,
    evaluation: Evaluation,
    history: list[dict[str, Any]],
    pred: Predictions,
    test_rows: pd.DataFrame,
    heads: list[str],
    label_maps: dict[str, list[str]],
    seed: int,
) -> None:
    for name, frame in (
        ("results", evaluation.results),
        ("per_class", evaluation.per_class),
        ("confused_pairs", evaluation.confused),
    ):
        frame.to_csv(folder / f"{name}.csv", index=False)
    np.savez_compressed(
        folder / "test_predictions.npz",
        ids=test_rows["id"].to_numpy(dtype=np.int64),
        **{f"probs__{h}": pred.probs[h].astype(np.float32) for h in heads},
    )
    plot_curves(history, heads, folder / "curves.png")
    primary = heads[0]
    rng = np.random.default_rng(seed)
    idx = (
        np.sort(rng.choice(len(test_rows), size=min(16, len(test_rows)), replace=False))
        if len(test_rows)
        else []
    )
    probs = pred.probs[primary]
    plot_samples(
        [str(test_rows["image_path"].iloc[i]) for i in idx],
        [str(test_rows[primary].iloc[i]) for i in idx],
        [label_maps[primary][int(probs[i].argmax())] for i in idx],
        [float(probs[i].max()) for i in idx],
        folder / "samples.png",
        title=f"test predictions: {primary}",
    )


def plot_curves(history: list[dict], heads: list[str], path: Path) -> Path:
    """Train/test loss and per-head accuracy by epoch, with the phase boundary marked."""
    epochs = [h["epoch"] for h in history]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    axes[0].plot(epochs, [h.get("train_loss") for h in history], "o-", label="train")
    axes[0].plot(epochs, [h.get("test_loss") for h in history], "s--", label="test")
    axes[0].set(title="loss (sum of weighted CE)", xlabel="epoch")
    for head in heads:
        (line,) = axes[1].plot(
            epochs, [h.get(f"train_acc_{head}") for h in history], "o-", label=f"train {head}"
        )
        axes[1].plot(
            epochs,
            [h.get(f"test_acc_{head}") for h in history],
            "s--",
            color=line.get_color(),
            label=f"test {head}",
        )
    axes[1].set(title="top-1 accuracy", xlabel="epoch", ylim=(0, 1))
    phases = [h["phase"] for h in history]
    for i in range(1, len(phases)):
        if phases[i] != phases[i - 1]:
            for ax in axes:
                ax.axvline(epochs[i] - 0.5, color="grey", lw=0.8, ls=":")
    for ax in axes:
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_samples(
    image_paths: list[str],
    true: list[str],
    pred: list[str],
    confidence: list[float],
    path: Path,
    title: str = "",
    columns: int = 8,
) -> Path:
    """A grid of test images titled 'predicted (p) / true', green when right and red when wrong."""
    n = len(image_paths)
    rows = max(1, (n + columns - 1) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(columns * 1.6, rows * 2.1), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, p, t, y, c in zip(axes.flat, image_paths, true, pred, confidence):
        ax.imshow(load_rgb(p))
        ax.set_title(f"{y} ({c:.2f})\n{t}", fontsize=6, color="green" if y == t else "red")
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
