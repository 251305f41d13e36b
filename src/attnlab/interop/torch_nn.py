"""Weight mapping between attnlab's blocks and their ``torch.nn`` twins.

Masks change convention in one place, :mod:`attnlab.nn.torch_twin`: attnlab's masks say
``True`` = "may attend"; ``nn.MultiheadAttention``'s ``key_padding_mask`` and boolean
``attn_mask`` say ``True`` = "may NOT attend". Use :func:`torch_key_padding_mask` and
:func:`torch_attn_mask` (re-exported here with :class:`TorchTransformerEncoder`) to convert an
attnlab mask before calling a torch module.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from attnlab.errors import InputError
from attnlab.nn import (
    DecoderLayer,
    EncoderLayer,
    MultiHeadAttention,
    Transformer,
    TransformerDecoder,
    TransformerEncoder,
)
from attnlab.nn.torch_twin import (
    TorchTransformerEncoder,
    torch_attn_mask,
    torch_key_padding_mask,
    torch_per_head_mask,
)

__all__ = [
    "TorchTransformerEncoder",
    "from_torch",
    "to_torch",
    "torch_attn_mask",
    "torch_key_padding_mask",
    "torch_per_head_mask",
]


def _activation_name(
    layer: nn.TransformerEncoderLayer | nn.TransformerDecoderLayer,
) -> Literal["relu", "gelu"]:
    activation = layer.activation
    if activation is F.relu or isinstance(activation, nn.ReLU):
        return "relu"
    if activation is F.gelu or (
        isinstance(activation, nn.GELU) and activation.approximate == "none"
    ):
        return "gelu"
    raise InputError(f"unsupported activation {activation!r}: attnlab supports relu and exact gelu")


def _copy_linear(dst: nn.Linear, weight: Tensor, bias: Tensor | None) -> None:
    with torch.no_grad():
        dst.weight.copy_(weight)
        if (dst.bias is None) != (bias is None):
            raise InputError("bias mismatch between source and destination")
        if bias is not None:
            dst.bias.copy_(bias)


def _mha_from_torch(src: nn.MultiheadAttention) -> MultiHeadAttention:
    if not src._qkv_same_embed_dim:
        raise InputError("kdim/vdim different from embed_dim are not supported")
    if src.bias_k is not None or src.add_zero_attn:
        raise InputError("add_bias_kv and add_zero_attn are not supported")
    dst = MultiHeadAttention(
        src.embed_dim, src.num_heads, dropout=src.dropout, bias=src.in_proj_bias is not None
    )
    dst.to(device=src.in_proj_weight.device, dtype=src.in_proj_weight.dtype)
    _copy_linear(dst.qkv_proj, src.in_proj_weight, src.in_proj_bias)
    _copy_linear(dst.out_proj, src.out_proj.weight, src.out_proj.bias)
    return dst


def _mha_to_torch(src: MultiHeadAttention) -> nn.MultiheadAttention:
    if src.num_kv_heads != src.num_heads or src.rotary is not None:
        raise InputError(
            "nn.MultiheadAttention has no grouped-query attention and no rotary positions"
        )
    has_bias = src.qkv_proj.bias is not None
    dst = nn.MultiheadAttention(
        src.d_model, src.num_heads, dropout=src.dropout, bias=has_bias, batch_first=True
    )
    dst.to(device=src.qkv_proj.weight.device, dtype=src.qkv_proj.weight.dtype)
    with torch.no_grad():
        dst.in_proj_weight.copy_(src.qkv_proj.weight)
        if has_bias:
            dst.in_proj_bias.copy_(src.qkv_proj.bias)
    _copy_linear(dst.out_proj, src.out_proj.weight, src.out_proj.bias)
    return dst


def _layer_from_torch(src: nn.TransformerEncoderLayer) -> EncoderLayer:
    if src.norm1.eps != src.norm2.eps:
        raise InputError("the two LayerNorms of the layer must share one eps")
    dst = EncoderLayer(
        d_model=src.self_attn.embed_dim,
        num_heads=src.self_attn.num_heads,
        d_ff=src.linear1.out_features,
        dropout=src.dropout.p,
        activation=_activation_name(src),
        norm_first=src.norm_first,
        layer_norm_eps=src.norm1.eps,
    )
    dst.self_attn = _mha_from_torch(src.self_attn)
    dst.to(device=src.linear1.weight.device, dtype=src.linear1.weight.dtype)
    _copy_linear(dst.feed_forward.linear1, src.linear1.weight, src.linear1.bias)
    _copy_linear(dst.feed_forward.linear2, src.linear2.weight, src.linear2.bias)
    dst.norm1.load_state_dict(src.norm1.state_dict())
    dst.norm2.load_state_dict(src.norm2.state_dict())
    return dst


def _check_layer_norm(src: EncoderLayer | DecoderLayer) -> nn.LayerNorm:
    """torch.nn's layers normalise with LayerNorm only: refuse an RMSNorm layer; return the
    layer's first LayerNorm."""
    if not isinstance(src.norm1, nn.LayerNorm):
        raise InputError(f"torch.nn's layers have LayerNorm only; got {type(src.norm1).__name__}")
    return src.norm1


