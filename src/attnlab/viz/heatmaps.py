"""Static attention heatmaps: one panel per (layer, head)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from torch import Tensor

from attnlab.errors import InputError
from attnlab.viz.figures import DPI, MAX_SIDE_PIXELS, new_figure, save_figure
from attnlab.viz.views import AttentionView, check_views

if TYPE_CHECKING:
    from matplotlib.figure import Figure, SubFigure


def _draw_grid(
    fig: Figure | SubFigure,
    maps: list[Tensor],
    query_labels: list[str],
    key_labels: list[str],
    title: str,
) -> None:
    """Draw a layer x head grid of heatmaps into ``fig`` (a figure or a subfigure)."""
    num_layers, num_heads = len(maps), maps[0].size(0)
    T_q, T_k = maps[0].shape[-2:]
    axes = fig.subplots(num_layers, num_heads, squeeze=False)
    for layer, layer_maps in enumerate(maps):
        for head in range(num_heads):
            ax = axes[layer][head]
            weights = layer_maps[head].detach().float().cpu().numpy()  # (T_q, T_k)
            image = ax.imshow(weights, vmin=0.0, vmax=1.0, cmap="viridis")
            ax.set_title(f"layer {layer + 1}, head {head + 1}", fontsize=9)
            ax.set_xticks(range(T_k), key_labels, rotation=90, fontsize=7)
            ax.set_yticks(range(T_q), query_labels, fontsize=7)
            ax.set_xlabel("key (attended to)", fontsize=8)
            ax.set_ylabel("query", fontsize=8)
    fig.colorbar(image, ax=axes, shrink=0.6, label="attention weight")
    if title:
        fig.suptitle(title)


def _grid_size(view: AttentionView) -> tuple[float, float]:
    """Width and height in inches of one view's grid."""
    T_q, T_k = view.maps[0].shape[-2:]
    cell = 0.28 * max(T_q, T_k) + 1.5
    return cell * view.maps[0].size(0), cell * len(view.maps)


def _check_figure_size(width: float, height: float) -> None:
    """Raise :class:`InputError` for a figure of ``width`` x ``height`` inches that matplotlib
    would refuse, before drawing its panels (a BERT-large grid of 512 tokens drew for many
    minutes first)."""
    pixels = (round(width * DPI), round(height * DPI))
    if max(pixels) >= MAX_SIDE_PIXELS:
        raise InputError(
            f"the heatmaps would be {pixels[0]:,} x {pixels[1]:,} pixels, more than matplotlib "
            f"draws ({MAX_SIDE_PIXELS:,} a side): show fewer layers, heads or tokens, or use "
            "the explorer"
        )


def plot_attention_views(views: list[AttentionView], path: str | Path) -> Path:
    """Save several kinds of attention of one input (e.g. encoder, decoder, cross) in one PNG.

    Each view is drawn as :func:`plot_attention_grid` draws it, one below the other. Views
    whose maps and labels disagree raise :class:`~attnlab.errors.InputError` before any
    drawing (see :func:`~attnlab.viz.views.check_views`).
    """
    check_views(views)
    sizes = [_grid_size(view) for view in views]
    _check_figure_size(max(w for w, _ in sizes), sum(h for _, h in sizes))
    fig = new_figure(figsize=(max(w for w, _ in sizes), sum(h for _, h in sizes)))
    subfigures = fig.subfigures(len(views), 1, height_ratios=[h for _, h in sizes], squeeze=False)
    for subfigure, view in zip(subfigures[:, 0], views, strict=True):
        _draw_grid(subfigure, view.maps, view.query_labels, view.key_labels, view.title)
    return save_figure(fig, path)


def plot_attention_grid(
    maps: list[Tensor],
    query_labels: list[str],
    key_labels: list[str],
    path: str | Path,
    title: str = "",
) -> Path:
    """Save a layer x head grid of attention heatmaps as a PNG.

    Args:
        maps: one tensor per layer, ``(H, T_q, T_k)``; rows are queries, columns keys.
        query_labels: ``T_q`` labels for the rows; key_labels: ``T_k`` labels for the columns.
        path: output file (``.png``).

    Raises:
        InputError: no maps, maps of different shapes, label counts that are not ``T_q``
            and ``T_k``, or weights outside ``[0, 1]`` (a ``ValueError``).
    """
    return plot_attention_views([AttentionView(maps, query_labels, key_labels, title)], path)
