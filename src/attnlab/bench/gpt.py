"""Benchmark suite "gpt": GPT training speed and generation speed.

Default size (CPU):

* **train** — ``attnlab train shakespeare`` with its defaults, the "baby GPT" (4 layers, 4
  heads, 128 dims, block 64, batch 12, 2,000 steps; ``--quick``: 50 steps), through the real
  :class:`~attnlab.training.Trainer`. ms/iteration is the median time from one training step to
  the next (data, forward, backward, clipping, optimizer, logging: validation steps are the
  outliers the median ignores), as nanoGPT's per-iteration log reports it. The reference is
  nanoGPT's ``train.py`` with the same settings (the command is in the README), **recorded**
  on the reference machine (2 CPU cores): 41 ms/iteration median, val loss 1.886 at 2,000
  iterations, 94 s in all. nanoGPT is not a dependency and does not run here, so the ratio is
  meaningful only on that machine with 2 threads (``--threads 2``).
* **generate** — tokens/s of greedy generation of 500 new tokens (``--quick``: 100) after an
  8-token prompt, batch 1, with and without the key/value cache: attnlab's
  :func:`~attnlab.generation.generate` vs Hugging Face ``GPT2LMHeadModel.generate``
  (``do_sample=False``, ``use_cache`` True / False) with the same config and weights (converted
  by :func:`attnlab.interop.from_hf`). The config is the baby GPT's (4 layers, 4 heads, 128
  dims, 65 tokens) with a window of 1,024 positions instead of 64, so that prompt + 500 tokens
  fit in one window and neither side slides or truncates its context; GPT-2's biases and
  tanh-GELU, so that Hugging Face's model is the same network. Without ``transformers`` the
  Hugging Face columns are empty. A third row compares attnlab's cache with no cache. A
  fourth times batch 32 (32 prompts of 8 tokens, no padding) with the cache on both sides.

``--size gpt2-small`` (CUDA): training throughput of GPT-2 small (12 layers, 12 heads, 768
dims, block 1,024, vocabulary 50,257) on batches of 8 x 1,024 random tokens (``--quick``:
4 x 256), forward + backward + fused AdamW, attnlab vs Hugging Face's ``GPT2LMHeadModel``
(sdpa attention) with the same weights, in tokens/s with TFLOP/s and MFU
(:mod:`attnlab.bench.flops`). ``--precision`` applies autocast and ``--compile`` compiles both
models, in the training cases; generation runs eagerly, in ``--precision``.
"""

from __future__ import annotations

import importlib.util
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from attnlab.bench.common import BenchOptions, BenchResult, BenchSkipped, interleaved_medians
from attnlab.bench.flops import gpt_flops_per_token, mfu, peak_flops
from attnlab.errors import DataError, InputError
from attnlab.generation import generate
from attnlab.models import GPT, GPTConfig
from attnlab.tasks.shakespeare import ShakespeareConfig, ShakespeareTask
from attnlab.training.devices import autocast

SUITE = "gpt"
SIZES = ("default", "gpt2-small")

# nanoGPT's train.py at the baby-GPT settings, recorded on the reference machine (2 CPU cores).
NANOGPT = "nanoGPT (recorded, 2 CPU cores)"
NANOGPT_MS_PER_ITERATION = 41.0
NANOGPT_VAL_LOSS = 1.886
NANOGPT_TOTAL_S = 94.0

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


def run(options: BenchOptions) -> list[BenchResult]:
    """Run the cases of ``options.size``; see the module docstring."""
    if options.size not in SIZES:
        raise InputError(f"the gpt suite has sizes {', '.join(SIZES)}; got {options.size!r}")
    device = torch.device(options.device)
    if options.size == "gpt2-small":
        if device.type != "cuda":
            raise BenchSkipped("--size gpt2-small is the GPU training case: add --device cuda")
        return [gpt2_small_training(options)]
    results = []
    if device.type == "cpu":
        try:
            results += baby_gpt_training(options)
        except DataError as e:
            print(f"attnlab: warning: gpt training case skipped: {e}", file=sys.stderr)
    return results + generation(options)


