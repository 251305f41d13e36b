"""Figures: attention heatmaps and training curves."""

from attnlab.viz.heatmaps import plot_attention_grid
from attnlab.viz.plots import plot_training_curves

__all__ = ["plot_attention_grid", "plot_training_curves"]
