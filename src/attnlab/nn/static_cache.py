"""A key/value cache of fixed shape, preallocated for the longest sequence.

:class:`~attnlab.nn.KVCache` grows with the sequence, so the keys and values that attention
reads at step ``t`` are ``(B, H_kv, t, d_head)``: a new shape at every step. That is the
cheapest on a CPU in eager mode, but a compiler (``torch.compile``) or a CUDA graph captures
one shape at a time. :class:`StaticKVCache` holds buffers of ``max_len`` positions from the
start, writes each step's keys and values in place at the step's positions, and hands
attention the whole buffers together with a mask of the positions each query may see
(written, and not in its future). Every decoding step then has the same shapes and the same
operations; only the values of the tensors change, including the position, which is a tensor
as well.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

if TYPE_CHECKING:
    from attnlab.nn.attention import MultiHeadAttention


class StaticKVCache(nn.Module):
    """The keys and values of one self-attention layer, in buffers of ``max_len`` positions.

    Args:
        batch_size: ``B``, the sequences decoded together.
        num_kv_heads: ``H_kv``, the key/value heads (fewer than the query heads with
            grouped-query attention).
        max_len: the positions the buffers hold (e.g. the model's context window).
        d_head: the width of one head.
        dtype, device: of the buffers (those of the model).

    Buffers (not saved in a state dict): ``k`` and ``v`` ``(B, H_kv, max_len, d_head)``, and
    ``position``, the number of positions written so far (a 0-d integer tensor).

    Use: pass it as the ``cache`` of self-attention in place of a :class:`KVCache`.
    :meth:`update` writes the new keys and values and returns the whole buffers; attention
    then applies :meth:`visible` (bool, ``True`` = may attend), which hides the positions not
    yet written and, for several new queries at once, each query's future.
    """

    # The buffers, declared for the type checker (register_buffer sets them in __init__).
    k: Tensor
    v: Tensor
    position: Tensor

    def __init__(
        self,
        batch_size: int,
        num_kv_heads: int,
        max_len: int,
        d_head: int,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str | None = None,
    ):
        super().__init__()
        sizes = dict(batch_size=batch_size, num_kv_heads=num_kv_heads, max_len=max_len)
        for name, value in {**sizes, "d_head": d_head}.items():
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer; got {value!r}")
        shape = (batch_size, num_kv_heads, max_len, d_head)
        self.register_buffer("k", torch.zeros(shape, dtype=dtype, device=device), False)
        self.register_buffer("v", torch.zeros(shape, dtype=dtype, device=device), False)
        self.register_buffer("position", torch.zeros((), dtype=torch.long, device=device), False)
        self.max_len = max_len

    @classmethod
    def for_attention(
        cls, attention: MultiHeadAttention, batch_size: int, max_len: int
    ) -> StaticKVCache:
        """An empty cache sized for ``attention`` (a :class:`~attnlab.nn.MultiHeadAttention`:
        its key/value heads, head width, and the dtype and device of its weights)."""
        weight = attention.qkv_proj.weight
        return cls(
            batch_size,
            attention.num_kv_heads,
            max_len,
            attention.d_head,
            dtype=weight.dtype,
            device=weight.device,
        )

    def __len__(self) -> int:
        """Positions written so far (reads the position tensor: a device sync on a GPU)."""
        return int(self.position)

    def positions(self, T: int) -> Tensor:
        """The positions ``(T,)`` of ``T`` new tokens: ``position .. position + T - 1``."""
        return self.position + torch.arange(T, device=self.position.device)

    def update(self, k_new: Tensor, v_new: Tensor) -> tuple[Tensor, Tensor]:
        """Write ``(B, H_kv, T_new, d_head)`` keys and values at the next ``T_new`` positions;
        return the whole buffers, each ``(B, H_kv, max_len, d_head)``."""
        if k_new.shape[:2] != self.k.shape[:2] or k_new.size(-1) != self.k.size(-1):
            raise ValueError(
                f"new keys must have shape (B, H_kv, T_new, d_head) = ({self.k.size(0)}, "
                f"{self.k.size(1)}, T_new, {self.k.size(3)}); got {tuple(k_new.shape)}"
            )
        T_new = k_new.size(2)
        if not torch.compiler.is_compiling() and len(self) + T_new > self.max_len:
            raise ValueError(
                f"the cache holds {self.max_len} positions; {len(self)} are written and "
                f"{T_new} more do not fit"
            )
        index = self.positions(T_new)  # (T_new,)
        self.k.index_copy_(2, index, k_new.to(self.k.dtype))
        self.v.index_copy_(2, index, v_new.to(self.v.dtype))
        self.position.add_(T_new)
        return self.k, self.v

    def visible(self, T_q: int) -> Tensor:
        """Which keys the last ``T_q`` written positions may attend to: ``(T_q, max_len)``,
        bool, ``True`` for key ``j`` of query ``i`` when ``j <= position - T_q + i``."""
        query = self.position - T_q + torch.arange(T_q, device=self.position.device)  # (T_q,)
        key = torch.arange(self.max_len, device=self.position.device)  # (max_len,)
        return key[None, :] <= query[:, None]  # (T_q, max_len)

    def reorder(self, index: Tensor) -> None:
        """Keep batch rows ``index`` (beam search), in place: the buffers keep their storage."""
        self.k.copy_(self.k.index_select(0, index))
        self.v.copy_(self.v.index_select(0, index))

    def reset(self) -> None:
        """Forget every position (the buffers are kept for the next sequence)."""
        self.position.zero_()

    def extra_repr(self) -> str:
        """The settings printed by ``repr(module)``."""
        B, H_kv, max_len, d_head = self.k.shape
        return f"batch_size={B}, num_kv_heads={H_kv}, max_len={max_len}, d_head={d_head}"