# -- training: the baby GPT through the real trainer ---------------------------------------


def baby_gpt_training(options: BenchOptions) -> list[BenchResult]:
    """``attnlab train shakespeare`` with its defaults, timed step by step."""
    from attnlab.training import TrainConfig, Trainer

    started = time.perf_counter()
    task = _TimedShakespeare(ShakespeareConfig(data_dir=options.data_dir))
    steps = 50 if options.quick else 0  # 0: the task's whole schedule (2,000 steps)
    config = TrainConfig(
        **{
            **task.train_defaults,
            "device": options.device,
            "precision": options.precision,
            "compile": options.compile,
            "max_steps": steps,
        }
    )
    torch.manual_seed(config.seed)
    model = task.build_model()
    with tempfile.TemporaryDirectory() as run_dir:
        trainer = Trainer(task, model, config, Path(run_dir), progress=False)
        trainer.fit()
    total_s = time.perf_counter() - started
    ms = 1e3 * statistics.median(
        b - a for a, b in zip(task.starts[:-1], task.starts[1:], strict=True)
    )
    final = trainer.history[-1]
    case = f"train baby GPT, {final['step']:,} steps"
    figures = [("ms/iteration", "ms", ms, NANOGPT_MS_PER_ITERATION)]
    if not options.quick:  # nanoGPT's loss and total time are those of the whole 2,000 steps
        figures += [
            ("val loss", "loss", final["val_loss"], NANOGPT_VAL_LOSS),
            ("total time", "s", total_s, NANOGPT_TOTAL_S),
        ]
    return [
        BenchResult(SUITE, f"{case}: {name}", unit, ours, nanogpt, NANOGPT, higher_is_better=False)
        for name, unit, ours, nanogpt in figures
    ]


class _TimedShakespeare(ShakespeareTask):
    """The shakespeare task, noting when each training step starts its forward pass."""

    def __init__(self, config: ShakespeareConfig):
        super().__init__(config)
        self.starts: list[float] = []

    def loss(self, model: nn.Module, batch: Any) -> torch.Tensor:
        self.starts.append(time.perf_counter())
        return super().loss(model, batch)


# -- generation: attnlab vs Hugging Face, with and without the cache -----------------------


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
    return _generation_results(rates, new_tokens, hf_installed=reference is not None)


def _generation_models(device: torch.device) -> tuple[GPT, nn.Module | None]:
    """attnlab's GPT and Hugging Face's ``GPT2LMHeadModel`` of :data:`GENERATION_CONFIG`.

    Both hold the same weights (seed 0, converted by :func:`attnlab.interop.from_hf`) and are
    in eval mode on ``device``; without ``transformers`` the second is None.
    """
    torch.manual_seed(0)
    reference = _hf_gpt2(GENERATION_CONFIG)
    if reference is not None:
        from attnlab.interop import from_hf

        ours = from_hf(reference)
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
) -> Callable[[], None]:
    """One greedy :func:`~attnlab.generation.generate` of ``new_tokens`` after ``prompt (B, T)``
    (with ``static_cache``, in preallocated :class:`~attnlab.nn.StaticKVCache` s)."""
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
            )

    return call


def hf_generate_call(
    model: nn.Module, prompt: torch.Tensor, new_tokens: int, use_cache: bool, options: BenchOptions
) -> Callable[[], None]:
    """One greedy Hugging Face ``generate`` (e.g. of a ``GPT2LMHeadModel``) of exactly
    ``new_tokens`` after ``prompt (B, T)``."""
    device = torch.device(options.device)

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
            )

    return call


def _generation_results(
    rates: dict[tuple[str, int, bool], float], new_tokens: int, hf_installed: bool
) -> list[BenchResult]:
    """Four rows: attnlab vs Hugging Face at batch 1 with the cache, then without, then
    attnlab's cache vs none, then attnlab vs Hugging Face at batch 32 with the cache.

    ``rates`` maps ``(side, batch, use_cache)`` to tokens/s (all sequences together), side
    "attnlab" or "hf" (absent when Hugging Face is not installed).
    """
    reference_name = "HF GPT2LMHeadModel.generate"
    if not hf_installed:
        reference_name = "HF GPT2LMHeadModel (transformers not installed)"

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


