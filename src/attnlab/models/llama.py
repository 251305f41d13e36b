"""Llama: a decoder-only language model on the post-2017 blocks (Touvron et al. 2023).

"LLaMA: Open and Efficient Foundation Language Models", section 2.2 ("Architecture"), keeps
GPT's decoder-only Transformer and changes three things; Llama 2 (Touvron et al. 2023b,
section 2.2) adds a fourth::

    h_0 = E[ids]                           token embeddings: no sqrt(d_model), no positions
    h_l = Block(h_{l-1}),  l = 1..L        pre-norm decoder blocks, causal
    logits = RMSNorm(h_L) W_out^T          final RMSNorm; W_out untied from E (or tied)

* pre-normalisation with RMSNorm (Zhang & Sennrich 2019): each sublayer's *input* is
  normalised, ``x + Sublayer(RMSNorm(x))``;
* the SwiGLU feed-forward network (Shazeer 2020): ``(SiLU(x W1) * x W3) W2``;
* rotary positions (Su et al. 2021) in every self-attention instead of absolute positions
  added to the embeddings;
* (Llama 2) grouped-query attention (Ainslie et al. 2023): fewer key/value heads than query
  heads, so the key/value cache is smaller;

and no biases anywhere. Each block is attnlab's :class:`~attnlab.nn.EncoderLayer` with a
causal mask, built from the :class:`~attnlab.nn.BlockSpec` of :meth:`LlamaConfig.block_spec`,
or a block class of the user's (``LlamaConfig.layer``; the contract is the llama practical's,
see :mod:`attnlab.models.user_layer`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from attnlab.models.common import (
    check_attention_mask,
    check_counts,
    check_flags,
    check_window,
    self_attention,
)
from attnlab.models.user_layer import load_layer_class
from attnlab.nn import BlockSpec, EncoderLayer, KVCache, RMSNorm, StaticKVCache
from attnlab.nn.embedding import check_token_batch, embed_tokens
from attnlab.nn.layers import check_cache
from attnlab.nn.linear import Linear, linear


@dataclass
class LlamaConfig:
    """Hyperparameters of :class:`Llama`, named as in Hugging Face's ``LlamaConfig``.

    Defaults are Hugging Face's (Llama 2 7B, 6.7B parameters). ``num_key_value_heads=None``
    means ``num_attention_heads`` (no grouping); the head width is ``hidden_size /
    num_attention_heads``. ``max_position_embeddings`` is the context window (also
    :attr:`block_size`, the name :func:`attnlab.generation.generate` reads). ``dropout`` is
    attnlab's: on the attention weights, inside the feed-forward network and on each
    sublayer's output (Llama has none).

    ``layer="FILE.py:ClassName"`` builds every block from a user's class instead of attnlab's
    (the llama practical's ``LlamaBlock``; :mod:`attnlab.models.user_layer`), as
    ``Layer(*user_block_args())``; ``layer_sha256`` is the file's hash, checked on loading.
    Such blocks have no dropout, no key/value cache, no padding mask and no attention maps.
    """

    vocab_size: int = 32000
    hidden_size: int = 4096
    intermediate_size: int = 11008
    num_hidden_layers: int = 32
    num_attention_heads: int = 32
    num_key_value_heads: int | None = None
    max_position_embeddings: int = 2048
    rms_norm_eps: float = 1e-6
    rope_theta: float = 10000.0
    tie_word_embeddings: bool = False
    initializer_range: float = 0.02
    dropout: float = 0.0
    layer: str | None = None
    layer_sha256: str | None = None

    def __post_init__(self) -> None:
        sizes = ("vocab_size", "hidden_size", "intermediate_size", "max_position_embeddings")
        check_counts(self, (*sizes, "num_hidden_layers"))
        check_flags(self, ("tie_word_embeddings",))
        if self.layer and self.dropout:
            raise ValueError(
                f"a Llama block of your own (layer) has no dropout; got dropout={self.dropout}"
            )
        if self.num_attention_heads >= 1 and self.hidden_size % self.num_attention_heads:
            raise ValueError(
                f"hidden_size must be divisible by num_attention_heads; got {self.hidden_size} "
                f"and {self.num_attention_heads}"
            )
        kv_heads = self.num_key_value_heads
        if kv_heads is not None and kv_heads >= 1 and self.num_attention_heads % kv_heads:
            raise ValueError(
                f"num_attention_heads must be divisible by num_key_value_heads; got "
                f"{self.num_attention_heads} and {kv_heads}"
            )
        std = self.initializer_range
        if isinstance(std, bool) or not isinstance(std, (int, float)) or not 0 <= std < math.inf:
            raise ValueError(f"initializer_range must be a finite number >= 0; got {std!r}")
        self.block_spec()  # the remaining checks: positive sizes, an even head width

    @property
    def block_size(self) -> int:
        """The context window: ``max_position_embeddings``."""
        return self.max_position_embeddings

    def user_block_args(self) -> tuple[int, int, int, int, float, float]:
        """The arguments a user's block class is built with: ``(d_model, num_heads,
        num_kv_heads, d_ff, eps, rope_theta)``, the llama practical's ``LlamaBlock``."""
        kv_heads = self.num_key_value_heads or self.num_attention_heads
        return (
            self.hidden_size,
            self.num_attention_heads,
            kv_heads,
            self.intermediate_size,
            self.rms_norm_eps,
            self.rope_theta,
        )

    def block_spec(self) -> BlockSpec:
        """The :class:`~attnlab.nn.BlockSpec` of every block: pre-norm RMSNorm, rotary
        positions, grouped-query attention, SwiGLU and no biases (see the module docstring)."""
        return BlockSpec(
            d_model=self.hidden_size,
            num_heads=self.num_attention_heads,
            d_ff=self.intermediate_size,
            dropout=self.dropout,
            activation="swiglu",
            norm_first=True,
            layer_norm_eps=self.rms_norm_eps,
            bias=False,
            norm="rmsnorm",
            num_kv_heads=self.num_key_value_heads,
            positions="rotary",
            rope_theta=self.rope_theta,
        )


