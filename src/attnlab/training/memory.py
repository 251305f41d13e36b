"""How much memory a model needs, found before it is allocated.

The model is first built on PyTorch's ``meta`` device, which records shapes and allocates
nothing, so a config that asks for a model no machine can hold (a typo in ``--d-model``, a
hand-edited ``config.json``) gets one sentence instead of minutes of swapping and a crash.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import torch
from torch import nn

from attnlab.errors import ConfigError

BYTES_PER_PARAMETER = {"inference": 4, "training": 16}  # fp32 weights (+ grads, 2 Adam moments)
GB = 1024**3


def available_memory() -> int | None:
    """Bytes of memory available to a new allocation (Linux: MemAvailable), or None."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def count_parameters(build: Callable[[], nn.Module]) -> int:
    """The number of parameters of ``build()``, built on the meta device (no memory used)."""
    return _count(build)[0]


def _count(build: Callable[[], nn.Module]) -> tuple[int, int]:
    """``(parameters, bytes of buffers)`` of ``build()``, built on the meta device."""
    with torch.device("meta"):
        model = build()
    buffer_bytes = sum(b.numel() * b.element_size() for b in model.buffers())
    return sum(p.numel() for p in model.parameters()), buffer_bytes


def check_fits(build: Callable[[], nn.Module], purpose: str = "training") -> int:
    """Refuse a model whose ``purpose`` ("training" or "inference") needs more memory than is
    available, its buffers (e.g. a table of positions) included; returns its parameter
    count."""
    parameters, buffer_bytes = _count(build)
    needed = parameters * BYTES_PER_PARAMETER[purpose] + buffer_bytes
    available = available_memory()
    if available is not None and needed > available:
        raise ConfigError(
            f"the model has {parameters:,} parameters: {purpose} needs about "
            f"{needed / GB:,.1f} GB, and this machine has {available / GB:,.1f} GB available "
            "(choose a smaller --d-model, --d-ff or --layers)"
        )
    return parameters
