"""Confusion-matrix figure."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from attnlab.viz.figures import new_figure, save_figure


def plot_confusion_matrix(counts: np.ndarray, labels: list[str], path: Path) -> Path:
    """Save a row-normalised confusion matrix (rows: true class, columns: predicted) as PNG.

    Each row sums to 1, so the diagonal is the recall of each class whatever its size; the
    number of test examples of each class is shown beside its row label.
    """
    counts = np.asarray(counts)
    totals = counts.sum(axis=1, keepdims=True)
    rates = counts / np.maximum(totals, 1)  # (C, C), rows sum to 1
    n = len(labels)
    fig = new_figure(figsize=(0.45 * n + 3, 0.45 * n + 2))
    ax = fig.subplots()
    image = ax.imshow(rates, vmin=0.0, vmax=1.0, cmap="Blues")
    ax.set_xticks(range(n), labels, rotation=90)
    ax.set_yticks(
        range(n), [f"{label} ({int(t)})" for label, t in zip(labels, totals[:, 0], strict=True)]
    )
    ax.set_xlabel("predicted")
    ax.set_ylabel("true (test examples)")
    for i in range(n):
        for j in range(n):
            if rates[i, j] >= 0.005:
                color = "white" if rates[i, j] > 0.5 else "black"
                ax.text(
                    j, i, f"{rates[i, j]:.2f}", ha="center", va="center", fontsize=6, color=color
                )
    fig.colorbar(image, ax=ax, shrink=0.7, label="fraction of the true class")
    ax.set_title("confusion matrix (row-normalised)")
    fig.tight_layout()
    return save_figure(fig, path)
