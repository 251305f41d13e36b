"""Figures: attention heatmaps, the interactive attention explorer, rollout, training curves."""

from attnlab.viz.explorer import render_explorer, save_explorer, show
from attnlab.viz.heatmaps import plot_attention_grid
from attnlab.viz.plots import plot_training_curves
from attnlab.viz.rollout import attention_rollout, plot_rollout_overlay, upsample_to_image

__all__ = [
    "attention_rollout",
    "plot_attention_grid",
    "plot_rollout_overlay",
    "plot_training_curves",
    "render_explorer",
    "save_explorer",
    "show",
    "upsample_to_image",
]
