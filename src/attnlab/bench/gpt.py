"""Benchmark suite "gpt": GPT training speed.

Default size (CPU):

* **train** — ``attnlab train shakespeare`` with its defaults, the "baby GPT" (4 layers, 4
  heads, 128 dims, block 64, batch 12, 2,000 steps; ``--quick``: 50 steps), through the real
  :class:`~attnlab.training.Trainer`. ms/iteration is the median time from one training step to
  the next (data, forward, backward, clipping, optimizer, logging: validation steps are the
  outliers the median ignores), as nanoGPT's per-iteration log reports it. The reference is
  nanoGPT's ``train.py`` with the same settings (the command is in
  docs/tasks/shakespeare.md), **recorded** on the reference machine (2 CPU cores): 41
  ms/iteration median, val loss 1.886 at 2,000 iterations, 94 s in all. nanoGPT is not a
  dependency and does not run here, so the ratio is meaningful only on that machine with 2
  threads (``--threads 2``).

Generation speed is the "generate" suite (:mod:`attnlab.bench.generate`).

``--size gpt2-small`` (CUDA): training throughput of GPT-2 small (12 layers, 12 heads, 768
dims, block 1,024, vocabulary 50,257) on batches of 16 x 1,024 random tokens (``--quick``:
4 x 256), forward + backward + fused AdamW, attnlab vs Hugging Face's ``GPT2LMHeadModel``
(sdpa attention) with the same weights, in tokens/s with TFLOP/s and MFU
(:mod:`attnlab.bench.flops`). ``--precision`` applies autocast and ``--compile`` compiles each
side's forward pass together with its loss.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from attnlab.bench.common import (
    BenchOptions,
    BenchResult,
    BenchSkipped,
    interleaved_medians,
    transformers_problem,
)
from attnlab.bench.flops import gpt_flops_per_token, mfu, peak_flops
from attnlab.errors import DataError, InputError
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


def run(options: BenchOptions) -> list[BenchResult]:
    """Run the cases of ``options.size``; see the module docstring."""
    if options.size not in SIZES:
        raise InputError(f"the gpt suite has sizes {', '.join(SIZES)}; got {options.size!r}")
    device = torch.device(options.device)
    if options.size == "gpt2-small":
        if device.type != "cuda":
            raise BenchSkipped("--size gpt2-small is the GPU training case: add --device cuda")
        return [gpt2_small_training(options)]
    if device.type != "cpu":
        raise BenchSkipped(
            "the default size is the baby GPT's CPU training; on a GPU use --size gpt2-small"
        )
    try:
        return baby_gpt_training(options)
    except DataError as e:
        if options.data_dir:  # the user named the folder: its data must be there
            raise
        raise BenchSkipped(f"the baby GPT's training needs tiny Shakespeare: {e}") from None


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


def hf_gpt2(config: GPTConfig) -> nn.Module | None:
    """A randomly initialised Hugging Face ``GPT2LMHeadModel`` of ``config`` (None where
    :func:`~attnlab.bench.common.transformers_problem` finds one): GPT-2's layout, no dropout,
    sdpa attention, no special tokens."""
    if transformers_problem() is not None:
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

    ``batch`` is ``(B, T)``, default 16 x 1,024 (``--quick``: 4 x 256): the larger the
    batch, the smaller the share of each step left to the optimizer and the kernel launches,
    which are not model FLOPs.
    """
    config = config or GPTConfig()  # GPT-2 small
    B, T = batch or ((4, 256) if options.quick else (16, 1024))
    device = torch.device(options.device)
    repeats = options.repeats or (3 if options.quick else 10)
    torch.manual_seed(0)
    reference = hf_gpt2(config)
    if reference is None:
        raise BenchSkipped(
            f"the gpt2-small case needs Hugging Face's GPT-2: {transformers_problem()}"
        )
    from attnlab.interop import from_hf

    ours = from_hf(reference).to(device).train()
    assert isinstance(ours, GPT)  # from_hf of a GPT-2 gives attnlab's GPT
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
    """Forward (autocast) + next-token cross-entropy + backward + AdamW (fused on CUDA).

    With ``--compile`` the forward pass and the loss are compiled together, as nanoGPT's
    model computes its loss in its forward: the float32 copy of the (B, T, vocab) logits that
    the loss reads is then fused away, the largest tensor of the step for GPT-2's vocabulary.
    """
    optimizer = torch.optim.AdamW(model.parameters(), lr=6e-4, fused=device.type == "cuda")

    def loss_of(m: nn.Module) -> torch.Tensor:
        with autocast(device, options.precision):
            logits = logits_of(m)  # (B, T, vocab)
        return F.cross_entropy(logits.float().flatten(0, 1), targets.flatten())  # (B*T, vocab)

    compute_loss = torch.compile(loss_of) if options.compile else loss_of

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        compute_loss(model).backward()
        optimizer.step()

    return step
