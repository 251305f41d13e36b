"""The normalisation layers of a block: the paper's LayerNorm and RMSNorm.

The paper normalises every sublayer's residual sum with LayerNorm (section 3.1, citing Ba et
al. 2016): subtract the mean over ``d_model``, divide by the standard deviation, then scale
and shift. RMSNorm (Zhang & Sennrich 2019) drops the re-centring and the shift: it divides by
the root mean square alone and scales. It is cheaper, and Llama and most later models use it.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from attnlab.nn.spec import BlockSpec, check_width, not_a_tensor


class RMSNorm(nn.Module):
    """Root mean square layer normalisation (Zhang & Sennrich 2019, section 4).

    ``RMSNorm(x) = x / sqrt(mean(x^2) + eps) * g``, the mean over the last dimension and
    ``g`` a learned gain (``weight``, initialised to ones). There is no bias. Half-precision
    inputs are normalised in float32 and the result cast back before the gain is applied, as
    Hugging Face's Llama does (so its weights give its outputs).

    Args: ``d_model`` (the normalised width, a whole number >= 1), ``eps`` (inside the
    square root, a finite number >= 0).

    Input and output: ``(..., d_model)``; another last size raises ``ValueError``.
    """

    def __init__(self, d_model: int, eps: float = 1e-6):
        super().__init__()
        check_width("d_model", d_model)
        if not 0 <= eps < math.inf:  # also nan
            raise ValueError(f"eps must be a finite number >= 0; got {eps!r}")
        self.weight = nn.Parameter(torch.ones(d_model))
        self.eps = eps

    def forward(self, x: Tensor) -> Tensor:
        """``x / sqrt(mean(x^2) + eps) * weight`` over the last dimension: ``(..., d_model)`` ->
        ``(..., d_model)`` (Zhang & Sennrich 2019, section 4)."""
        if not isinstance(x, Tensor):
            raise not_a_tensor("x", x, f"(..., {self.weight.size(0)})")
        if x.size(-1) != self.weight.size(0):  # not torch's broadcast error about "tensor a"
            raise ValueError(
                f"RMSNorm({self.weight.size(0)}) normalises inputs (..., {self.weight.size(0)}); "
                f"got {tuple(x.shape)}"
            )
        x32 = x if x.dtype == torch.float32 else x.float()
        mean_square = x32.pow(2).mean(dim=-1, keepdim=True)  # (..., 1)
        normalized = x32 * torch.rsqrt(mean_square + self.eps)  # (..., d_model)
        if x.dtype != torch.float32:
            normalized = normalized.to(x.dtype)
        return self.weight * normalized

    def extra_repr(self) -> str:
        """The settings printed by ``repr(module)``."""
        return f"{self.weight.numel()}, eps={self.eps}"


def norm_layer(spec: BlockSpec) -> nn.Module:
    """The normalisation layer that ``spec`` describes: the paper's ``nn.LayerNorm``
    (section 3.1; without bias when ``spec.bias`` is False) or :class:`RMSNorm`."""
    if spec.norm == "rmsnorm":
        return RMSNorm(spec.d_model, eps=spec.layer_norm_eps)
    return nn.LayerNorm(spec.d_model, eps=spec.layer_norm_eps, bias=spec.bias)
