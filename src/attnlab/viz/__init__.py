"""Figures: attention heatmaps, attention rollout over images, and training curves."""

from attnlab.viz.heatmaps import plot_attention_grid
from attnlab.viz.plots import plot_training_curves
from attnlab.viz.rollout import attention_rollout, plot_rollout_overlay, upsample_to_image

__all__ = [
    "attention_rollout",
    "plot_attention_grid",
    "plot_rollout_overlay",
    "plot_training_curves",
    "upsample_to_image",
]
