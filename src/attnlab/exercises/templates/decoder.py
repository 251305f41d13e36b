"""Practical: the decoder, trained on translation.

Fill in every ``raise NotImplementedError("TODO: ...")``. Keep the names, the signatures and
the attribute names set in ``DecoderLayer.__init__``: the checker copies weights into them.
Check your work part by part with ``attnlab exercise check DIR``.

Paper: Vaswani et al., "Attention Is All You Need" (2017).

Multi-head attention and the feed-forward network are given, complete (you wrote them in the
attention practical); here you assemble them into a decoder layer and decode with it:

* ``MultiHeadAttention``: ``attn(x, mask=m)`` is self-attention over ``x`` ``(B, T, d_model)``;
  ``attn(x, memory, mask=m)`` is cross-attention: queries from ``x``, keys and values from
  ``memory`` ``(B, S, d_model)``. Both return ``(B, T, d_model)``.
* ``FeedForward``: ``ff(x)`` is section 3.3's ``max(0, x W1 + b1) W2 + b2``.

Shapes: ``B`` batch, ``T`` target length, ``S`` source length. Batch first everywhere.

Masks: bool, ``True`` = "may attend" (the convention of
``torch.nn.functional.scaled_dot_product_attention``).
"""

from __future__ import annotations

from typing import Protocol

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class MultiHeadAttention(nn.Module):
    """Given, complete: multi-head attention, section 3.2.2, for self- and cross-attention.

    ``qkv_proj`` stacks the Q, K and V projections of all heads (output: all of Q, then K,
    then V); ``out_proj`` is ``W^O``. Dropout acts on the attention weights in train mode.

    Call: ``attn(x, memory=None, mask=None)`` with ``x`` ``(B, T, d_model)``; keys and values
    come from ``memory`` ``(B, S, d_model)`` when it is given, else from ``x``. ``mask``:
    bool, ``True`` = may attend, broadcastable to ``(B, H, T, S)``. Returns ``(B, T, d_model)``.
    """

    def __init__(self, d_model: int, num_heads: int, dropout: float = 0.0):
        super().__init__()
        self.num_heads = num_heads
        self.d_k = d_model // num_heads
        self.dropout = dropout
        self.qkv_proj = nn.Linear(d_model, 3 * d_model)
        self.out_proj = nn.Linear(d_model, d_model)

    def forward(
        self, x: Tensor, memory: Tensor | None = None, mask: Tensor | None = None
    ) -> Tensor:
        source = x if memory is None else memory
        (B, T, d_model), S = x.shape, source.size(1)
        # W_Q (d_model, d_model) and W_K, W_V stacked (2 d_model, d_model); biases likewise
        w_q, w_kv = self.qkv_proj.weight.split([d_model, 2 * d_model])
        b_q, b_kv = self.qkv_proj.bias.split([d_model, 2 * d_model])
        # q: (B, T, d_model) -> (B, T, H, d_k) -> (B, H, T, d_k)
        q = F.linear(x, w_q, b_q).view(B, T, self.num_heads, self.d_k).transpose(1, 2)
        # kv: (B, S, 2 d_model) -> (B, S, 2, H, d_k)
        kv = F.linear(source, w_kv, b_kv).view(B, S, 2, self.num_heads, self.d_k)
        k, v = kv.permute(2, 0, 3, 1, 4)  # each (B, H, S, d_k)
        p = self.dropout if self.training else 0.0
        heads = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p)
        # heads: (B, H, T, d_k)
        return self.out_proj(heads.transpose(1, 2).reshape(B, T, d_model))  # (B, T, d_model)


class FeedForward(nn.Module):
    """Given, complete: the position-wise feed-forward network, section 3.3,
    ``max(0, x W1 + b1) W2 + b2`` with dropout on the hidden layer. ``(..., d_model)`` in and
    out."""

    def __init__(self, d_model: int, d_ff: int, dropout: float = 0.0):
        super().__init__()
        self.linear1 = nn.Linear(d_model, d_ff)
        self.dropout = nn.Dropout(dropout)
        self.linear2 = nn.Linear(d_ff, d_model)

    def forward(self, x: Tensor) -> Tensor:
        return self.linear2(self.dropout(torch.relu(self.linear1(x))))  # (..., d_model)


def causal_mask(T: int) -> Tensor:
    """The decoder's self-attention mask, section 3.2.3 ("prevent leftward information flow").

    Position ``i`` may attend to positions ``j <= i`` (itself and the past), never to the
    future.

    Returns:
        Bool tensor ``(T, T)``, ``True`` = may attend: ``mask[i, j]`` is ``True`` iff ``j <= i``.
    """
    raise NotImplementedError("TODO: True on and below the diagonal (torch.tril may help)")