def _hf_gpt2(config: GPTConfig) -> nn.Module | None:
    """A randomly initialised Hugging Face ``GPT2LMHeadModel`` of ``config`` (None without
    ``transformers``): GPT-2's layout, no dropout, sdpa attention, no special tokens."""
    if importlib.util.find_spec("transformers") is None:
        return None
    from transformers import GPT2Config, GPT2LMHeadModel

    hf_config = GPT2Config(
        vocab_size=config.vocab_size,
        n_positions=config.block_size,
        n_embd=config.d_model,
        n_layer=config.num_layers,
        n_head=config.num_heads,
        n_inner=config.d_ff,
        activation_function="gelu_new",
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        layer_norm_epsilon=config.layer_norm_eps,
        bos_token_id=None,
        eos_token_id=None,
        attn_implementation="sdpa",
    )
    return GPT2LMHeadModel(hf_config)


# -- GPU: GPT-2 small training throughput --------------------------------------------------


def gpt2_small_training(
    options: BenchOptions, config: GPTConfig | None = None, batch: tuple[int, int] | None = None
) -> BenchResult:
    """Training tokens/s of GPT-2 small (or ``config``), attnlab vs Hugging Face.

    ``batch`` is ``(B, T)``, default 8 x 1,024 (``--quick``: 4 x 256).
    """
    config = config or GPTConfig()  # GPT-2 small
    B, T = batch or ((4, 256) if options.quick else (8, 1024))
    device = torch.device(options.device)
    repeats = options.repeats or (3 if options.quick else 10)
    torch.manual_seed(0)
    reference = _hf_gpt2(config)
    if reference is None:
        raise BenchSkipped("the gpt2-small case needs transformers (pip install transformers)")
    from attnlab.interop import from_hf

    ours = from_hf(reference).to(device).train()
    reference = reference.to(device).train()
    x = torch.randint(config.vocab_size, (B, T + 1), device=device)
    inputs, targets = x[:, :-1], x[:, 1:]
    steps = {
        "attnlab": _train_step(ours, lambda m: m(inputs), targets, device, options),
        "hf": _train_step(reference, lambda m: m(inputs).logits, targets, device, options),
    }
    for step in steps.values():  # warm up (and compile)
        step()
        step()
    seconds = interleaved_medians(steps, device, repeats)
    rates = {side: B * T / s for side, s in seconds.items()}
    flops = gpt_flops_per_token(
        ours.num_parameters(non_embedding=True),
        config.num_layers,
        config.num_heads,
        config.d_model,
        T,
        training=True,
    )
    extra = {"TFLOP/s": rates["attnlab"] * flops / 1e12, "ms/step": seconds["attnlab"] * 1e3}
    utilisation = mfu(rates["attnlab"], flops, peak_flops(device, options.precision))
    if utilisation is not None:
        extra["MFU"] = utilisation
    name = "GPT-2 small" if config == GPTConfig() else f"GPT {config.num_layers}x{config.d_model}"
    return BenchResult(
        SUITE,
        f"train {name} {B}x{T} ({options.precision})",
        "tokens/s",
        rates["attnlab"],
        rates["hf"],
        "HF GPT2LMHeadModel (sdpa)",
        extra=extra,
    )


def _train_step(
    model: nn.Module,
    logits_of: Callable[[nn.Module], torch.Tensor],
    targets: torch.Tensor,
    device: torch.device,
    options: BenchOptions,
) -> Callable[[], None]:
    """Forward (autocast) + next-token cross-entropy + backward + AdamW (fused on CUDA)."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=6e-4, fused=device.type == "cuda")
    forward_model = torch.compile(model) if options.compile else model

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with autocast(device, options.precision):
            logits = logits_of(forward_model)  # (B, T, vocab)
        loss = F.cross_entropy(logits.float().flatten(0, 1), targets.flatten())
        loss.backward()
        optimizer.step()

    return step
