"""The names practical, solved: a Transformer encoder with a CLS token, written out.

Reference solution of ``attnlab exercise start DIR`` (``encoder.py``); the checker compares a
student's file with this one, part by part, with the same weights. It imports only torch.

Sections refer to "Attention Is All You Need" (Vaswani et al., 2017). Masks are boolean with
``True`` = "may attend" (the convention of ``torch.nn.functional.scaled_dot_product_attention``).
Shapes: ``B`` batch, ``T`` sequence length, ``H`` heads, ``d_k = d_model / H``.
"""

from __future__ import annotations

import math

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
        """``x``: ``(B, T, d_model)`` -> ``x + PE[:T]``, ``(B, T, d_model)``."""
        T = x.size(1)
        position = torch.arange(T, device=x.device).unsqueeze(1)  # (T, 1)
        two_i = torch.arange(0, self.d_model, 2, device=x.device)  # (d_model / 2,)
        angle = position / 10000 ** (two_i / self.d_model)  # (T, d_model / 2)
        pe = torch.zeros(T, self.d_model, device=x.device)
        pe[:, 0::2] = torch.sin(angle)
        pe[:, 1::2] = torch.cos(angle)
        return x + pe.unsqueeze(0).to(x.dtype)  # (1, T, d_model) broadcasts over the batch


class TransformerEncoderLayer(nn.Module):
    """One encoder layer, section 3.1: multi-head self-attention, then a feed-forward network.

    Each sublayer is wrapped as ``LayerNorm(x + Dropout(Sublayer(x)))`` (post-LN, as in the
    paper). Constructor and ``forward(x, mask=None)`` follow the layer contract of
    ``attnlab train names --layer FILE.py:TransformerEncoderLayer``.
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
        ``x W_q``, ``x W_k``, ``x W_v`` with their last axis split into ``H`` heads.
        """
        B, T, _ = x.shape

        def split_heads(t: Tensor) -> Tensor:
            return t.view(B, T, self.num_heads, self.d_k).transpose(1, 2)  # (B, H, T, d_k)

        return split_heads(self.w_q(x)), split_heads(self.w_k(x)), split_heads(self.w_v(x))

    def self_attention(
        self, q: Tensor, k: Tensor, v: Tensor, d_k: int, mask: Tensor | None
    ) -> Tensor:
        """Scaled dot-product attention, section 3.2.1: ``softmax(q k^T / sqrt(d_k)) v``.

        ``q, k, v``: ``(B, H, T, d_k)``; ``mask``: bool ``(B, 1, 1, T)`` (``True`` = may
        attend) or ``None``. Returns ``(B, H, T, d_k)``. Dropout is applied to the weights.
        """
        scores = q @ k.transpose(-2, -1) / math.sqrt(d_k)  # (B, H, T, T)
        if mask is not None:
            scores = scores.masked_fill(~mask, float("-inf"))
        weights = torch.softmax(scores, dim=-1)  # (B, H, T, T): each query's row sums to 1
        weights = self.dropout(weights)
        return weights @ v  # (B, H, T, d_k)

    def norm(self, x: Tensor) -> Tensor:
        """Layer normalisation (Ba et al., 2016; section 3.1) without its gain and bias.

        Each position's features get mean 0 and variance 1 (the biased variance, eps 1e-5
        inside the square root): ``x``: ``(B, T, d_model)`` -> ``(B, T, d_model)``.
        """
        mean = x.mean(dim=-1, keepdim=True)  # (B, T, 1)
        var = x.var(dim=-1, keepdim=True, unbiased=False)  # (B, T, 1)
        return (x - mean) / torch.sqrt(var + 1e-5)

    def feed_forward(self, x: Tensor) -> Tensor:
        """Position-wise feed-forward network, section 3.3: ``max(0, x W1 + b1) W2 + b2``.

        ``x``: ``(B, T, d_model)`` -> ``(B, T, d_model)``; hidden width ``d_ff``.
        """
        return self.linear2(self.dropout(torch.relu(self.linear1(x))))

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        """``x``: ``(B, T, d_model)``; ``mask``: bool ``(B, 1, 1, T)``, ``True`` = may attend.

        Returns ``(B, T, d_model)``: ``x = LayerNorm(x + Dropout(MultiHead(x)))``, then
        ``x = LayerNorm(x + Dropout(FFN(x)))``, each LayerNorm with its own gain and bias.
        """
        B, T, _ = x.shape
        q, k, v = self.predicting_qkv(x)
        heads = self.self_attention(q, k, v, self.d_k, mask)  # (B, H, T, d_k)
        merged = heads.transpose(1, 2).reshape(B, T, self.d_model)  # (B, T, d_model)
        attended = self.dropout(self.w_o(merged))
        x = self.gamma1 * self.norm(x + attended) + self.beta1
        x = self.gamma2 * self.norm(x + self.dropout(self.feed_forward(x))) + self.beta2
        return x


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
        """Put the CLS token in front of every sequence.

        ``x``: ``(B, T, d_model)`` -> ``(B, T + 1, d_model)``, the CLS token at position 0.
        """
        cls = self.cls_token.expand(x.size(0), -1, -1)  # (B, 1, d_model)
        return torch.cat([cls, x], dim=1)  # (B, T + 1, d_model)

    def add_positional_encoding(self, x: Tensor) -> Tensor:
        """Add the positional encoding, section 3.5: ``(B, T, d_model)`` -> ``(B, T, d_model)``."""
        return self.positional_encoding(x)

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        """``x``: ``(B, T, d_model)`` embeddings; ``mask``: bool ``(B, 1, 1, T)`` or ``None``.

        Returns ``(B, T + 1, d_model)``, the CLS position first. The CLS token may always be
        attended to, so the mask grows by one ``True`` column in front.
        """
        x = self.add_positional_encoding(self.concat_cls(x))  # (B, T + 1, d_model)
        if mask is not None:
            cls_column = torch.ones_like(mask[..., :1])  # (B, 1, 1, 1)
            mask = torch.cat([cls_column, mask], dim=-1)  # (B, 1, 1, T + 1)
        for layer in self.layers:
            x = layer(x, mask)
        return x