class DecoderLayer(nn.Module):
    """One decoder layer, section 3.1: masked self-attention, cross-attention, feed-forward.

    "In addition to the two sub-layers in each encoder layer, the decoder inserts a third
    sub-layer, which performs multi-head attention over the output of the encoder stack."
    Each sublayer is wrapped as in the paper (post-LN):
    ``x = LayerNorm(x + Dropout(Sublayer(x)))``.

    Args:
        d_model: model width.
        num_heads: number of attention heads.
        d_ff: hidden width of the feed-forward network.
        dropout: dropout rate (inactive in eval mode).
    """

    def __init__(self, d_model: int, num_heads: int, d_ff: int, dropout: float = 0.1):
        super().__init__()
        self.self_attn = MultiHeadAttention(d_model, num_heads, dropout)
        self.dropout1 = nn.Dropout(dropout)
        self.norm1 = nn.LayerNorm(d_model)
        self.cross_attn = MultiHeadAttention(d_model, num_heads, dropout)
        self.dropout2 = nn.Dropout(dropout)
        self.norm2 = nn.LayerNorm(d_model)
        self.feed_forward = FeedForward(d_model, d_ff, dropout)
        self.dropout3 = nn.Dropout(dropout)
        self.norm3 = nn.LayerNorm(d_model)

    def self_attention_block(self, x: Tensor, tgt_mask: Tensor | None = None) -> Tensor:
        """Sublayer 1, masked self-attention over the target (sections 3.2.3 and 3.1).

        Args:
            x: target-side states ``(B, T, d_model)``.
            tgt_mask: bool, ``True`` = may attend, ``(T, T)`` (e.g. :func:`causal_mask`).

        Returns:
            ``norm1(x + dropout1(self_attn(x)))``, ``(B, T, d_model)``.
        """
        raise NotImplementedError("TODO: self-attention with tgt_mask, residual, norm1")

    def cross_attention_block(
        self, x: Tensor, memory: Tensor, memory_mask: Tensor | None = None
    ) -> Tensor:
        """Sublayer 2, attention over the encoder output ("encoder-decoder attention",
        section 3.2.3): the queries come from the decoder, the keys and values from
        ``memory``.

        Args:
            x: target-side states ``(B, T, d_model)``.
            memory: the encoder output ``(B, S, d_model)``.
            memory_mask: bool, ``True`` = may attend, over source positions, e.g. the source
                padding mask ``(B, 1, 1, S)``.

        Returns:
            ``norm2(x + dropout2(cross_attn(x, memory)))``, ``(B, T, d_model)``.
        """
        raise NotImplementedError("TODO: cross-attention over memory, residual, norm2")

    def feed_forward_block(self, x: Tensor) -> Tensor:
        """Sublayer 3, the position-wise feed-forward network (sections 3.3 and 3.1).

        Returns ``norm3(x + dropout3(feed_forward(x)))``, ``(B, T, d_model)``.
        """
        raise NotImplementedError("TODO: feed-forward, residual, norm3")

    def forward(
        self,
        x: Tensor,
        memory: Tensor,
        tgt_mask: Tensor | None = None,
        memory_mask: Tensor | None = None,
    ) -> Tensor:
        """The three sublayers in order.

        Args:
            x: target-side input ``(B, T, d_model)``.
            memory: the encoder output ``(B, S, d_model)``.
            tgt_mask: bool, ``True`` = may attend, ``(T, T)``.
            memory_mask: bool, ``True`` = may attend, broadcastable to ``(B, H, T, S)``.

        Returns:
            ``(B, T, d_model)``.
        """
        raise NotImplementedError("TODO: self-attention block, cross-attention block, feed-forward")


class Seq2SeqModel(Protocol):
    """What :func:`greedy_decode` needs from an encoder-decoder model."""

    def encode(self, src: Tensor, src_mask: Tensor) -> Tensor:
        """Source ids ``(B, S)`` and their mask ``(B, 1, 1, S)`` -> memory ``(B, S, d_model)``."""
        ...

    def decode(self, memory: Tensor, src_mask: Tensor, tgt: Tensor) -> Tensor:
        """Memory, source mask and the target ids so far ``(B, T)`` -> next-token logits
        ``(B, T, vocab)``: position ``t`` holds the scores of the token that follows
        ``tgt[:, t]``."""
        ...


@torch.no_grad()
def greedy_decode(
    model: Seq2SeqModel, src: Tensor, src_mask: Tensor, max_len: int, bos_id: int, eos_id: int
) -> Tensor:
    """Greedy decoding: at each step append the single most likely next token (the paper
    uses beam search, section 6.1; greedy search is its beam of one).

    Encode the source once. Start every target with ``bos_id``; then, step by step, decode
    the whole target so far, take the logits of its *last* position, append their argmax and
    feed the longer target back in. A sequence that has produced ``eos_id`` is finished: from
    then on it gets ``eos_id`` again. Stop when every sequence is finished, or when the
    targets hold ``max_len`` tokens.

    Args:
        model: an encoder-decoder with ``encode`` and ``decode`` (see :class:`Seq2SeqModel`).
        src: source ids ``(B, S)``.
        src_mask: bool, ``True`` = may attend, ``(B, 1, 1, S)`` (``False`` at padding).
        max_len: the most tokens a target may hold, ``bos_id`` included.
        bos_id: the start-of-sequence id.
        eos_id: the end-of-sequence id.

    Returns:
        Target ids ``(B, L)`` with ``L <= max_len``, each row starting with ``bos_id``.
    """
    raise NotImplementedError(
        "TODO: encode once; loop: decode, argmax of the last position, append, stop at eos"
    )
