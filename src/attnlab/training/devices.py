"""Where and in which number format to compute: device selection and mixed precision.

Mixed precision runs the matmuls in a 16-bit format and keeps the weights, the optimizer
state and the numerically delicate operations (softmax, layer norm, losses) in float32.
``torch.autocast`` picks the format per operation; the weights stay float32.

* ``bf16`` (bfloat16) has float32's exponent range and fewer mantissa bits: gradients do not
  underflow, so it needs no loss scaling. It is the format to use on recent GPUs and on CPUs.
* ``fp16`` (float16) has more mantissa bits but a narrow range: small gradients underflow to
  zero. A ``GradScaler`` multiplies the loss by a large factor before ``backward`` and
  divides the gradients by it before the optimizer step, skipping steps whose gradients
  overflowed. attnlab allows fp16 on CUDA only, where it is fast and the scaler is proven;
  on CPU and MPS use bf16.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Any

import torch

from attnlab.configs.train import PRECISIONS
from attnlab.errors import AttnlabError

_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def resolve_device(name: str) -> torch.device:
    """``"auto"`` -> CUDA if available, else Apple's MPS if available, else CPU.

    Any other name (``cpu``, ``cuda``, ``cuda:1``, ``mps``) must exist on this machine.
    """
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError as e:
        raise AttnlabError(f"unknown device {name!r}: use auto, cpu, cuda, cuda:N or mps") from e
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise AttnlabError(f"--device {name} was asked for, but this PyTorch sees no CUDA GPU")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise AttnlabError(
                f"--device {name} was asked for, but this machine has "
                f"{torch.cuda.device_count()} CUDA GPU(s): cuda:0 .. "
                f"cuda:{torch.cuda.device_count() - 1}"
            )
    elif device.type == "cpu" and device.index not in (None, 0):  # torch ignores the index
        raise AttnlabError(f"--device {name}: PyTorch sees the CPUs as one device, cpu")
    elif device.type == "mps" and not torch.backends.mps.is_available():
        raise AttnlabError(f"--device {name} was asked for, but this PyTorch sees no Apple MPS")
    elif device.type not in ("cpu", "cuda", "mps"):
        raise AttnlabError(f"unsupported device {name!r}: use auto, cpu, cuda, cuda:N or mps")
    return device


def check_precision(device: torch.device, precision: str) -> None:
    """Refuse a precision that ``device`` cannot train in, with one sentence saying why."""
    if precision not in PRECISIONS:
        raise AttnlabError(f"precision must be one of {', '.join(PRECISIONS)}; got {precision!r}")
    if precision == "fp16" and device.type != "cuda":
        raise AttnlabError(
            f"--precision fp16 needs a CUDA GPU (its loss scaling is only supported there); "
            f"on {device.type} use --precision bf16"
        )
    if precision == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise AttnlabError(
            f"--precision bf16 was asked for, but {torch.cuda.get_device_name(device)} has no "
            "bfloat16 support: use --precision fp16"
        )


def autocast(device: torch.device, precision: str) -> AbstractContextManager:
    """Run the enclosed forward pass in ``precision`` (a no-op for fp32).

    Only the forward pass (and the loss) belongs inside: backward runs each operation in the
    format its forward used.
    """
    return torch.autocast(
        device_type=device.type,
        dtype=_DTYPES.get(precision, torch.bfloat16),
        enabled=precision != "fp32",
    )


def grad_scaler(device: torch.device, precision: str) -> torch.amp.GradScaler:
    """A loss scaler that is active for fp16 only; for fp32 and bf16 every call passes through.

    With ``enabled=False``, ``scale(loss)`` returns the loss, ``unscale_`` does nothing and
    ``step(optimizer)`` is ``optimizer.step()``: the training loop has one code path.
    """
    return torch.amp.GradScaler(device.type, enabled=precision == "fp16")


def to_device(batch: Any, device: torch.device) -> Any:
    """Move every tensor in a (nested) tuple / list / dict batch to ``device`` (``meta``
    included: shapes only, for the memory check)."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {k: to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, list | tuple):
        return type(batch)(to_device(v, device) for v in batch)
    return batch
