"""Benchmark suite "encoder": attnlab's TransformerEncoder vs torch.nn.TransformerEncoder.

Same dimensions and the same weights on both sides (copied through attnlab.interop):
d_model 128, 4 heads, d_ff 512, 4 layers, dropout 0.1, batch 64 x length 64
(``--quick``: batch 8 x length 32, 3 repetitions).

* train: one step = forward + backward + AdamW, in train mode (dropout on).
* infer: no-grad forward in eval mode; torch takes its native fast path
  (fused layer kernel; nested tensors when there is padding).
* infer-pad: as infer, with 30% of the tokens being padding (a key-padding mask); its rate
  counts real tokens only.

Timings are medians over calls that alternate between the two sides, so that drift in the
machine's load hits both alike. ``--precision bf16|fp16`` runs both forwards under autocast
(with torch's nested tensors off: torch 2.13 fails on them under autocast), ``--compile``
compiles both models.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import cast

import torch
from torch import nn

from attnlab.bench.common import BenchOptions, BenchResult, BenchSkipped, interleaved_medians
from attnlab.bench.flops import gpt_flops_per_token
from attnlab.errors import InputError
from attnlab.interop import from_torch, torch_key_padding_mask
from attnlab.nn import padding_mask
from attnlab.training.devices import autocast

SUITE = "encoder"
D_MODEL, HEADS, D_FF, LAYERS, DROPOUT = 128, 4, 512, 4, 0.1


def _train_step(
    model: nn.Module, forward: Callable[[nn.Module], torch.Tensor], options: BenchOptions
) -> Callable[[], None]:
    """Forward (under autocast) + backward + AdamW on a stand-in loss."""
    optimizer = torch.optim.AdamW(model.parameters())
    device = torch.device(options.device)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with autocast(device, options.precision):
            loss = forward(model).float().pow(2).mean()
        loss.backward()
        optimizer.step()

    return step


def _inference(
    model: nn.Module, forward: Callable[[nn.Module], torch.Tensor], options: BenchOptions
) -> Callable[[], None]:
    device = torch.device(options.device)

    def call() -> None:
        with torch.no_grad(), autocast(device, options.precision):
            forward(model)

    return call


def run(options: BenchOptions) -> list[BenchResult]:
    """Time the three cases on both sides; one :class:`BenchResult` (tokens/s) per case."""
    if options.size != "default":
        raise InputError(f"the encoder suite has one size, 'default'; got {options.size!r}")
    with warnings.catch_warnings():  # the filter ends with the run
        # nn.TransformerEncoder's fast path warns that its nested tensors are a prototype.
        warnings.filterwarnings("ignore", message="The PyTorch API of nested tensors")
        return _timed(options)


def _timed(options: BenchOptions) -> list[BenchResult]:
    device = torch.device(options.device)
    batch, length = (8, 32) if options.quick else (64, 64)
    warmup, repeats = (1, 3) if options.quick else (3, 60)
    repeats = options.repeats or repeats

    generator = torch.Generator().manual_seed(0)
    reference, ours = _same_encoder_twice(device, nested=options.precision == "fp32")
    n_params = sum(p.numel() for p in ours.parameters())
    x = torch.randn(batch, length, D_MODEL, generator=generator).to(device)  # (B, T, D)
    lengths = _padded_lengths(batch, length, generator).to(device)  # (B,)
    mask = padding_mask(lengths, max_len=length)  # (B, 1, 1, T), True = real token
    cases = _cases(ours, reference, x, mask, int(lengths.sum()), options)

    results = []
    for name, (ours_fn, reference_fn, tokens) in cases.items():
        training = name == "train"
        ours.train(training)
        reference.train(training)
        for _ in range(warmup):
            ours_fn()
            _reference_runs(reference_fn, name, options)
        seconds = interleaved_medians({"ours": ours_fn, "ref": reference_fn}, device, repeats)
        ours_ms, reference_ms = seconds["ours"] * 1e3, seconds["ref"] * 1e3
        rate = tokens / ours_ms * 1e3
        flops = gpt_flops_per_token(n_params, LAYERS, HEADS, D_MODEL, length, training=training)
        results.append(
            BenchResult(
                suite=SUITE,
                case=f"{name} {batch}x{length}",
                unit="tokens/s",
                attnlab=rate,
                reference=tokens / reference_ms * 1e3,
                reference_name="torch.nn.TransformerEncoder",
                extra={"ms": ours_ms, "TFLOP/s": rate * flops / 1e12},
            )
        )
    return results


def _reference_runs(reference_fn: Callable[[], None], case: str, options: BenchOptions) -> None:
    """One call of torch's side; where this torch cannot run the case at all, the suite is
    skipped with torch's reason (torch 2.3's fused encoder kernel, for one, ignores CPU
    autocast and fails: "mat1 and mat2 must have the same dtype")."""
    try:
        reference_fn()
    except RuntimeError as e:
        reason = (str(e).strip() or type(e).__name__).splitlines()[0]
        raise BenchSkipped(
            f"torch {torch.__version__}'s nn.TransformerEncoder cannot run the {case} case in "
            f"{options.precision} on {options.device} ({reason})"
        ) from None


def _same_encoder_twice(
    device: torch.device, nested: bool
) -> tuple[nn.TransformerEncoder, nn.Module]:
    """``torch.nn.TransformerEncoder`` (seed 0; ``nested``: with its nested tensors for
    padding) and attnlab's copy of it, both on ``device``.

    The seed is set inside :func:`torch.random.fork_rng`, so the global generator is left as
    it was.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        layer = nn.TransformerEncoderLayer(D_MODEL, HEADS, D_FF, DROPOUT, batch_first=True)
        reference = nn.TransformerEncoder(layer, LAYERS, enable_nested_tensor=nested).to(device)
    return reference, from_torch(reference).to(device)


