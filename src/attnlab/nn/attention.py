"""Scaled dot-product attention and multi-head attention (paper sections 3.2.1 and 3.2.2).

Two attention paths compute the same function:

* :func:`scaled_dot_product_attention` writes the math out and returns the attention weights
  (for teaching and attention maps);
* :func:`fused_scaled_dot_product_attention` calls
  :func:`torch.nn.functional.scaled_dot_product_attention` (fused kernels; the default for
  training and inference when the weights are not needed).

Both accept fewer key/value heads than query heads (grouped-query attention, Ainslie et al.
2023), and :class:`MultiHeadAttention` can rotate queries and keys by their positions (rotary
positions, Su et al. 2021; see :mod:`attnlab.nn.rotary`).

Masks follow the attnlab convention: bool, ``True`` = "may attend" (see :mod:`attnlab.nn.masks`).
"""

from __future__ import annotations

import math
from contextlib import nullcontext

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from attnlab.nn import single_query
from attnlab.nn.linear import Linear, linear
from attnlab.nn.masks import causal_mask, check_mask, combine_masks, require_bool_mask
from attnlab.nn.rotary import RotaryEmbedding
from attnlab.nn.spec import BlockSpec, not_a_tensor, spec_or_keywords
from attnlab.nn.static_cache import StaticKVCache

# Since PyTorch 2.5 (pytorch/pytorch#133882) the fused kernels return zeros for a query row
# with no allowed key; older releases return NaN there and need the rows zeroed by hand.
_TORCH_VERSION = tuple(int(part) for part in torch.__version__.split(".")[:2])
_FUSED_ZEROES_EMPTY_ROWS = _TORCH_VERSION >= (2, 5)
# Since PyTorch 2.5 the fused function also takes fewer key/value heads (``enable_gqa``).
_FUSED_HAS_GQA = _TORCH_VERSION >= (2, 5)


def _cpu_autocast_enabled() -> bool:
    """Whether CPU autocast is on (``torch.is_autocast_enabled("cpu")`` needs torch 2.4)."""
    if _TORCH_VERSION >= (2, 4):
        return torch.is_autocast_enabled("cpu")
    return torch.is_autocast_cpu_enabled()


def repeat_kv(x: Tensor, num_heads: int) -> Tensor:
    """The keys or values of ``H_kv`` heads, one copy per query head: ``(B, H_kv, T, d)`` ->
    ``(B, H, T, d)``.

    Grouped-query attention (Ainslie et al. 2023, section 2.2) splits the ``H`` query heads
    into ``H_kv`` groups of ``H / H_kv`` consecutive heads; each group shares one key/value
    head, so query head ``h`` reads key/value head ``h // (H / H_kv)``.
    """
    groups = num_heads // x.size(1)
    if groups * x.size(1) != num_heads:
        raise ValueError(f"{x.size(1)} key/value heads do not divide {num_heads} query heads")
    return x if groups == 1 else x.repeat_interleave(groups, dim=1)  # (B, H, T, d)


def _check_attention_inputs(
    q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None, dropout_p: float
) -> None:
    """Raise ``TypeError`` unless ``q``, ``k`` and ``v`` are tensors, ``ValueError`` unless
    ``q (..., T_q, d_k)``, ``k (..., T_k, d_k)`` and ``v (..., T_k, d_v)`` fit each other,
    ``mask`` is bool and broadcasts to the scores ``(..., T_q, T_k)``, and ``dropout_p`` is in
    ``[0, 1]`` (shape and dtype reads only)."""
    if not (isinstance(q, Tensor) and isinstance(k, Tensor) and isinstance(v, Tensor)):
        given = {"q": q, "k": k, "v": v}
        name = next(n for n, t in given.items() if not isinstance(t, Tensor))
        raise not_a_tensor(name, given[name], "(B, H, T, d)")
    if not 0.0 <= dropout_p <= 1.0:  # also nan
        raise ValueError(f"dropout_p must be in [0, 1]; got {dropout_p}")
    if q.size(-1) != k.size(-1):
        raise ValueError(
            f"q and k must have the same width d_k (last size); got q {tuple(q.shape)} and "
            f"k {tuple(k.shape)}"
        )
    if k.dim() < 2 or k.size(-2) != v.size(-2):
        raise ValueError(
            f"k and v must hold the same number of keys T_k (size -2); got k {tuple(k.shape)} "
            f"and v {tuple(v.shape)}"
        )
    if mask is not None:
        require_bool_mask(mask, "mask")
        _check_mask_broadcasts(mask, (*q.shape[:-1], k.size(-2)))


