"""Feed-forward network, encoder and decoder layers and their stacks (paper sections 3.1, 3.3).

Masks follow the attnlab convention: bool, ``True`` = "may attend" (see :mod:`attnlab.nn.masks`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from attnlab.nn.attention import KVCache, MultiHeadAttention
from attnlab.nn.dropout import Dropout
from attnlab.nn.linear import Linear
from attnlab.nn.normalization import norm_layer
from attnlab.nn.spec import (
    Activation,
    BlockSpec,
    check_layer_count,
    not_a_tensor,
    spec_or_keywords,
)
from attnlab.nn.static_cache import StaticKVCache

# Without autograd, the activation overwrites the first linear layer's fresh output in place:
# one (B, T, d_ff) tensor less to allocate (and page in) per layer. With autograd the
# in-place op would act on a view of the matmul output and cost extra copies in backward, so
# it stays out of place there. "gelu_tanh" is GELU's tanh approximation, the "gelu_new" of
# GPT-2 (Hendrycks & Gimpel 2016). torch.nn.functional.gelu has no in-place flag; the ATen
# operator torch.ops.aten.gelu_ is its in-place form. The names are BlockSpec's ACTIVATIONS;
# in "swiglu" the SiLU (Swish with beta = 1) acts on the gate, see FeedForward.
_ACTIVATIONS = {
    "relu": lambda x: F.relu(x, inplace=not x.requires_grad),
    "gelu": lambda x: F.gelu(x) if x.requires_grad else torch.ops.aten.gelu_(x),
    "gelu_tanh": lambda x: (
        F.gelu(x, approximate="tanh")
        if x.requires_grad
        else torch.ops.aten.gelu_(x, approximate="tanh")
    ),
    "swiglu": lambda x: F.silu(x, inplace=not x.requires_grad),
}


def residual(x: Tensor, sublayer_out: Tensor) -> Tensor:
    """The residual connection of section 3.1 (``x + Sublayer(x)``); shapes ``(B, T, d_model)``.

    Without autograd (inference) the sum is written into ``sublayer_out`` — a fresh tensor
    the layer owns — instead of a new tensor: one allocation less per sublayer, which on the
    CPU saves the page faults of a fresh buffer (about 7% of MiniLM's inference time, see
    ``attnlab bench bert``). Same values either way: IEEE addition is commutative.
    """
    if (
        sublayer_out.requires_grad
        or x.requires_grad
        or sublayer_out.shape != x.shape
        or sublayer_out.dtype != x.dtype
    ):
        return x + sublayer_out
    return sublayer_out.add_(x)


class FeedForward(nn.Module):
    """Position-wise feed-forward network, section 3.3: ``FFN(x) = max(0, x W1 + b1) W2 + b2``.

    ``activation="gelu"`` swaps ReLU for GELU (BERT, GPT). ``activation="swiglu"`` is the
    gated network of Shazeer 2020 ("GLU Variants Improve Transformer", section 2, FFN_SwiGLU)
    used by Llama: ``FFN(x) = (SiLU(x W1) * x W3) W2``, where ``SiLU(z) = z sigmoid(z)`` and
    ``*`` is element-wise — the gate ``SiLU(x W1)`` decides how much of each hidden unit
    ``x W3`` passes. Its third matrix ``W3`` is stacked under ``W1`` in ``linear1``, which is
    then ``(2 d_ff, d_model)`` (rows: ``W1``, Hugging Face's ``gate_proj``, then ``W3``, its
    ``up_proj``), so that one matmul gives the gate and the value, as ``qkv_proj`` gives the
    queries, keys and values of attention; ``linear2`` is ``W2`` (``down_proj``). Dropout is
    applied to the hidden activations, as in ``nn.TransformerEncoderLayer``. Xavier-uniform
    weights, zero biases (``bias=False``: none, as in nanoGPT's default GPT and Llama).

    Args (torch.nn style): ``d_model, d_ff, dropout, activation, bias``; or instead
    ``spec``, a :class:`~attnlab.nn.BlockSpec` whose ``d_model``, ``d_ff``,
    ``ffn_dropout_rate``, ``activation`` and ``bias`` this module reads.

    Input and output: ``(..., d_model)``; hidden width ``d_ff``.
    """

    def __init__(
        self,
        d_model: int | None = None,
        d_ff: int | None = None,
        dropout: float = 0.0,
        activation: Activation = "relu",
        bias: bool = True,
        *,
        spec: BlockSpec | None = None,
    ):
        super().__init__()
        spec = spec_or_keywords(
            spec,
            "FeedForward",
            keyword_defaults={"ffn_dropout": 0.0, "num_heads": 1},
            d_model=d_model,
            num_heads=1,  # attention's business: any divisor of d_model makes a valid spec
            d_ff=d_ff,
            ffn_dropout=dropout,
            activation=activation,
            bias=bias,
        )
        self.activation_name = spec.activation
        self.activation = _ACTIVATIONS[spec.activation]  # a name BlockSpec has checked
        self.gated = spec.activation == "swiglu"
        rows = 2 * spec.d_ff if self.gated else spec.d_ff  # SwiGLU: W1 and W3 stacked
        self.linear1 = Linear(spec.d_model, rows, bias=spec.bias)
        self.dropout = Dropout(spec.ffn_dropout_rate)
        self.linear2 = Linear(spec.d_ff, spec.d_model, bias=spec.bias)
        with torch.no_grad():  # each matrix on its own, W1 and W3 as if they were separate
            # W1 and W3 (d_ff, d_model) each, W2 (d_model, d_ff)
            for weight in (*self.linear1.weight.split(spec.d_ff), self.linear2.weight):
                nn.init.xavier_uniform_(weight)
        if spec.bias:
            nn.init.zeros_(self.linear1.bias)
            nn.init.zeros_(self.linear2.bias)

    def forward(self, x: Tensor) -> Tensor:
        """``FFN(x)`` of section 3.3 (or SwiGLU, see the class docstring): ``(..., d_model)`` ->
        hidden ``(..., d_ff)`` -> ``(..., d_model)``."""
        hidden = self.linear1(x)  # (..., d_ff), or with SwiGLU (..., 2 d_ff): x W1 and x W3
        if self.gated:
            gate, value = hidden.chunk(2, dim=-1)  # each (..., d_ff)
            hidden = self.activation(gate) * value  # (..., d_ff): the SwiGLU gate times x W3
        else:
            hidden = self.activation(hidden)  # (..., d_ff)
        return self.linear2(self.dropout(hidden))  # (..., d_model)


class EncoderLayer(nn.Module):
    """One encoder layer, section 3.1: self-attention then feed-forward, each a residual sublayer.

    Post-LN (the paper, default): ``x = LayerNorm(x + Dropout(Sublayer(x)))``.
    Pre-LN (``norm_first=True``, as in GPT-2 and most modern models):
    ``x = x + Dropout(Sublayer(LayerNorm(x)))``.

    Args mirror ``nn.TransformerEncoderLayer``: ``d_model, num_heads, d_ff, dropout,
    activation, norm_first, layer_norm_eps, bias``. ``dropout`` is used on the attention
    weights, inside the feed-forward network and on each sublayer output (section 5.4).
    ``bias=False`` drops the biases of every linear layer and LayerNorm. Or, instead of all
    of them, ``spec``: a :class:`~attnlab.nn.BlockSpec` (which can also give the three
    dropouts different rates), handed whole to the attention and the feed-forward network.

    Call: ``layer(x, mask=None)`` with ``x: (B, T, d_model)`` and ``mask`` bool, ``True`` = may
    attend, ``(T, T)`` or ``(B|1, 1, T|1, T)``. Returns ``(B, T, d_model)``, or with
    ``need_weights=True`` the pair ``(output, attention weights (B, H, T, T))``.
    ``is_causal=True``, a :class:`~attnlab.nn.KVCache` ``cache``, and the integer
    ``positions`` of rotary attention (``(T,)`` or ``(B, T)``) or their angles
    ``rotary_cos_sin`` (see :class:`~attnlab.nn.MultiHeadAttention`) are passed on to the
    self-attention: a pre-LN
    encoder layer with a causal mask is a GPT block, and with ``BlockSpec(norm="rmsnorm",
    positions="rotary", activation="swiglu", bias=False)`` a Llama block.
    """

    def __init__(
        self,
        d_model: int | None = None,
        num_heads: int | None = None,
        d_ff: int = 2048,
        dropout: float = 0.1,
        activation: Activation = "relu",
        norm_first: bool = False,
        layer_norm_eps: float = 1e-5,
        bias: bool = True,
        *,
        spec: BlockSpec | None = None,
    ):
        super().__init__()
        spec = spec_or_keywords(
            spec,
            "EncoderLayer",
            d_model=d_model,
            num_heads=num_heads,
            d_ff=d_ff,
            dropout=dropout,
            activation=activation,
            norm_first=norm_first,
            layer_norm_eps=layer_norm_eps,
            bias=bias,
        )
        self.norm_first = spec.norm_first
        self.self_attn = MultiHeadAttention(spec=spec)
        self.dropout1 = Dropout(spec.dropout)
        self.norm1 = norm_layer(spec)
        self.feed_forward = FeedForward(spec=spec)
        self.dropout2 = Dropout(spec.dropout)
        self.norm2 = norm_layer(spec)

    def forward(
        self,
        x: Tensor,
        mask: Tensor | None = None,
        need_weights: bool = False,
        is_causal: bool = False,
        cache: KVCache | StaticKVCache | None = None,
        positions: Tensor | None = None,
        rotary_cos_sin: tuple[Tensor, Tensor] | None = None,
    ) -> Tensor | tuple[Tensor, Tensor]:
        """One encoder layer (section 3.1) on ``x (B, T, d_model)``: ``(B, T, d_model)``, or with
        ``need_weights=True`` ``(output, weights (B, H, T, T_k))`` (``T_k = T`` without a cache).
        ``mask`` is bool, ``True`` = may attend; the other arguments go to the self-attention (see
        the class docstring)."""
        if not isinstance(x, Tensor):
            raise not_a_tensor("x", x, "(B, T, d_model)")
        if x.dim() != 3:
            raise ValueError(f"x must have shape (B, T, d_model); got {tuple(x.shape)}")
        attn_in = self.norm1(x) if self.norm_first else x
        attended = self.self_attn(
            attn_in,
            mask=mask,
            need_weights=need_weights,
            is_causal=is_causal,
            cache=cache,
            positions=positions,
            rotary_cos_sin=rotary_cos_sin,
        )
        weights: Tensor | None = None
        if need_weights:
            attended, weights = attended
        if self.norm_first:
            x = residual(x, self.dropout1(attended))
            x = residual(x, self.dropout2(self.feed_forward(self.norm2(x))))
        else:
            x = self.norm1(residual(x, self.dropout1(attended)))
            x = self.norm2(residual(x, self.dropout2(self.feed_forward(x))))
        return x if weights is None else (x, weights)  # (B, T, d_model); weights if asked


class TransformerEncoder(nn.Module):
    """A stack of ``num_layers`` identical :class:`EncoderLayer` s (section 3.1; N = 6 there).

    ``final_norm=True`` adds a LayerNorm after the last layer (needed with pre-LN layers, as
    in ``nn.TransformerEncoder(norm=...)``). The other arguments, or instead ``spec`` (a
    :class:`~attnlab.nn.BlockSpec`), describe every layer; the spec is handed to each whole.

    Call: ``encoder(x, mask=None)`` with ``x: (B, T, d_model)``; ``mask`` as for
    :class:`EncoderLayer` (bool, ``True`` = may attend). Returns ``(B, T, d_model)``; with
    ``return_attention=True`` the pair ``(output, [weights of each layer, (B, H, T, T)])``.
    """

    def __init__(
        self,
        num_layers: int,
        d_model: int | None = None,
        num_heads: int | None = None,
        d_ff: int = 2048,
        dropout: float = 0.1,
        activation: Activation = "relu",
        norm_first: bool = False,
        layer_norm_eps: float = 1e-5,
        final_norm: bool = False,
        *,
        spec: BlockSpec | None = None,
    ):
        super().__init__()
        check_layer_count("num_layers", num_layers)
        spec = spec_or_keywords(
            spec,
            "TransformerEncoder",
            d_model=d_model,
            num_heads=num_heads,
            d_ff=d_ff,
            dropout=dropout,
            activation=activation,
            norm_first=norm_first,
            layer_norm_eps=layer_norm_eps,
        )
        self.layers = nn.ModuleList(EncoderLayer(spec=spec) for _ in range(num_layers))
        self.norm = norm_layer(spec) if final_norm else None

    def forward(
        self, x: Tensor, mask: Tensor | None = None, return_attention: bool = False
    ) -> Tensor | tuple[Tensor, list[Tensor]]:
        """``x (B, T, d_model)`` through every layer (and the final norm), section 3.1:
        ``(B, T, d_model)``; with ``return_attention=True`` also each layer's weights
        ``(B, H, T, T)``. ``mask`` is bool, ``True`` = may attend."""
        attention_maps = []
        for layer in self.layers:
            if return_attention:
                x, weights = layer(x, mask=mask, need_weights=True)
                attention_maps.append(weights)
            else:
                x = layer(x, mask=mask)
        if self.norm is not None:
            x = self.norm(x)
        return (x, attention_maps) if return_attention else x  # (B, T, d_model)


@dataclass
class DecoderLayerCache:
    """The key/value caches of one decoder layer: its self-attention and its cross-attention.

    The self-attention cache grows by one step per generated token; the cross-attention cache
    holds the keys and values of the encoder output, computed on the first step and reused.
    """

    self_attn: KVCache = field(default_factory=KVCache)
    cross_attn: KVCache = field(default_factory=KVCache)

    def reorder(self, index: Tensor) -> None:
        """Keep batch rows ``index`` (beam search)."""
        self.self_attn.reorder(index)
        self.cross_attn.reorder(index)


def check_cache(cache: object, layers: int, kinds: tuple[type, ...], owner: str) -> None:
    """Raise ``TypeError`` unless ``cache`` is ``None`` or a list (or tuple) of caches of one of
    ``kinds``, all of the same kind, as ``make_cache()`` returns them; ``ValueError`` unless it
    holds one per layer of the ``owner`` ("model", "decoder"), ``layers`` in all. Reads types
    and a length only: no device wait at a decoding step."""
    if cache is None:
        return
    # Else [None] failed with "object of type 'NoneType' has no len()", a lone KVCache (which
    # has a length) read as a list of 0 layers, and mixed kinds attended with the wrong mask.
    items = cache if isinstance(cache, (list, tuple)) else None
    if items is None or not all(isinstance(c, kinds) and type(c) is type(items[0]) for c in items):
        held = " and ".join(dict.fromkeys(type(c).__name__ for c in items or ()))
        got = f"a {type(cache).__name__} of {held}" if items else type(cache).__name__
        names = " or ".join(kind.__name__ for kind in kinds)
        raise TypeError(
            f"cache must be a list of {names}, one per layer (from make_cache()); got {got}"
        )
    if len(items) != layers:
        raise ValueError(f"cache has {len(items)} layers; the {owner} has {layers}")


class DecoderLayer(nn.Module):
    """One decoder layer, section 3.1: masked self-attention, cross-attention, feed-forward.

    "In addition to the two sub-layers in each encoder layer, the decoder inserts a third
    sub-layer, which performs multi-head attention over the output of the encoder stack."
    Each of the three sublayers is residual, post-LN by default
    (``x = LayerNorm(x + Dropout(Sublayer(x)))``) or pre-LN with ``norm_first=True``.

    Args mirror ``nn.TransformerDecoderLayer``: ``d_model, num_heads, d_ff, dropout,
    activation, norm_first, layer_norm_eps``; or instead ``spec``, a
    :class:`~attnlab.nn.BlockSpec` handed whole to both attentions and the feed-forward network.

    Call: ``layer(x, memory, self_mask=None, memory_mask=None, is_causal=False, cache=None)``

    * ``x``: target-side input ``(B, T, d_model)``; ``memory``: encoder output
      ``(B, S, d_model)`` (may be ``None`` once ``cache.cross_attn`` is filled).
    * ``self_mask``: bool, ``True`` = may attend, over target positions ``(T, T)`` or
      ``(B|1, 1, T|1, T)``; ``is_causal=True`` adds the causal mask of section 3.2.3 ("prevent
      leftward information flow"), on the fused fast path when there is no other mask.
    * ``memory_mask``: bool, ``True`` = may attend, over source positions, e.g. the source
      padding mask ``(B, 1, 1, S)``.
    * ``cache``: a :class:`DecoderLayerCache` for step-by-step decoding.

    Returns ``(B, T, d_model)``; with ``need_weights=True`` the triple
    ``(output, self-attention weights (B, H, T, T_k), cross-attention weights (B, H, T, S))``.
    """

    def __init__(
        self,
        d_model: int | None = None,
        num_heads: int | None = None,
        d_ff: int = 2048,
        dropout: float = 0.1,
        activation: Activation = "relu",
        norm_first: bool = False,
        layer_norm_eps: float = 1e-5,
        *,
        spec: BlockSpec | None = None,
    ):
        super().__init__()
        spec = spec_or_keywords(
            spec,
            "DecoderLayer",
            d_model=d_model,
            num_heads=num_heads,
            d_ff=d_ff,
            dropout=dropout,
            activation=activation,
            norm_first=norm_first,
            layer_norm_eps=layer_norm_eps,
        )
        self.norm_first = spec.norm_first
        self.self_attn = MultiHeadAttention(spec=spec)
        self.dropout1 = Dropout(spec.dropout)
        self.norm1 = norm_layer(spec)
        self.cross_attn = MultiHeadAttention(spec=spec)
        self.dropout2 = Dropout(spec.dropout)
        self.norm2 = norm_layer(spec)
        self.feed_forward = FeedForward(spec=spec)
        self.dropout3 = Dropout(spec.dropout)
        self.norm3 = norm_layer(spec)

    def forward(
        self,
        x: Tensor,
        memory: Tensor | None,
        self_mask: Tensor | None = None,
        memory_mask: Tensor | None = None,
        is_causal: bool = False,
        cache: DecoderLayerCache | None = None,
        need_weights: bool = False,
    ) -> Tensor | tuple[Tensor, Tensor, Tensor]:
        """Self-attention, cross-attention over ``memory (B, S, d_model)`` and feed-forward on
        ``x (B, T, d_model)`` (section 3.1): ``(B, T, d_model)``; masks (bool, ``True`` = may
        attend) and weights as in the class docstring."""
        if not isinstance(x, Tensor):
            raise not_a_tensor("x", x, "(B, T, d_model)")
        if x.dim() != 3:
            raise ValueError(f"x must have shape (B, T, d_model); got {tuple(x.shape)}")
        self_cache = None if cache is None else cache.self_attn
        cross_cache = None if cache is None else cache.cross_attn

        def self_attention(h: Tensor) -> tuple[Tensor, Tensor | None]:
            out = self.self_attn(
                h,
                mask=self_mask,
                need_weights=need_weights,
                is_causal=is_causal,
                cache=self_cache,
            )
            return out if need_weights else (out, None)

        def cross_attention(h: Tensor) -> tuple[Tensor, Tensor | None]:
            out = self.cross_attn(
                h,
                memory,
                mask=memory_mask,
                need_weights=need_weights,
                cache=cross_cache,
                cross=True,
            )
            return out if need_weights else (out, None)

        if self.norm_first:
            attended, self_weights = self_attention(self.norm1(x))
            x = residual(x, self.dropout1(attended))
            attended, cross_weights = cross_attention(self.norm2(x))
            x = residual(x, self.dropout2(attended))
            x = residual(x, self.dropout3(self.feed_forward(self.norm3(x))))
        else:
            attended, self_weights = self_attention(x)
            x = self.norm1(residual(x, self.dropout1(attended)))
            attended, cross_weights = cross_attention(x)
            x = self.norm2(residual(x, self.dropout2(attended)))
            x = self.norm3(residual(x, self.dropout3(self.feed_forward(x))))
        # x: (B, T, d_model)
        if not need_weights:
            return x
        assert self_weights is not None and cross_weights is not None  # given by need_weights
        return x, self_weights, cross_weights


class TransformerDecoder(nn.Module):
    """A stack of ``num_layers`` identical :class:`DecoderLayer` s (section 3.1; N = 6 there).

    ``final_norm=True`` adds a LayerNorm after the last layer (as ``nn.TransformerDecoder(norm=
    ...)``; needed with pre-LN layers). The other arguments, or instead ``spec`` (a
    :class:`~attnlab.nn.BlockSpec`), describe every layer; the spec is handed to each whole.

    Call: ``decoder(x, memory, self_mask=None, memory_mask=None, is_causal=False, cache=None)``
    with the arguments of :meth:`DecoderLayer.forward`; ``cache`` is the list returned by
    :meth:`make_cache` (one :class:`DecoderLayerCache` per layer). Returns ``(B, T, d_model)``;
    with ``return_attention=True`` the triple ``(output, [self-attention weights per layer],
    [cross-attention weights per layer])``.
    """

    def __init__(
        self,
        num_layers: int,
        d_model: int | None = None,
        num_heads: int | None = None,
        d_ff: int = 2048,
        dropout: float = 0.1,
        activation: Activation = "relu",
        norm_first: bool = False,
        layer_norm_eps: float = 1e-5,
        final_norm: bool = False,
        *,
        spec: BlockSpec | None = None,
    ):
        super().__init__()
        check_layer_count("num_layers", num_layers)
        spec = spec_or_keywords(
            spec,
            "TransformerDecoder",
            d_model=d_model,
            num_heads=num_heads,
            d_ff=d_ff,
            dropout=dropout,
            activation=activation,
            norm_first=norm_first,
            layer_norm_eps=layer_norm_eps,
        )
        self.layers = nn.ModuleList(DecoderLayer(spec=spec) for _ in range(num_layers))
        self.norm = norm_layer(spec) if final_norm else None

    def make_cache(self) -> list[DecoderLayerCache]:
        """Empty key/value caches, one per layer, for step-by-step decoding."""
        return [DecoderLayerCache() for _ in self.layers]

    def forward(
        self,
        x: Tensor,
        memory: Tensor | None,
        self_mask: Tensor | None = None,
        memory_mask: Tensor | None = None,
        is_causal: bool = False,
        cache: list[DecoderLayerCache] | None = None,
        return_attention: bool = False,
    ) -> Tensor | tuple[Tensor, list[Tensor], list[Tensor]]:
        """``x (B, T, d_model)`` through every decoder layer, each attending to
        ``memory (B, S, d_model)`` (section 3.1): ``(B, T, d_model)``. Masks (bool, ``True`` = may
        attend), ``cache`` and ``return_attention`` as in the class docstring."""
        check_cache(cache, len(self.layers), (DecoderLayerCache,), "decoder")
        self_maps, cross_maps = [], []
        for i, layer in enumerate(self.layers):
            out = layer(
                x,
                memory,
                self_mask=self_mask,
                memory_mask=memory_mask,
                is_causal=is_causal,
                cache=None if cache is None else cache[i],
                need_weights=return_attention,
            )
            if return_attention:
                x, self_weights, cross_weights = out
                self_maps.append(self_weights)
                cross_maps.append(cross_weights)
            else:
                x = out
        if self.norm is not None:
            x = self.norm(x)
        # x: (B, T, d_model)
        return (x, self_maps, cross_maps) if return_attention else x
