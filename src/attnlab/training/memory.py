"""How much memory a model needs, found before it is allocated.

The model is first built on PyTorch's ``meta`` device, which records shapes and allocates
nothing, so a config that asks for a model no machine can hold (a typo in ``--d-model``, a
hand-edited ``config.json``) gets one sentence instead of minutes of swapping and a crash.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from attnlab.machine import check_memory

BYTES_PER_PARAMETER = {"inference": 4, "training": 16}  # fp32 weights (+ grads, 2 Adam moments)


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
    check_memory(
        parameters * BYTES_PER_PARAMETER[purpose] + buffer_bytes,
        f"the model has {parameters:,} parameters: {purpose}",
        "choose a smaller --d-model, --d-ff or --layers",
    )
    return parameters
