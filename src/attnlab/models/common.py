"""Pieces that several models build from their configs."""

from __future__ import annotations

from typing import Any

from torch import nn

from attnlab.nn import LearnedPositionalEncoding, SinusoidalPositionalEncoding, TransformerEncoder


def positional_encoding(kind: str, d_model: int, max_len: int, dropout: float) -> nn.Module:
    """The positional encoding named ``kind`` ('sinusoidal' or 'learned'), dropout after it."""
    if kind == "sinusoidal":
        return SinusoidalPositionalEncoding(d_model, max_len, dropout)
    if kind == "learned":
        return LearnedPositionalEncoding(d_model, max_len, dropout)
    raise ValueError(f"positional must be 'sinusoidal' or 'learned'; got {kind!r}")


def encoder_from_config(config: Any) -> TransformerEncoder:
    """A :class:`TransformerEncoder` from a model config's encoder fields.

    Uses ``num_layers, d_model, num_heads, d_ff (None: 4 * d_model), dropout, activation,
    norm_first``; pre-LN stacks get a final LayerNorm, as in GPT-2.
    """
    return TransformerEncoder(
        num_layers=config.num_layers,
        d_model=config.d_model,
        num_heads=config.num_heads,
        d_ff=config.d_ff or 4 * config.d_model,
        dropout=config.dropout,
        activation=config.activation,
        norm_first=config.norm_first,
        final_norm=config.norm_first,
    )
