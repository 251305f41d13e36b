"""Learning-rate schedules, stepped once per optimizer step.

Each function returns the multiplier of the base learning rate at a given step, for
:class:`torch.optim.lr_scheduler.LambdaLR`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import partial

import torch

from attnlab.configs.train import SCHEDULES
from attnlab.errors import ConfigError


def cosine_warmup(step: int, warmup: int, total: int, floor: float = 0.0) -> float:
    """Linear warmup from 0 over ``warmup`` steps, then cosine decay to ``floor`` at ``total``.

    The "CosineWarmupScheduler" of the classic Transformer tutorial; ``floor`` (a fraction
    of the peak) is nanoGPT's ``min_lr / learning_rate``.
    """
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))


def noam(step: int, warmup: int, d_model: int) -> float:
    """The paper's schedule, section 5.3: ``d_model^-0.5 * min(n^-0.5, n * warmup^-1.5)``.

    ``n = step + 1``. Use it with a base learning rate of 1 (or a small multiple, as the
    Annotated Transformer's ``factor``): the schedule itself carries the scale.
    """
    n = step + 1
    return d_model**-0.5 * min(n**-0.5, n * warmup**-1.5)


def build_scheduler(
    optimizer: torch.optim.Optimizer,
    name: str,
    warmup: int,
    total: int,
    d_model: int,
    floor: float = 0.0,
) -> torch.optim.lr_scheduler.LambdaLR:
    """A per-step scheduler: ``name`` is one of ``SCHEDULES`` (``floor``: cosine only)."""
    factor: Callable[[int], float]
    if name == "cosine":
        factor = partial(cosine_warmup, warmup=max(1, warmup), total=total, floor=floor)
    elif name == "noam":
        factor = partial(noam, warmup=max(1, warmup), d_model=d_model)
    elif name == "constant":
        factor = _constant
    else:
        raise ConfigError(f"unknown schedule {name!r}; choose from {', '.join(SCHEDULES)}")
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def _constant(step: int) -> float:
    return 1.0
