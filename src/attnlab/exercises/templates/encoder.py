"""The names practical: write a Transformer encoder with a CLS token.

Fill in every ``raise NotImplementedError("TODO: ...")``; keep the names, the signatures and
the ``__init__`` methods as they are (the checker copies its weights into your objects, so the
attribute names must stay). Check your work, part by part, at any time:

    attnlab exercise check encoder.py

Sections refer to "Attention Is All You Need" (Vaswani et al., 2017). Masks are boolean with
``True`` = "may attend" (the convention of ``torch.nn.functional.scaled_dot_product_attention``).
Shapes: ``B`` batch, ``T`` sequence length, ``H`` heads, ``d_k = d_model / H``.
"""

from __future__ import annotations

import math  # noqa: F401  (you will want math.sqrt)

import torch
from torch import Tensor, nn


class PositionalEncoding(nn.Module):
    """Sinusoidal positional encoding, section 3.5.

    ``PE(pos, 2i) = sin(pos / 10000^(2i / d_model))`` and
    ``PE(pos, 2i + 1) = cos(pos / 10000^(2i / d_model))``; ``forward`` adds it to its input.
    """

    def __init__(self, d_model: int, max_len: int = 5000):
        super().__init__()
        self.d_model = d_model
        self.max_len = max_len

    def forward(self, x: Tensor) -> Tensor:
        """``x``: ``(B, T, d_model)`` -> ``x + PE[:T]``, ``(B, T, d_model)``.

        Position ``pos`` runs along the sequence axis (axis 1, batch first); every sequence
        of the batch gets the same encoding. Even features get the sine, odd ones the cosine.
        """
        raise NotImplementedError("TODO: build the (T, d_model) table PE and add it to x")


