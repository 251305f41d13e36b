"""Benchmark suite "llama": Llama-style generation speed against Hugging Face.

Tokens/s of greedy generation of 500 new tokens (``--quick``: 100) after an 8-token prompt,
batch 1: attnlab's :class:`~attnlab.models.Llama` through
:func:`~attnlab.generation.generate` against Hugging Face ``LlamaForCausalLM.generate``
(``do_sample=False``) with the same config and weights (converted by
:func:`attnlab.interop.from_hf`). The config is a tiny Llama (:data:`CONFIG`: 4 layers of
width 128, 4 query heads sharing 2 key/value heads, SwiGLU of width 344, rotary positions,
RMSNorm, 256 tokens), with a window of 1,024 positions so that neither side slides its
context. Rows:

* with the key/value cache, and without it, each against Hugging Face the same way;
* attnlab's cache against no cache;
* attnlab's preallocated :class:`~attnlab.nn.StaticKVCache` (fixed shapes, sized for the
  prompt and the new tokens) against its growing :class:`~attnlab.nn.KVCache`.

Needs ``transformers`` (the suite is skipped without it).
"""

from __future__ import annotations

import importlib.util

import torch
from torch import nn

from attnlab.bench.common import BenchOptions, BenchResult, BenchSkipped, interleaved_medians
from attnlab.bench.gpt import GENERATION_PROMPT, attnlab_generate_call, hf_generate_call
from attnlab.errors import InputError

SUITE = "llama"
CONFIG = dict(
    vocab_size=256,
    hidden_size=128,
    intermediate_size=344,
    num_hidden_layers=4,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=1024,
    bos_token_id=None,
    eos_token_id=None,
    pad_token_id=None,
)
REFERENCE = "HF LlamaForCausalLM.generate"


def run(options: BenchOptions) -> list[BenchResult]:
    """The four rows of the module docstring."""
    if options.size != "default":
        raise InputError(f"the llama suite has one size, 'default'; got {options.size!r}")
    if importlib.util.find_spec("transformers") is None:
        raise BenchSkipped("it compares with Hugging Face: pip install transformers")
    device = torch.device(options.device)
    new_tokens = 100 if options.quick else 500
    repeats = options.repeats or (1 if options.quick else 3)
    ours, reference = _models(device)
    prompt = torch.randint(CONFIG["vocab_size"], (1, GENERATION_PROMPT), device=device)
    sides = {
        ("attnlab", "cache"): attnlab_generate_call(ours, prompt, new_tokens, True, options),
        ("attnlab", "static"): attnlab_generate_call(
            ours, prompt, new_tokens, True, options, static_cache=True
        ),
        ("attnlab", "none"): attnlab_generate_call(ours, prompt, new_tokens, False, options),
        ("hf", "cache"): hf_generate_call(reference, prompt, new_tokens, True, options),
        ("hf", "none"): hf_generate_call(reference, prompt, new_tokens, False, options),
    }
    for call in sides.values():  # warm up
        call()
    seconds = interleaved_medians(sides, device, repeats)
    rate = {side: new_tokens / s for side, s in seconds.items()}  # tokens/s

    def row(case: str, ours_side: tuple, reference_side: tuple, name: str) -> BenchResult:
        label = f"generate {new_tokens} tokens, batch 1, {case}"
        return BenchResult(SUITE, label, "tokens/s", rate[ours_side], rate[reference_side], name)

    return [
        row("KV cache", ("attnlab", "cache"), ("hf", "cache"), REFERENCE),
        row("no cache", ("attnlab", "none"), ("hf", "none"), REFERENCE),
        row("KV cache vs none", ("attnlab", "cache"), ("attnlab", "none"), "attnlab, no cache"),
        row(
            "static vs growing cache",
            ("attnlab", "static"),
            ("attnlab", "cache"),
            "attnlab, growing KVCache",
        ),
    ]


def _models(device: torch.device) -> tuple[nn.Module, nn.Module]:
    """attnlab's Llama and Hugging Face's ``LlamaForCausalLM`` of :data:`CONFIG` with the same
    weights (seed 0), in eval mode on ``device``."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from attnlab.interop import from_hf

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        reference = LlamaForCausalLM(LlamaConfig(**CONFIG, attn_implementation="sdpa"))
    ours = from_hf(reference)
    return ours.to(device).eval(), reference.to(device).eval()