def _layer_to_torch(src: EncoderLayer) -> nn.TransformerEncoderLayer:
    norm1 = _check_layer_norm(src)
    attn = src.self_attn
    ff = src.feed_forward
    dst = nn.TransformerEncoderLayer(
        d_model=attn.d_model,
        nhead=attn.num_heads,
        dim_feedforward=ff.linear1.out_features,
        dropout=src.dropout1.p,
        activation=ff.activation_name,
        layer_norm_eps=norm1.eps,
        batch_first=True,
        norm_first=src.norm_first,
    )
    dst.self_attn = _mha_to_torch(attn)
    dst.to(device=ff.linear1.weight.device, dtype=ff.linear1.weight.dtype)
    _copy_linear(dst.linear1, ff.linear1.weight, ff.linear1.bias)
    _copy_linear(dst.linear2, ff.linear2.weight, ff.linear2.bias)
    dst.norm1.load_state_dict(src.norm1.state_dict())
    dst.norm2.load_state_dict(src.norm2.state_dict())
    return dst


# The two stack helpers serve encoder and decoder stacks alike, reading the attributes both
# have (layers, norm, each layer's attention and linear1): their stacks are typed Any.


def _stack_from_torch(src: Any, stack_cls: Callable[..., Any], convert_layer: Callable) -> Any:
    """attnlab twin of ``nn.TransformerEncoder`` / ``nn.TransformerDecoder``: each layer
    converted by ``convert_layer``, and the final LayerNorm if there is one."""
    first = src.layers[0]
    dst = stack_cls(
        num_layers=0,
        d_model=first.self_attn.embed_dim,
        num_heads=first.self_attn.num_heads,
        final_norm=src.norm is not None,
        layer_norm_eps=src.norm.eps if src.norm is not None else first.norm1.eps,
    )
    dst.layers = nn.ModuleList(convert_layer(layer) for layer in src.layers)
    if src.norm is not None:
        dst.norm.load_state_dict(src.norm.state_dict())
    weight = first.linear1.weight
    return dst.to(device=weight.device, dtype=weight.dtype)


def _stack_to_torch(
    src: Any, torch_stack_cls: Callable[..., Any], convert_layer: Callable, **options: Any
) -> Any:
    """``nn.TransformerEncoder`` / ``nn.TransformerDecoder`` twin of an attnlab stack."""
    layers = [convert_layer(layer) for layer in src.layers]
    norm = None
    if src.norm is not None:
        norm = nn.LayerNorm(src.norm.normalized_shape, eps=src.norm.eps)
        norm.load_state_dict(src.norm.state_dict())
    # torch's stacks deep-copy the layer they are given; put the real ones in afterwards.
    dst = torch_stack_cls(layers[0], num_layers=len(layers), norm=norm, **options)
    dst.layers = nn.ModuleList(layers)
    return dst.to(device=layers[0].linear1.weight.device)


def _encoder_from_torch(src: nn.TransformerEncoder) -> TransformerEncoder:
    return _stack_from_torch(src, TransformerEncoder, _layer_from_torch)


def _encoder_to_torch(src: TransformerEncoder) -> nn.TransformerEncoder:
    return _stack_to_torch(src, nn.TransformerEncoder, _layer_to_torch, enable_nested_tensor=False)


def _decoder_layer_from_torch(src: nn.TransformerDecoderLayer) -> DecoderLayer:
    if not src.norm1.eps == src.norm2.eps == src.norm3.eps:
        raise InputError("the three LayerNorms of the layer must share one eps")
    dst = DecoderLayer(
        d_model=src.self_attn.embed_dim,
        num_heads=src.self_attn.num_heads,
        d_ff=src.linear1.out_features,
        dropout=src.dropout.p,
        activation=_activation_name(src),
        norm_first=src.norm_first,
        layer_norm_eps=src.norm1.eps,
    )
    dst.self_attn = _mha_from_torch(src.self_attn)
    dst.cross_attn = _mha_from_torch(src.multihead_attn)
    dst.to(device=src.linear1.weight.device, dtype=src.linear1.weight.dtype)
    _copy_linear(dst.feed_forward.linear1, src.linear1.weight, src.linear1.bias)
    _copy_linear(dst.feed_forward.linear2, src.linear2.weight, src.linear2.bias)
    for name in ("norm1", "norm2", "norm3"):
        getattr(dst, name).load_state_dict(getattr(src, name).state_dict())
    return dst


