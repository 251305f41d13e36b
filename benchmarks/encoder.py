"""attnlab TransformerEncoder vs torch.nn.TransformerEncoder, side by side, in one run.

Same dimensions and the same weights on both sides (copied through attnlab.interop):
d_model 128, 4 heads, d_ff 512, 4 layers, dropout 0.1, batch 64, length 64.

* train: one step = forward + backward + AdamW, in train mode (dropout on).
* infer: no-grad forward in eval mode; torch takes its native fast path
  (fused layer kernel; nested tensors when there is padding).
* infer-pad: as infer, with 30% of the tokens being padding (a key-padding mask).

Timings are medians over calls that alternate between the two sides. Usage::

    python benchmarks/encoder.py [--repeats 60] [--threads N] [--device cpu|cuda]
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings

import torch
from torch import nn

from attnlab.interop import from_torch, torch_key_padding_mask
from attnlab.nn import padding_mask

D_MODEL, HEADS, D_FF, LAYERS, DROPOUT, BATCH, LENGTH = 128, 4, 512, 4, 0.1, 64, 64


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _time_ms(fn, device: torch.device) -> float:
    _sync(device)
    start = time.perf_counter()
    fn()
    _sync(device)
    return (time.perf_counter() - start) * 1e3


def _interleaved_medians(ours, reference, device: torch.device, repeats: int):
    """Alternate the two sides call by call, so that drift in machine load hits both alike."""
    ours_ms, ref_ms = [], []
    for _ in range(repeats):
        ours_ms.append(_time_ms(ours, device))
        ref_ms.append(_time_ms(reference, device))
    return statistics.median(ours_ms), statistics.median(ref_ms)


def _train_step(model: nn.Module, optimizer: torch.optim.Optimizer, call):
    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        loss = call(model).pow(2).mean()
        loss.backward()
        optimizer.step()

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=60, help="timed calls per side and case")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.manual_seed(0)
    warnings.filterwarnings("ignore", message="The PyTorch API of nested tensors")

    layer = nn.TransformerEncoderLayer(
        D_MODEL, HEADS, D_FF, DROPOUT, batch_first=True, device=device
    )
    reference = nn.TransformerEncoder(layer, LAYERS, enable_nested_tensor=True).to(device)
    ours = from_torch(reference).to(device)

    x = torch.randn(BATCH, LENGTH, D_MODEL, device=device)
    lengths = torch.randint(int(LENGTH * 0.4), LENGTH + 1, (BATCH,), device=device)
    lengths[0] = LENGTH  # the padded batch keeps its full width
    lengths = (lengths.float() * 0.7 * BATCH * LENGTH / lengths.sum()).round().long()
    lengths = lengths.clamp(1, LENGTH)
    mask = padding_mask(lengths, max_len=LENGTH)  # (B, 1, 1, T), True = real token
    torch_mask = torch_key_padding_mask(mask)  # (B, T), True = padding
    real_tokens = int(lengths.sum())

    cases = {
        "train": (
            _train_step(ours, torch.optim.AdamW(ours.parameters()), lambda m: m(x)),
            _train_step(reference, torch.optim.AdamW(reference.parameters()), lambda m: m(x)),
            BATCH * LENGTH,
        ),
        "infer": (lambda: ours(x), lambda: reference(x), BATCH * LENGTH),
        "infer-pad": (
            lambda: ours(x, mask=mask),
            lambda: reference(x, src_key_padding_mask=torch_mask),
            real_tokens,
        ),
    }

    print(
        f"TransformerEncoder: d_model {D_MODEL}, {HEADS} heads, d_ff {D_FF}, {LAYERS} layers, "
        f"dropout {DROPOUT}, batch {BATCH} x length {LENGTH}; device {device}, "
        f"{torch.get_num_threads()} threads, torch {torch.__version__}"
    )
    all_tokens = BATCH * LENGTH
    padding = 1 - real_tokens / all_tokens
    print(f"infer-pad: {real_tokens} real tokens of {all_tokens} ({padding:.0%} padding)")
    header = (
        f"{'case':<10} {'attnlab ms':>11} {'torch ms':>9} "
        f"{'attnlab tok/s':>14} {'torch tok/s':>12} {'ratio':>6}"
    )
    print(header)
    print("-" * len(header))
    for name, (ours_fn, ref_fn, tokens) in cases.items():
        training = name == "train"
        ours.train(training)
        reference.train(training)
        with torch.set_grad_enabled(training):
            for fn in (ours_fn, ref_fn):  # warm-up
                for _ in range(3):
                    fn()
            a, r = _interleaved_medians(ours_fn, ref_fn, device, args.repeats)
        print(
            f"{name:<10} {a:>11.2f} {r:>9.2f} {tokens / a * 1e3:>14,.0f} "
            f"{tokens / r * 1e3:>12,.0f} {r / a:>5.2f}x"
        )
    print("ratio = attnlab speed / torch.nn speed (> 1: attnlab is faster)")


if __name__ == "__main__":
    main()
