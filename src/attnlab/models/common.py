"""Pieces that several models build from their configs.

Models import only :mod:`attnlab.nn` (and torch). The ``torch`` backend comes from
:mod:`attnlab.nn.torch_twin`, the one boundary where attnlab's masks are converted to
PyTorch's convention.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from torch import Tensor, nn

from attnlab.models.user_layer import UserLayerDecoder, UserLayerEncoder, load_layer_class
from attnlab.nn import (
    BlockSpec,
    LearnedPositionalEncoding,
    MultiHeadAttention,
    SinusoidalPositionalEncoding,
    TransformerEncoder,
)
from attnlab.nn.spec import MAX_D_FF, MAX_D_MODEL, MAX_ENTRIES, MAX_LAYERS
from attnlab.nn.torch_twin import TorchTransformerEncoder

# The largest value of each config field that counts layers, entries or widths (the widths of
# the blocks themselves are BlockSpec's to check): beyond it the field is a typo, refused
# before anything is allocated.
_MOST = {
    **dict.fromkeys(
        ("num_layers", "num_encoder_layers", "num_decoder_layers", "num_hidden_layers"),
        MAX_LAYERS,
    ),
    **dict.fromkeys(
        ("vocab_size", "src_vocab_size", "tgt_vocab_size", "type_vocab_size", "num_classes"),
        MAX_ENTRIES,
    ),
    **dict.fromkeys(("input_dim", "d_embed", "hidden", "hidden_size"), MAX_D_MODEL),
    "intermediate_size": MAX_D_FF,  # Hugging Face's names of BlockSpec's d_model and d_ff
}


def check_counts(config: Any, names: Iterable[str]) -> None:
    """Raise ``ValueError`` unless each field ``names`` of ``config`` is a whole number >= 1
    (a size, a count of layers or classes), at most its bound in ``_MOST`` if it has one
    (:data:`MAX_LAYERS` layers, :data:`MAX_ENTRIES` vocabulary entries or classes), naming
    the field and its value."""
    for name in names:
        value = getattr(config, name)
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{name} must be a whole number; got {value!r}")
        if value < 1:
            raise ValueError(f"{name} must be at least 1; got {value}")
        if name in _MOST and value > _MOST[name]:
            raise ValueError(f"{name} must be at most {_MOST[name]:,}; got {value:,}")


def check_flags(config: Any, names: Iterable[str]) -> None:
    """Raise ``ValueError`` unless each field ``names`` of ``config`` is ``True`` or ``False``
    (a string such as ``"no"`` would otherwise count as true), naming the field."""
    for name in names:
        value = getattr(config, name)
        if not isinstance(value, bool):
            raise ValueError(f"{name} must be true or false; got {value!r}")


def check_token_ids(config: Any, vocab_size: int, vocab_name: str, names: Iterable[str]) -> None:
    """Raise ``ValueError`` unless each id field ``names`` of ``config`` (``pad_id``, ...) is
    a whole number in ``[0, vocab_size)``; ``vocab_name`` names the size in the message."""
    for name in names:
        value = getattr(config, name)
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < vocab_size:
            raise ValueError(
                f"{name} must be an id in [0, {vocab_name}={vocab_size}); got {value!r}"
            )


def check_window(start: int, length: int, window: int, field: str) -> None:
    """Refuse ``length`` tokens at positions ``start ..`` past a context ``window`` (the
    config's ``field``) with a ``ValueError`` that says what to do."""
    end = start + length
    if end > window:
        raise ValueError(
            f"positions {start}..{end - 1} do not fit the context window of {window} tokens "
            f"({field}): crop the input or slide the window"
        )


def check_attention_mask(attention_mask: Tensor) -> None:
    """Raise ``TypeError`` unless a Hugging Face style ``attention_mask`` (1 = real token,
    0 = padding) is a tensor, and ``ValueError`` unless it is bool or integer. A float one is
    ambiguous: an additive mask (0 = attend, -inf or -10000 = padding) read as 0/1 would hide
    the real tokens and show the padding, and 0.5 would count as real. A dtype check: it
    reads no values, so no device wait."""
    if not isinstance(attention_mask, Tensor):
        raise TypeError(
            f"attention_mask must be a tensor (1 = real token); got {type(attention_mask).__name__}"
        )
    if attention_mask.is_floating_point() or attention_mask.is_complex():
        raise ValueError(
            "attention_mask must be bool or integer (1 = real token, 0 = padding); got "
            f"{attention_mask.dtype} (a float mask may be additive, 0 = attend, and be read "
            "backwards)"
        )


def self_attention(layer: nn.Module) -> MultiHeadAttention:
    """The self-attention of one of attnlab's layers (an ``nn.ModuleList`` types its items as
    plain modules; this says which module it is)."""
    attention = layer.self_attn
    assert isinstance(attention, MultiHeadAttention)
    return attention


def check_positional(kind: Any) -> None:
    """Raise ``ValueError`` unless ``kind`` names a positional encoding."""
    if kind not in ("sinusoidal", "learned"):
        raise ValueError(f"positional must be 'sinusoidal' or 'learned'; got {kind!r}")


def positional_encoding(kind: str, d_model: int, max_len: int, dropout: float) -> nn.Module:
    """The positional encoding named ``kind`` ('sinusoidal' or 'learned'), dropout after it.

    Learned positions start with unit variance: the scale of the ``sqrt(d_model)``-scaled
    token embeddings they are added to (at GPT's 0.02 they would start all but invisible, and
    on the names task the model stayed closer to a bag of characters for longer).
    """
    if kind == "sinusoidal":
        return SinusoidalPositionalEncoding(d_model, max_len, dropout)
    if kind == "learned":
        return LearnedPositionalEncoding(d_model, max_len, dropout, init_std=1.0)
    raise ValueError(f"positional must be 'sinusoidal' or 'learned'; got {kind!r}")


def encoder_block_spec(config: Any) -> BlockSpec:
    """The :class:`~attnlab.nn.BlockSpec` of an encoder config's block fields.

    Uses ``d_model, num_heads, d_ff (None: 4 * d_model, the paper's ratio 2048 / 512),
    dropout, activation, norm_first``; the other block options keep the paper's defaults.
    """
    return BlockSpec(
        d_model=config.d_model,
        num_heads=config.num_heads,
        d_ff=4 * config.d_model if config.d_ff is None else config.d_ff,
        dropout=config.dropout,
        activation=config.activation,
        norm_first=config.norm_first,
    )


def encoder_from_config(config: Any) -> nn.Module:
    """The encoder stack of ``config.num_layers`` blocks described by ``config.block_spec()``.

    Pre-LN stacks get a final LayerNorm, as in GPT-2. A config whose ``backend`` is
    ``"torch"`` gets PyTorch's ``nn.TransformerEncoderLayer`` s with the same hyperparameters
    (through :class:`attnlab.nn.torch_twin.TorchTransformerEncoder`, where masks change
    convention); a config with a ``layer`` (``"FILE.py:ClassName"``, and its ``layer_sha256``)
    gets that class of the user's (:mod:`attnlab.models.user_layer`); otherwise attnlab's
    :class:`TransformerEncoder`.
    """
    if getattr(config, "layer", None):
        layer_class = load_layer_class(config.layer, config.layer_sha256)
        d_ff = 4 * config.d_model if config.d_ff is None else config.d_ff
        return UserLayerEncoder(
            config.num_layers,
            layer_class,
            config.d_model,
            config.num_heads,
            d_ff,
            config.dropout,
            final_norm=config.norm_first,
        )
    backend = getattr(config, "backend", "attnlab")
    if backend not in ("attnlab", "torch"):
        raise ValueError(f"backend must be 'attnlab' or 'torch'; got {backend!r}")
    encoder_cls = TorchTransformerEncoder if backend == "torch" else TransformerEncoder
    spec = config.block_spec()
    return encoder_cls(config.num_layers, spec=spec, final_norm=spec.norm_first)


def user_decoder_from_config(config: Any) -> UserLayerDecoder | None:
    """The stack of ``config.num_decoder_layers`` of the user's decoder layer class named by
    ``config.decoder_layer`` (``"FILE.py:ClassName"``, checked against its
    ``decoder_layer_sha256``), with a final LayerNorm if ``config.norm_first`` as attnlab's
    pre-LN stacks have; ``None`` when the config has no such layer (attnlab's own)."""
    if not getattr(config, "decoder_layer", None):
        return None
    layer_class = load_layer_class(config.decoder_layer, config.decoder_layer_sha256)
    return UserLayerDecoder(
        config.num_decoder_layers,
        layer_class,
        config.d_model,
        config.num_heads,
        config.d_ff,
        config.dropout,
        final_norm=config.norm_first,
    )
