"""What every attention figure draws: the maps of one input, with the tokens on each axis."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor


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