def _check_mask_broadcasts(mask: Tensor, scores: tuple[int, ...]) -> None:
    """Raise ``ValueError`` unless ``mask`` broadcasts to the ``scores`` shape without growing
    it: each of its sizes, counted from the right, is 1 or the score's size. A mask that grew
    the scores (a batch of 2 masks for 1 query) would silently change the output's shape."""
    # (1, ..., 1, *mask.shape): the same length as the scores', which torch 2.3's compiler
    # needs of the zip
    shape = (1,) * (len(scores) - mask.dim()) + tuple(mask.shape)
    fits = mask.dim() <= len(scores) and all(
        m == 1 or m == s for m, s in zip(shape, scores, strict=True)
    )
    if not fits:  # the message is formatted here only: formatting sizes fixes them in a graph
        raise ValueError(
            f"mask of shape {tuple(mask.shape)} does not broadcast to the attention scores "
            f"(..., T_q, T_k) = {tuple(scores)}: each size must be 1 or the score's size"
        )


def scaled_dot_product_attention(
    q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None = None, dropout_p: float = 0.0
) -> tuple[Tensor, Tensor]:
    """Attention(Q, K, V) = softmax(Q K^T / sqrt(d_k)) V, written out (section 3.2.1).

    Args:
        q: queries ``(B, H, T_q, d_k)``.
        k: keys ``(B, H_kv, T_k, d_k)``; ``H_kv = H``, or fewer dividing ``H`` (grouped-query
            attention: each key/value head serves a group of query heads, see :func:`repeat_kv`).
        v: values ``(B, H_kv, T_k, d_v)``.
        mask: bool, ``True`` = may attend; broadcastable to ``(B, H, T_q, T_k)``.
        dropout_p: dropout on the attention weights (pass 0.0 in eval mode).

    Returns:
        ``(output, weights)``: output ``(B, H, T_q, d_v)`` and weights ``(B, H, T_q, T_k)``.
        A query row with no allowed key gets all-zero weights, hence a zero output (never NaN).

    Raises ``ValueError`` for a mask that is not bool or does not broadcast to the scores,
    keys and values that do not fit, or a ``dropout_p`` outside ``[0, 1]``; ``TypeError`` for
    inputs that are not tensors.
    """
    _check_attention_inputs(q, k, v, mask, dropout_p)
    k, v = repeat_kv(k, q.size(1)), repeat_kv(v, q.size(1))  # each (B, H, T_k, d)
    d_k = q.size(-1)
    scores = q @ k.transpose(-2, -1) / math.sqrt(d_k)  # (B, H, T_q, T_k)
    if mask is not None:
        # The most negative finite number rather than -inf: a fully masked row then gives a
        # finite (uniform) softmax instead of NaN, and the masked_fill below zeroes it.
        scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
    weights = scores.softmax(dim=-1)  # (B, H, T_q, T_k)
    if mask is not None:
        weights = weights.masked_fill(~mask, 0.0)
    if dropout_p > 0.0:
        weights = F.dropout(weights, p=dropout_p)
    return weights @ v, weights  # (B, H, T_q, d_v), (B, H, T_q, T_k)


