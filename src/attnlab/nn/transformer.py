"""The encoder-decoder stack of Figure 1 (paper section 3.1), without embeddings.

The twin of ``torch.nn.Transformer``: an encoder stack maps the source ``(B, S, d_model)`` to
a memory of the same shape, and a decoder stack maps the target ``(B, T, d_model)``, attending
to that memory, to ``(B, T, d_model)``. Embeddings, positions and the output projection live in
:class:`attnlab.models.Seq2SeqTransformer`.

Masks follow the attnlab convention: bool, ``True`` = "may attend" (see :mod:`attnlab.nn.masks`).
"""

from __future__ import annotations

from typing import Literal, overload

from torch import Tensor, nn

from attnlab.nn.layers import (
    DecoderLayerCache,
    TransformerDecoder,
    TransformerEncoder,
)
from attnlab.nn.spec import Activation, BlockSpec, check_layer_count, spec_or_keywords


class Transformer(nn.Module):
    """Encoder stack + decoder stack, section 3.1 (N = 6, d_model = 512, h = 8 in the paper).

    Args mirror ``nn.Transformer`` (batch first): ``d_model, num_heads, num_encoder_layers,
    num_decoder_layers, d_ff, dropout, activation, norm_first, layer_norm_eps``. Instead of
    the block arguments (all but the layer counts and ``final_norm``) it takes ``spec``, a
    :class:`~attnlab.nn.BlockSpec` handed whole to both stacks and on to every layer.
    ``final_norm`` puts a LayerNorm after each stack; it defaults to ``norm_first`` (pre-LN
    stacks need it; the paper's post-LN stacks already end in one). ``nn.Transformer`` always
    has them: :func:`attnlab.interop.from_torch` sets ``final_norm=True``. ``custom_decoder``,
    as in ``nn.Transformer``, is a decoder stack to use instead of attnlab's (called as
    :class:`~attnlab.nn.TransformerDecoder` is, e.g. a stack of a student's layers).

    Call: ``transformer(src, tgt, src_mask=None, tgt_mask=None, memory_mask=None,
    tgt_is_causal=False)`` with ``src: (B, S, d_model)``, ``tgt: (B, T, d_model)``;
    ``src_mask`` over source keys for the encoder (e.g. the source padding mask
    ``(B, 1, 1, S)``), ``tgt_mask`` over target keys, ``memory_mask`` over source keys for
    cross-attention (usually the same padding mask as ``src_mask``), all bool with ``True`` =
    may attend; ``tgt_is_causal=True`` adds the causal mask. Returns ``(B, T, d_model)``.
    """

    def __init__(
        self,
        d_model: int = 512,
        num_heads: int = 8,
        num_encoder_layers: int = 6,
        num_decoder_layers: int = 6,
        d_ff: int = 2048,
        dropout: float = 0.1,
        activation: Activation = "relu",
        norm_first: bool = False,
        layer_norm_eps: float = 1e-5,
        final_norm: bool | None = None,
        *,
        spec: BlockSpec | None = None,
        custom_decoder: nn.Module | None = None,
    ):
        super().__init__()
        check_layer_count("num_encoder_layers", num_encoder_layers)
        check_layer_count("num_decoder_layers", num_decoder_layers)
        spec = spec_or_keywords(
            spec,
            "Transformer",
            d_model=d_model,
            num_heads=num_heads,
            d_ff=d_ff,
            dropout=dropout,
            activation=activation,
            norm_first=norm_first,
            layer_norm_eps=layer_norm_eps,
        )
        final_norm = spec.norm_first if final_norm is None else final_norm
        self.encoder = TransformerEncoder(num_encoder_layers, spec=spec, final_norm=final_norm)
        if custom_decoder is None:
            custom_decoder = TransformerDecoder(
                num_decoder_layers, spec=spec, final_norm=final_norm
            )
        self.decoder = custom_decoder

    def encode(self, src: Tensor, src_mask: Tensor | None = None) -> Tensor:
        """The memory ``(B, S, d_model)`` of a source ``(B, S, d_model)``."""
        return self.encoder(src, mask=src_mask)

    # Signatures for the type checker: with return_attention=True, decode returns the triple
    # (output, self-attention maps, cross-attention maps); with False the output alone.
    @overload
    def decode(
        self,
        tgt: Tensor,
        memory: Tensor | None,
        tgt_mask: Tensor | None = ...,
        memory_mask: Tensor | None = ...,
        tgt_is_causal: bool = ...,
        cache: list[DecoderLayerCache] | None = ...,
        return_attention: Literal[False] = ...,
    ) -> Tensor: ...
    @overload
    def decode(
        self,
        tgt: Tensor,
        memory: Tensor | None,
        tgt_mask: Tensor | None = ...,
        memory_mask: Tensor | None = ...,
        tgt_is_causal: bool = ...,
        cache: list[DecoderLayerCache] | None = ...,
        *,
        return_attention: Literal[True],
    ) -> tuple[Tensor, list[Tensor], list[Tensor]]: ...
    @overload
    def decode(
        self,
        tgt: Tensor,
        memory: Tensor | None,
        tgt_mask: Tensor | None = ...,
        memory_mask: Tensor | None = ...,
        tgt_is_causal: bool = ...,
        cache: list[DecoderLayerCache] | None = ...,
        return_attention: bool = ...,
    ) -> Tensor | tuple[Tensor, list[Tensor], list[Tensor]]: ...
    def decode(
        self,
        tgt: Tensor,
        memory: Tensor | None,
        tgt_mask: Tensor | None = None,
        memory_mask: Tensor | None = None,
        tgt_is_causal: bool = False,
        cache: list[DecoderLayerCache] | None = None,
        return_attention: bool = False,
    ) -> Tensor | tuple[Tensor, list[Tensor], list[Tensor]]:
        """The decoder output ``(B, T, d_model)``; see :class:`~attnlab.nn.TransformerDecoder`."""
        return self.decoder(
            tgt,
            memory,
            self_mask=tgt_mask,
            memory_mask=memory_mask,
            is_causal=tgt_is_causal,
            cache=cache,
            return_attention=return_attention,
        )

    def forward(
        self,
        src: Tensor,
        tgt: Tensor,
        src_mask: Tensor | None = None,
        tgt_mask: Tensor | None = None,
        memory_mask: Tensor | None = None,
        tgt_is_causal: bool = False,
    ) -> Tensor:
        """Encode ``src (B, S, d_model)``, then decode ``tgt (B, T, d_model)`` against that memory
        (section 3.1, Figure 1): ``(B, T, d_model)``. Masks are bool, ``True`` = may attend (see the
        class docstring)."""
        memory = self.encode(src, src_mask)  # (B, S, d_model)
        return self.decode(tgt, memory, tgt_mask, memory_mask, tgt_is_causal)  # (B, T, d_model)
