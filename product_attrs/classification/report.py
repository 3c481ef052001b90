"""Pictures of a training run: loss/accuracy curves and a grid of sample test predictions."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display on servers or in Dagster runs
import matplotlib.pyplot as plt

from product_attrs.classification.data import load_rgb


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
