"""Hugging Face BERT weights -> attnlab's :class:`attnlab.models.bert.Bert`.

Two entry points share one name mapping:

* :func:`bert_state_dict_from_hf` maps a Hugging Face BERT state dict (read from a
  ``model.safetensors`` file or taken from a model) onto attnlab's parameter names;
* :func:`bert_from_hf` converts an in-memory ``transformers.BertModel``.

Neither imports ``transformers``: the mapping works on tensors and a config dict.

The mapping, per layer ``i`` (Hugging Face -> attnlab)::

    embeddings.word_embeddings           -> embeddings.word_embeddings
    embeddings.token_type_embeddings     -> embeddings.token_type_embeddings
    embeddings.position_embeddings       -> embeddings.position_embeddings.embedding
    embeddings.LayerNorm                 -> embeddings.norm
    encoder.layer.i.attention.self.{query,key,value}
                                         -> encoder.layers.i.self_attn.qkv_proj (rows Q, K, V)
    encoder.layer.i.attention.output.dense      -> encoder.layers.i.self_attn.out_proj
    encoder.layer.i.attention.output.LayerNorm  -> encoder.layers.i.norm1
    encoder.layer.i.intermediate.dense          -> encoder.layers.i.feed_forward.linear1
    encoder.layer.i.output.dense                -> encoder.layers.i.feed_forward.linear2
    encoder.layer.i.output.LayerNorm            -> encoder.layers.i.norm2

A ``bert.`` prefix (checkpoints of ``BertForMaskedLM`` and friends) is stripped; the pooler,
task heads and the ``position_ids`` / ``token_type_ids`` buffers are not used.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from attnlab.errors import InputError
from attnlab.interop.hf import check_state, twin_of
from attnlab.models.bert import Bert, BertConfig

_EMBEDDINGS = {
    "embeddings.word_embeddings.weight": "embeddings.word_embeddings.weight",
    "embeddings.token_type_embeddings.weight": "embeddings.token_type_embeddings.weight",
    "embeddings.position_embeddings.weight": "embeddings.position_embeddings.embedding.weight",
    "embeddings.LayerNorm.weight": "embeddings.norm.weight",
    "embeddings.LayerNorm.bias": "embeddings.norm.bias",
}
_LAYER = {
    "attention.output.dense": "self_attn.out_proj",
    "attention.output.LayerNorm": "norm1",
    "intermediate.dense": "feed_forward.linear1",
    "output.dense": "feed_forward.linear2",
    "output.LayerNorm": "norm2",
}
_QKV = ("query", "key", "value")
# Hugging Face keys that hold no weights of the encoder itself.
_UNUSED_PREFIXES = ("pooler.", "cls.", "qa_outputs.", "classifier.")
_UNUSED_KEYS = {"embeddings.position_ids", "embeddings.token_type_ids"}


def bert_state_dict_from_hf(hf_state: dict[str, Tensor], num_layers: int) -> dict[str, Tensor]:
    """Rename (and fuse) a Hugging Face BERT state dict into :class:`Bert`'s parameter names.

    Query, key and value weights ``(D, D)`` each are concatenated into ``qkv_proj``'s
    ``(3 D, D)`` (biases ``(3 D,)``), in the order Q, K, V. Raises
    :class:`~attnlab.errors.InputError` with one sentence naming the first missing or
    unexpected tensor.
    """
    state = {}
    for key, value in hf_state.items():
        key = key.removeprefix("bert.")
        if key in _UNUSED_KEYS or key.startswith(_UNUSED_PREFIXES):
            continue
        state[key] = value

    mapped = {}
    for hf_key, our_key in _EMBEDDINGS.items():
        mapped[our_key] = _take(state, hf_key)
    for i in range(num_layers):
        hf_prefix, our_prefix = f"encoder.layer.{i}.", f"encoder.layers.{i}."
        for part in ("weight", "bias"):
            qkv = [_take(state, f"{hf_prefix}attention.self.{name}.{part}") for name in _QKV]
            mapped[f"{our_prefix}self_attn.qkv_proj.{part}"] = torch.cat(qkv, dim=0)  # (3D, ...)
            for hf_name, our_name in _LAYER.items():
                hf_key = f"{hf_prefix}{hf_name}.{part}"
                mapped[f"{our_prefix}{our_name}.{part}"] = _take(state, hf_key)
    if state:
        raise InputError(
            f"unexpected weight {sorted(state)[0]!r} ({len(state)} in all): the checkpoint does "
            f"not match a {num_layers}-layer BERT encoder"
        )
    return mapped


def load_hf_state_dict(bert: Bert, hf_state: dict[str, Tensor]) -> None:
    """Copy a Hugging Face BERT state dict into ``bert`` (in place; dtypes are converted).

    Raises :class:`~attnlab.errors.InputError` (a ``ValueError``) with one sentence for a
    missing, unexpected or wrongly shaped tensor (a checkpoint that does not match
    ``bert.config``).
    """
    bert.load_state_dict(checked_state_dict(bert, hf_state))


def checked_state_dict(bert: Bert, hf_state: dict[str, Tensor]) -> dict[str, Tensor]:
    """``hf_state`` in ``bert``'s names, each tensor checked to have the shape ``bert``
    needs, and floating point (:func:`load_hf_state_dict` without the copy). ``bert`` may be
    on the meta device: a checkpoint is then checked against its config without allocating
    the model.
    """
    config = bert.config
    mapped = bert_state_dict_from_hf(hf_state, config.num_hidden_layers)
    sizes = (
        f" (hidden_size={config.hidden_size}, intermediate_size={config.intermediate_size}, "
        f"vocab_size={config.vocab_size}, max_position_embeddings="
        f"{config.max_position_embeddings})"
    )
    check_state(bert, mapped, sizes)
    return mapped


def bert_from_hf(model: Any) -> Bert:
    """An attnlab :class:`Bert` with the weights of a Hugging Face ``BertModel``.

    ``model`` is a ``transformers.BertModel`` (any ``model.config`` of ``model_type`` "bert"
    with absolute positions; ``hidden_act`` "gelu", "gelu_new", "gelu_pytorch_tanh" or
    "relu"). The result is in eval mode, on the model's device and in its dtype; its last
    hidden states ``(B, T, hidden_size)`` equal ``model(...).last_hidden_state``.
    """
    config = BertConfig.from_hf_config(model.config.to_dict())
    return twin_of(model, Bert(config), load_hf_state_dict)


def _take(state: dict[str, Tensor], key: str) -> Tensor:
    if key not in state:
        raise InputError(f"the checkpoint has no weight {key!r}: it is not a complete BERT encoder")
    return state.pop(key)
