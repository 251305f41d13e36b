"""GPT: a decoder-only Transformer language model (Radford et al. 2018, 2019), from attnlab blocks.

GPT-2's architecture ("Language Models are Unsupervised Multitask Learners", section 2.3)::

    h_0 = W_e[ids] + W_p[positions]                      token + learned position embeddings
    h_l = Block(h_{l-1}),  l = 1..L                      pre-LN Transformer blocks
    logits = LayerNorm(h_L) W_e^T                        final LayerNorm, head tied to W_e

A block is attnlab's :class:`~attnlab.nn.EncoderLayer` with ``norm_first=True`` (pre-LN,
GPT-2 section 2.3: "layer normalization was moved to the input of each sub-block") and a
causal mask (paper section 3.2.3: position ``i`` attends only to positions ``<= i``), so each
position predicts the next token from the tokens before it. In training the causal mask is
never materialised: the attention runs on the fused path of
:func:`torch.nn.functional.scaled_dot_product_attention` with ``is_causal=True``.

Dropout, when enabled, follows attnlab's encoder layer: on the embeddings, the attention
weights, each sublayer output and (unlike GPT-2) inside the feed-forward network.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from torch import Tensor, nn

from attnlab.models.common import check_counts, check_window, self_attention
from attnlab.nn import BlockSpec, EncoderLayer, KVCache, LearnedPositionalEncoding, StaticKVCache
from attnlab.nn.embedding import check_table, check_token_batch, embed_tokens
from attnlab.nn.layers import check_cache
from attnlab.nn.linear import linear


@dataclass
class GPTConfig:
    """Hyperparameters of :class:`GPT` (defaults: GPT-2 small, 124M parameters).

    ``block_size`` is the context window (the number of learned positions). ``d_ff=None``
    means ``4 * d_model`` (GPT-2's ratio). ``activation="gelu_tanh"`` is the tanh
    approximation of GELU that GPT-2 uses (Hugging Face's ``gelu_new``); ``"gelu"`` is the
    exact one (nanoGPT's). ``bias=False`` drops the biases of every linear layer and
    LayerNorm (nanoGPT's default: "a bit better and faster").
    """

    vocab_size: int = 50257
    block_size: int = 1024
    num_layers: int = 12
    num_heads: int = 12
    d_model: int = 768
    d_ff: int | None = None
    dropout: float = 0.0
    activation: Literal["gelu", "gelu_tanh", "relu"] = "gelu_tanh"
    layer_norm_eps: float = 1e-5
    bias: bool = True

    def __post_init__(self) -> None:
        check_counts(self, ("vocab_size", "block_size", "num_layers", "num_heads", "d_model"))
        if self.d_model % self.num_heads:
            raise ValueError(
                f"d_model must be divisible by num_heads; got {self.d_model} and {self.num_heads}"
            )
        self.block_spec()  # the block's fields (d_ff, dropout, activation, ...), before allocating
        check_table(self.block_size, self.d_model, "block_size")  # a typo such as 10**12

    def block_spec(self) -> BlockSpec:
        """The :class:`~attnlab.nn.BlockSpec` of every block: pre-LN (GPT-2 section 2.3)."""
        return BlockSpec(
            d_model=self.d_model,
            num_heads=self.num_heads,
            d_ff=4 * self.d_model if self.d_ff is None else self.d_ff,
            dropout=self.dropout,
            activation=self.activation,
            norm_first=True,
            layer_norm_eps=self.layer_norm_eps,
            bias=self.bias,
        )


class GPT(nn.Module):
    """Decoder-only language model: token ids -> logits of the next token at every position.

    Call: ``model(input_ids)`` with ``input_ids: (B, T)``, ``T <= block_size``; returns
    logits ``(B, T, vocab_size)``, where ``logits[:, t]`` scores the token after
    ``input_ids[:, t]``.

    Decoding with a key/value cache: ``cache = model.make_cache()`` (one
    :class:`~attnlab.nn.KVCache` per layer), then ``model(ids, cache=cache)`` repeatedly with
    only the new tokens; their positions start at ``len(cache[0])``. Positions beyond
    ``block_size`` raise ``ValueError``.

    ``return_attention=True`` returns ``(logits, maps)``, with ``maps`` the causal attention
    weights of every layer, ``(B, H, T, T_k)`` each (computed on the explicit path).

    Initialisation (GPT-2 section 2.3, as in its reference code): every weight matrix and
    embedding ``N(0, 0.02)``, biases zero, and the projections that end a residual sublayer
    (``out_proj`` and ``linear2``) ``N(0, 0.02 / sqrt(2 L))`` so that the residual stream's
    variance does not grow with the depth ``L`` (two sublayers per block).
    """

    config_class = GPTConfig

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.config = config
        d_model = config.d_model
        self.token_embedding = nn.Embedding(config.vocab_size, d_model)
        self.positions = LearnedPositionalEncoding(
            d_model, max_len=config.block_size, dropout=config.dropout
        )
        spec = config.block_spec()
        self.layers = nn.ModuleList(EncoderLayer(spec=spec) for _ in range(config.num_layers))
        self.norm = nn.LayerNorm(d_model, eps=spec.layer_norm_eps, bias=spec.bias)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """GPT-2 initialisation (see the class docstring)."""
        residual_std = 0.02 / math.sqrt(2 * self.config.num_layers)
        for name, module in self.named_modules():
            if isinstance(module, nn.Linear):
                std = residual_std if name.endswith(("out_proj", "linear2")) else 0.02
                nn.init.normal_(module.weight, mean=0.0, std=std)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Embedding):
                nn.init.normal_(module.weight, mean=0.0, std=0.02)
            elif isinstance(module, nn.LayerNorm):
                nn.init.ones_(module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    @property
    def lm_head_weight(self) -> Tensor:
        """The output projection ``(vocab_size, d_model)``: the token embedding itself (tied)."""
        return self.token_embedding.weight

    def make_cache(
        self, batch_size: int | None = None, max_len: int | None = None
    ) -> list[KVCache] | list[StaticKVCache]:
        """Empty key/value caches, one per layer, for :func:`attnlab.generation.generate`:
        growing :class:`~attnlab.nn.KVCache` s, or with ``batch_size``
        :class:`~attnlab.nn.StaticKVCache` s preallocated for ``max_len`` positions (default
        and at most the context window, ``block_size``): fixed shapes at every decoding step."""
        if batch_size is None:
            return [KVCache() for _ in self.layers]
        window = min(max_len or self.config.block_size, self.config.block_size)
        return [
            StaticKVCache.for_attention(self_attention(layer), batch_size, window)
            for layer in self.layers
        ]

    def forward(
        self,
        input_ids: Tensor,
        cache: list[KVCache] | list[StaticKVCache] | None = None,
        return_attention: bool = False,
    ) -> Tensor | tuple[Tensor, list[Tensor]]:
        """Next-token logits ``(B, T, vocab_size)`` of ``input_ids (B, T)`` through the causal
        pre-LN blocks (GPT-2 section 2.3). With a ``cache`` pass only the new tokens;
        ``return_attention=True`` adds each layer's weights ``(B, H, T, T_k)``."""
        check_token_batch(input_ids, "input_ids")
        check_cache(cache, len(self.layers), (KVCache, StaticKVCache), "model")
        tokens = embed_tokens(self.token_embedding, input_ids, "input_ids")  # (B, T, d_model)
        x = self.positions(tokens, offset=self._start(input_ids, cache))  # (B, T, d_model)
        maps = []
        for i, layer in enumerate(self.layers):
            layer_cache = None if cache is None else cache[i]
            if return_attention:
                x, weights = layer(x, need_weights=True, is_causal=True, cache=layer_cache)
                maps.append(weights)  # (B, H, T, T_k)
            else:
                x = layer(x, is_causal=True, cache=layer_cache)  # (B, T, d_model)
        logits = linear(self.norm(x), self.lm_head_weight)  # (B, T, vocab_size)
        return (logits, maps) if return_attention else logits

    def _start(
        self, input_ids: Tensor, cache: list[KVCache] | list[StaticKVCache] | None
    ) -> int | Tensor:
        """The position of ``input_ids[:, 0]``, after checking that the tokens fit the window.

        With static caches it is their ``position`` tensor, never read back to Python: a
        compiled decoding step then serves every position with one graph (torch < 2.5 would
        bake the value read at tracing into the graph), and the caches, which hold at most
        ``block_size`` positions, check the window themselves."""
        if cache is not None and len(cache) > 0 and isinstance(cache[0], StaticKVCache):
            return cache[0].position  # () integer tensor
        start = len(cache[0]) if cache else 0
        check_window(start, input_ids.size(1), self.config.block_size, "block_size")
        return start

    def num_parameters(self, non_embedding: bool = False) -> int:
        """Number of parameters; ``non_embedding=True`` leaves out the position table.

        The token embedding stays in either way: tied, it is also the output projection
        (the count used for FLOP estimates, see :mod:`attnlab.bench.flops`).
        """
        total = sum(p.numel() for p in self.parameters())
        if non_embedding:
            total -= self.positions.embedding.weight.numel()
        return total
