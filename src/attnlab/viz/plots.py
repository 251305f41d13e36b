"""Training curves."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from attnlab.viz.figures import new_figure, save_figure


def plot_training_curves(history: list[dict[str, Any]], monitor: str, path: Path) -> Path:
    """Train / val loss and the monitored val metric against the step; saved as a PNG."""
    steps = [h["step"] for h in history]
    fig = new_figure(figsize=(11, 4))
    ax_loss, ax_metric = fig.subplots(1, 2)
    ax_loss.plot(steps, [h["train_loss"] for h in history], marker="o", label="train loss")
    ax_loss.plot(steps, [h["val_loss"] for h in history], marker="o", label="val loss")
    ax_loss.set_xlabel("step")
    ax_loss.set_ylabel("loss")
    ax_loss.set_yscale("log")
    ax_loss.legend()
    ax_loss.grid(alpha=0.3)
    ax_metric.plot(steps, [h[f"val_{monitor}"] for h in history], marker="o", color="C2")
    ax_metric.set_xlabel("step")
    ax_metric.set_ylabel(f"val {monitor.replace('_', ' ')}")
    ax_metric.grid(alpha=0.3)
    fig.suptitle("training curves")
    fig.tight_layout()
    return save_figure(fig, path)
