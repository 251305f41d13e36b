"""Building blocks of the Transformer, named as in "Attention Is All You Need".

Mask convention everywhere: bool, ``True`` = "may attend" (see :mod:`attnlab.nn.masks`).
A :class:`BlockSpec` describes one block; models hand it down whole to every layer. Beside
the paper's choices it offers later ones, each in its own module: rotary positions
(:class:`RotaryEmbedding`), grouped-query attention (in :class:`MultiHeadAttention`),
:class:`RMSNorm` and the SwiGLU feed-forward network (in :class:`FeedForward`).
"""

from attnlab.nn.attention import (
    KVCache,
    MultiHeadAttention,
    fused_scaled_dot_product_attention,
    repeat_kv,
    scaled_dot_product_attention,
)
from attnlab.nn.embedding import (
    LearnedPositionalEncoding,
    PatchEmbedding,
    SinusoidalPositionalEncoding,
    TokenEmbedding,
    sinusoidal_table,
)
from attnlab.nn.layers import (
    DecoderLayer,
    DecoderLayerCache,
    EncoderLayer,
    FeedForward,
    TransformerDecoder,
    TransformerEncoder,
)
from attnlab.nn.linear import Linear
from attnlab.nn.masks import (
    causal_mask,
    check_mask,
    combine_masks,
    local_mask,
    padding_mask,
)
from attnlab.nn.normalization import RMSNorm
from attnlab.nn.rotary import RotaryEmbedding, rotate_half
from attnlab.nn.spec import BlockSpec
from attnlab.nn.static_cache import StaticKVCache
from attnlab.nn.transformer import Transformer

__all__ = [
    "BlockSpec",
    "DecoderLayer",
    "DecoderLayerCache",
    "EncoderLayer",
    "FeedForward",
    "KVCache",
    "LearnedPositionalEncoding",
    "Linear",
    "MultiHeadAttention",
    "PatchEmbedding",
    "RMSNorm",
    "RotaryEmbedding",
    "SinusoidalPositionalEncoding",
    "StaticKVCache",
    "TokenEmbedding",
    "Transformer",
    "TransformerDecoder",
    "TransformerEncoder",
    "causal_mask",
    "check_mask",
    "combine_masks",
    "fused_scaled_dot_product_attention",
    "local_mask",
    "padding_mask",
    "repeat_kv",
    "rotate_half",
    "scaled_dot_product_attention",
    "sinusoidal_table",
]
