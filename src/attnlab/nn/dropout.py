"""Dropout (Srivastava et al. 2014), as used in the paper's section 5.4 ("Residual Dropout").

In training, each element is zeroed with probability ``p`` and the survivors are scaled by
``1 / (1 - p)``, so the expected value is unchanged; in eval mode it is the identity.

Why attnlab has its own: on the CPU, drawing the random numbers is most of dropout's cost
(one 32-bit draw per element in ``torch.nn.Dropout``; about half of a small Transformer's
training step). Here one 64-bit draw serves four elements: it is split into four 16-bit
lanes, each of whose low 15 bits is a uniform integer in ``[0, 32768)``. An element is kept
when its lane is ``>= round(p * 32768)``, so ``p`` is honoured to within ``1/65536``, and the
scale uses that exact rate, so the expectation stays exact. On other devices (CUDA's fused
kernel is already fast) it calls :func:`torch.nn.functional.dropout`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

_LANES_PER_WORD = 4  # 16-bit lanes in one int64 draw
_LANE_RANGE = 1 << 15  # the low 15 bits of a lane: uniform over [0, 32768)


def dropout(x: Tensor, p: float, training: bool = True) -> Tensor:
    """Functional dropout; shape in = shape out. See the module docstring."""
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout probability must be in [0, 1]; got {p}")
    if not training or p == 0.0:
        return x
    if p == 1.0:
        return torch.zeros_like(x)
    if x.device.type != "cpu":
        return F.dropout(x, p, training=True)
    n = x.numel()
    words = torch.empty(-(-n // _LANES_PER_WORD), dtype=torch.int64).random_()
    # int64.random_() draws from [0, 2^63): the top lane's sign bit is always 0, so only the
    # low 15 bits of every lane are used — uniform in all four lanes.
    lanes = words.view(torch.int16)[:n].view(x.shape) & (_LANE_RANGE - 1)  # x.shape
    threshold = round(p * _LANE_RANGE)
    keep = lanes >= threshold  # True with probability 1 - threshold / 32768
    scale = _LANE_RANGE / (_LANE_RANGE - threshold)
    return torch.where(keep, x * scale, 0.0)


class Dropout(nn.Module):
    """Drop-in for ``nn.Dropout(p)`` with cheaper random numbers on the CPU.

    Input and output: any shape.
    """

    def __init__(self, p: float = 0.1):
        super().__init__()
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"dropout probability must be in [0, 1]; got {p}")
        self.p = p

    def forward(self, x: Tensor) -> Tensor:
        """``x`` (any shape) with each element zeroed with probability ``p`` and the rest scaled by
        ``1 / (1 - p)`` in training (section 5.4); ``x`` itself in eval mode."""
        return dropout(x, self.p, self.training)

    def extra_repr(self) -> str:
        """The settings printed by ``repr(module)``."""
        return f"p={self.p}"
