"""Attention of one new query per row (a decoding step), without starting a thread team.

At each decoding step with a key/value cache, every sequence brings one new query, and
attention multiplies a ``(B, H, 1, d)`` query by the cached ``(B, H_kv, T_k, d)`` keys and
values: a few thousand multiply-adds. PyTorch's fused CPU kernel splits even that work over
its OpenMP threads, and each split is a fork and a join. On an idle machine the join costs a
few microseconds; on a busy one (another training job, a notebook kernel) the partner thread
is often waiting for a core, and the join waits a scheduler time slice, up to milliseconds,
for work that takes microseconds. ``attnlab bench decode --load 1`` measures it.

:func:`single_query_attention` computes the same function with element-wise products and
reductions. PyTorch runs those on the calling thread when a tensor has fewer than
:data:`SERIAL_ELEMENTS` elements (its internal grain size), so a small decoding step starts no
thread team at all. :func:`fits` says when that holds, and when the path pays: it costs a few
microseconds more than the fused kernel on an idle machine, too much for very narrow models.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

# PyTorch's element-wise and reduction kernels run on one thread below this many elements
# (at::internal::GRAIN_SIZE); above it they split the work over threads themselves.
SERIAL_ELEMENTS = 32768
# The path costs about 20 us more than the fused kernel on an idle machine (its dozen small
# operations against one). Beside a layer of width 512 that is under 2% of a step; at width
# 128 (4 heads of 32) it made idle generation 30% slower on the development machine, more
# than the fork it saves costs there, so narrower models keep the fused kernel.
MIN_WIDTH = 256


def fits(q: Tensor, k: Tensor, dropout_p: float) -> bool:
    """Whether to use :func:`single_query_attention`: one query per row, no dropout, a
    float32 CPU tensor, ``B * H * T_k * d`` below :data:`SERIAL_ELEMENTS` (the size of its
    largest temporary: it then runs on one thread) and a width ``H * d`` of at least
    :data:`MIN_WIDTH`."""
    B, H, T_q, d = q.shape
    return (
        T_q == 1
        and dropout_p == 0.0
        and q.device.type == "cpu"
        and q.dtype == torch.float32
        and H * d >= MIN_WIDTH
        and B * H * k.size(2) * d < SERIAL_ELEMENTS
    )


def single_query_attention(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None) -> Tensor:
    """softmax(q K^T / sqrt(d)) V for a single query per row (section 3.2.1).

    Args:
        q: queries ``(B, H, 1, d)``.
        k, v: keys and values ``(B, H_kv, T_k, d)``; ``H_kv`` divides ``H`` (grouped-query
            attention: query head ``h`` reads key/value head ``h // (H / H_kv)``).
        mask: bool, ``True`` = may attend, broadcastable to ``(B, H, 1, T_k)``; or None.

    Returns:
        ``(B, H, 1, d)``; a query with no allowed key gets zeros, as on the other paths.
    """
    B, H, _, d = q.shape
    H_kv, T_k = k.size(1), k.size(2)
    groups = H // H_kv
    q = q.view(B, H_kv, groups, 1, d)  # (B, H_kv, G, 1, d): the query heads of each group
    scores = torch.linalg.vecdot(q, k.unsqueeze(2)) * (1.0 / math.sqrt(d))  # (B, H_kv, G, T_k)
    allowed = None
    if mask is not None:
        allowed = mask.expand(B, H, 1, T_k).reshape(B, H_kv, groups, T_k)  # (B, H_kv, G, T_k)
        scores = scores.masked_fill(~allowed, torch.finfo(scores.dtype).min)
    # softmax over the keys as exp(s - logsumexp(s)): the fused softmax kernel starts threads
    weights = (scores - scores.logsumexp(-1, keepdim=True)).exp()  # (B, H_kv, G, T_k)
    if allowed is not None:
        weights = weights.masked_fill(~allowed, 0.0)  # a row with no allowed key: zeros
    out = torch.linalg.vecdot(weights.unsqueeze(-1), v.unsqueeze(2), dim=-2)  # (B, H_kv, G, d)
    return out.view(B, H, 1, d)  # (B, H, 1, d)
