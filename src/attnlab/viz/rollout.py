"""Attention rollout (Abnar & Zuidema 2020, "Quantifying Attention Flow in Transformers").

Raw attention weights of one layer say how a token mixes the *previous layer's* tokens; after
a few layers those are mixtures themselves. Rollout follows the mixing down to the inputs:

1. average the heads of each layer: ``W_l = mean_h A_l^h``;
2. account for the residual connection by adding the identity: ``W_l + I``;
3. renormalise each row to sum to 1: ``A_l = (W_l + I) / rowsum`` (``= 0.5 W_l + 0.5 I``);
4. multiply through the layers: ``R = A_L A_{L-1} ... A_1``.

Row ``i`` of ``R`` is the share of each input token in the final representation of token
``i``; for a ViT, row 0 (the CLS token) over the patches shows where the classifier looks.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from matplotlib import patheffects
from matplotlib.axes import Axes
from torch import Tensor

from attnlab.errors import InputError
from attnlab.viz.figures import new_figure, save_figure


def attention_rollout(maps: Sequence[Tensor]) -> Tensor:
    """The attention rollout of a stack of layers (see the module docstring).

    Args:
        maps: one tensor per layer, first layer first, ``(..., H, T, T)`` (e.g. ``(B, H, T, T)``
            from a model's ``attention_maps``, or ``(H, T, T)`` for one input); rows are queries.

    Returns:
        ``(..., T, T)``: row ``i`` is how much each input token contributes to token ``i``
        after the last layer. Every row sums to 1.
    """
    _check_maps(maps)
    T = maps[0].size(-1)
    identity = torch.eye(T, dtype=maps[0].dtype, device=maps[0].device)  # (T, T)
    rollout = None
    for weights in maps:
        mixed = weights.mean(dim=-3) + identity  # (..., T, T): heads averaged, plus residual
        mixed = mixed / mixed.sum(dim=-1, keepdim=True)  # (..., T, T), rows sum to 1
        rollout = mixed if rollout is None else mixed @ rollout  # (..., T, T)
    assert rollout is not None  # maps holds at least one layer (checked above)
    return rollout


def _check_maps(maps: Sequence[Tensor]) -> None:
    """Raise :class:`InputError` unless ``maps`` is a list of float tensors of one shape
    ``(..., H, T, T)``: a stacked tensor (whose first dimension may be the batch, not the
    layers), a list of lists, integer weights or layers of different batches otherwise failed
    inside torch, or read the batch as the layers."""
    if isinstance(maps, Tensor):
        raise InputError("maps must be a list of tensors, one per layer; got one tensor")
    if not maps:
        raise InputError("attention_rollout needs the attention maps of at least one layer")
    for weights in maps:
        if not isinstance(weights, Tensor) or not weights.is_floating_point():
            got = weights.dtype if isinstance(weights, Tensor) else type(weights).__name__
            raise InputError(f"each attention map must be a float tensor; got {got}")
    shape, T = tuple(maps[0].shape), maps[0].size(-1)
    for weights in maps:
        if weights.dim() < 3 or weights.shape[-2:] != (T, T):
            raise InputError(
                f"each attention map must have shape (..., H, {T}, {T}); got {tuple(weights.shape)}"
            )
        if tuple(weights.shape) != shape:
            raise InputError(
                f"each attention map must have the first one's shape {shape}; got "
                f"{tuple(weights.shape)}"
            )


# The most pixels of an upsampled map: 2**26 float32 pixels are 256 MiB, and a figure of
# them is far past any screen; (10**6, 10**6) was a 4 TB allocation.
MAX_PIXELS = 2**26


def upsample_to_image(heat: Tensor, image_size: tuple[int, int]) -> Tensor:
    """A patch-grid map ``(rows, cols)`` repeated over each patch's pixels: ``(H, W)``, a
    size of two whole numbers >= 1 of at most :data:`MAX_PIXELS` pixels."""
    if not isinstance(heat, Tensor) or heat.dim() != 2:  # else torch's "spatial dimensions"
        got = tuple(heat.shape) if isinstance(heat, Tensor) else type(heat).__name__
        raise InputError(f"heat must be a tensor (rows, cols); got {got}")
    sides = tuple(image_size) if isinstance(image_size, Sequence) else ()
    if len(sides) != 2 or not all(type(n) is int and n >= 1 for n in sides):
        raise InputError(f"image_size must be two whole numbers (H, W) >= 1; got {image_size!r}")
    if sides[0] * sides[1] > MAX_PIXELS:
        raise InputError(f"image_size must be at most {MAX_PIXELS:,} pixels; got {image_size}")
    grid = heat[None, None].float()  # (1, 1, rows, cols)
    return F.interpolate(grid, size=image_size, mode="nearest")[0, 0]  # (H, W)


def plot_rollout_overlay(
    image: Tensor,
    heat: Tensor,
    path: str | Path,
    title: str = "",
    layer_heats: Sequence[Tensor] = (),
) -> Path:
    """Save the image, then ``heat`` over the image, then optional per-layer panels (PNG).

    Each map is turned into shares (divided by its sum), upsampled to the image so that each
    patch's pixels show its share, and drawn in colour over the image (as in Grad-CAM figures);
    with at most 16 patches each share is also written on its patch, in percent.

    Args:
        image: grayscale image ``(H, W)``, values in ``[0, 1]``.
        heat: a non-negative map over the patch grid ``(rows, cols)``, e.g. the CLS row of
            :func:`attention_rollout` over the patches.
        path: output file (``.png``).
        title: the figure's title.
        layer_heats: more ``(rows, cols)`` maps, one panel each (e.g. each layer's CLS
            attention over the patches, heads averaged).
    """
    _check_overlay(image, heat, layer_heats)
    image = image.detach().float().cpu()
    H, W = image.shape
    shares = [(m / m.sum()).detach().float().cpu() for m in (heat, *layer_heats)]
    labels = ["rollout of the CLS token"]
    labels += [f"layer {i + 1}: CLS attention" for i in range(len(layer_heats))]
    top = max(float(s.max()) for s in shares)
    fig = new_figure(figsize=(2.6 * (1 + len(shares)), 3.0))
    axes = fig.subplots(1, 1 + len(shares))
    axes[0].imshow(image.numpy(), cmap="gray", vmin=0.0, vmax=1.0)
    axes[0].set_title("input (as the model sees it)", fontsize=8)
    for ax, label, share in zip(axes[1:], labels, shares, strict=True):
        ax.imshow(image.numpy(), cmap="gray", vmin=0.0, vmax=1.0)
        heat_pixels = upsample_to_image(share, (H, W)).numpy()  # (H, W)
        shown = ax.imshow(heat_pixels, cmap="turbo", alpha=0.5, vmin=0.0, vmax=top)
        if share.numel() <= 16:
            _write_shares(ax, share, (H, W))
        ax.set_title(label, fontsize=8)
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.colorbar(shown, ax=axes, shrink=0.8, label="share over the patches")
    if title:
        fig.suptitle(title, fontsize=10)
    return save_figure(fig, path)


def _check_overlay(image: Tensor, heat: Tensor, layer_heats: Sequence[Tensor]) -> None:
    """Raise :class:`InputError` unless ``image`` is ``(H, W)`` and every map ``(rows, cols)``,
    finite and non-negative with a positive sum (each is divided by its sum: a map of zeros
    was drawn as NaN, without a word)."""
    maps = {"heat": heat, **{f"layer_heats[{i}]": m for i, m in enumerate(layer_heats)}}
    for name, value in {"image": image, **maps}.items():
        if not isinstance(value, Tensor):  # else "'list' object has no attribute 'dim'"
            raise InputError(f"{name} must be a tensor; got {type(value).__name__}")
    if image.dim() != 2:
        raise InputError(f"image must be a grayscale image (H, W); got shape {tuple(image.shape)}")
    for name, m in maps.items():
        if m.dim() != 2:
            raise InputError(
                f"{name} must be a map over the patch grid (rows, cols); got shape {tuple(m.shape)}"
            )
        if not bool(torch.isfinite(m).all()) or bool((m < 0).any()) or not m.sum() > 0:
            raise InputError(f"{name} must be finite and non-negative, with a positive sum")


def _write_shares(ax: Axes, share: Tensor, image_size: tuple[int, int]) -> None:
    """Write each patch's share, in percent, at the centre of the patch.

    ``share``: ``(rows, cols)`` over the patch grid; ``image_size``: ``(H, W)`` in pixels, as
    drawn on ``ax`` (pixel centres at integer coordinates).
    """
    H, W = image_size
    rows, cols = share.shape
    for r in range(rows):
        for c in range(cols):
            ax.text(
                (c + 0.5) * W / cols - 0.5,
                (r + 0.5) * H / rows - 0.5,
                f"{100 * share[r, c]:.0f}%",
                ha="center",
                va="center",
                fontsize=8,
                color="white",
                path_effects=[patheffects.withStroke(linewidth=2, foreground="black")],
            )
