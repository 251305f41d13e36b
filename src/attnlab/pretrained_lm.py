"""A pretrained GPT-2 or Llama from a local Hugging Face folder, offline and without pickle.

``load_pretrained_lm(DIR)`` reads a folder holding

* ``config.json`` — a Hugging Face config whose ``model_type`` is one of
  :data:`SUPPORTED` ("gpt2", "llama");
* the weights as safetensors: ``model.safetensors``, or the shards named by
  ``model.safetensors.index.json`` (its ``weight_map``: tensor name -> shard file). A
  ``pytorch_model.bin`` is a pickle and is refused;
* ``tokenizer.json`` — the tokenizer, run by the ``tokenizers`` library.

and returns attnlab's own model (:class:`attnlab.models.GPT` or :class:`attnlab.models.Llama`,
in eval mode) with a :class:`PretrainedTokenizer`. No ``transformers`` and no network are
needed. Every mistake in the folder raises :class:`attnlab.errors.InputError` with one
sentence naming the file.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from attnlab.errors import ConfigError, InputError
from attnlab.files import missing, parse_json, refuse_non_file
from attnlab.machine import check_memory
from attnlab.options import check_depth

if TYPE_CHECKING:
    from attnlab.models import GPT, Llama

SUPPORTED = ("gpt2", "llama")
INDEX_FILE = "model.safetensors.index.json"

# GPT2Config's defaults, for keys a config.json leaves out.
_GPT2_DEFAULTS = {
    "vocab_size": 50257,
    "n_positions": 1024,
    "n_embd": 768,
    "n_layer": 12,
    "n_head": 12,
    "n_inner": None,
    "activation_function": "gelu_new",
    "layer_norm_epsilon": 1e-5,
    "tie_word_embeddings": True,
}


class PretrainedTokenizer:
    """A ``tokenizers.Tokenizer`` with the two calls generation needs.

    ``encode(text) -> list[int]`` adds the special tokens the tokenizer's post-processor
    asks for (Llama's BOS; none for GPT-2), as Hugging Face's tokenizers do by default;
    ``decode(ids) -> str`` skips special tokens.
    """

    def __init__(self, tokenizer: Any):
        self.tokenizer = tokenizer
        tokenizer.no_padding()
        tokenizer.no_truncation()

    def encode(self, text: str) -> list[int]:
        """The token ids of ``text``, special tokens included."""
        return self.tokenizer.encode(text).ids

    def decode(self, ids: list[int]) -> str:
        """The text of ``ids``, special tokens skipped."""
        return self.tokenizer.decode(ids, skip_special_tokens=True)


@dataclass
class PretrainedLM:
    """A loaded folder: the model (eval mode), its tokenizer and what config.json says.

    ``context`` is the model's window in tokens (``n_positions`` / ``max_position_embeddings``,
    named by ``context_key``); ``eos_ids`` the end-of-sequence token ids (maybe none).
    """

    model: GPT | Llama
    tokenizer: PretrainedTokenizer
    model_type: str
    context: int
    context_key: str
    eos_ids: tuple[int, ...]
    path: Path

    def encode_prompt(self, prompt: str) -> Tensor:
        """The prompt's ids ``(1, T)``; refuses an empty one, one longer than the context and
        ids the model does not have."""
        ids = self.tokenizer.encode(prompt)
        if not ids:
            raise InputError("the prompt is empty after tokenization: give some text")
        vocab_size = self.model.config.vocab_size
        if max(ids) >= vocab_size:
            raise InputError(
                f"the prompt has token id {max(ids)} but the model has only {vocab_size} "
                f"tokens: {self.path}'s tokenizer.json belongs to another model"
            )
        if len(ids) > self.context:
            raise InputError(
                f"the prompt is {len(ids)} tokens long but the model's context is "
                f"{self.context} tokens ({self.context_key}): shorten the prompt"
            )
        return torch.tensor([ids], dtype=torch.long)  # (1, T)


def load_pretrained_lm(path: str | Path) -> PretrainedLM:
    """Load the GPT-2 or Llama folder ``path`` onto attnlab's blocks (see the module docstring).

    Raises :class:`~attnlab.errors.InputError` with one sentence for a missing folder or
    config.json, an unsupported ``model_type``, a config attnlab cannot represent, missing or
    broken weights (a missing tensor, a wrong shape, a broken index), or a missing tokenizer.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path} {missing(path)}: give a Hugging Face model folder")
    if not path.is_dir():
        raise InputError(f"{path} is not a directory: give a Hugging Face model folder")
    hf_config = _read_config(path)
    try:
        check_depth(hf_config)  # before even the meta device builds a billion layers
    except ConfigError as e:
        raise InputError(f"{path / 'config.json'} cannot be used: {e}") from e
    model_type = hf_config.get("model_type")
    if model_type not in SUPPORTED:
        raise InputError(
            f"{path / 'config.json'} has model_type {model_type!r}, which attnlab cannot run; "
            f"supported: {', '.join(SUPPORTED)}"
        )
    tokenizer = _read_tokenizer(path)
    check_memory(  # a 7B model's 14 GB of weights on a laptop: one sentence, not the OOM killer
        sum(f.stat().st_size for f in _weight_files(path)),
        f"reading the weights of {path}",
        "choose a smaller model, or close what holds the memory",
    )
    state = read_safetensors(path)
    model: GPT | Llama
    if model_type == "gpt2":
        model, context_key = _gpt2(hf_config, state, path), "n_positions"
    else:
        model, context_key = _llama(hf_config, state, path), "max_position_embeddings"
    return PretrainedLM(
        model=model.eval(),
        tokenizer=tokenizer,
        model_type=model_type,
        context=model.config.block_size,
        context_key=context_key,
        eos_ids=_eos_ids(hf_config, path),
        path=path,
    )


