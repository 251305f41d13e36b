"""Position-wise feed-forward network, encoder layer and encoder stack (paper section 3.1, 3.3).

Masks follow the attnlab convention: bool, ``True`` = "may attend" (see :mod:`attnlab.nn.masks`).
"""

from __future__ import annotations

from typing import Literal

import torch.nn.functional as F
from torch import Tensor, nn

from attnlab.nn.attention import MultiHeadAttention
from attnlab.nn.dropout import Dropout

Activation = Literal["relu", "gelu"]
# Without autograd, ReLU overwrites the first linear layer's fresh output in place: one
# (B, T, d_ff) tensor less per layer. With autograd the in-place op would act on a view of
# the matmul output and cost extra copies in backward, so it stays out of place there.
_ACTIVATIONS = {"relu": lambda x: F.relu(x, inplace=not x.requires_grad), "gelu": F.gelu}


def _activation(name: str):
    if name not in _ACTIVATIONS:
        raise ValueError(f"activation must be one of {sorted(_ACTIVATIONS)}; got {name!r}")
    return _ACTIVATIONS[name]


class FeedForward(nn.Module):
    """Position-wise feed-forward network, section 3.3: ``FFN(x) = max(0, x W1 + b1) W2 + b2``.

    ``activation="gelu"`` swaps ReLU for GELU (BERT, GPT). Dropout is applied to the hidden
    activations, as in ``nn.TransformerEncoderLayer``. Xavier-uniform weights, zero biases.

    Input and output: ``(..., d_model)``; hidden width ``d_ff``.
    """

    def __init__(
        self, d_model: int, d_ff: int, dropout: float = 0.0, activation: Activation = "relu"
    ):
        super().__init__()
        self.activation_name = activation
        self.activation = _activation(activation)
        self.linear1 = nn.Linear(d_model, d_ff)
        self.dropout = Dropout(dropout)
        self.linear2 = nn.Linear(d_ff, d_model)
        for linear in (self.linear1, self.linear2):
            nn.init.xavier_uniform_(linear.weight)
            nn.init.zeros_(linear.bias)

    def forward(self, x: Tensor) -> Tensor:
        hidden = self.dropout(self.activation(self.linear1(x)))  # (..., d_ff)
        return self.linear2(hidden)  # (..., d_model)


class EncoderLayer(nn.Module):
    """One encoder layer, section 3.1: self-attention then feed-forward, each a residual sublayer.

    Post-LN (the paper, default): ``x = LayerNorm(x + Dropout(Sublayer(x)))``.
    Pre-LN (``norm_first=True``, as in GPT-2 and most modern models):
    ``x = x + Dropout(Sublayer(LayerNorm(x)))``.

    Args mirror ``nn.TransformerEncoderLayer``: ``d_model, num_heads, d_ff, dropout,
    activation, norm_first, layer_norm_eps``. ``dropout`` is used on the attention weights,
    inside the feed-forward network and on each sublayer output (section 5.4).

    Call: ``layer(x, mask=None)`` with ``x: (B, T, d_model)`` and ``mask`` bool, ``True`` = may
    attend, ``(T, T)`` or ``(B|1, 1, T|1, T)``. Returns ``(B, T, d_model)``, or with
    ``need_weights=True`` the pair ``(output, attention weights (B, H, T, T))``.
    """

    def __init__(
        self,
        d_model: int,
        num_heads: int,
        d_ff: int = 2048,
        dropout: float = 0.1,
        activation: Activation = "relu",
        norm_first: bool = False,
        layer_norm_eps: float = 1e-5,
    ):
        super().__init__()
        self.norm_first = norm_first
        self.self_attn = MultiHeadAttention(d_model, num_heads, dropout=dropout)
        self.dropout1 = Dropout(dropout)
        self.norm1 = nn.LayerNorm(d_model, eps=layer_norm_eps)
        self.feed_forward = FeedForward(d_model, d_ff, dropout=dropout, activation=activation)
        self.dropout2 = Dropout(dropout)
        self.norm2 = nn.LayerNorm(d_model, eps=layer_norm_eps)

    def forward(
        self, x: Tensor, mask: Tensor | None = None, need_weights: bool = False
    ) -> Tensor | tuple[Tensor, Tensor]:
        if x.dim() != 3:
            raise ValueError(f"x must have shape (B, T, d_model); got {tuple(x.shape)}")
        attn_in = self.norm1(x) if self.norm_first else x
        attended = self.self_attn(attn_in, mask=mask, need_weights=need_weights)
        weights = None
        if need_weights:
            attended, weights = attended
        if self.norm_first:
            x = x + self.dropout1(attended)
            x = x + self.dropout2(self.feed_forward(self.norm2(x)))
        else:
            x = self.norm1(x + self.dropout1(attended))
            x = self.norm2(x + self.dropout2(self.feed_forward(x)))
        return (x, weights) if need_weights else x  # (B, T, d_model)


class TransformerEncoder(nn.Module):
    """A stack of ``num_layers`` identical :class:`EncoderLayer` s (section 3.1; N = 6 there).

    ``final_norm=True`` adds a LayerNorm after the last layer (needed with pre-LN layers, as
    in ``nn.TransformerEncoder(norm=...)``). The other arguments are passed to every layer.

    Call: ``encoder(x, mask=None)`` with ``x: (B, T, d_model)``; ``mask`` as for
    :class:`EncoderLayer` (bool, ``True`` = may attend). Returns ``(B, T, d_model)``; with
    ``return_attention=True`` the pair ``(output, [weights of each layer, (B, H, T, T)])``.
    """

    def __init__(
        self,
        num_layers: int,
        d_model: int,
        num_heads: int,
        d_ff: int = 2048,
        dropout: float = 0.1,
        activation: Activation = "relu",
        norm_first: bool = False,
        layer_norm_eps: float = 1e-5,
        final_norm: bool = False,
    ):
        super().__init__()
        self.layers = nn.ModuleList(
            EncoderLayer(d_model, num_heads, d_ff, dropout, activation, norm_first, layer_norm_eps)
            for _ in range(num_layers)
        )
        self.norm = nn.LayerNorm(d_model, eps=layer_norm_eps) if final_norm else None

    def forward(
        self, x: Tensor, mask: Tensor | None = None, return_attention: bool = False
    ) -> Tensor | tuple[Tensor, list[Tensor]]:
        attention_maps = []
        for layer in self.layers:
            if return_attention:
                x, weights = layer(x, mask=mask, need_weights=True)
                attention_maps.append(weights)
            else:
                x = layer(x, mask=mask)
        if self.norm is not None:
            x = self.norm(x)
        return (x, attention_maps) if return_attention else x  # (B, T, d_model)
