"""What the tasks share: the cross-entropy evaluation sums, sample picking, top-k lists and
the model's device."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

IGNORE = -100  # the target of a position the loss and the metrics skip (e.g. padding)


def model_device(model: nn.Module) -> torch.device:
    """The device of the model's parameters."""
    return next(model.parameters()).device


def shown(text: str, limit: int = 60) -> str:
    """``repr(text)``, cut to about ``limit`` characters: a user's input quoted in a message
    stays one readable line however long the input is."""
    return repr(text) if len(text) <= limit else repr(text[:limit]) + f"... ({len(text):,} chars)"


def spread(n: int, length: int) -> list[int]:
    """``n`` indices spread evenly over ``range(length)`` (first and last included), so that
    samples from a data set sorted by class or position cover it all."""
    return torch.linspace(0, length - 1, min(n, length)).long().tolist()


def top_k(probs: Tensor, labels: list[Any], k: int, key: str) -> list[dict[str, Any]]:
    """The ``k`` likeliest classes of a distribution ``(C,)``, likeliest first, as
    ``[{key: label, "probability": p}, ...]`` with ``p`` rounded to 4 decimals."""
    top = probs.topk(min(k, probs.numel()))
    return [
        {key: labels[i], "probability": round(p, 4)}
        for p, i in zip(top.values.tolist(), top.indices.tolist(), strict=True)
    ]


class CrossEntropyTally:
    """Sums of an evaluation over batches: cross-entropy, right predictions, counted targets.

    ``add(logits (N, C), targets (N,))`` skips targets equal to :data:`IGNORE`. The sums stay
    tensors on the model's device until :attr:`loss` or :attr:`accuracy` is read, so the loop
    does not wait for the device at every batch.
    """

    def __init__(self) -> None:
        self.loss_sum: Tensor | float = 0.0
        self.correct: Tensor | int = 0
        self.count: Tensor | int = 0

    def add(self, logits: Tensor, targets: Tensor) -> Tensor:
        """Add one batch; returns the per-target right/wrong mask ``(N,)`` (ignored: True)."""
        real = targets != IGNORE  # (N,)
        loss = F.cross_entropy(logits.float(), targets, ignore_index=IGNORE, reduction="sum")
        right = (logits.argmax(-1) == targets) | ~real  # (N,)
        self.loss_sum = self.loss_sum + loss.double()
        self.correct = self.correct + (right & real).sum()
        self.count = self.count + real.sum()
        return right

    @property
    def loss(self) -> float:
        """Mean cross-entropy per counted target."""
        return float(self.loss_sum) / int(self.count)

    @property
    def accuracy(self) -> float:
        """Share of counted targets predicted right."""
        return int(self.correct) / int(self.count)