def _padded_lengths(batch: int, length: int, generator: torch.Generator) -> torch.Tensor:
    """Real-token counts ``(B,)`` in ``[1, length]``: about 70% of the ``batch x length`` slots
    hold a real token, the rest is padding."""
    lengths = torch.randint(int(length * 0.4), length + 1, (batch,), generator=generator)  # (B,)
    lengths[0] = length  # the padded batch keeps its full width
    lengths = (lengths.float() * 0.7 * batch * length / lengths.sum()).round().long()  # (B,)
    return lengths.clamp(1, length)


def _cases(
    ours: nn.Module,
    reference: nn.TransformerEncoder,
    x: torch.Tensor,
    mask: torch.Tensor,
    real_tokens: int,
    options: BenchOptions,
) -> dict[str, tuple[Callable[[], None], Callable[[], None], int]]:
    """The three cases: name -> (attnlab's call, torch's call, tokens counted per call).

    ``x`` is ``(B, T, D)``; ``mask`` is ``(B, 1, 1, T)``, True = real token (attnlab's
    convention), converted to torch's ``src_key_padding_mask`` (True = padding) for torch.
    """
    batch, length = x.shape[:2]
    torch_mask = torch_key_padding_mask(mask)  # (B, T), True = padding
    ours_fwd: nn.Module = ours
    reference_fwd: nn.Module = reference
    if options.compile:  # torch.compile gives an nn.Module (OptimizedModule), typed a callable
        ours_fwd = cast(nn.Module, torch.compile(ours))
        reference_fwd = cast(nn.Module, torch.compile(reference))
    return {
        "train": (
            _train_step(ours_fwd, lambda m: m(x), options),
            _train_step(reference_fwd, lambda m: m(x), options),
            batch * length,
        ),
        "infer": (
            _inference(ours_fwd, lambda m: m(x), options),
            _inference(reference_fwd, lambda m: m(x), options),
            batch * length,
        ),
        "infer-pad": (
            _inference(ours_fwd, lambda m: m(x, mask=mask), options),
            _inference(reference_fwd, lambda m: m(x, src_key_padding_mask=torch_mask), options),
            real_tokens,
        ),
    }
