"""Rotary position embeddings (Su et al. 2021, "RoFormer", section 3.2).

The paper's Transformer adds a position vector to each token embedding (section 3.5).
RoFormer instead *rotates* each query and key inside attention: the ``d_head`` dimensions are
split into ``d_head / 2`` pairs, and pair ``i`` of the vector at position ``m`` is turned by
the angle ``m * theta_i`` with ``theta_i = base^(-2i / d_head)`` (section 3.2.2; ``base`` is
10000, the base of the paper's sinusoids). A rotation keeps lengths and turns two vectors by
the same angle without changing their dot product, so ``q_m . k_n`` depends on the positions
only through the offset ``m - n`` (RoFormer section 3.2.2): relative positions, with no
parameters and no table to outgrow.

Which dimensions form a pair is a layout choice. RoFormer pairs neighbours ``(0, 1), (2, 3),
...``; Hugging Face's Llama (and GPT-NeoX) pairs ``i`` with ``i + d_head / 2`` — the
"rotate_half" layout used here, so that Llama checkpoints load without permuting their
weights. Both are the same rotation of a permuted basis.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from attnlab.nn.spec import check_width, not_a_tensor


def rotate_half(x: Tensor) -> Tensor:
    """``[x1, x2] -> [-x2, x1]`` on the last dimension (halves ``x1, x2``): each pair
    ``(x[i], x[i + d/2])`` turned by 90 degrees. Shape in = shape out ``(..., d)``."""
    x1, x2 = x.chunk(2, dim=-1)  # each (..., d / 2)
    return torch.cat((-x2, x1), dim=-1)  # (..., d)


class RotaryEmbedding(nn.Module):
    """Rotates queries or keys by their positions (RoFormer section 3.4.2, the element-wise form).

    ``x' = x * cos(m theta) + rotate_half(x) * sin(m theta)``, which for the pair
    ``(a, b) = (x[i], x[i + d/2])`` is the 2-D rotation
    ``(a cos(m theta_i) - b sin(m theta_i), b cos(m theta_i) + a sin(m theta_i))``.

    Args:
        d_head: the width of one head (even).
        base: ``theta_i = base^(-2i / d_head)``, a finite number >= 1 (as
            :class:`~attnlab.nn.BlockSpec`'s ``rope_theta``); 10000 in RoFormer and Llama.

    Call: ``rotary(x, positions)`` with ``x: (B, H, T, d_head)`` and integer ``positions``
    ``(T,)`` (shared by the batch) or ``(B, T)`` (one row per sequence, e.g. left-padded
    ones). Returns ``(B, H, T, d_head)`` in ``x``'s dtype; the angles are computed in float32.

    The frequencies are a non-persistent buffer: a state dict holds no rotary tensor.
    """

    inv_freq: Tensor  # (d_head / 2,), the buffer registered in __init__

    def __init__(self, d_head: int, base: float = 10000.0):
        super().__init__()
        check_width("d_head", d_head)
        if d_head % 2:
            raise ValueError(f"rotary positions need an even d_head; got {d_head}")
        if isinstance(base, bool) or not isinstance(base, (int, float)) or not 1 <= base < math.inf:
            # base 0 or nan gives infinite or nan frequencies: every rotated query nan
            raise ValueError(f"base must be a finite number >= 1; got {base!r}")
        exponents = torch.arange(0, d_head, 2, dtype=torch.float32) / d_head  # (d_head / 2,)
        self.register_buffer("inv_freq", 1.0 / base**exponents, persistent=False)
        self.d_head = d_head
        self.base = base

    def forward(self, x: Tensor, positions: Tensor) -> Tensor:
        """``x (B, H, T, d_head)`` rotated by the angles of its integer ``positions`` ``(T,)`` or
        ``(B, T)`` (RoFormer section 3.4.2): ``(B, H, T, d_head)``, in ``x``'s dtype."""
        if not isinstance(x, Tensor):
            raise not_a_tensor("x", x, "(B, H, T, d_head)")
        if not isinstance(positions, Tensor):
            raise not_a_tensor("positions", positions, "(T,) or (B, T)")
        if x.dim() != 4 or x.size(-1) != self.d_head:
            raise ValueError(f"x must have shape (B, H, T, {self.d_head}); got {tuple(x.shape)}")
        B, T = x.size(0), x.size(2)
        if tuple(positions.shape) not in ((T,), (B, T)):
            raise ValueError(
                f"positions must have shape (T,) = ({T},) or (B, T) = ({B}, {T}); "
                f"got {tuple(positions.shape)}"
            )
        cos, sin = self.cos_sin(positions, x.dtype)  # each (T, d_head) or (B, 1, T, d_head)
        return self.rotate(x, cos, sin)

    @staticmethod
    def rotate(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
        """``x * cos + rotate_half(x) * sin`` with angles from :meth:`cos_sin`: one set of
        angles serves the queries and the keys of the same positions."""
        return x * cos + rotate_half(x) * sin  # (B, H, T, d_head)

    def cos_sin(self, positions: Tensor, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
        """``cos(m theta)`` and ``sin(m theta)`` for the ``positions`` ``m``, each dimension
        ``i`` and ``i + d_head / 2`` sharing ``theta_i``: ``(T, d_head)`` for ``(T,)``
        positions, ``(B, 1, T, d_head)`` (broadcast over heads) for ``(B, T)`` positions."""
        angles = positions.float()[..., None] * self.inv_freq  # (..., T, d_head / 2)
        angles = torch.cat((angles, angles), dim=-1)  # (..., T, d_head)
        if positions.dim() == 2:
            angles = angles[:, None]  # (B, 1, T, d_head)
        if dtype == torch.float32:
            return angles.cos(), angles.sin()
        return angles.cos().to(dtype), angles.sin().to(dtype)

    def extra_repr(self) -> str:
        """The settings printed by ``repr(module)``."""
        return f"d_head={self.d_head}, base={self.base:g}"
