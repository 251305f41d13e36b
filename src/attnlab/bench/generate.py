"""Benchmark suite "generate": greedy generation speed against Hugging Face.

* **GPT-2** — tokens/s of greedy generation of 500 new tokens (``--quick``: 100) after an
  8-token prompt, batch 1, with and without the key/value cache: attnlab's
  :func:`~attnlab.generation.generate` vs Hugging Face ``GPT2LMHeadModel.generate``
  (``do_sample=False``, ``use_cache`` True / False) with the same config and weights (converted
  by :func:`attnlab.interop.from_hf`). The config is the baby GPT's (4 layers, 4 heads, 128
  dims, 65 tokens) with a window of 1,024 positions instead of 64, so that prompt + 500 tokens
  fit in one window and neither side slides or truncates its context; GPT-2's biases and
  tanh-GELU, so that Hugging Face's model is the same network. Without ``transformers`` the
  Hugging Face columns are empty. A third row compares attnlab's cache with no cache. A
  fourth times batch 32 (32 prompts of 8 tokens, no padding) with the cache on both sides.
* **Llama** — the same at batch 1 for attnlab's :class:`~attnlab.models.Llama` against Hugging
  Face ``LlamaForCausalLM.generate``, on a tiny Llama (:data:`LLAMA_CONFIG`: 4 layers of width
  128, 4 query heads sharing 2 key/value heads, SwiGLU of width 344, rotary positions,
  RMSNorm, 256 tokens, a window of 1,024): with the cache, without it, the cache against none,
  and attnlab's preallocated :class:`~attnlab.nn.StaticKVCache` (fixed shapes, sized for the
  prompt and the new tokens) against its growing :class:`~attnlab.nn.KVCache`. Skipped
  without ``transformers``. With ``--compile`` two more rows: attnlab's ``generate(...,
  compile=True)`` (static caches, compiled decoding steps) against Hugging Face's static cache
  with its forward pass compiled, and against attnlab's eager growing cache.

``--precision`` applies autocast on both sides; the other rows run eagerly.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from attnlab.bench.common import (
    BenchOptions,
    BenchResult,
    interleaved_medians,
    transformers_problem,
)
from attnlab.bench.gpt import hf_gpt2
from attnlab.errors import InputError
from attnlab.generation import generate
from attnlab.models import GPT, GPTConfig
from attnlab.training.devices import autocast

SUITE = "generate"

GENERATION_PROMPT = 8  # tokens
GENERATION_BATCH = 32  # the second batch size, timed with the cache only
GENERATION_CONFIG = GPTConfig(
    vocab_size=65,
    block_size=1024,
    num_layers=4,
    num_heads=4,
    d_model=128,
    activation="gelu_tanh",
    bias=True,
)


# -- GPT-2: attnlab vs Hugging Face, with and without the cache ----------------------------


def generation(options: BenchOptions) -> list[BenchResult]:
    """Greedy generation tokens/s, cache and no cache, attnlab vs Hugging Face; then batch 32
    with the cache (without it, batch 32 re-reads 32 growing prefixes: minutes on a CPU)."""
    device = torch.device(options.device)
    new_tokens = 100 if options.quick else 500
    repeats = options.repeats or (1 if options.quick else 3)
    ours, reference = _generation_models(device)
    rates = {}  # (side, batch, use_cache) -> tokens/s
    for batch, use_cache in ((1, True), (1, False), (GENERATION_BATCH, True)):
        prompt = torch.randint(
            GENERATION_CONFIG.vocab_size, (batch, GENERATION_PROMPT), device=device
        )  # (B, T)
        sides = {"attnlab": attnlab_generate_call(ours, prompt, new_tokens, use_cache, options)}
        if reference is not None:
            sides["hf"] = hf_generate_call(reference, prompt, new_tokens, use_cache, options)
        for call in sides.values():  # warm up
            call()
        seconds = interleaved_medians(sides, device, repeats)
        for side, s in seconds.items():
            rates[side, batch, use_cache] = batch * new_tokens / s
    return _generation_results(rates, new_tokens, hf_problem=transformers_problem())


def _generation_models(device: torch.device) -> tuple[GPT, nn.Module | None]:
    """attnlab's GPT and Hugging Face's ``GPT2LMHeadModel`` of :data:`GENERATION_CONFIG`.

    Both hold the same weights (seed 0, converted by :func:`attnlab.interop.from_hf`) and are
    in eval mode on ``device``; without ``transformers`` the second is None.
    """
    torch.manual_seed(0)
    reference = hf_gpt2(GENERATION_CONFIG)
    if reference is not None:
        from attnlab.interop import from_hf

        ours = from_hf(reference)
        assert isinstance(ours, GPT)  # from_hf of a GPT-2 gives attnlab's GPT
        reference = reference.to(device).eval()
    else:
        ours = GPT(GENERATION_CONFIG)
    return ours.to(device).eval(), reference


def attnlab_generate_call(
    model: nn.Module,
    prompt: torch.Tensor,
    new_tokens: int,
    use_cache: bool,
    options: BenchOptions,
    static_cache: bool = False,
    compile: bool = False,
) -> Callable[[], None]:
    """One greedy :func:`~attnlab.generation.generate` of ``new_tokens`` after ``prompt (B, T)``
    (with ``static_cache``, in preallocated :class:`~attnlab.nn.StaticKVCache` s; with
    ``compile``, static caches and compiled decoding steps)."""
    device = torch.device(options.device)

    def call() -> None:
        with autocast(device, options.precision):
            generate(
                model,
                prompt,
                new_tokens,
                temperature=0.0,
                use_cache=use_cache,
                static_cache=static_cache,
                compile=compile,
            )

    return call


def hf_generate_call(
    model: Any,  # a Hugging Face model: its generate method
    prompt: torch.Tensor,
    new_tokens: int,
    use_cache: bool,
    options: BenchOptions,
    compiled: bool = False,
) -> Callable[[], None]:
    """One greedy Hugging Face ``generate`` (e.g. of a ``GPT2LMHeadModel``) of exactly
    ``new_tokens`` after ``prompt (B, T)``; with ``compiled``, in its static cache with its
    forward pass compiled (which it does by itself on GPUs, and on the CPU when asked)."""
    device = torch.device(options.device)
    compiling: dict[str, Any] = {}
    if compiled:
        from transformers import CompileConfig

        compile_config = CompileConfig(fullgraph=True, dynamic=False)
        compile_config._compile_all_devices = True  # also on the CPU
        compiling = {"cache_implementation": "static", "compile_config": compile_config}

    def call() -> None:
        with torch.inference_mode(), autocast(device, options.precision):
            model.generate(
                prompt,
                attention_mask=torch.ones_like(prompt),
                max_new_tokens=new_tokens,
                min_new_tokens=new_tokens,
                do_sample=False,
                use_cache=use_cache,
                pad_token_id=0,
                **compiling,
            )

    return call


def _generation_results(
    rates: dict[tuple[str, int, bool], float], new_tokens: int, hf_problem: str | None
) -> list[BenchResult]:
    """Four rows: attnlab vs Hugging Face at batch 1 with the cache, then without, then
    attnlab's cache vs none, then attnlab vs Hugging Face at batch 32 with the cache.

    ``rates`` maps ``(side, batch, use_cache)`` to tokens/s (all sequences together), side
    "attnlab" or "hf" (absent when ``hf_problem`` says why Hugging Face cannot run here).
    """
    reference_name = "HF GPT2LMHeadModel.generate"
    if hf_problem is not None:
        reference_name = f"HF GPT2LMHeadModel ({hf_problem})"

    def versus_hf(batch: int, use_cache: bool) -> BenchResult:
        label = "KV cache" if use_cache else "no cache"
        return BenchResult(
            SUITE,
            f"generate {new_tokens} tokens, batch {batch}, {label}",
            "tokens/s",
            rates["attnlab", batch, use_cache],
            rates.get(("hf", batch, use_cache)),
            reference_name,
        )

    cache_vs_none = BenchResult(
        SUITE,
        f"generate {new_tokens} tokens, batch 1: KV cache vs none",
        "tokens/s",
        rates["attnlab", 1, True],
        rates["attnlab", 1, False],
        "attnlab without the cache",
    )
    return [
        versus_hf(1, True),
        versus_hf(1, False),
        cache_vs_none,
        versus_hf(GENERATION_BATCH, True),
    ]


# -- Llama: attnlab vs Hugging Face, and the static cache vs the growing one ----------------

LLAMA_CONFIG: dict[str, Any] = dict(
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
LLAMA_REFERENCE = "HF LlamaForCausalLM.generate"


def llama_generation(options: BenchOptions) -> list[BenchResult]:
    """The Llama rows of the module docstring (none without ``transformers``)."""
    if transformers_problem() is not None:
        return []
    device = torch.device(options.device)
    new_tokens = 100 if options.quick else 500
    repeats = options.repeats or (1 if options.quick else 3)
    ours, reference = _llama_models(device)
    prompt = torch.randint(LLAMA_CONFIG["vocab_size"], (1, GENERATION_PROMPT), device=device)
    sides = _llama_sides(ours, reference, prompt, new_tokens, options)
    for call in sides.values():  # warm up (and compile)
        call()
    seconds = interleaved_medians(sides, device, repeats)
    rate = {side: new_tokens / s for side, s in seconds.items()}  # tokens/s

    def row(case: str, ours_side: tuple, reference_side: tuple, name: str) -> BenchResult:
        label = f"generate {new_tokens} tokens, batch 1, {case}"
        return BenchResult(SUITE, label, "tokens/s", rate[ours_side], rate[reference_side], name)

    rows = [
        row("KV cache", ("attnlab", "cache"), ("hf", "cache"), LLAMA_REFERENCE),
        row("no cache", ("attnlab", "none"), ("hf", "none"), LLAMA_REFERENCE),
        row("KV cache vs none", ("attnlab", "cache"), ("attnlab", "none"), "attnlab, no cache"),
        row(
            "static vs growing cache",
            ("attnlab", "static"),
            ("attnlab", "cache"),
            "attnlab, growing KVCache",
        ),
    ]
    if options.compile:
        compiled_reference = f"{LLAMA_REFERENCE}, static cache, compiled"
        rows += [
            row("compiled", ("attnlab", "compiled"), ("hf", "compiled"), compiled_reference),
            row(
                "compiled vs eager cache",
                ("attnlab", "compiled"),
                ("attnlab", "cache"),
                "attnlab, eager, growing KVCache",
            ),
        ]
    return rows


def _llama_sides(
    ours: nn.Module,
    reference: nn.Module,
    prompt: torch.Tensor,
    new_tokens: int,
    options: BenchOptions,
) -> dict[tuple[str, str], Callable[[], None]]:
    """The timed calls of the Llama rows, by (side, case); with ``options.compile`` also both
    sides compiled with static caches."""
    sides = {
        ("attnlab", "cache"): attnlab_generate_call(ours, prompt, new_tokens, True, options),
        ("attnlab", "static"): attnlab_generate_call(
            ours, prompt, new_tokens, True, options, static_cache=True
        ),
        ("attnlab", "none"): attnlab_generate_call(ours, prompt, new_tokens, False, options),
        ("hf", "cache"): hf_generate_call(reference, prompt, new_tokens, True, options),
        ("hf", "none"): hf_generate_call(reference, prompt, new_tokens, False, options),
    }
    if options.compile:
        sides["attnlab", "compiled"] = attnlab_generate_call(
            ours, prompt, new_tokens, True, options, compile=True
        )
        sides["hf", "compiled"] = hf_generate_call(
            reference, prompt, new_tokens, True, options, compiled=True
        )
    return sides


def _llama_models(device: torch.device) -> tuple[nn.Module, nn.Module]:
    """attnlab's Llama and Hugging Face's ``LlamaForCausalLM`` of :data:`LLAMA_CONFIG` with the same
    weights (seed 0), in eval mode on ``device``."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from attnlab.interop import from_hf

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        reference = LlamaForCausalLM(LlamaConfig(**LLAMA_CONFIG, attn_implementation="sdpa"))
    ours = from_hf(reference)
    return ours.to(device).eval(), reference.to(device).eval()


def run(options: BenchOptions) -> list[BenchResult]:
    """The GPT-2 rows, then the Llama rows (see the module docstring)."""
    if options.size != "default":
        raise InputError(f"the generate suite has one size, 'default'; got {options.size!r}")
    return generation(options) + llama_generation(options)