def fused_scaled_dot_product_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    mask: Tensor | None = None,
    dropout_p: float = 0.0,
    is_causal: bool = False,
) -> Tensor:
    """The same function through :func:`torch.nn.functional.scaled_dot_product_attention`.

    Shapes as in :func:`scaled_dot_product_attention` (fewer key/value heads included: torch's
    ``enable_gqa`` where it has it, else :func:`repeat_kv`); returns only the output
    ``(B, H, T_q, d_v)``. ``is_causal=True`` applies the causal mask without materialising it
    (only valid with ``mask=None``). Query rows with no allowed key give zeros, as on the
    explicit path. A mask that is not bool raises ``ValueError`` (torch would add a float
    mask to the scores, masking nothing).
    """
    _check_attention_inputs(q, k, v, mask, dropout_p)
    if mask is not None and mask.size(-1) == 1 and k.size(-2) > 1:
        # torch 2.3's CPU kernel reads a mask that broadcasts along the keys out of bounds
        # (wrong values that change from call to call): hand it one entry per key.
        mask = mask.expand(*mask.shape[:-1], k.size(-2)).contiguous()  # (..., T_q, T_k)
    grouped = k.size(1) != q.size(1)
    if grouped and not _FUSED_HAS_GQA:
        k, v = repeat_kv(k, q.size(1)), repeat_kv(v, q.size(1))  # each (B, H, T_k, d)
        grouped = False
    gqa = {"enable_gqa": True} if grouped else {}
    dtype = q.dtype
    # On the CPU the half-precision attention kernels are slower than float32 ones (the bf16
    # backward about 6x on the development machine): attend in float32, with CPU autocast off
    # so that it does not cast the inputs back. Only under autocast or half precision:
    # entering the autocast context costs about 5% of a small model's decoding step.
    upcast = q.device.type == "cpu" and (
        dtype in (torch.bfloat16, torch.float16) or _cpu_autocast_enabled()
    )
    if upcast:
        q, k, v = q.float(), k.float(), v.float()
    with torch.autocast("cpu", enabled=False) if upcast else nullcontext():
        out = F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, dropout_p=dropout_p, is_causal=is_causal, **gqa
        )  # (B, H, T_q, d_v)
    if upcast:
        out = out.to(dtype)
    if mask is not None and not _FUSED_ZEROES_EMPTY_ROWS:
        has_any_key = mask.any(dim=-1, keepdim=True)  # (..., T_q, 1)
        out = out.masked_fill(~has_any_key, 0.0)
    return out


class KVCache:
    """The keys and values of one attention layer, kept between decoding steps.

    Autoregressive decoding produces one token per step. Without a cache every step
    recomputes the keys and values of the whole prefix; with it, each step computes them for
    the new token only and appends them here. Cross-attention keys and values depend only on
    the source, so they are computed once and reused (:meth:`MultiHeadAttention.forward` fills
    an empty cache from ``memory`` and reuses it afterwards).

    Storage grows by doubling, so appending one step costs a copy of one step, not of the
    whole prefix. With grouped-query attention it holds only the ``H_kv`` key/value heads
    (``H / H_kv`` times less memory than the query heads would need), and with rotary
    positions the keys already rotated by their positions.

    Attributes:
        k, v: the cached keys and values ``(B, H_kv, T_cached, d_head)``, or ``None`` when
            empty.
    """

    def __init__(self) -> None:
        self._k: Tensor | None = None  # (B, H_kv, capacity, d_head)
        self._v: Tensor | None = None
        self._length = 0

    def __len__(self) -> int:
        return self._length

    @property
    def batch_size(self) -> int | None:
        """The number of sequences the cache holds keys for; ``None`` while empty."""
        return None if self._k is None else self._k.size(0)

    @property
    def k(self) -> Tensor | None:
        """The cached keys ``(B, H_kv, T_cached, d_head)``, or ``None`` while empty."""
        return None if self._k is None else self._k[:, :, : self._length]

    @property
    def v(self) -> Tensor | None:
        """The cached values ``(B, H_kv, T_cached, d_head)``, or ``None`` while empty."""
        return None if self._v is None else self._v[:, :, : self._length]

    def update(self, k_new: Tensor, v_new: Tensor) -> tuple[Tensor, Tensor]:
        """Append ``(B, H_kv, T_new, d_head)`` keys and values; return all of them."""
        end = self._length + k_new.size(2)
        if self._k is None or self._v is None or end > self._k.size(2):
            self._k, self._v = self._grown(k_new, v_new, end)
        self._k[:, :, self._length : end] = k_new
        self._v[:, :, self._length : end] = v_new
        self._length = end
        return self._k[:, :, :end], self._v[:, :, :end]  # each (B, H_kv, T_cached, d_head)

    def _grown(self, k_new: Tensor, v_new: Tensor, needed: int) -> tuple[Tensor, Tensor]:
        """New storage for at least ``needed`` positions, holding the cached ones."""
        capacity = max(needed, 2 * (0 if self._k is None else self._k.size(2)), 16)
        B, H_kv, _, d_head = k_new.shape
        k = k_new.new_empty(B, H_kv, capacity, d_head)  # (B, H_kv, capacity, d_head)
        v = v_new.new_empty(B, H_kv, capacity, v_new.size(-1))
        if self._k is not None and self._v is not None:
            k[:, :, : self._length] = self._k[:, :, : self._length]
            v[:, :, : self._length] = self._v[:, :, : self._length]
        return k, v

    def reorder(self, index: Tensor) -> None:
        """Keep batch rows ``index`` (beam search: each surviving beam's history)."""
        if self._k is not None and self._v is not None:
            self._k = self._k.index_select(0, index)
            self._v = self._v.index_select(0, index)


