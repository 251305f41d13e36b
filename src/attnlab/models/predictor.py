"""TokenPredictor: a Transformer encoder that predicts one class per input position."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from torch import Tensor, nn

from attnlab.models.common import (
    check_counts,
    check_positional,
    encoder_block_spec,
    encoder_from_config,
    positional_encoding,
)
from attnlab.nn import BlockSpec, TokenEmbedding
from attnlab.nn.embedding import check_not_float64, check_table


@dataclass
class TokenPredictorConfig:
    """Hyperparameters of :class:`TokenPredictor`.

    Exactly one of ``vocab_size`` (inputs are token ids, embedded as in section 3.4) and
    ``input_dim`` (inputs are feature vectors, linearly projected to ``d_model``) is set.
    ``d_ff=None`` means ``4 * d_model`` (the paper's ratio, 2048 / 512).
    ``layer="FILE.py:ClassName"`` builds the encoder from a user's layer class instead of
    attnlab's (:mod:`attnlab.models.user_layer`; ``layer_sha256``: the file's hash, checked).
    """

    num_classes: int
    vocab_size: int | None = None
    input_dim: int | None = None
    d_model: int = 64
    num_heads: int = 4
    num_layers: int = 2
    d_ff: int | None = None
    dropout: float = 0.0
    max_len: int = 512
    positional: Literal["sinusoidal", "learned"] = "sinusoidal"
    activation: Literal["relu", "gelu"] = "relu"
    norm_first: bool = False
    layer: str | None = None
    layer_sha256: str | None = None

    def __post_init__(self) -> None:
        if (self.vocab_size is None) == (self.input_dim is None):
            raise ValueError("set exactly one of vocab_size (token ids) and input_dim (features)")
        inputs = "vocab_size" if self.input_dim is None else "input_dim"
        check_counts(self, (inputs, "num_classes", "num_layers", "max_len"))
        check_positional(self.positional)
        self.block_spec()  # the block's fields (d_model, num_heads, ...), before allocating
        check_table(self.max_len, self.d_model)  # a typo such as 10**12

    def block_spec(self) -> BlockSpec:
        """The :class:`~attnlab.nn.BlockSpec` handed to every encoder layer."""
        return encoder_block_spec(self)


class TokenPredictor(nn.Module):
    """Input embedding -> positional encoding -> Transformer encoder -> per-position classifier.

    The "TransformerPredictor" of the classic tutorial, built from attnlab's blocks
    (sections 3.1, 3.4, 3.5). Input: token ids ``(B, T)`` (with ``vocab_size``) or features
    ``(B, T, input_dim)`` (with ``input_dim``); optional ``mask`` as for
    :class:`~attnlab.nn.TransformerEncoder` (bool, ``True`` = may attend).
    Output: logits ``(B, T, num_classes)``.
    """

    config_class = TokenPredictorConfig

    def __init__(self, config: TokenPredictorConfig):
        super().__init__()
        self.config = config
        d_model = config.d_model
        if config.vocab_size is not None:
            self.embed: nn.Module = TokenEmbedding(config.vocab_size, d_model)
        else:
            assert config.input_dim is not None  # __post_init__: exactly one of the two is set
            self.embed = nn.Linear(config.input_dim, d_model)
        self.positions = positional_encoding(
            config.positional, d_model, config.max_len, config.dropout
        )
        self.encoder = encoder_from_config(config)
        self.head = nn.Linear(d_model, config.num_classes)

    def _encode_input(self, x: Tensor) -> Tensor:
        """Embedded inputs plus positions ``(B, T, d_model)``; features are checked here (the
        token embedding checks token ids itself)."""
        d = self.config.input_dim
        if not isinstance(x, Tensor):
            raise TypeError(f"x must be a tensor of token ids or features; got {type(x).__name__}")
        if d is not None and (x.dim() != 3 or x.size(-1) != d or not x.is_floating_point()):
            raise ValueError(
                f"features must be a float tensor of shape (B, T, input_dim={d}); got "
                f"{tuple(x.shape)} {x.dtype}"
            )
        if d is not None:
            check_not_float64("features", x, self.head.weight)
        return self.positions(self.embed(x))  # (B, T, d_model)

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        """Per-position logits ``(B, T, num_classes)`` of token ids ``(B, T)`` or features
        ``(B, T, input_dim)``; ``mask`` bool, ``True`` = may attend, as for
        :class:`~attnlab.nn.TransformerEncoder`."""
        hidden = self.encoder(self._encode_input(x), mask=mask)  # (B, T, d_model)
        return self.head(hidden)  # (B, T, num_classes)

    def attention_maps(self, x: Tensor, mask: Tensor | None = None) -> list[Tensor]:
        """Every layer's attention weights, a list of ``num_layers`` tensors ``(B, H, T, T)``."""
        _, maps = self.encoder(self._encode_input(x), mask=mask, return_attention=True)
        return maps
