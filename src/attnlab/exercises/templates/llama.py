"""Practical: the blocks of Llama.

Fill in every ``raise NotImplementedError("TODO: ...")``. Keep the names, the signatures and
the attribute names set in the ``__init__`` methods: the checker copies weights into them.
Check your work part by part with ``attnlab exercise check DIR``.

Paper: Touvron et al., "LLaMA: Open and Efficient Foundation Language Models" (2023), section
2.2 ("Architecture"): the decoder of "Attention Is All You Need" with three changes, and
Llama 2 (Touvron et al. 2023b, section 2.2) adds a fourth:

* pre-normalisation with RMSNorm (Zhang & Sennrich 2019): ``x + Sublayer(RMSNorm(x))``;
* rotary position embeddings (Su et al. 2021, "RoFormer") inside attention, instead of
  positions added to the embeddings;
* the SwiGLU feed-forward network (Shazeer 2020);
* grouped-query attention (Ainslie et al. 2023): fewer key/value heads than query heads.

No biases anywhere, and no dropout.

Shapes: ``B`` batch, ``T`` sequence length, ``H`` query heads, ``H_kv`` key/value heads,
``d_head = d_model / H``. Batch first everywhere.

Masks: bool, ``True`` = "may attend" (the convention of
``torch.nn.functional.scaled_dot_product_attention``).
"""

from __future__ import annotations

import math  # noqa: F401 (for you to use)

import torch
import torch.nn.functional as F  # noqa: F401 (for you to use)
from torch import Tensor, nn


class RMSNorm(nn.Module):
    """Root mean square layer normalisation (Zhang & Sennrich 2019, section 4, equation 4).

    ``RMSNorm(x) = x / sqrt(mean(x^2) + eps) * g``: the mean of the squares over the last
    dimension, ``eps`` inside the square root, and ``g`` the learned gain ``weight``. Unlike
    LayerNorm there is no mean subtracted and no bias. As in Hugging Face's Llama, ``x`` is
    normalised in float32 and cast back to its own dtype before the gain is applied.

    Args:
        d_model: the normalised width.
        eps: added to the mean square, inside the square root.

    Input and output: ``(..., d_model)``.
    """

    def __init__(self, d_model: int, eps: float = 1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(d_model))
        self.eps = eps

    def forward(self, x: Tensor) -> Tensor:
        raise NotImplementedError("TODO: x / sqrt(mean(x^2) + eps) * weight, in float32")


def rotary_cos_sin(
    T: int,
    d_head: int,
    base: float = 10000.0,
    start: int = 0,
    device: torch.device | str | None = None,
) -> tuple[Tensor, Tensor]:
    """The rotary angles of positions ``start .. start + T - 1`` (RoFormer section 3.2.2).

    Pair ``i`` of a head's dimensions (``i = 0 .. d_head / 2 - 1``) turns at the frequency
    ``theta_i = base^(-2i / d_head)``; at position ``m`` its angle is ``m * theta_i``. The
    pairs are ``(i, i + d_head / 2)`` (the "rotate half" layout of Hugging Face's Llama and
    attnlab), so dimensions ``i`` and ``i + d_head / 2`` share their angle. ``start > 0``
    gives the positions of new tokens after ``start`` cached ones.

    Returns:
        ``(cos, sin)``, each ``(T, d_head)`` on ``device`` (the queries' and keys' device):
        ``cos[t, j]`` is ``cos((start + t) theta_i)`` with ``i = j mod (d_head / 2)``.
    """
    raise NotImplementedError("TODO: theta_i, the angles m theta_i, each half of d_head")


