"""What every attention figure draws: the maps of one input, with the tokens on each axis."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from attnlab.errors import InputError

# Float weights may exceed 1 by rounding; anything beyond this is not an attention weight.
_TOLERANCE = 1e-3


@dataclass
class AttentionView:
    """Attention maps of one input: per layer ``(H, T_q, T_k)``, with the tokens on each axis.

    ``title`` names the kind of attention (e.g. "encoder self-attention", "cross-attention").
    A model with several kinds (an encoder-decoder) describes one input with several views.
    """

    maps: list[Tensor]
    query_labels: list[str]
    key_labels: list[str]
    title: str = ""


def check_views(
    views: AttentionView | Sequence[AttentionView],
) -> list[tuple[AttentionView, list[torch.Tensor]]]:
    """Each view with its maps as float CPU tensors ``(H, T_q, T_k)``.

    Raises :class:`~attnlab.errors.InputError` (a ``ValueError``) for no view, a view without
    maps, maps of different shapes, labels that do not match the maps, or weights outside
    ``[0, 1]``: every figure of the views (the explorer, the heatmaps) checks them here.
    """
    if isinstance(views, AttentionView):
        views = [views]
    views = list(views)
    if not views:
        raise InputError("no attention views to show: give at least one AttentionView")
    checked = []
    for number, view in enumerate(views, 1):
        if not isinstance(view, AttentionView):
            raise InputError(f"view {number} is a {type(view).__name__}, not an AttentionView")
        name = f"view {number} ({view.title})" if view.title else f"view {number}"
        if len(view.maps) == 0:
            raise InputError(f"{name} has no attention maps: give one (H, T_q, T_k) per layer")
        maps = [torch.as_tensor(m).detach().float().cpu() for m in view.maps]
        shape = tuple(maps[0].shape)
        if len(shape) != 3 or 0 in shape:
            raise InputError(f"{name}: layer 1 has shape {shape}; expected (H, T_q, T_k) > 0")
        for layer, m in enumerate(maps, 1):
            if tuple(m.shape) != shape:
                raise InputError(
                    f"{name}: layer {layer} has shape {tuple(m.shape)} but layer 1 has {shape}"
                )
        _, T_q, T_k = shape
        if len(view.query_labels) != T_q or len(view.key_labels) != T_k:
            raise InputError(
                f"{name}: {len(view.query_labels)} query and {len(view.key_labels)} key labels "
                f"for maps of {T_q} queries x {T_k} keys"
            )
        for layer, m in enumerate(maps, 1):
            if not bool(torch.isfinite(m).all()) or m.min() < 0 or m.max() > 1 + _TOLERANCE:
                raise InputError(f"{name}: layer {layer} has weights outside [0, 1]")
        checked.append((view, maps))
    return checked
