"""Hugging Face Llama weights -> attnlab's :class:`attnlab.models.Llama`.

:func:`llama_from_hf` converts an in-memory ``transformers.LlamaForCausalLM``. Its parts work
without ``transformers``, for a checkpoint folder read from disk:
:func:`llama_config_from_hf` reads a ``config.json`` (as a dict) and refuses what attnlab's
Llama cannot represent; :func:`load_hf_state_dict` renames, fuses and shape-checks the tensors.

The mapping, per layer ``i`` (Hugging Face -> attnlab)::

    model.embed_tokens                          -> token_embedding
    model.layers.i.input_layernorm              -> layers.i.norm1
    model.layers.i.self_attn.{q,k,v}_proj       -> layers.i.self_attn.qkv_proj  (rows Q, K, V)
    model.layers.i.self_attn.o_proj             -> layers.i.self_attn.out_proj
    model.layers.i.post_attention_layernorm     -> layers.i.norm2
    model.layers.i.mlp.{gate,up}_proj           -> layers.i.feed_forward.linear1  (rows W1, W3)
    model.layers.i.mlp.down_proj                -> layers.i.feed_forward.linear2  (W2)
    model.norm                                  -> norm
    lm_head                                     -> lm_head  (none when tie_word_embeddings)

``q_proj`` has ``num_attention_heads`` heads and ``k_proj`` / ``v_proj`` have
``num_key_value_heads``; stacked, they are the grouped-query ``qkv_proj``. Hugging Face stores
the query and key rows in the "rotate_half" layout of attnlab's rotary positions (its
conversion script permuted Meta's original checkpoints into it), so no rows move.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import fields
from typing import Any

import torch
from torch import Tensor

from attnlab.errors import InputError
from attnlab.interop.hf import check_state, twin_of
from attnlab.models.llama import Llama, LlamaConfig

_TOP = {"model.embed_tokens.weight": "token_embedding.weight", "model.norm.weight": "norm.weight"}
_LAYER = {
    "input_layernorm.weight": "norm1.weight",
    "self_attn.o_proj.weight": "self_attn.out_proj.weight",
    "post_attention_layernorm.weight": "norm2.weight",
    "mlp.down_proj.weight": "feed_forward.linear2.weight",
}
_QKV = ("q_proj", "k_proj", "v_proj")
_GATE_UP = ("gate_proj", "up_proj")
# Options attnlab's Llama does not have, and the one value of each that it implements.
_FIXED = {"hidden_act": "silu", "attention_bias": False, "mlp_bias": False}


def _rope_theta(config: Mapping[str, Any]) -> float:
    """The rotary base of a config: ``rope_parameters`` (transformers 5) or ``rope_theta``
    with ``rope_scaling`` (older files). Any scaled rotary variant is refused."""
    rope = config.get("rope_parameters") or config.get("rope_scaling") or {}
    rope_type = rope.get("rope_type", rope.get("type", "default"))
    if rope_type != "default":
        raise InputError(
            f"rope type {rope_type!r} is not supported: attnlab's Llama has plain rotary "
            "positions (rope_type 'default', no rope_scaling)"
        )
    return float(rope.get("rope_theta", config.get("rope_theta", 10000.0)))


def llama_config_from_hf(config: Mapping[str, Any]) -> LlamaConfig:
    """The :class:`LlamaConfig` of a Hugging Face Llama ``config.json`` (as a dict).

    Keys it lacks take Hugging Face's defaults (which :class:`LlamaConfig` shares); keys that
    do not change the function (token ids, ``use_cache``, ``attention_dropout``,
    ``pretraining_tp``...) are ignored. Raises :class:`~attnlab.errors.InputError` with one
    sentence for another ``model_type``, an activation other than SiLU, biases, a head width
    other than ``hidden_size / num_attention_heads``, scaled rotary positions, or sizes
    :class:`LlamaConfig` refuses.
    """
    model_type = config.get("model_type", "llama")
    if model_type != "llama":
        raise InputError(f"model_type {model_type!r} is not a Llama config (model_type 'llama')")
    for name, supported in _FIXED.items():
        if config.get(name, supported) != supported:
            raise InputError(
                f"{name}={config[name]!r} is not supported: attnlab's Llama has "
                f"{name}={supported!r}"
            )
    names = {f.name for f in fields(LlamaConfig)} - {"rope_theta", "dropout"}
    values = {key: config[key] for key in names if config.get(key) is not None}
    rope_theta = _rope_theta(config)
    try:
        llama_config = LlamaConfig(**values, rope_theta=rope_theta)
    except (TypeError, ValueError) as e:
        raise InputError(f"the Llama config cannot be used: {e}") from e
    d_head = llama_config.hidden_size // llama_config.num_attention_heads
    if config.get("head_dim", d_head) not in (None, d_head):
        raise InputError(
            f"head_dim={config['head_dim']} is not supported: attnlab's heads are hidden_size / "
            f"num_attention_heads = {d_head} wide"
        )
    return llama_config


def llama_state_dict_from_hf(
    hf_state: Mapping[str, Tensor], num_layers: int, tie_word_embeddings: bool
) -> dict[str, Tensor]:
    """Rename (and fuse) a Hugging Face Llama state dict into :class:`Llama`'s names.

    Accepts the keys of ``LlamaForCausalLM`` (``model.`` prefix, ``lm_head``) or of
    ``LlamaModel`` (none; only with tied embeddings). A tied checkpoint's ``lm_head.weight``
    (the embedding again) is dropped, as are the rotary frequencies some older checkpoints
    store. Raises :class:`~attnlab.errors.InputError` naming the first missing or unexpected
    tensor.
    """
    state = {}
    for key, value in hf_state.items():
        if not key.startswith(("model.", "lm_head.")):
            key = "model." + key
        if not key.endswith("rotary_emb.inv_freq"):
            state[key] = value
    mapped = {ours: _take(state, theirs) for theirs, ours in _TOP.items()}
    if tie_word_embeddings:
        state.pop("lm_head.weight", None)
    else:
        mapped["lm_head.weight"] = _take(state, "lm_head.weight")
    for i in range(num_layers):
        hf_prefix, our_prefix = f"model.layers.{i}.", f"layers.{i}."
        qkv = [f"{hf_prefix}self_attn.{name}.weight" for name in _QKV]
        # (H d_head, D), (H_kv d_head, D) x2 -> ((H + 2 H_kv) d_head, D): rows Q, K, V
        mapped[f"{our_prefix}self_attn.qkv_proj.weight"] = _stack_rows(state, qkv)
        gate_up = [f"{hf_prefix}mlp.{name}.weight" for name in _GATE_UP]
        # (d_ff, D) x2 -> (2 d_ff, D): rows W1 (the gate), then W3
        mapped[f"{our_prefix}feed_forward.linear1.weight"] = _stack_rows(state, gate_up)
        for theirs, ours in _LAYER.items():
            mapped[our_prefix + ours] = _take(state, hf_prefix + theirs)
    if state:
        raise InputError(
            f"unexpected tensor {sorted(state)[0]!r} ({len(state)} in all): the checkpoint does "
            f"not match a {num_layers}-layer Llama"
        )
    return mapped


def load_hf_state_dict(model: Llama, hf_state: Mapping[str, Tensor]) -> None:
    """Copy a Hugging Face Llama state dict into ``model`` (in place; dtypes are converted).

    Raises :class:`~attnlab.errors.InputError` with one sentence for a missing, unexpected
    or wrongly shaped tensor (a checkpoint that does not match ``model.config``).
    """
    model.load_state_dict(checked_state_dict(model, hf_state))


def checked_state_dict(model: Llama, hf_state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """``hf_state`` in ``model``'s names, each tensor checked to have the shape ``model``
    needs, and floating point (:func:`load_hf_state_dict` without the copy). ``model`` may be
    on the meta device: a checkpoint is then checked against its config without allocating
    the model.
    """
    config = model.config
    mapped = llama_state_dict_from_hf(
        hf_state, config.num_hidden_layers, config.tie_word_embeddings
    )
    check_state(model, mapped)
    return mapped


def llama_from_hf(hf_model: Any) -> Llama:
    """attnlab's :class:`Llama` with the config and weights of a ``LlamaForCausalLM``.

    The result is in eval mode, on the model's device and in its dtype; its logits
    ``(B, T, vocab_size)`` equal the original's (to float rounding).
    """
    config = llama_config_from_hf(hf_model.config.to_dict())
    return twin_of(hf_model, Llama(config), load_hf_state_dict)


def _stack_rows(state: dict[str, Tensor], keys: list[str]) -> Tensor:
    """The matrices ``keys`` of ``state``, taken out and stacked row-wise into one fused
    matrix; refused with one sentence unless they are matrices of equal width."""
    matrices = [_take(state, key) for key in keys]
    widths = {tuple(m.shape[1:]) for m in matrices}
    if len(widths) > 1 or any(m.dim() != 2 for m in matrices):
        pairs = zip(keys, matrices, strict=True)
        shapes = ", ".join(f"{key!r} {tuple(m.shape)}" for key, m in pairs)
        raise InputError(
            f"the tensors {shapes} cannot be stacked into one matrix: they must be matrices of "
            "the same width"
        )
    return torch.cat(matrices, dim=0)


def _take(state: dict[str, Tensor], key: str) -> Tensor:
    if key not in state:
        raise InputError(f"the checkpoint has no tensor {key!r}: it is not a complete Llama")
    return state.pop(key)