class TransformerEncoderLayer(nn.Module):
    """One encoder layer, section 3.1: multi-head self-attention, then a feed-forward network.

    Each sublayer is wrapped as ``LayerNorm(x + Dropout(Sublayer(x)))`` (post-LN, as in the
    paper). This class can also be trained in attnlab's pipeline:
    ``attnlab train names --layer encoder.py:TransformerEncoderLayer``.
    """

    def __init__(self, d_model: int, num_heads: int, d_ff: int, dropout: float):
        super().__init__()
        self.d_model = d_model
        self.num_heads = num_heads
        self.d_k = d_model // num_heads
        self.w_q = nn.Linear(d_model, d_model)
        self.w_k = nn.Linear(d_model, d_model)
        self.w_v = nn.Linear(d_model, d_model)
        self.w_o = nn.Linear(d_model, d_model)
        self.linear1 = nn.Linear(d_model, d_ff)
        self.linear2 = nn.Linear(d_ff, d_model)
        self.gamma1 = nn.Parameter(torch.ones(d_model))
        self.beta1 = nn.Parameter(torch.zeros(d_model))
        self.gamma2 = nn.Parameter(torch.ones(d_model))
        self.beta2 = nn.Parameter(torch.zeros(d_model))
        self.dropout = nn.Dropout(dropout)

    def predicting_qkv(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Queries, keys and values of every head, section 3.2.2.

        ``x``: ``(B, T, d_model)`` -> ``q, k, v``, each ``(B, H, T, d_k)``: the projections
        ``self.w_q(x)``, ``self.w_k(x)``, ``self.w_v(x)``, each with its last axis split into
        ``H`` heads of ``d_k`` features (head ``h`` holds features ``h*d_k ... (h+1)*d_k - 1``).
        """
        raise NotImplementedError("TODO: project x three times and split each into heads")

    def self_attention(
        self, q: Tensor, k: Tensor, v: Tensor, d_k: int, mask: Tensor | None
    ) -> Tensor:
        """Scaled dot-product attention, section 3.2.1: ``softmax(q k^T / sqrt(d_k)) v``.

        ``q, k, v``: ``(B, H, T, d_k)``; ``mask``: bool ``(B, 1, 1, T)`` (``True`` = may
        attend; it broadcasts against the ``(B, H, T, T)`` scores) or ``None``.
        Returns ``(B, H, T, d_k)``. Apply ``self.dropout`` to the attention weights.
        """
        raise NotImplementedError("TODO: scores, mask, softmax over the keys, dropout, weights @ v")

    def norm(self, x: Tensor) -> Tensor:
        """Layer normalisation (Ba et al., 2016; section 3.1) without its gain and bias.

        Give each position's features mean 0 and variance 1: ``(x - mean) / sqrt(var + eps)``
        over the last axis, with the biased variance and ``eps = 1e-5``.
        ``x``: ``(B, T, d_model)`` -> ``(B, T, d_model)``.
        """
        raise NotImplementedError("TODO: normalise each position's d_model features")

    def feed_forward(self, x: Tensor) -> Tensor:
        """Position-wise feed-forward network, section 3.3: ``max(0, x W1 + b1) W2 + b2``.

        ``W1, b1`` are ``self.linear1``, ``W2, b2`` are ``self.linear2``; apply
        ``self.dropout`` to the hidden activations.
        ``x``: ``(B, T, d_model)`` -> ``(B, T, d_model)``; hidden width ``d_ff``.
        """
        raise NotImplementedError("TODO: linear1, ReLU, dropout, linear2")

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        """``x``: ``(B, T, d_model)``; ``mask``: bool ``(B, 1, 1, T)``, ``True`` = may attend.

        Returns ``(B, T, d_model)``:

        1. ``q, k, v = self.predicting_qkv(x)``, then ``self.self_attention(...)``;
        2. merge the heads back to ``(B, T, d_model)`` and apply ``self.w_o``;
        3. ``x = gamma1 * norm(x + dropout(attention)) + beta1`` (post-LN);
        4. ``x = gamma2 * norm(x + dropout(feed_forward(x))) + beta2``.
        """
        raise NotImplementedError("TODO: the two sublayers, each with residual and norm")


class TransformerEncoder(nn.Module):
    """A stack of encoder layers behind a learned CLS token and positional encodings.

    The CLS token (as in BERT) is prepended to the sequence; after the layers its vector sums
    up the whole sequence, for a classifier to read (the names practical: name -> language).
    """

    def __init__(
        self,
        d_model: int,
        num_heads: int,
        d_ff: int,
        num_layers: int,
        dropout: float,
        max_len: int = 5000,
    ):
        super().__init__()
        self.cls_token = nn.Parameter(torch.zeros(1, 1, d_model))
        self.positional_encoding = PositionalEncoding(d_model, max_len)
        self.layers = nn.ModuleList(
            TransformerEncoderLayer(d_model, num_heads, d_ff, dropout) for _ in range(num_layers)
        )

    def concat_cls(self, x: Tensor) -> Tensor:
        """Put ``self.cls_token`` in front of every sequence.

        ``x``: ``(B, T, d_model)`` -> ``(B, T + 1, d_model)``, the CLS token at position 0.
        """
        raise NotImplementedError("TODO: expand the CLS token over the batch and concatenate")

    def add_positional_encoding(self, x: Tensor) -> Tensor:
        """Add the positional encoding, section 3.5: ``(B, T, d_model)`` -> ``(B, T, d_model)``."""
        raise NotImplementedError("TODO: use self.positional_encoding")

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        """``x``: ``(B, T, d_model)`` embeddings; ``mask``: bool ``(B, 1, 1, T)`` or ``None``.

        Returns ``(B, T + 1, d_model)``: prepend the CLS token, then add the positional
        encoding (so the CLS token sits at position 0), then run every layer. The CLS token
        may always be attended to: give the mask one more ``True`` column in front.
        """
        raise NotImplementedError("TODO: CLS token, positions, mask for the CLS, the layers")
