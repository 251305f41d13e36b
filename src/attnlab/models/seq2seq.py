"""The encoder-decoder Transformer of Figure 1, with embeddings and the output projection."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, overload

import torch
from torch import Tensor, nn

from attnlab.models.common import (
    check_counts,
    check_flags,
    check_positional,
    check_token_ids,
    positional_encoding,
    user_decoder_from_config,
)
from attnlab.models.user_layer import UserLayerDecoder
from attnlab.nn import (
    BlockSpec,
    DecoderLayerCache,
    TokenEmbedding,
    Transformer,
    TransformerDecoder,
    padding_mask,
)
from attnlab.nn.embedding import check_table, check_token_batch
from attnlab.nn.layers import check_cache
from attnlab.nn.linear import Linear, linear
from attnlab.nn.spec import not_a_tensor


@dataclass
class Seq2SeqConfig:
    """Hyperparameters of :class:`Seq2SeqTransformer` (paper Table 3 names in brackets).

    ``share_embeddings`` uses one embedding matrix for source and target (needs one shared
    vocabulary); ``tie_output`` uses the target embedding as the pre-softmax projection
    (section 3.4). ``pad_id`` marks padding in both languages; ``bos_id`` starts every
    decoder input ("outputs shifted right") and ``eos_id`` ends every target. ``pad_id`` and
    ``bos_id`` must be ids of the target vocabulary (``pad_id`` of the source one too).
    ``decoder_layer`` (``"FILE.py:ClassName"``) stacks a user's decoder layer class instead of
    attnlab's (:mod:`attnlab.models.user_layer`; ``decoder_layer_sha256``: the file's hash,
    checked when the model is built).
    """

    src_vocab_size: int
    tgt_vocab_size: int
    pad_id: int = 0
    bos_id: int = 1
    eos_id: int = 2
    d_model: int = 512  # d_model
    num_heads: int = 8  # h
    num_encoder_layers: int = 6  # N
    num_decoder_layers: int = 6  # N
    d_ff: int = 2048  # d_ff
    dropout: float = 0.1  # P_drop
    activation: Literal["relu", "gelu"] = "relu"
    norm_first: bool = False
    positional: Literal["sinusoidal", "learned"] = "sinusoidal"
    max_len: int = 256
    share_embeddings: bool = False
    tie_output: bool = True
    decoder_layer: str | None = None
    decoder_layer_sha256: str | None = None

    def __post_init__(self) -> None:
        sizes = ("src_vocab_size", "tgt_vocab_size", "max_len")
        check_counts(self, (*sizes, "num_encoder_layers", "num_decoder_layers"))
        # Looked up in the target embedding and the logits. eos_id is only compared with the
        # output: one outside the vocabulary is a search that never stops early (bench decode).
        check_token_ids(self, self.tgt_vocab_size, "tgt_vocab_size", ("pad_id", "bos_id"))
        check_token_ids(self, self.src_vocab_size, "src_vocab_size", ("pad_id",))
        eos = self.eos_id
        if isinstance(eos, bool) or not isinstance(eos, int) or eos < 0:
            raise ValueError(f"eos_id must be a whole number >= 0; got {eos!r}")
        check_positional(self.positional)
        check_flags(self, ("share_embeddings", "tie_output"))
        self.block_spec()  # the block's fields (d_model, num_heads, ...), before allocating
        check_table(self.max_len, self.d_model)  # a typo such as 10**12
        if self.share_embeddings and self.src_vocab_size != self.tgt_vocab_size:
            raise ValueError(
                "share_embeddings needs one vocabulary for both sides; got sizes "
                f"{self.src_vocab_size} and {self.tgt_vocab_size}"
            )
        if len({self.pad_id, self.bos_id, self.eos_id}) != 3:
            raise ValueError("pad_id, bos_id and eos_id must be three different ids")

    def block_spec(self) -> BlockSpec:
        """The :class:`~attnlab.nn.BlockSpec` of every encoder and decoder layer."""
        return BlockSpec(
            d_model=self.d_model,
            num_heads=self.num_heads,
            d_ff=self.d_ff,
            dropout=self.dropout,
            activation=self.activation,
            norm_first=self.norm_first,
        )


class Seq2SeqTransformer(nn.Module):
    """Source embedding + positions -> encoder; target embedding + positions -> decoder ->
    linear -> logits (Figure 1).

    Training (teacher forcing): ``model(src, tgt_in)`` with ``src: (B, S)`` source ids (padded
    with ``pad_id``) and ``tgt_in: (B, T)`` the target shifted right (``bos_id`` first, see
    :meth:`shift_right`); returns logits ``(B, T, tgt_vocab_size)``: position ``t`` predicts
    target token ``t``. The source padding mask hides padding from the encoder and from
    cross-attention; the causal mask hides later target tokens. Target padding needs no mask:
    it comes after every real token, so the causal mask already hides it from them.

    Decoding: :meth:`encode` once, then :meth:`decode` step by step with the caches of
    :meth:`make_cache` (see :mod:`attnlab.generation`); a user's decoder layer has no cache,
    and each step re-reads the whole prefix.
    """

    def __init__(self, config: Seq2SeqConfig):
        super().__init__()
        self.config = c = config
        self.src_embed = TokenEmbedding(c.src_vocab_size, c.d_model, padding_idx=c.pad_id)
        self.tgt_embed = (
            self.src_embed
            if c.share_embeddings
            else TokenEmbedding(c.tgt_vocab_size, c.d_model, padding_idx=c.pad_id)
        )
        self.src_positions = positional_encoding(c.positional, c.d_model, c.max_len, c.dropout)
        self.tgt_positions = positional_encoding(c.positional, c.d_model, c.max_len, c.dropout)
        self.transformer = Transformer(
            num_encoder_layers=c.num_encoder_layers,
            num_decoder_layers=c.num_decoder_layers,
            spec=c.block_spec(),
            custom_decoder=user_decoder_from_config(c),
        )
        self.generator = None if c.tie_output else Linear(c.d_model, c.tgt_vocab_size)

    config_class = Seq2SeqConfig

    def shift_right(self, tgt: Tensor) -> Tensor:
        """Decoder input for target ``tgt (B, T)``: ``bos_id`` then ``tgt[:, :-1]`` (B, T).

        Raises ``TypeError`` unless ``tgt`` is a tensor, ``ValueError`` unless it holds
        ``(B, T)`` integer ids (a single sentence is ``(1, T)``: ``tgt[None]``)."""
        check_token_batch(tgt, "tgt")
        if tgt.dtype not in (torch.int64, torch.int32):
            raise ValueError(f"tgt must be integer token ids (torch.long); got dtype {tgt.dtype}")
        bos = tgt.new_full((tgt.size(0), 1), self.config.bos_id)  # (B, 1)
        return torch.cat([bos, tgt[:, :-1]], dim=1)  # (B, T)

    # Signatures for the type checker: return_attention=True adds the attention maps.
    @overload
    def encode(
        self, src: Tensor, return_attention: Literal[False] = ...
    ) -> tuple[Tensor, Tensor]: ...
    @overload
    def encode(
        self, src: Tensor, *, return_attention: Literal[True]
    ) -> tuple[Tensor, Tensor, list[Tensor]]: ...
    def encode(
        self, src: Tensor, return_attention: bool = False
    ) -> tuple[Tensor, Tensor] | tuple[Tensor, Tensor, list[Tensor]]:
        """Memory ``(B, S, d_model)`` and source mask ``(B, 1, 1, S)`` of source ids ``(B, S)``.

        With ``return_attention=True`` also the encoder's per-layer weights ``(B, H, S, S)``.
        """
        x = self.src_positions(self.src_embed(src))  # (B, S, d_model); checks the ids first
        src_mask = padding_mask(src, self.config.pad_id)  # (B, 1, 1, S), True = real token
        encoded = self.transformer.encoder(x, mask=src_mask, return_attention=return_attention)
        if return_attention:
            memory, maps = encoded
            return memory, src_mask, maps
        return encoded, src_mask

    @overload
    def decode(
        self,
        tgt_in: Tensor,
        memory: Tensor | None,
        src_mask: Tensor | None,
        cache: list[DecoderLayerCache] | None = ...,
        return_attention: Literal[False] = ...,
        last_only: bool = ...,
    ) -> Tensor: ...
    @overload
    def decode(
        self,
        tgt_in: Tensor,
        memory: Tensor | None,
        src_mask: Tensor | None,
        cache: list[DecoderLayerCache] | None = ...,
        *,
        return_attention: Literal[True],
        last_only: bool = ...,
    ) -> tuple[Tensor, list[Tensor], list[Tensor]]: ...
    def decode(
        self,
        tgt_in: Tensor,
        memory: Tensor | None,
        src_mask: Tensor | None,
        cache: list[DecoderLayerCache] | None = None,
        return_attention: bool = False,
        last_only: bool = False,
    ) -> Tensor | tuple[Tensor, list[Tensor], list[Tensor]]:
        """Logits ``(B, T, tgt_vocab_size)`` for decoder input ``tgt_in (B, T)``.

        With a ``cache`` the ``T`` tokens continue the ones decoded before (their positions
        start at the cache length) and ``memory`` may be ``None`` after the first step. With
        ``return_attention=True`` also the per-layer self- and cross-attention weights.
        ``src_mask`` is the source padding mask of :meth:`encode`, or ``None`` for sources
        without padding. ``last_only=True`` projects only the last position,
        ``(B, 1, tgt_vocab_size)``: all a decoding step needs.
        """
        # Checked here, before the cache's length is read (cache=[None] failed on .self_attn).
        check_cache(cache, self.config.num_decoder_layers, (DecoderLayerCache,), "decoder")
        offset = len(cache[0].self_attn) if cache else 0
        y = self.tgt_positions(self.tgt_embed(tgt_in), offset=offset)  # (B, T, d_model)
        decoded = self.transformer.decode(
            y,
            memory,
            memory_mask=src_mask,
            tgt_is_causal=True,
            cache=cache,
            return_attention=return_attention,
        )
        if isinstance(decoded, tuple):  # return_attention=True: the maps come with it
            hidden, self_maps, cross_maps = decoded
            return self.project(hidden), self_maps, cross_maps
        if last_only:
            decoded = decoded[:, -1:]  # (B, 1, d_model)
        return self.project(decoded)

    def project(self, hidden: Tensor) -> Tensor:
        """Pre-softmax linear transformation: ``(B, T, d_model) -> (B, T, tgt_vocab_size)``."""
        # Type and width reads only, no device wait (not in linear(), every layer's fast
        # path): else torch's "mat1 and mat2 shapes cannot be multiplied" or argument error.
        if not isinstance(hidden, Tensor):
            raise not_a_tensor("hidden", hidden, "(B, T, d_model)")
        if hidden.dim() == 0 or hidden.size(-1) != self.config.d_model:
            raise ValueError(
                f"hidden must have shape (B, T, d_model) with d_model = {self.config.d_model}; "
                f"got {tuple(hidden.shape)}"
            )
        if self.generator is not None:
            return self.generator(hidden)
        return linear(hidden, self.tgt_embed.weight)  # tied weights, section 3.4

    def make_cache(self) -> list[DecoderLayerCache] | None:
        """Empty key/value caches for step-by-step decoding, one per decoder layer; ``None``
        with a user's decoder layer (``config.decoder_layer``), which keeps no cache."""
        decoder = self.transformer.decoder  # attnlab's stack or a user's layers (no cache)
        assert isinstance(decoder, (TransformerDecoder, UserLayerDecoder))
        return decoder.make_cache()

    def forward(self, src: Tensor, tgt_in: Tensor) -> Tensor:
        """Teacher-forced logits ``(B, T, tgt_vocab_size)`` of source ids ``src (B, S)`` and the
        shifted target ``tgt_in (B, T)``: :meth:`encode`, then :meth:`decode` (Figure 1, section
        3.1)."""
        memory, src_mask = self.encode(src)  # (B, S, d_model), (B, 1, 1, S)
        return self.decode(tgt_in, memory, src_mask)  # (B, T, tgt_vocab_size)
