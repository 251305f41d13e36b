"""Practical: attention, trained on sequence reversal — the reference solution.

The checker compares a student's file with this one, part by part; every catalogued mistake
is this file with one deliberate error planted.

Paper: Vaswani et al., "Attention Is All You Need" (2017).

Shapes: ``B`` batch, ``T`` sequence length, ``H`` heads, ``d_k`` width of one head,
``embed_dim = H * d_k``. Batch first everywhere.

Masks: bool, ``True`` = "may attend" (the convention of
``torch.nn.functional.scaled_dot_product_attention``).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.optim.lr_scheduler import LRScheduler


def scaled_dot_product(
    q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """Scaled dot-product attention, section 3.2.1: ``softmax(Q K^T / sqrt(d_k)) V``.

    Args:
        q: queries ``(B, H, T, d_k)``.
        k: keys ``(B, H, T, d_k)``.
        v: values ``(B, H, T, d_k)``.
        mask: optional bool tensor, ``True`` = may attend, broadcastable to ``(B, H, T, T)``
            (query ``i`` may attend to key ``j`` where ``mask[..., i, j]`` is ``True``).
            Give the scores of forbidden pairs the value ``-inf`` (or a very negative
            number) *before* the softmax, so that they get zero weight.

    Returns:
        ``(values, attention)``: values ``(B, H, T, d_k)`` and the attention weights
        ``(B, H, T, T)``, each row (one query) summing to 1 over the keys.
    """
    d_k = q.size(-1)
    scores = q @ k.transpose(-2, -1) / math.sqrt(d_k)  # (B, H, T, T)
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    attention = scores.softmax(dim=-1)  # (B, H, T, T): one distribution over keys per query
    return attention @ v, attention  # (B, H, T, d_k), (B, H, T, T)


class MultiheadAttention(nn.Module):
    """Multi-head attention, section 3.2.2: ``Concat(head_1, ..., head_H) W^O``.

    ``head_h = Attention(Q W_h^Q, K W_h^K, V W_h^V)`` with ``d_k = embed_dim / H``. All three
    input projections of all heads are stacked in one linear layer ``qkv_proj``
    (``embed_dim -> 3 * embed_dim``). Its output, along the last dimension, holds Q, then K,
    then V (``embed_dim`` values each, as ``torch.nn.MultiheadAttention``'s
    ``in_proj_weight``); within each of them head ``h`` owns the values
    ``h * d_k .. (h + 1) * d_k - 1``.

    Args:
        embed_dim: model width; must be divisible by ``num_heads``.
        num_heads: number of heads ``H``.
    """

    def __init__(self, embed_dim: int, num_heads: int):
        super().__init__()
        if embed_dim % num_heads != 0:
            raise ValueError(f"embed_dim {embed_dim} is not divisible by num_heads {num_heads}")
        self.embed_dim = embed_dim
        self.num_heads = num_heads
        self.head_dim = embed_dim // num_heads
        self.qkv_proj = nn.Linear(embed_dim, 3 * embed_dim)
        self.o_proj = nn.Linear(embed_dim, embed_dim)
        nn.init.xavier_uniform_(self.qkv_proj.weight)
        nn.init.zeros_(self.qkv_proj.bias)
        nn.init.xavier_uniform_(self.o_proj.weight)
        nn.init.zeros_(self.o_proj.bias)

    def forward(
        self, x: Tensor, mask: Tensor | None = None, return_attention: bool = False
    ) -> Tensor | tuple[Tensor, Tensor]:
        """Self-attention over ``x``.

        Args:
            x: ``(B, T, embed_dim)``.
            mask: optional bool, ``True`` = may attend, broadcastable to ``(B, H, T, T)``.
            return_attention: also return the attention weights.

        Returns:
            ``(B, T, embed_dim)``; with ``return_attention=True`` the pair
            ``(output, attention (B, H, T, T))``.
        """
        B, T, _ = x.shape
        qkv = self.qkv_proj(x)  # (B, T, 3 * embed_dim): all of Q, then K, then V
        qkv = qkv.reshape(B, T, 3, self.num_heads, self.head_dim)  # (B, T, 3, H, d_k)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)  # each (B, H, T, d_k)
        values, attention = scaled_dot_product(q, k, v, mask)  # (B, H, T, d_k), (B, H, T, T)
        values = values.transpose(1, 2).reshape(B, T, self.embed_dim)  # (B, T, embed_dim)
        out = self.o_proj(values)  # (B, T, embed_dim)
        return (out, attention) if return_attention else out


class EncoderBlock(nn.Module):
    """One encoder layer, section 3.1: self-attention then a feed-forward network.

    Each of the two sublayers is wrapped as in the paper (post-LN):
    ``x = LayerNorm(x + Dropout(Sublayer(x)))``. The feed-forward network is section 3.3's
    ``max(0, x W1 + b1) W2 + b2`` (``linear_net``, with dropout on its hidden layer).

    Args:
        input_dim: model width ``d_model``.
        num_heads: number of attention heads.
        dim_feedforward: hidden width of the feed-forward network ``d_ff``.
        dropout: dropout rate (inactive in eval mode).
    """

    def __init__(self, input_dim: int, num_heads: int, dim_feedforward: int, dropout: float = 0.0):
        super().__init__()
        self.self_attn = MultiheadAttention(input_dim, num_heads)
        self.linear_net = nn.Sequential(
            nn.Linear(input_dim, dim_feedforward),
            nn.Dropout(dropout),
            nn.ReLU(inplace=True),
            nn.Linear(dim_feedforward, input_dim),
        )
        self.norm1 = nn.LayerNorm(input_dim)
        self.norm2 = nn.LayerNorm(input_dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        """``x``: ``(B, T, input_dim)``; ``mask``: bool, ``True`` = may attend, broadcastable
        to ``(B, H, T, T)``. Returns ``(B, T, input_dim)``."""
        x = self.norm1(x + self.dropout(self.self_attn(x, mask=mask)))  # (B, T, input_dim)
        return self.norm2(x + self.dropout(self.linear_net(x)))  # (B, T, input_dim)


class CosineWarmupScheduler(LRScheduler):
    """Learning rate = base rate times a factor: linear warmup, then a cosine decay.

    The factor at step ``epoch`` is ``0.5 * (1 + cos(pi * epoch / max_iters))``, multiplied
    during the first ``warmup`` steps (``epoch <= warmup``) by ``epoch / warmup``. Warmup
    keeps the first updates small while Adam's statistics are still poor (the paper warms up
    too, section 5.3, with a different decay).

    Args:
        optimizer: the optimizer whose learning rates are scheduled.
        warmup: number of warmup steps.
        max_iters: the step at which the cosine reaches 0.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, warmup: int, max_iters: int):
        self.warmup = warmup
        self.max_num_iters = max_iters
        super().__init__(optimizer)

    def get_lr(self) -> list[float | Tensor]:  # as torch's: a rate may be a tensor
        factor = self.get_lr_factor(epoch=self.last_epoch)
        return [base_lr * factor for base_lr in self.base_lrs]

    def get_lr_factor(self, epoch: int) -> float:
        """The factor of the base learning rate at step ``epoch`` (0, 1, 2, ...)."""
        factor = 0.5 * (1 + math.cos(math.pi * epoch / self.max_num_iters))
        if epoch <= self.warmup:
            factor *= epoch / self.warmup
        return factor
