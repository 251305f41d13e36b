"""PyTorch's own encoder behind attnlab's interface, and the mask conversions it needs.

This module is the single boundary where attnlab's mask convention is converted to
PyTorch's. attnlab's masks are bool with ``True`` = "may attend" (the convention of
:func:`torch.nn.functional.scaled_dot_product_attention`); ``nn.MultiheadAttention``'s
``key_padding_mask`` and boolean ``attn_mask`` (and so those of ``nn.TransformerEncoder``,
``nn.TransformerDecoder`` and ``nn.Transformer``) say ``True`` = "may NOT attend". Convert an
attnlab mask with :func:`torch_key_padding_mask`, :func:`torch_attn_mask` or
:func:`torch_per_head_mask` before handing it to a torch module; nothing else in attnlab uses
torch's convention.

:class:`TorchTransformerEncoder` (the ``--backend torch`` of the models) lives here rather
than in :mod:`attnlab.interop`, so that :mod:`attnlab.models` can use it while importing only
:mod:`attnlab.nn`; ``attnlab.interop`` re-exports all four names.
"""

from __future__ import annotations

from dataclasses import fields

from torch import Tensor, nn

from attnlab.nn.masks import require_bool_mask
from attnlab.nn.spec import Activation, BlockSpec, spec_or_keywords


def torch_key_padding_mask(mask: Tensor) -> Tensor:
    """attnlab padding mask ``(B, 1, 1, T)``, True = real -> torch ``(B, T)``, True = padding."""
    require_bool_mask(mask, "mask")
    if mask.dim() != 4 or mask.shape[1:3] != (1, 1):
        raise ValueError(f"expected an attnlab padding mask (B, 1, 1, T); got {tuple(mask.shape)}")
    return ~mask[:, 0, 0, :]  # (B, T)


def torch_attn_mask(mask: Tensor) -> Tensor:
    """attnlab ``(T_q, T_k)`` mask (True = may attend) -> torch ``attn_mask`` (True = blocked)."""
    require_bool_mask(mask, "mask")
    if mask.dim() != 2:
        raise ValueError(f"expected an attnlab (T_q, T_k) mask; got {tuple(mask.shape)}")
    return ~mask


def torch_per_head_mask(mask: Tensor, num_heads: int) -> Tensor:
    """attnlab ``(B, 1 | H, T_q, T_k)`` mask (True = may attend) -> torch's 3-D ``attn_mask``
    ``(B * H, T_q, T_k)`` (True = blocked)."""
    require_bool_mask(mask, "mask")
    if mask.dim() != 4:
        raise ValueError(f"expected an attnlab (B, H, T_q, T_k) mask; got {tuple(mask.shape)}")
    B, _, T_q, T_k = mask.shape
    per_head = mask.expand(B, num_heads, T_q, T_k)  # (B, H, T_q, T_k)
    return ~per_head.reshape(B * num_heads, T_q, T_k)  # (B * H, T_q, T_k)


# The BlockSpec fields nn.TransformerEncoderLayer can express. Any other field (a variant
# added to BlockSpec later, such as rotary positions) must keep its default here.
_TORCH_FIELDS = {
    "d_model",
    "num_heads",
    "d_ff",
    "dropout",
    "attention_dropout",
    "ffn_dropout",
    "activation",
    "norm_first",
    "layer_norm_eps",
    "bias",
}


def _torch_layer(spec: BlockSpec) -> nn.TransformerEncoderLayer:
    """The ``nn.TransformerEncoderLayer`` that ``spec`` describes, if torch can express it."""
    unsupported = [
        f.name
        for f in fields(spec)
        if f.name not in _TORCH_FIELDS and getattr(spec, f.name) != f.default
    ]
    if unsupported:
        raise ValueError(f"nn.TransformerEncoderLayer has no counterpart of {unsupported}")
    if not spec.attention_dropout_rate == spec.ffn_dropout_rate == spec.dropout:
        raise ValueError(
            "nn.TransformerEncoderLayer has one dropout rate; the spec asks for "
            f"dropout={spec.dropout}, attention_dropout={spec.attention_dropout_rate}, "
            f"ffn_dropout={spec.ffn_dropout_rate}"
        )
    if spec.activation not in ("relu", "gelu"):
        raise ValueError(
            f"the torch backend supports the activations relu and gelu; got {spec.activation!r}"
        )
    return nn.TransformerEncoderLayer(
        spec.d_model,
        spec.num_heads,
        spec.d_ff,
        spec.dropout,
        spec.activation,
        spec.layer_norm_eps,
        batch_first=True,
        norm_first=spec.norm_first,
        bias=spec.bias,
    )