class MultiHeadAttention(nn.Module):
    """Multi-head attention, section 3.2.2: ``Concat(head_1..head_h) W^O``.

    ``head_i = Attention(Q W_i^Q, K W_i^K, V W_i^V)`` with ``d_k = d_v = d_model / h``. The
    three input projections of all heads are stored as one ``(3 d_model, d_model)`` matrix
    ``qkv_proj`` (rows: Q, then K, then V — the layout of ``nn.MultiheadAttention``'s
    ``in_proj_weight``). Self-attention applies it in one fused matmul; cross-attention
    (keys and values from another sequence, section 3.2.3) applies its Q rows to the queries
    and its K/V rows to the memory.

    Two later variants, chosen through the spec (the paper's attention is the default):

    * ``num_kv_heads`` < ``num_heads``: grouped-query attention (Ainslie et al. 2023, section
      2.2). Keys and values have ``H_kv`` heads, each shared by ``H / H_kv`` query heads;
      ``qkv_proj`` is ``((H + 2 H_kv) d_head, d_model)`` (rows: the Q heads, the K heads, the
      V heads), and a cache holds only the ``H_kv`` key/value heads.
    * ``positions="rotary"``: self-attention rotates queries and keys by their positions
      (RoFormer, :class:`~attnlab.nn.rotary.RotaryEmbedding`) after the projection and before
      the cache, so cached keys keep the rotation of their own positions. Cross-attention's
      queries and keys come from different sequences and are not rotated.

    Args (torch.nn style):
        d_model: model width; must be divisible by ``num_heads``.
        num_heads: number of heads ``h``.
        dropout: dropout on the attention weights (train mode only).
        bias: whether the projections have biases.
        spec: instead of the four above, a :class:`~attnlab.nn.BlockSpec`; this module reads
            its ``d_model``, ``num_heads``, ``kv_heads``, ``positions``, ``rope_theta``,
            ``attention_dropout_rate`` and ``bias``.

    Call:
        ``mha(x, mask=None)`` — self-attention, ``x: (B, T, d_model)``;
        ``mha(x, memory, mask=None)`` — cross-attention, ``memory: (B, T_k, d_model)``.
        ``mask``: bool, ``True`` = may attend, ``(T_q, T_k)`` or ``(B|1, H|1, T_q|1, T_k)``.
        ``is_causal=True`` adds the causal mask (self-attention only).
        ``cache``: a :class:`KVCache`. In self-attention the new keys and values are appended
        to it and the queries attend to every cached key (with ``is_causal``, new query ``i``
        sits at position ``len(cache) + i``). Self-attention also takes a
        :class:`~attnlab.nn.StaticKVCache` (fixed shapes, for compilers and CUDA graphs): the
        queries then attend over its whole buffers, masked to the written positions. In
        cross-attention an empty cache is filled from ``memory`` and a filled one is reused
        (``memory`` may then be ``None``; pass ``cross=True`` to say it is cross-attention).
        ``positions``: with rotary positions, the integer positions of the new queries and
        keys, ``(T,)`` or ``(B, T)`` (e.g. counting only the real tokens of a left-padded
        row); default ``len(cache) .. len(cache) + T - 1``. Ignored without rotary positions.
        ``rotary_cos_sin``: instead of ``positions``, their angles ``(cos, sin)`` from
        :meth:`~attnlab.nn.rotary.RotaryEmbedding.cos_sin`: a model computes them once per
        call and hands them to every layer (one set of angles serves all layers).

    Returns:
        ``(B, T_q, d_model)``; with ``need_weights=True`` the pair ``(output, weights)`` with
        weights ``(B, H, T_q, T_k)``, computed on the explicit path. Otherwise the fused path,
        except for a small decoding step on the CPU (one query per row), which
        :mod:`attnlab.nn.single_query` computes without starting threads.
    """

    def __init__(
        self,
        d_model: int | None = None,
        num_heads: int | None = None,
        dropout: float = 0.0,
        bias: bool = True,
        *,
        spec: BlockSpec | None = None,
    ):
        super().__init__()
        spec = spec_or_keywords(
            spec,
            "MultiHeadAttention",
            keyword_defaults={"attention_dropout": 0.0},
            d_model=d_model,
            num_heads=num_heads,
            attention_dropout=dropout,
            bias=bias,
        )
        self.d_model = spec.d_model
        self.num_heads = spec.num_heads
        self.num_kv_heads = spec.kv_heads
        self.d_head = spec.d_head
        self.dropout = spec.attention_dropout_rate
        qkv_width = (spec.num_heads + 2 * spec.kv_heads) * spec.d_head  # 3 d_model without GQA
        self.qkv_proj = Linear(spec.d_model, qkv_width, bias=spec.bias)
        self.out_proj = Linear(spec.d_model, spec.d_model, bias=spec.bias)
        self.rotary: RotaryEmbedding | None = None
        if spec.positions == "rotary":
            self.rotary = RotaryEmbedding(spec.d_head, base=spec.rope_theta)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Xavier-uniform weights, zero biases."""
        nn.init.xavier_uniform_(self.qkv_proj.weight)
        nn.init.xavier_uniform_(self.out_proj.weight)
        if self.qkv_proj.bias is not None:
            nn.init.zeros_(self.qkv_proj.bias)
            nn.init.zeros_(self.out_proj.bias)

    def forward(
        self,
        x: Tensor,
        memory: Tensor | None = None,
        mask: Tensor | None = None,
        need_weights: bool = False,
        is_causal: bool = False,
        cache: KVCache | StaticKVCache | None = None,
        cross: bool = False,
        positions: Tensor | None = None,
        rotary_cos_sin: tuple[Tensor, Tensor] | None = None,
    ) -> Tensor | tuple[Tensor, Tensor]:
        """Multi-head attention (section 3.2.2) of ``x (B, T_q, d_model)`` over itself, or over
        ``memory (B, T_k, d_model)``: ``(B, T_q, d_model)``, or with ``need_weights=True``
        ``(output, weights (B, H, T_q, T_k))``. ``mask`` is bool, ``True`` = may attend; every
        argument is described under "Call" in the class docstring."""
        B, T_q = self._check_input("x", x)
        cross = cross or memory is not None
        T_k = self._key_length(B, T_q, memory, cache, cross, is_causal)
        if mask is not None:  # checked before a cache grows: a refused call leaves it as it was
            check_mask(mask, B, self.num_heads, T_q, T_k)
        if cross:
            q, k, v = self._cross_projections(x, memory, cache)
        else:
            q, k, v = self._self_projections(x, cache, positions, rotary_cos_sin)

        if isinstance(cache, StaticKVCache):
            # Whole buffers: hide the positions not yet written, and each new query's future.
            mask = combine_masks(cache.visible(T_q), mask)  # (B|1, H|1, T_q, max_len)
            is_causal = False
        if is_causal and T_q == 1:
            is_causal = False  # a single newest query may attend to every key: nothing to mask
        if is_causal and (mask is not None or need_weights or T_k != T_q):
            # With a cache the T_q new queries are the last T_q of T_k positions:
            # causal_mask shifts its diagonal accordingly.
            mask = combine_masks(causal_mask(T_q, T_k, device=x.device), mask)
            is_causal = False

        dropout_p = self.dropout if self.training else 0.0
        weights: Tensor | None = None
        if need_weights:
            heads, weights = scaled_dot_product_attention(q, k, v, mask, dropout_p)
        elif single_query.fits(q, k, dropout_p):  # a small decoding step: on this thread
            heads = single_query.single_query_attention(q, k, v, mask)
        else:
            heads = fused_scaled_dot_product_attention(q, k, v, mask, dropout_p, is_causal)
        # heads: (B, H, T_q, d_head)
        heads = heads.transpose(1, 2).reshape(B, T_q, self.d_model)  # (B, T_q, d_model)
        out = self.out_proj(heads)  # (B, T_q, d_model)
        return out if weights is None else (out, weights)  # weights only with need_weights

    def _key_length(
        self,
        B: int,
        T_q: int,
        memory: Tensor | None,
        cache: KVCache | StaticKVCache | None,
        cross: bool,
        is_causal: bool,
    ) -> int:
        """``T_k``, the number of keys the ``T_q`` queries will see, known before any
        projection; raises ValueError for a call that cannot be made."""
        if isinstance(cache, KVCache) and cache.batch_size not in (None, B):
            raise ValueError(
                f"the cache holds {cache.batch_size} sequences but x has batch size {B}: a "
                "KVCache serves the batch it was first filled with; make a new one"
            )
        if isinstance(cache, StaticKVCache):
            if cross:
                raise ValueError(
                    "a StaticKVCache holds self-attention; cross-attention takes a KVCache"
                )
            return cache.max_len  # the whole buffers
        cached = 0 if cache is None else len(cache)
        if not cross:
            return cached + T_q
        if is_causal:
            raise ValueError("is_causal=True applies to self-attention only, not to memory")
        if cached:
            return cached  # the memory's keys and values, computed on the first step
        if memory is None:
            raise ValueError("cross-attention needs memory (or a filled cache)")
        B_m, T_m = self._check_input("memory", memory)
        if B_m != B:
            raise ValueError(f"memory batch size {B_m} does not match x batch size {B}")
        return T_m

    def _self_projections(
        self,
        x: Tensor,
        cache: KVCache | StaticKVCache | None,
        positions: Tensor | None,
        rotary_cos_sin: tuple[Tensor, Tensor] | None = None,
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Q ``(B, H, T, d_head)``, K and V ``(B, H_kv, T, d_head)`` of self-attention, in one
        fused matmul, Q and K rotated with rotary positions; with a cache, K and V hold every
        cached position too: ``(B, H_kv, T_cached + T, d_head)``."""
        B, T = x.shape[:2]
        H, H_kv, d_head = self.num_heads, self.num_kv_heads, self.d_head
        qkv = self.qkv_proj(x)  # (B, T, (H + 2 H_kv) d_head)
        qkv = qkv.view(B, T, H + 2 * H_kv, d_head).transpose(1, 2)  # (B, H + 2 H_kv, T, d_head)
        qk, v = qkv.split([H + H_kv, H_kv], dim=1)  # (B, H + H_kv, T, d_head), (B, H_kv, T, d_head)
        if self.rotary is not None:
            cos, sin = rotary_cos_sin or self._rotary_cos_sin(positions, cache, B, T)
            if cos.dtype != qk.dtype:  # angles of another precision (e.g. under autocast)
                cos, sin = cos.to(qk.dtype), sin.to(qk.dtype)
            qk = self.rotary.rotate(qk, cos, sin)  # queries and keys share their positions
        q, k = qk.split([H, H_kv], dim=1)  # (B, H, T, d_head), (B, H_kv, T, d_head)
        if cache is not None:
            k, v = cache.update(k, v)  # each (B, H_kv, T_cached + T, d_head)
        return q, k, v

    def _rotary_cos_sin(
        self, positions: Tensor | None, cache: KVCache | StaticKVCache | None, B: int, T: int
    ) -> tuple[Tensor, Tensor]:
        """The rotary angles of ``positions`` ``(T,)`` or ``(B, T)``, by default the ``T``
        positions after the cache's (see :meth:`~attnlab.nn.rotary.RotaryEmbedding.cos_sin`)."""
        assert self.rotary is not None  # called with rotary positions only
        if positions is not None and tuple(positions.shape) not in ((T,), (B, T)):
            raise ValueError(
                f"positions must have shape (T,) = ({T},) or (B, T) = ({B}, {T}); "
                f"got {tuple(positions.shape)}"
            )
        if positions is None and isinstance(cache, StaticKVCache):
            positions = cache.positions(T)  # (T,), from the cache's position tensor
        elif positions is None:
            start = 0 if cache is None else len(cache)
            positions = torch.arange(start, start + T, device=self.rotary.inv_freq.device)  # (T,)
        return self.rotary.cos_sin(positions, torch.float32)

    def _cross_projections(
        self, x: Tensor, memory: Tensor | None, cache: KVCache | StaticKVCache | None
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Q from ``x`` ``(B, H, T_q, d_head)``; K and V ``(B, H_kv, T_k, d_head)`` from
        ``memory``, or from a filled cache (the memory's keys and values, computed on the
        first step)."""
        B, T_q = x.shape[:2]
        H, H_kv, d_head = self.num_heads, self.num_kv_heads, self.d_head
        # W_Q (H d_head, d_model) and W_K, W_V stacked (2 H_kv d_head, d_model)
        w_q, w_kv = self.qkv_proj.weight.split([H * d_head, 2 * H_kv * d_head])
        b_q, b_kv = (None, None)
        if self.qkv_proj.bias is not None:
            b_q, b_kv = self.qkv_proj.bias.split([H * d_head, 2 * H_kv * d_head])  # likewise
        q = linear(x, w_q, b_q).view(B, T_q, H, d_head).transpose(1, 2)  # (B, H, T_q, d_head)
        if cache is not None and len(cache) > 0:
            k, v = cache.k, cache.v  # each (B, H_kv, T_k, d_head)
            assert k is not None and v is not None  # a filled cache holds both
            return q, k, v
        assert memory is not None  # checked by _key_length
        T_m = memory.size(1)
        kv = linear(memory, w_kv, b_kv)  # (B, T_k, 2 H_kv d_head)
        kv = kv.view(B, T_m, 2 * H_kv, d_head).transpose(1, 2)  # (B, 2 H_kv, T_k, d_head)
        k, v = kv.split([H_kv, H_kv], dim=1)  # each (B, H_kv, T_k, d_head)
        if cache is not None:
            k, v = cache.update(k, v)
        return q, k, v

    def _check_input(self, name: str, t: Tensor) -> tuple[int, int]:
        """``(B, T)`` of ``t``, after checking that it is a float ``(B, T, d_model)`` tensor."""
        if not isinstance(t, Tensor):
            raise not_a_tensor(name, t, "(B, T, d_model)")
        if t.dim() != 3 or t.size(-1) != self.d_model:
            raise ValueError(
                f"{name} must have shape (B, T, d_model={self.d_model}); got {tuple(t.shape)}"
            )
        if not t.is_floating_point():
            raise ValueError(
                f"{name} must be a float tensor of vectors; got dtype {t.dtype} (token ids go "
                "through an embedding first, e.g. attnlab.nn.TokenEmbedding)"
            )
        return t.size(0), t.size(1)

    def extra_repr(self) -> str:
        """The settings printed by ``repr(module)``."""
        kv = f", num_kv_heads={self.num_kv_heads}" if self.num_kv_heads != self.num_heads else ""
        return f"d_model={self.d_model}, num_heads={self.num_heads}{kv}, dropout={self.dropout}"