def apply_rotary(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotate each pair ``(x[i], x[i + d_head / 2])`` of every query or key by its angle
    (RoFormer section 3.4.2, the element-wise form of equation 34).

    ``x' = x * cos + rotate_half(x) * sin`` with ``rotate_half([x1, x2]) = [-x2, x1]`` (the
    halves ``x1, x2`` of the last dimension): for the pair ``(a, b)`` that is the 2-D
    rotation ``(a cos - b sin, b cos + a sin)``.

    Args:
        x: queries or keys ``(B, H, T, d_head)``.
        cos, sin: from :func:`rotary_cos_sin`, each ``(T, d_head)``.

    Returns:
        ``(B, H, T, d_head)``.
    """
    raise NotImplementedError("TODO: x * cos + rotate_half(x) * sin")


class SwiGLU(nn.Module):
    """The SwiGLU feed-forward network (Shazeer 2020, section 2, FFN_SwiGLU; Llama section 2.2).

    ``FFN(x) = (SiLU(x W1) * x W3) W2`` with ``SiLU(z) = z sigmoid(z)`` (Swish with beta = 1)
    and ``*`` element-wise: the gate ``SiLU(x W1)`` decides how much of each hidden unit
    ``x W3`` passes. No biases.

    Args:
        d_model: model width.
        d_ff: hidden width.

    Input and output: ``(..., d_model)``.
    """

    def __init__(self, d_model: int, d_ff: int):
        super().__init__()
        self.w1 = nn.Linear(d_model, d_ff, bias=False)
        self.w2 = nn.Linear(d_ff, d_model, bias=False)
        self.w3 = nn.Linear(d_model, d_ff, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        raise NotImplementedError("TODO: w2(silu(w1(x)) * w3(x))")


def repeat_kv(x: Tensor, num_heads: int) -> Tensor:
    """The keys or values of ``H_kv`` heads, one copy per query head (Ainslie et al. 2023,
    section 2.2).

    The ``H`` query heads form ``H_kv`` groups of ``H / H_kv`` consecutive heads, and each
    group shares one key/value head: query head ``h`` reads key/value head
    ``h // (H / H_kv)``.

    Args:
        x: keys or values ``(B, H_kv, T, d_head)``.
        num_heads: ``H``, a multiple of ``H_kv``.

    Returns:
        ``(B, H, T, d_head)``: head ``h`` is ``x[:, h // (H / H_kv)]``.
    """
    raise NotImplementedError("TODO: each key/value head repeated for its group of heads")


class GroupedQueryAttention(nn.Module):
    """Causal self-attention with rotary positions and grouped-query heads (Llama 2 section
    2.2; Ainslie et al. 2023, section 2.2; RoFormer section 3.4.2).

    ``w_q`` projects to ``H`` query heads, ``w_k`` and ``w_v`` to ``H_kv`` key/value heads
    (``H_kv`` divides ``H``), each ``d_head = d_model / H`` wide; ``w_o`` is ``W^O``. Queries
    and keys are rotated by their positions ``0 .. T - 1`` (values are not); each key/value
    head then serves its group of query heads, and every position attends to itself and the
    past: ``softmax(q k^T / sqrt(d_head) + causal) v`` (section 3.2.1 of "Attention Is All
    You Need").

    Args:
        d_model: model width, divisible by ``num_heads``.
        num_heads: ``H``, the query heads.
        num_kv_heads: ``H_kv``, the key/value heads.
        rope_theta: the ``base`` of :func:`rotary_cos_sin`.

    Call: ``attn(x)`` with ``x`` ``(B, T, d_model)``; returns ``(B, T, d_model)``.
    """

    def __init__(
        self, d_model: int, num_heads: int, num_kv_heads: int, rope_theta: float = 10000.0
    ):
        super().__init__()
        self.num_heads = num_heads
        self.num_kv_heads = num_kv_heads
        self.d_head = d_model // num_heads
        self.rope_theta = rope_theta
        self.w_q = nn.Linear(d_model, num_heads * self.d_head, bias=False)
        self.w_k = nn.Linear(d_model, num_kv_heads * self.d_head, bias=False)
        self.w_v = nn.Linear(d_model, num_kv_heads * self.d_head, bias=False)
        self.w_o = nn.Linear(num_heads * self.d_head, d_model, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        raise NotImplementedError(
            "TODO: project, rotate q and k, repeat_kv, causal scaled dot-product, w_o"
        )


class LlamaBlock(nn.Module):
    """One Llama decoder block (Llama section 2.2, "pre-normalization"): each sublayer's
    *input* is normalised, and the residual adds the sublayer's output to the un-normalised
    ``x``::

        h = x + attention(norm1(x))
        out = h + feed_forward(norm2(h))

    Args:
        d_model: model width.
        num_heads: query heads of the attention.
        num_kv_heads: key/value heads of the attention.
        d_ff: hidden width of the SwiGLU network.
        eps: the RMSNorms' ``eps``.
        rope_theta: the rotary base.

    Call: ``block(x)`` with ``x`` ``(B, T, d_model)``; returns ``(B, T, d_model)``.
    """

    def __init__(
        self,
        d_model: int,
        num_heads: int,
        num_kv_heads: int,
        d_ff: int,
        eps: float = 1e-6,
        rope_theta: float = 10000.0,
    ):
        super().__init__()
        self.norm1 = RMSNorm(d_model, eps)
        self.self_attn = GroupedQueryAttention(d_model, num_heads, num_kv_heads, rope_theta)
        self.norm2 = RMSNorm(d_model, eps)
        self.feed_forward = SwiGLU(d_model, d_ff)

    def forward(self, x: Tensor) -> Tensor:
        raise NotImplementedError("TODO: pre-norm attention and SwiGLU, each with a residual")