class TorchTransformerEncoder(nn.Module):
    """``nn.TransformerEncoder`` of ``nn.TransformerEncoderLayer`` s behind attnlab's interface.

    Lets a model swap attnlab's encoder for PyTorch's own with the same hyperparameters
    (``--backend torch``): it takes the arguments of :class:`~attnlab.nn.TransformerEncoder`
    (or its ``spec``; torch has one dropout rate and the activations relu and gelu only),
    and ``forward(x, mask=None, return_attention=False)`` takes an attnlab padding mask
    ``(B, 1, 1, T)`` (True = real token), converted here to torch's ``src_key_padding_mask``,
    or a full mask ``(B, 1, T, T)`` (e.g. padding and a local window), converted to torch's
    per-head ``mask`` ``(B * H, T, T)`` (True = blocked).
    With ``return_attention=True`` it returns ``(output, [weights of each layer, (B, H, T, T)])``,
    the weights computed by each layer's own ``nn.MultiheadAttention`` (``need_weights=True``;
    a query row with no allowed key gets zeros, as in attnlab). Input and output:
    ``(B, T, d_model)``. Before torch 2.5, torch's own layers give NaN in the output row of a
    query that may attend to no key (possible with a full mask, not with padding alone), where
    attnlab's encoder attends to nothing (zeros) and keeps the residual.
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
        spec = spec_or_keywords(
            spec,
            "TorchTransformerEncoder",
            d_model=d_model,
            num_heads=num_heads,
            d_ff=d_ff,
            dropout=dropout,
            activation=activation,
            norm_first=norm_first,
            layer_norm_eps=layer_norm_eps,
        )
        norm = None
        if final_norm:
            norm = nn.LayerNorm(spec.d_model, eps=spec.layer_norm_eps, bias=spec.bias)
        self.encoder = nn.TransformerEncoder(
            _torch_layer(spec), num_layers, norm=norm, enable_nested_tensor=False
        )

    def forward(
        self, x: Tensor, mask: Tensor | None = None, return_attention: bool = False
    ) -> Tensor | tuple[Tensor, list[Tensor]]:
        """PyTorch's encoder stack on ``x (B, T, d_model)``: ``(B, T, d_model)``, or with
        ``return_attention=True`` also each layer's weights ``(B, H, T, T)``. ``mask`` is an attnlab
        mask (bool, ``True`` = may attend), converted here to torch's convention."""
        key_padding, attn_mask = None, None
        if mask is not None and mask.size(-2) == 1:
            key_padding = torch_key_padding_mask(mask)  # (B, T), True = padding
        elif mask is not None:
            num_heads = self.encoder.layers[0].self_attn.num_heads
            attn_mask = torch_per_head_mask(mask, num_heads)  # (B * H, T, T), True = blocked
        if not return_attention:
            return self.encoder(x, mask=attn_mask, src_key_padding_mask=key_padding)
        maps = []
        for layer in self.encoder.layers:
            attn_in = layer.norm1(x) if layer.norm_first else x  # what the layer attends with
            _, weights = layer.self_attn(
                attn_in,
                attn_in,
                attn_in,
                key_padding_mask=key_padding,
                attn_mask=attn_mask,
                need_weights=True,
                average_attn_weights=False,
            )  # (B, H, T, T)
            if mask is not None:  # torch gives NaN where a query may attend to no key
                weights = weights.masked_fill(~mask.any(-1, keepdim=True), 0.0)
            maps.append(weights)
            x = layer(x, src_mask=attn_mask, src_key_padding_mask=key_padding)  # (B, T, d_model)
        if self.encoder.norm is not None:
            x = self.encoder.norm(x)
        return x, maps