class Llama(nn.Module):
    """Llama-style decoder-only language model: token ids -> logits of the next token.

    Call: ``model(input_ids, cache=None, attention_mask=None)`` with ``input_ids: (B, T)``;
    returns logits ``(B, T, vocab_size)``, where ``logits[:, t]`` scores the token after
    ``input_ids[:, t]``.

    * ``cache``: from :meth:`make_cache` (one :class:`~attnlab.nn.KVCache` per layer, holding
      only the key/value heads); pass only the new tokens, whose positions start at
      ``len(cache[0])``. Positions beyond ``max_position_embeddings`` raise ``ValueError``.
    * ``attention_mask``: for padded batches, ``(B, T_cached + T)`` over every position so
      far (cached and new), ``True`` (or 1) for a real token, ``False`` (0) for padding — the
      attnlab convention "may attend", which Hugging Face's attention mask shares. Keys at
      padding are masked, and each row's rotary positions count only its real tokens, so a
      left-padded row gets the logits of the same row without padding. Logits at padding
      positions are meaningless.
    * ``return_attention=True`` returns ``(logits, maps)``, the causal attention weights of
      every layer, ``(B, H, T, T_k)`` each (computed on the explicit path).

    With a user's block class (``config.layer``) each block is called as ``block(x)`` on the
    whole sequence: :meth:`make_cache` is ``None`` (generation recomputes the context at
    each step), and ``cache``, ``attention_mask`` and ``return_attention`` raise
    ``ValueError``.

    Initialisation as Hugging Face's: every weight matrix and embedding
    ``N(0, initializer_range)``, the RMSNorm gains one.
    """

    config_class = LlamaConfig

    def __init__(self, config: LlamaConfig):
        super().__init__()
        self.config = config
        spec = config.block_spec()
        self.token_embedding = nn.Embedding(config.vocab_size, config.hidden_size)
        # A user's block class (its file's hash checked), else attnlab's EncoderLayer.
        user_block = load_layer_class(config.layer, config.layer_sha256) if config.layer else None
        self.layers = nn.ModuleList(
            EncoderLayer(spec=spec) if user_block is None else user_block(*config.user_block_args())
            for _ in range(config.num_hidden_layers)
        )
        self.norm = RMSNorm(config.hidden_size, eps=config.rms_norm_eps)
        self.lm_head = None
        if not config.tie_word_embeddings:
            self.lm_head = Linear(config.hidden_size, config.vocab_size, bias=False)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Hugging Face's initialisation (see the class docstring)."""
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, mean=0.0, std=self.config.initializer_range)
            elif isinstance(module, RMSNorm):
                nn.init.ones_(module.weight)

    @property
    def lm_head_weight(self) -> Tensor:
        """The output projection ``(vocab_size, hidden_size)``: ``lm_head``, or the token
        embedding itself when ``tie_word_embeddings``."""
        return self.token_embedding.weight if self.lm_head is None else self.lm_head.weight

    def make_cache(
        self, batch_size: int | None = None, max_len: int | None = None
    ) -> list[KVCache] | list[StaticKVCache] | None:
        """Empty key/value caches, one per layer, for :func:`attnlab.generation.generate`:
        growing :class:`~attnlab.nn.KVCache` s, or with ``batch_size``
        :class:`~attnlab.nn.StaticKVCache` s preallocated for ``max_len`` positions (default
        and at most the context window, ``max_position_embeddings``): fixed shapes at every
        decoding step. ``None`` with a user's block class, which keeps no cache."""
        if self.config.layer:
            return None
        if batch_size is None:
            return [KVCache() for _ in self.layers]
        window = min(
            max_len or self.config.max_position_embeddings, self.config.max_position_embeddings
        )
        return [
            StaticKVCache.for_attention(self_attention(layer), batch_size, window)
            for layer in self.layers
        ]

    def forward(
        self,
        input_ids: Tensor,
        cache: list[KVCache] | list[StaticKVCache] | None = None,
        attention_mask: Tensor | None = None,
        return_attention: bool = False,
    ) -> Tensor | tuple[Tensor, list[Tensor]]:
        """Next-token logits ``(B, T, vocab_size)`` of ``input_ids (B, T)`` (LLaMA section 2.2).
        ``cache``, ``attention_mask`` (bool or 0/1, ``True`` = real token, may attend) and
        ``return_attention`` as in the class docstring."""
        if self.config.layer:
            return self._forward_user_blocks(input_ids, cache, attention_mask, return_attention)
        start = self._check_input(input_ids, cache)  # position of input_ids[:, 0]
        static = cache[0] if cache and isinstance(cache[0], StaticKVCache) else None
        keys = None if static is None else static.max_len  # static caches attend over whole buffers
        positions, mask = self._padding(attention_mask, input_ids, start, keys)
        if positions is None:
            T = input_ids.size(1)
            positions = (
                static.positions(T)  # a tensor, so that compiled steps keep one graph
                if static is not None
                else torch.arange(start, start + T, device=input_ids.device)
            )  # (T,)
        # The angles of the positions, computed once and shared by every layer.
        rotary = self_attention(self.layers[0]).rotary
        assert rotary is not None  # Llama's attention has rotary positions
        rotary_cos_sin = rotary.cos_sin(positions, torch.float32)
        x = embed_tokens(self.token_embedding, input_ids, "input_ids")  # (B, T, hidden_size)
        maps = []
        for i, layer in enumerate(self.layers):
            out = layer(
                x,
                mask=mask,
                need_weights=return_attention,
                is_causal=True,
                cache=None if cache is None else cache[i],
                rotary_cos_sin=rotary_cos_sin,
            )
            if return_attention:
                x, weights = out
                maps.append(weights)  # (B, H, T, T_k)
            else:
                x = out  # (B, T, hidden_size)
        logits = linear(self.norm(x), self.lm_head_weight)  # (B, T, vocab_size)
        return (logits, maps) if return_attention else logits

    def _forward_user_blocks(
        self,
        input_ids: Tensor,
        cache: list | None,
        attention_mask: Tensor | None,
        return_attention: bool,
    ) -> Tensor:
        """Logits ``(B, T, vocab_size)`` through the user's blocks, each called as
        ``block(x)`` on the whole sequence (it attends causally itself)."""
        if cache is not None:
            raise ValueError("a Llama block of your own keeps no key/value cache")
        if attention_mask is not None:
            raise ValueError("a Llama block of your own takes no padding mask (attention_mask)")
        if return_attention:
            raise ValueError("a Llama block of your own returns no attention weights to show")
        self._check_input(input_ids, None)
        x = embed_tokens(self.token_embedding, input_ids, "input_ids")  # (B, T, hidden_size)
        for layer in self.layers:
            x = layer(x)  # (B, T, hidden_size)
        return linear(self.norm(x), self.lm_head_weight)  # (B, T, vocab_size)

    def _check_input(
        self, input_ids: Tensor, cache: list[KVCache] | list[StaticKVCache] | None
    ) -> int:
        """The position of ``input_ids[:, 0]``, after checking the shapes and the window."""
        check_token_batch(input_ids, "input_ids")
        check_cache(cache, len(self.layers), (KVCache, StaticKVCache), "model")
        start = len(cache[0]) if cache else 0
        check_window(
            start, input_ids.size(1), self.config.max_position_embeddings, "max_position_embeddings"
        )
        return start

    @staticmethod
    def _padding(
        attention_mask: Tensor | None, input_ids: Tensor, start: int, keys: int | None = None
    ) -> tuple[Tensor | None, Tensor | None]:
        """Rotary positions ``(B, T)`` and the key mask ``(B, 1, 1, T_cached + T)`` of a padded
        batch (``(B, 1, 1, keys)`` with a static cache of ``keys`` positions: the unwritten
        ones are not real tokens); ``(None, None)`` without ``attention_mask``."""
        if attention_mask is None:
            return None, None
        check_attention_mask(attention_mask)
        B, end = input_ids.size(0), start + input_ids.size(1)
        if tuple(attention_mask.shape) != (B, end):
            raise ValueError(
                f"attention_mask must have shape (B, T_cached + T) = ({B}, {end}); got "
                f"{tuple(attention_mask.shape)}"
            )
        real = attention_mask.to(device=input_ids.device, dtype=torch.bool)  # (B, end)
        # Position of each token among its row's real tokens (padding gets 0; unused).
        positions = (real.long().cumsum(dim=-1) - 1).clamp(min=0)  # (B, end)
        if keys is not None:
            real = F.pad(real, (0, keys - end), value=False)  # (B, keys)
        return positions[:, start:], real[:, None, None, :]  # (B, T), (B, 1, 1, end | keys)
