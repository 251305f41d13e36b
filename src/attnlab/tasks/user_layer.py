"""Check a user's ``--layer FILE.py:ClassName`` against the contract before the model is built.

:func:`user_layer_fields` imports the file, builds one layer at the task's size and runs a
tiny probe forward, so that a layer that does not fit gets one sentence naming what is wrong
(no such file, not a .py file, an error while importing, no such class, not an
``nn.Module``, a constructor that refuses ``(d_model, num_heads, d_ff, dropout)``, a forward
that fails or returns a non-tensor or the wrong shape), before the full model is allocated.
The contract itself is stated in :mod:`attnlab.models.user_layer`.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from attnlab.errors import ConfigError
from attnlab.models.user_layer import (
    CONTRACT,
    LayerError,
    file_sha256,
    load_layer_class,
    split_layer_spec,
)

PROBE_BATCH, PROBE_LEN = 2, 3


def _construct(layer_class: type[nn.Module], size: Any) -> nn.Module:
    name = layer_class.__name__
    try:
        return layer_class(size.d_model, size.heads, size.d_ff, size.dropout)
    except TypeError as e:
        raise ConfigError(
            f"{name}(d_model, num_heads, d_ff, dropout) failed ({e}): the layer must be {CONTRACT}"
        ) from e
    except Exception as e:
        raise ConfigError(
            f"{name}({size.d_model}, {size.heads}, {size.d_ff}, {size.dropout}) raised "
            f"{type(e).__name__}: {e}"
        ) from e


def _probe(layer: nn.Module, d_model: int) -> None:
    """One forward on ``(2, 3, d_model)`` with a padding mask; ConfigError if it misfits."""
    name = type(layer).__name__
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(PROBE_BATCH, PROBE_LEN, d_model, generator=generator)  # (B, T, d_model)
    mask = torch.ones(PROBE_BATCH, 1, 1, PROBE_LEN, dtype=torch.bool)  # (B, 1, 1, T)
    mask[1, ..., -1] = False  # the second sequence ends in padding
    try:
        out = layer.eval()(x, mask=mask)
    except Exception as e:
        raise ConfigError(
            f"{name}.forward(x (2, 3, {d_model}), mask=(2, 1, 1, 3)) raised {type(e).__name__}: {e}"
        ) from e
    if not isinstance(out, Tensor):
        raise ConfigError(
            f"{name}.forward must return one tensor (B, T, d_model); it returned a "
            f"{type(out).__name__}"
        )
    if tuple(out.shape) != tuple(x.shape):
        raise ConfigError(
            f"{name}.forward returned shape {tuple(out.shape)} for x of shape "
            f"{tuple(x.shape)}; it must return (B, T, d_model), the shape of x"
        )


def user_layer_fields(spec: str, size: Any) -> dict[str, str]:
    """The model-config fields ``{"layer", "layer_sha256"}`` of a checked user layer.

    ``size`` is the task's :class:`~attnlab.configs.ModelSize`. The probe runs on the CPU
    with its own random numbers (the caller's seeded weights stay as they would be without
    it), even inside a ``meta``-device context. Raises :class:`~attnlab.errors.ConfigError`.
    """
    try:
        layer_class = load_layer_class(spec)
    except LayerError as e:
        raise ConfigError(f"--layer: {e}") from e
    with torch.device("cpu"), torch.random.fork_rng(devices=[]), torch.no_grad():
        _probe(_construct(layer_class, size), size.d_model)
    return {"layer": spec, "layer_sha256": file_sha256(split_layer_spec(spec)[0])}
