"""The linear maps of the model (``x W^T + b``), with a faster path for one row on the CPU.

Decoding one sequence produces one token per step, so every linear layer of a decoding step
multiplies a single row ``x (1, d_in)`` by its weight. That is a matrix-vector product: its
time is the time to read the weight from memory. For ``F.linear`` with one row, PyTorch's CPU
build calls a matrix-vector kernel that runs on one thread and reads about 10 GB/s on the
development machine (2 cores). Cutting the weight into ``k`` blocks of rows and multiplying
them by ``x`` in one batched product (:func:`torch.bmm`) runs the blocks in parallel and reads
about 25 GB/s: decoding at batch 1 gets about 1.5x faster (``attnlab bench decode``).

The blocks are views of the weight (no copy) and each output element is still the dot
product of one weight row with ``x``, so the result equals ``F.linear``'s up to float
rounding. The batched product costs more to start, so it is used for weights of at least
``2**18`` elements (1 MiB; 512 x 512 and up), where reading the weight dominates: smaller
weights stay in the CPU cache between steps and ``F.linear`` is faster there (measured:
128 x 512 weights of a cache-resident model take 10 us with ``F.linear``, 22 us batched;
2,048 x 512 weights 450 us vs 125 us). Every other case (several rows, autograd, other
devices and dtypes) calls ``F.linear``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

BATCHED_MIN_ELEMENTS = 1 << 18  # weights this large take the batched one-row path


def linear(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """``x W^T + b`` like :func:`torch.nn.functional.linear`: ``(..., d_in) -> (..., d_out)``.

    ``weight`` is ``(d_out, d_in)``. A single input row on the CPU (float32, no autograd)
    times a weight of at least ``BATCHED_MIN_ELEMENTS`` elements takes the batched path
    described in the module docstring.
    """
    d_out, d_in = weight.shape
    if (
        weight.numel() < BATCHED_MIN_ELEMENTS  # first: the cheapest test, and small models fail it
        or x.numel() != d_in
        or x.device.type != "cpu"
        or x.dtype != torch.float32
        or weight.dtype != torch.float32
        or not weight.is_contiguous()
        or (torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad))
    ):
        return F.linear(x, weight, bias)
    blocks = torch.get_num_threads()
    if blocks < 2 or d_out % blocks:
        return F.linear(x, weight, bias)
    rows = weight.view(blocks, d_out // blocks, d_in)  # (k, d_out / k, d_in)
    # x as a column shared by every block: (d_in, 1) expanded to (k, d_in, 1) without a copy.
    column = x.reshape(1, d_in).t().expand(blocks, d_in, 1)
    out = torch.bmm(rows, column).view(*x.shape[:-1], d_out)  # (k, d_out / k, 1) -> (..., d_out)
    return out if bias is None else out.add_(bias)


class Linear(nn.Linear):
    """:class:`torch.nn.Linear` computed by :func:`linear` (same parameters, same state dict)."""

    def forward(self, x: Tensor) -> Tensor:
        """``x W^T + b``: ``(..., in_features)`` -> ``(..., out_features)``, computed by
        :func:`linear`."""
        return linear(x, self.weight, self.bias)