def _eos_ids(hf_config: Mapping[str, Any], path: Path) -> tuple[int, ...]:
    """config.json's ``eos_token_id`` (none, an id or a list of ids) as a tuple of ids."""
    eos = hf_config.get("eos_token_id")
    eos_ids = tuple(eos) if isinstance(eos, list) else (() if eos is None else (eos,))
    for i in eos_ids:
        if isinstance(i, bool) or not isinstance(i, int) or i < 0:
            raise InputError(
                f"{path / 'config.json'} has eos_token_id {eos!r}: give a token id (a whole "
                "number >= 0), a list of them, or null"
            )
    return eos_ids


def _read_json(file: Path) -> Any:
    try:
        return parse_json(file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:  # ValueError: not UTF-8, not JSON, too deep, too long
        raise InputError(f"cannot read {file}: {e}") from e


def _read_config(path: Path) -> dict[str, Any]:
    """The dict of ``path/config.json``."""
    config_file = path / "config.json"
    refuse_non_file(config_file, InputError, "a model folder keeps a file")
    if not config_file.is_file():
        raise InputError(f"{path} is not a Hugging Face model folder: it has no config.json")
    config = _read_json(config_file)
    if not isinstance(config, dict):
        raise InputError(f"{config_file} is not a JSON object")
    return config


def _read_tokenizer(path: Path) -> PretrainedTokenizer:
    """The tokenizer of ``path/tokenizer.json``."""
    from tokenizers import Tokenizer

    tokenizer_file = path / "tokenizer.json"
    refuse_non_file(tokenizer_file, InputError, "a model folder keeps a file")
    if not tokenizer_file.is_file():
        raise InputError(
            f"{path} has no tokenizer.json (attnlab reads the tokenizer from that file only)"
        )
    try:
        return PretrainedTokenizer(Tokenizer.from_file(str(tokenizer_file)))
    except Exception as e:  # tokenizers raises a bare Exception for a malformed file
        raise InputError(f"cannot read {tokenizer_file}: {e}") from e


def read_safetensors(path: Path) -> dict[str, Tensor]:
    """Every tensor of the folder: ``model.safetensors``, else the shards of the index."""
    single, index = path / "model.safetensors", path / INDEX_FILE
    for file in (single, index):
        refuse_non_file(file, InputError, "a model folder keeps a file")
    if single.is_file():
        return _load_file(single)
    if index.is_file():
        return _read_shards(path, index)
    pickled = " (attnlab does not load pickled pytorch_model.bin files)"
    raise InputError(
        f"{path} has neither model.safetensors nor {INDEX_FILE}"
        f"{pickled if (path / 'pytorch_model.bin').exists() else ''}"
    )


def _weight_files(path: Path) -> list[Path]:
    """The folder's weight files: ``model.safetensors``, else its shards (``*.safetensors``)."""
    single = path / "model.safetensors"
    return [single] if single.is_file() else sorted(path.glob("*.safetensors"))


def _check_model_fits(skeleton_model: nn.Module, path: Path) -> None:
    """Refuse a model whose float32 weights do not fit beside the tensors already read,
    before it is allocated (``skeleton_model`` is on the meta device)."""
    parameters = sum(p.numel() for p in skeleton_model.parameters())
    check_memory(
        parameters * 4,
        f"the model of {path} ({parameters:,} parameters in float32)",
        "choose a smaller model, or close what holds the memory",
    )


def _load_file(file: Path) -> dict[str, Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(file)
    except (OSError, SafetensorError) as e:
        raise InputError(f"cannot read {file}: {e}") from e


def _read_shards(path: Path, index: Path) -> dict[str, Tensor]:
    """The tensors of the shards that ``index``'s ``weight_map`` names, each checked to be
    in the shard the index says."""
    content = _read_json(index)
    weight_map = content.get("weight_map") if isinstance(content, dict) else None
    if not isinstance(weight_map, dict) or not weight_map:
        raise InputError(f"{index} is broken: it has no weight_map of tensor names to files")
    shards = set(weight_map.values())
    for shard in sorted(shards, key=str):
        if not isinstance(shard, str) or Path(shard).name != shard:
            raise InputError(f"{index} is broken: {shard!r} is not a file name in the folder")
        if not (path / shard).is_file():
            raise InputError(f"{index} is broken: it names {shard}, which is not in {path}")
    state: dict[str, Tensor] = {}
    for shard in sorted(shards):
        tensors = _load_file(path / shard)
        for name, tensor in tensors.items():
            if weight_map.get(name) == shard:
                state[name] = tensor
    missing = sorted(set(weight_map) - set(state))
    if missing:
        raise InputError(
            f"{index} is broken: tensor {missing[0]!r} is not in {weight_map[missing[0]]} "
            f"({len(missing)} missing in all)"
        )
    return state


def _gpt2(hf_config: Mapping[str, Any], state: dict[str, Tensor], path: Path) -> GPT:
    """attnlab's :class:`GPT` with the config and weights of a GPT-2 folder."""
    from attnlab.interop.hf import check_state, skeleton
    from attnlab.interop.hf_gpt2 import gpt2_config_from_hf, gpt2_state_dict_from_hf
    from attnlab.models.gpt import GPT

    values = {**_GPT2_DEFAULTS, **{k: v for k, v in hf_config.items() if v is not None}}
    values["n_inner"] = hf_config.get("n_inner")
    values["resid_pdrop"] = 0.0  # inference: no dropout
    try:
        config = gpt2_config_from_hf(SimpleNamespace(**values))
        mapped = gpt2_state_dict_from_hf(state, config.num_layers)
        # config.json's sizes checked against the file's before the model is allocated
        shapes = skeleton(lambda: GPT(config))
        check_state(shapes, mapped)
    except (TypeError, ValueError) as e:
        raise InputError(f"{path} cannot be loaded as a GPT-2: {_sentence(e)}") from e
    _check_model_fits(shapes, path)
    model = GPT(config)
    model.load_state_dict(mapped)
    return model


def _llama(hf_config: Mapping[str, Any], state: dict[str, Tensor], path: Path) -> Llama:
    """attnlab's :class:`Llama` with the config and weights of a Llama folder."""
    from attnlab.interop.hf import skeleton
    from attnlab.interop.hf_llama import checked_state_dict, llama_config_from_hf
    from attnlab.models.llama import Llama

    try:
        config = llama_config_from_hf(hf_config)
        # config.json's sizes checked against the file's before the model is allocated
        shapes = skeleton(lambda: Llama(config))
        mapped = checked_state_dict(shapes, state)
    except InputError as e:
        raise InputError(f"{path} cannot be loaded as a Llama: {_sentence(e)}") from e
    _check_model_fits(shapes, path)
    model = Llama(config)
    model.load_state_dict(mapped)
    return model


def _sentence(error: Exception) -> str:
    """An exception's message on one line."""
    return " ".join(str(error).split())
