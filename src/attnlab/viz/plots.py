"""Training curves."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from attnlab.errors import InputError
from attnlab.viz.figures import new_figure, save_figure


def plot_training_curves(history: list[dict[str, Any]], monitor: str, path: Path) -> Path:
    """Train / val loss and the monitored val metric against the step; saved as a PNG.

    ``history`` is the trainer's: one dict per validation with ``step``, ``train_loss``,
    ``val_loss`` and ``val_<monitor>``.
    """
    _check_history(history, monitor)
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


def _check_history(history: list[dict[str, Any]], monitor: str) -> None:
    """Raise :class:`InputError` unless every row of ``history`` is a dict with the keys the
    curves read (a missing one was a bare KeyError, before the figure was drawn)."""
    if not isinstance(history, list):
        raise InputError(
            f"history must be a list of dicts, one per validation; got {type(history).__name__}"
        )
    keys = ("step", "train_loss", "val_loss", f"val_{monitor}")
    for i, row in enumerate(history):
        missing = [key for key in keys if key not in row] if isinstance(row, dict) else keys
        if missing:
            raise InputError(
                f"history[{i}] must be a dict with {', '.join(keys)}; it lacks {', '.join(missing)}"
            )
