"""SequenceClassifier: a Transformer encoder with a learned CLS token (as in BERT and ViT)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn

from attnlab.models.common import (
    check_counts,
    check_positional,
    check_token_ids,
    encoder_block_spec,
    encoder_from_config,
    positional_encoding,
)
from attnlab.nn import BlockSpec, TokenEmbedding, combine_masks, local_mask, padding_mask
from attnlab.nn.embedding import check_table


@dataclass
class SequenceClassifierConfig:
    """Hyperparameters of :class:`SequenceClassifier`.

    ``max_len`` counts input tokens (the CLS token is extra). ``d_ff=None`` means
    ``4 * d_model``. ``window=w`` restricts every layer's attention between tokens to
    ``|i - j| <= w`` (:func:`~attnlab.nn.local_mask`); the CLS token still attends to, and is
    attended to by, every token. ``None`` attends everywhere. ``backend="torch"`` builds the
    encoder from ``nn.TransformerEncoderLayer`` with the same hyperparameters instead of
    attnlab's :class:`~attnlab.nn.EncoderLayer`; ``layer="FILE.py:ClassName"`` builds it from
    a user's layer class instead (:mod:`attnlab.models.user_layer`; ``layer_sha256`` is the
    file's hash when the model was first built, checked on every rebuild).
    """

    vocab_size: int
    num_classes: int
    pad_id: int = 0
    d_model: int = 64
    num_heads: int = 4
    num_layers: int = 2
    d_ff: int | None = None
    dropout: float = 0.1
    max_len: int = 64
    positional: Literal["sinusoidal", "learned"] = "learned"
    activation: Literal["relu", "gelu"] = "relu"
    norm_first: bool = False
    window: int | None = None
    backend: Literal["attnlab", "torch"] = "attnlab"
    layer: str | None = None
    layer_sha256: str | None = None

    def __post_init__(self) -> None:
        check_counts(self, ("vocab_size", "num_classes", "num_layers", "max_len"))
        check_token_ids(self, self.vocab_size, "vocab_size", ("pad_id",))
        check_positional(self.positional)
        window = self.window
        if window is not None and (type(window) is not int or window < 0):  # a bool is no width
            raise ValueError(f"window must be None or a whole number >= 0; got {self.window!r}")
        self.block_spec()  # the block's fields (d_model, num_heads, ...), before allocating
        check_table(self.max_len, self.d_model)  # a typo such as 10**12

    def block_spec(self) -> BlockSpec:
        """The :class:`~attnlab.nn.BlockSpec` handed to every encoder layer."""
        return encoder_block_spec(self)


class SequenceClassifier(nn.Module):
    """Classify a whole sequence from the output at a learned CLS token prepended to it.

    ``[CLS] x_1 .. x_T`` -> token embedding (section 3.4) + positions (3.5) -> encoder (3.1)
    -> linear head on the CLS position. Padding (``pad_id``) is masked out of attention, so
    the logits do not depend on how much padding a sequence carries.

    Input: token ids ``(B, T)`` with ``T <= max_len``. Output: logits ``(B, num_classes)``.
    """

    config_class = SequenceClassifierConfig

    def __init__(self, config: SequenceClassifierConfig):
        super().__init__()
        self.config = config
        d_model = config.d_model
        self.embed = TokenEmbedding(config.vocab_size, d_model)
        self.cls_token = nn.Parameter(torch.randn(1, 1, d_model))
        self.positions = positional_encoding(
            config.positional, d_model, config.max_len + 1, config.dropout
        )
        self.encoder = encoder_from_config(config)
        self.head = nn.Linear(d_model, config.num_classes)

    def _encode_input(self, tokens: Tensor) -> tuple[Tensor, Tensor]:
        """Embedded ``[CLS] + tokens`` ``(B, 1 + T, d_model)`` and their mask: ``(B, 1, 1, 1 + T)``,
        or ``(B, 1, 1 + T, 1 + T)`` with a ``window``."""
        x = self.embed(tokens)  # (B, T, d_model); checks that tokens are (B, T) ids
        B, T = tokens.shape
        cls = self.cls_token.expand(B, -1, -1)  # (B, 1, d_model)
        x = self.positions(torch.cat([cls, x], dim=1))  # (B, 1 + T, d_model)
        keep = padding_mask(tokens, self.config.pad_id)  # (B, 1, 1, T)
        cls_keep = keep.new_ones(B, 1, 1, 1)  # the CLS token is always real
        mask = torch.cat([cls_keep, keep], dim=-1)  # (B, 1, 1, 1 + T)
        if self.config.window is not None:
            band = local_mask(1 + T, self.config.window, device=tokens.device)  # (1 + T, 1 + T)
            band[0, :] = band[:, 0] = True  # the CLS token sees, and is seen by, every token
            mask = combine_masks(band, mask)  # (B, 1, 1 + T, 1 + T)
        return x, mask

    def forward(self, tokens: Tensor) -> Tensor:
        """Logits ``(B, num_classes)`` of token ids ``(B, T)``: the head on the encoder's output at
        the prepended CLS token (sections 3.1, 3.4, 3.5); padding is masked out of attention."""
        x, mask = self._encode_input(tokens)
        hidden = self.encoder(x, mask=mask)  # (B, 1 + T, d_model)
        return self.head(hidden[:, 0])  # (B, num_classes)

    def attention_maps(self, tokens: Tensor) -> list[Tensor]:
        """Every layer's attention weights ``(B, H, 1 + T, 1 + T)``; index 0 is the CLS token."""
        x, mask = self._encode_input(tokens)
        _, maps = self.encoder(x, mask=mask, return_attention=True)
        return maps
