"""Hugging Face GPT-2 weights -> attnlab's :class:`attnlab.models.GPT`.

:func:`gpt2_from_hf` converts an in-memory ``transformers.GPT2LMHeadModel``;
:func:`gpt2_state_dict_from_hf` does the renaming on tensors alone (no ``transformers``
import), e.g. for a state dict read from a ``model.safetensors`` file.

Hugging Face's GPT-2 stores its projections as ``Conv1D`` modules, whose weight is the
*transpose* of a ``nn.Linear`` weight: ``(d_in, d_out)``, applied as ``x @ W + b``. The
mapping, per block ``i`` (Hugging Face -> attnlab, ``^T`` = transposed)::

    transformer.wte                 -> token_embedding           (also the tied LM head)
    transformer.wpe                 -> positions.embedding
    transformer.h.i.ln_1            -> layers.i.norm1
    transformer.h.i.attn.c_attn ^T  -> layers.i.self_attn.qkv_proj   (columns Q, K, V -> rows)
    transformer.h.i.attn.c_proj ^T  -> layers.i.self_attn.out_proj
    transformer.h.i.ln_2            -> layers.i.norm2
    transformer.h.i.mlp.c_fc ^T     -> layers.i.feed_forward.linear1
    transformer.h.i.mlp.c_proj ^T   -> layers.i.feed_forward.linear2
    transformer.ln_f                -> norm

``c_attn``'s output columns are ``[Q | K | V]`` with the heads side by side inside each, the
layout of attnlab's fused ``qkv_proj`` rows, so the transpose is the whole conversion.
"""

from __future__ import annotations

from typing import Any, Literal

from torch import Tensor

from attnlab.errors import InputError
from attnlab.models.gpt import GPT, GPTConfig

# Hugging Face's activation_function names -> attnlab's activation names.
_ACTIVATIONS: dict[str, Literal["gelu", "gelu_tanh", "relu"]] = {
    "gelu_new": "gelu_tanh",
    "gelu_pytorch_tanh": "gelu_tanh",
    "gelu": "gelu",
    "relu": "relu",
}
_TOP = {
    "transformer.wte.weight": "token_embedding.weight",
    "transformer.wpe.weight": "positions.embedding.weight",
    "transformer.ln_f.weight": "norm.weight",
    "transformer.ln_f.bias": "norm.bias",
}
_NORMS = {"ln_1": "norm1", "ln_2": "norm2"}
_CONV1D = {
    "attn.c_attn": "self_attn.qkv_proj",
    "attn.c_proj": "self_attn.out_proj",
    "mlp.c_fc": "feed_forward.linear1",
    "mlp.c_proj": "feed_forward.linear2",
}


def gpt2_config_from_hf(hf_config: Any) -> GPTConfig:
    """The :class:`GPTConfig` of a ``transformers.GPT2Config``.

    Raises :class:`~attnlab.errors.InputError` (a ``ValueError``) for the options attnlab's
    GPT does not have (cross-attention, unscaled or layer-scaled attention, an untied LM
    head, other activations).
    """
    unsupported = {
        "add_cross_attention": False,
        "scale_attn_weights": True,
        "scale_attn_by_inverse_layer_idx": False,
        "tie_word_embeddings": True,
    }
    for name, supported in unsupported.items():
        if getattr(hf_config, name, supported) != supported:
            raise InputError(f"attnlab's GPT cannot represent GPT2Config({name}={not supported})")
    activation = hf_config.activation_function
    if activation not in _ACTIVATIONS:
        raise InputError(
            f"activation_function {activation!r} is not supported; "
            f"supported: {', '.join(sorted(_ACTIVATIONS))}"
        )
    return GPTConfig(
        vocab_size=hf_config.vocab_size,
        block_size=hf_config.n_positions,
        num_layers=hf_config.n_layer,
        num_heads=hf_config.n_head,
        d_model=hf_config.n_embd,
        d_ff=hf_config.n_inner,
        dropout=hf_config.resid_pdrop,
        activation=_ACTIVATIONS[activation],
        layer_norm_eps=hf_config.layer_norm_epsilon,
    )


def gpt2_state_dict_from_hf(hf_state: dict[str, Tensor], num_layers: int) -> dict[str, Tensor]:
    """Rename (and transpose) a Hugging Face GPT-2 state dict into :class:`GPT`'s names.

    Accepts the keys of ``GPT2LMHeadModel`` (``transformer.`` prefix) or of ``GPT2Model``
    (none). ``lm_head.weight`` is dropped: it is tied to the token embedding. Raises
    :class:`~attnlab.errors.InputError` naming the first missing or unexpected tensor.
    """
    state = {}
    for key, value in hf_state.items():
        if key == "lm_head.weight":
            continue
        if not key.startswith("transformer."):
            key = "transformer." + key
        state[key] = value

    mapped = {ours: _take(state, theirs) for theirs, ours in _TOP.items()}
    for i in range(num_layers):
        hf_prefix, our_prefix = f"transformer.h.{i}.", f"layers.{i}."
        for part in ("weight", "bias"):
            for theirs, ours in _NORMS.items():
                mapped[f"{our_prefix}{ours}.{part}"] = _take(state, f"{hf_prefix}{theirs}.{part}")
            for theirs, ours in _CONV1D.items():
                tensor = _take(state, f"{hf_prefix}{theirs}.{part}")
                # Conv1D weight (d_in, d_out) -> Linear weight (d_out, d_in); biases as they are.
                mapped[f"{our_prefix}{ours}.{part}"] = tensor.t() if part == "weight" else tensor
    leftover = [k for k in state if not k.endswith((".attn.bias", ".attn.masked_bias"))]
    if leftover:
        raise InputError(f"unexpected tensor {leftover[0]!r} in the GPT-2 state dict")
    return {k: v.contiguous() for k, v in mapped.items()}


def gpt2_from_hf(hf_model: Any) -> GPT:
    """attnlab's :class:`GPT` with the config and weights of a ``GPT2LMHeadModel`` (eval mode).

    Its logits ``(B, T, vocab_size)`` equal the original's (to float rounding).
    """
    config = gpt2_config_from_hf(hf_model.config)
    model = GPT(config)
    model.load_state_dict(gpt2_state_dict_from_hf(hf_model.state_dict(), config.num_layers))
    return model.eval()


def _take(state: dict[str, Tensor], key: str) -> Tensor:
    if key not in state:
        raise InputError(f"the GPT-2 state dict has no tensor {key!r}")
    return state.pop(key)
