"""Model FLOPs and model FLOPs utilisation (MFU), for the benchmark suites.

Two functions, used by every suite that reports TFLOP/s or MFU::

    gpt_flops_per_token(n_params: int, n_layer: int, n_head: int, d_model: int,
                        block_size: int, training: bool = True) -> float
    peak_flops(device: torch.device, precision: str,
               override_tflops: float | None = None) -> float | None

MFU = achieved model FLOP/s / peak FLOP/s of the device, where the model FLOPs are those the
model *needs* (not what the kernels happen to do, so recomputation is not counted). This is
the estimate of the PaLM paper (Chowdhery et al. 2022, appendix B) as used by nanoGPT's
``estimate_mfu``:

* every parameter costs 2 FLOPs per token forward (a multiply and an add), and twice that
  backward, so 6 N per token for training and 2 N for inference;
* attention scores and the weighted sum (Q K^T and A V) are not parameter matmuls: per layer
  and token they cost 2 * 2 * T * d_model forward, so 12 * L * T * d_model for training
  (forward + backward) and 4 * L * T * d_model for inference.

Here T is the full context (block size): the estimate counts the attention over the whole
block, as PaLM and nanoGPT do, even though causal attention needs only about half of it.
"""

from __future__ import annotations

import torch

# Dense (no sparsity) peak tensor-core throughput in TFLOP/s, from NVIDIA's data sheets,
# matched against torch.cuda.get_device_name in this order (the first substring found wins).
# bf16 and fp16 run at the same rate. float32 matmuls use TF32 tensor cores only after
# torch.set_float32_matmul_precision("high") (PyTorch's default is "highest": no TF32);
# "fp32" is the plain float32 peak and "tf32" the tensor-core one.
_PEAK_TFLOPS: list[tuple[str, dict[str, float]]] = [
    ("H100 PCIe", {"bf16": 756.0, "fp16": 756.0, "tf32": 378.0, "fp32": 51.0}),
    ("H100 NVL", {"bf16": 835.0, "fp16": 835.0, "tf32": 417.5, "fp32": 60.0}),
    ("H100", {"bf16": 989.0, "fp16": 989.0, "tf32": 494.5, "fp32": 67.0}),  # SXM
    ("H200 NVL", {"bf16": 835.0, "fp16": 835.0, "tf32": 417.5, "fp32": 60.0}),
    ("H200", {"bf16": 989.0, "fp16": 989.0, "tf32": 494.5, "fp32": 67.0}),  # SXM
    ("A100", {"bf16": 312.0, "fp16": 312.0, "tf32": 156.0, "fp32": 19.5}),
]


def gpt_flops_per_token(
    n_params: int,
    n_layer: int,
    n_head: int,
    d_model: int,
    block_size: int,
    training: bool = True,
) -> float:
    """Model FLOPs per token of a decoder-only Transformer (PaLM appendix B / nanoGPT).

    ``n_params`` should leave out the position-embedding table (it costs no matmul); the token
    embedding stays in, because with tied weights it is the output projection. ``n_head`` does
    not change the count (heads split d_model); it is taken so that callers pass a whole
    config. Training (forward + backward): ``6 N + 12 L T d``; inference (forward only):
    ``2 N + 4 L T d``.
    """
    del n_head  # the heads partition d_model, so the FLOPs do not depend on their number
    attention = n_layer * block_size * d_model
    if training:
        return 6.0 * n_params + 12.0 * attention
    return 2.0 * n_params + 4.0 * attention


def peak_flops(
    device: torch.device, precision: str, override_tflops: float | None = None
) -> float | None:
    """Peak FLOP/s of ``device`` for ``precision`` ("fp32", "bf16", "fp16"), or None if unknown.

    ``override_tflops`` (the ``--peak-tflops`` option) wins over the table and works on any
    device. Without it, only CUDA GPUs named in the table (H100, H200, A100, SXM and PCIe/NVL
    variants) have a peak; CPUs and other GPUs return None, and the caller then shows no MFU.
    """
    if override_tflops is not None:
        return override_tflops * 1e12
    if device.type != "cuda" or not torch.cuda.is_available():
        return None
    if precision == "fp32" and torch.get_float32_matmul_precision() != "highest":
        precision = "tf32"
    name = torch.cuda.get_device_name(device)
    for model, peaks in _PEAK_TFLOPS:
        if model in name:
            return peaks[precision] * 1e12
    return None


def mfu(tokens_per_second: float, flops_per_token: float, peak: float | None) -> float | None:
    """Model FLOPs utilisation: achieved model FLOP/s over ``peak`` (None when peak is None)."""
    if peak is None:
        return None
    return tokens_per_second * flops_per_token / peak