def _decoder_layer_to_torch(src: DecoderLayer) -> nn.TransformerDecoderLayer:
    norm1 = _check_layer_norm(src)
    ff = src.feed_forward
    dst = nn.TransformerDecoderLayer(
        d_model=src.self_attn.d_model,
        nhead=src.self_attn.num_heads,
        dim_feedforward=ff.linear1.out_features,
        dropout=src.dropout1.p,
        activation=ff.activation_name,
        layer_norm_eps=norm1.eps,
        batch_first=True,
        norm_first=src.norm_first,
    )
    dst.self_attn = _mha_to_torch(src.self_attn)
    dst.multihead_attn = _mha_to_torch(src.cross_attn)
    dst.to(device=ff.linear1.weight.device, dtype=ff.linear1.weight.dtype)
    _copy_linear(dst.linear1, ff.linear1.weight, ff.linear1.bias)
    _copy_linear(dst.linear2, ff.linear2.weight, ff.linear2.bias)
    for name in ("norm1", "norm2", "norm3"):
        getattr(dst, name).load_state_dict(getattr(src, name).state_dict())
    return dst


def _decoder_from_torch(src: nn.TransformerDecoder) -> TransformerDecoder:
    return _stack_from_torch(src, TransformerDecoder, _decoder_layer_from_torch)


def _decoder_to_torch(src: TransformerDecoder) -> nn.TransformerDecoder:
    return _stack_to_torch(src, nn.TransformerDecoder, _decoder_layer_to_torch)


def _transformer_from_torch(src: nn.Transformer) -> Transformer:
    first = src.encoder.layers[0]
    # Empty stacks first; the converted ones (with their sizes) replace them.
    dst = Transformer(src.d_model, src.nhead, num_encoder_layers=0, num_decoder_layers=0)
    dst.encoder = _encoder_from_torch(src.encoder)
    dst.decoder = _decoder_from_torch(src.decoder)
    return dst.to(device=first.linear1.weight.device, dtype=first.linear1.weight.dtype)


def _transformer_to_torch(src: Transformer) -> nn.Transformer:
    decoder = src.decoder
    if not isinstance(decoder, TransformerDecoder):
        raise InputError(
            "to_torch converts attnlab's own decoder stack only; this Transformer's "
            f"custom_decoder is a {type(decoder).__name__}"
        )
    first = src.encoder.layers[0]
    assert isinstance(first, EncoderLayer)  # attnlab's encoder stack holds EncoderLayers
    dst = nn.Transformer(
        d_model=first.self_attn.d_model,
        nhead=first.self_attn.num_heads,
        custom_encoder=_encoder_to_torch(src.encoder),
        custom_decoder=_decoder_to_torch(decoder),
        batch_first=True,
    )
    # nn.Transformer re-initialises, in place, every matrix it is given: use fresh copies.
    dst.encoder, dst.decoder = _encoder_to_torch(src.encoder), _decoder_to_torch(decoder)
    return dst


_FROM_TORCH = {
    nn.MultiheadAttention: _mha_from_torch,
    nn.TransformerEncoderLayer: _layer_from_torch,
    nn.TransformerEncoder: _encoder_from_torch,
    nn.TransformerDecoderLayer: _decoder_layer_from_torch,
    nn.TransformerDecoder: _decoder_from_torch,
    nn.Transformer: _transformer_from_torch,
}
_TO_TORCH = {
    MultiHeadAttention: _mha_to_torch,
    EncoderLayer: _layer_to_torch,
    TransformerEncoder: _encoder_to_torch,
    DecoderLayer: _decoder_layer_to_torch,
    TransformerDecoder: _decoder_to_torch,
    Transformer: _transformer_to_torch,
}


def _convert(module: nn.Module, table: dict, name: str) -> nn.Module:
    convert = table.get(type(module))
    if convert is None:
        known = ", ".join(cls.__name__ for cls in table)
        raise TypeError(f"{name} does not know {type(module).__name__}; supported: {known}")
    return convert(module).train(module.training)


def from_torch(module: nn.Module) -> nn.Module:
    """Build the attnlab twin of a ``torch.nn`` module, with the same weights.

    Accepts ``nn.MultiheadAttention``, ``nn.TransformerEncoderLayer``,
    ``nn.TransformerEncoder``, ``nn.TransformerDecoderLayer``, ``nn.TransformerDecoder`` and
    ``nn.Transformer`` (whose stacks always end in a LayerNorm: the copy has
    ``final_norm=True``). attnlab modules are always batch-first: call them with
    ``(B, T, D)`` inputs whatever the source's ``batch_first`` was. The copy is in the same
    train/eval mode as the source.
    """
    return _convert(module, _FROM_TORCH, "from_torch")


def to_torch(module: nn.Module) -> nn.Module:
    """Build the ``torch.nn`` twin (``batch_first=True``) of an attnlab module, same weights.

    Accepts :class:`~attnlab.nn.MultiHeadAttention`, :class:`~attnlab.nn.EncoderLayer`,
    :class:`~attnlab.nn.TransformerEncoder`, :class:`~attnlab.nn.DecoderLayer`,
    :class:`~attnlab.nn.TransformerDecoder` and :class:`~attnlab.nn.Transformer`. Remember
    to convert masks with :func:`torch_key_padding_mask` / :func:`torch_attn_mask` before
    calling the result.
    """
    return _convert(module, _TO_TORCH, "to_torch")
