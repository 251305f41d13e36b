"""Attention masks.

**Convention (the only one used in attnlab):** a mask is a boolean tensor in which ``True``
means "this query may attend to this key" — the convention of
:func:`torch.nn.functional.scaled_dot_product_attention`. ``torch.nn.MultiheadAttention``'s
``key_padding_mask`` uses the opposite convention; :mod:`attnlab.interop` converts at that
boundary and nowhere else.

A mask must broadcast to the attention scores ``(B, H, T_q, T_k)``. To rule out silent
mis-broadcasts, attnlab accepts exactly two layouts:

* 2-D ``(T_q, T_k)`` — the same for every sequence and head (e.g. :func:`causal_mask`);
* 4-D ``(B | 1, H | 1, T_q | 1, T_k)`` — per sequence (e.g. :func:`padding_mask`).

Paper: section 3.2.3 ("masking out (setting to -inf) all values in the input of the softmax
which correspond to illegal connections").
"""

from __future__ import annotations

from typing import overload

import torch
from torch import Tensor

from attnlab.nn.spec import check_length, check_whole_number


def padding_mask(
    lengths_or_tokens: Tensor, pad_id: int | None = None, max_len: int | None = None
) -> Tensor:
    """Key-padding mask: ``True`` at real tokens, ``False`` at padding.

    Two ways to call it:

    * ``padding_mask(lengths)`` with integer ``lengths`` of shape ``(B,)``: sequence ``b``
      has ``lengths[b]`` real tokens followed by padding; ``max_len`` defaults to
      ``lengths.max()``. Each length must be in ``[0, max_len]``: checked on the CPU (and
      whenever ``max_len`` is not given, since ``lengths.max()`` is read anyway); for
      lengths on a GPU with a ``max_len`` it is the caller's to keep, as reading them would
      wait for the device.
    * ``padding_mask(tokens, pad_id)`` with integer ``tokens`` of shape ``(B, T)``: every
      position whose id is ``pad_id`` (a whole number) is padding.

    Returns:
        Bool tensor ``(B, 1, 1, T)``, broadcastable to ``(B, H, T_q, T)``.
    """
    if not isinstance(lengths_or_tokens, Tensor):
        raise TypeError(
            "padding_mask expects a tensor of lengths (B,) or of token ids (B, T); got "
            f"{type(lengths_or_tokens).__name__} (make one with torch.tensor)"
        )
    if pad_id is not None:
        keep = _tokens_padding(lengths_or_tokens, pad_id)  # (B, T)
    else:
        keep = _lengths_padding(lengths_or_tokens, max_len)  # (B, T)
    return keep[:, None, None, :]  # (B, 1, 1, T)


def _tokens_padding(tokens: Tensor, pad_id: int) -> Tensor:
    """``tokens != pad_id`` ``(B, T)``, after checking the shape, dtype and ``pad_id``."""
    if tokens.dim() != 2 or tokens.is_floating_point() or tokens.dtype == torch.bool:
        raise ValueError(
            "padding_mask(tokens, pad_id) expects integer tokens of shape (B, T); "
            f"got {tuple(tokens.shape)} {tokens.dtype}"
        )
    if isinstance(pad_id, bool) or not isinstance(pad_id, int):
        raise ValueError(f"pad_id must be a whole number (a token id); got {pad_id!r}")
    return tokens != pad_id  # (B, T)


def _lengths_padding(lengths: Tensor, max_len: int | None) -> Tensor:
    """``(B, T)``: ``True`` at the first ``lengths[b]`` positions of row ``b``."""
    if lengths.dim() != 1 or lengths.is_floating_point() or lengths.dtype == torch.bool:
        raise ValueError(
            f"padding_mask(lengths) expects integer lengths of shape (B,); "
            f"got {tuple(lengths.shape)} {lengths.dtype}"
        )
    if max_len is None:
        if lengths.numel() == 0:
            raise ValueError("padding_mask(lengths) of an empty batch needs max_len")
        low, high = torch.stack(torch.aminmax(lengths)).tolist()  # one read of the device
        T = high
        check_length("the longest of lengths", max(T, 0))  # a negative one is named below
    else:
        check_length("max_len", max_len)
        T = max_len
        # Reading lengths on a GPU would wait for it: only lengths on the CPU are checked.
        on_cpu = lengths.numel() > 0 and lengths.device.type == "cpu"
        low, high = torch.stack(torch.aminmax(lengths)).tolist() if on_cpu else (0, 0)
    if low < 0 or high > T:
        raise ValueError(
            f"padding_mask(lengths) needs lengths in [0, max_len={T}]; got lengths from "
            f"{low} to {high}"
        )
    positions = torch.arange(T, device=lengths.device)  # (T,)
    return positions[None, :] < lengths[:, None]  # (B, T)


def causal_mask(T_q: int, T_k: int | None = None, device: torch.device | None = None) -> Tensor:
    """Causal ("subsequent") mask of section 3.2.3: query ``i`` may attend to keys ``j <= i``.

    With ``T_k > T_q`` the queries are taken to be the *last* ``T_q`` positions of the key
    sequence (decoding with a key/value cache): query ``i`` may attend to keys
    ``j <= i + (T_k - T_q)``.

    Returns:
        Bool tensor ``(T_q, T_k)``, ``True`` on and below the (shifted) diagonal.

    Raises ``ValueError`` for a length that is not a whole number in
    ``[0, MAX_POSITIONS]`` (checked before the mask is allocated), or ``T_k < T_q``.
    """
    T_k = T_q if T_k is None else T_k
    check_length("T_q", T_q)
    check_length("T_k", T_k)
    if T_k < T_q:
        raise ValueError(f"causal_mask needs T_k >= T_q; got T_q={T_q}, T_k={T_k}")
    ones = torch.ones(T_q, T_k, dtype=torch.bool, device=device)
    return torch.tril(ones, diagonal=T_k - T_q)  # (T_q, T_k)


def local_mask(T: int, window: int, device: torch.device | None = None) -> Tensor:
    """Sliding-window ("local") mask: position ``i`` may attend to positions ``j`` with
    ``|i - j| <= window``.

    Not in the original paper (section 4 mentions restricting self-attention to a
    neighbourhood of size r as future work); used by Longformer (Beltagy et al., 2020) and
    Mistral. Stacking L such layers widens the receptive field to ``L * window``, so early
    layers are pushed to build local features, such as character n-grams.

    Returns:
        Bool tensor ``(T, T)``, ``True`` on the band ``|i - j| <= window``.
    """
    check_length("T", T)
    check_whole_number("window", window)  # nan or a float would compare silently
    i = torch.arange(T, device=device)
    return (i[:, None] - i[None, :]).abs() <= window  # (T, T)


# For the type checker: a first mask that is a tensor gives a tensor, never None.
@overload
def combine_masks(mask: Tensor, /, *masks: Tensor | None) -> Tensor: ...
@overload
def combine_masks(*masks: Tensor | None) -> Tensor | None: ...
def combine_masks(*masks: Tensor | None) -> Tensor | None:
    """Combine masks with logical AND: a key is allowed only if every mask allows it.

    ``None`` entries (no mask) are skipped; returns ``None`` if all are ``None``. A 2-D
    ``(T_q, T_k)`` mask combined with a 4-D ``(B, 1, 1, T_k)`` one gives ``(B, 1, T_q, T_k)``.
    """
    result: Tensor | None = None
    for mask in masks:
        if mask is None:
            continue
        require_bool_mask(mask, "each mask")
        if result is None:
            result = mask
        else:
            if result.dim() == 2 and mask.dim() == 4:
                result = result[None, None]  # (1, 1, T_q, T_k)
            elif mask.dim() == 2 and result.dim() == 4:
                mask = mask[None, None]  # (1, 1, T_q, T_k)
            result = result & mask
    return result


def require_bool_mask(mask: Tensor, name: str = "attention mask") -> None:
    """Raise ``ValueError`` unless ``mask`` is a bool tensor (``True`` = may attend).

    A float 0/1 mask would not fail on its own: ``F.scaled_dot_product_attention`` *adds* a
    float mask to the scores, so that it masks nothing; ``~`` of a float mask fails deep in
    torch. ``name`` is the argument named in the message. Something other than a tensor
    (``mask=True`` meant as ``is_causal=True``, a list) raises ``TypeError``.
    """
    if not isinstance(mask, Tensor):
        raise TypeError(
            f"{name} must be a bool tensor (True = may attend); got {type(mask).__name__} "
            "(for a causal mask pass is_causal=True, or build one with attnlab.nn.causal_mask)"
        )
    if mask.dtype != torch.bool:
        raise ValueError(
            f"{name} must be a bool tensor (True = may attend); got dtype {mask.dtype}. "
            "Build one with attnlab.nn.padding_mask / causal_mask."
        )


def check_mask(mask: Tensor, B: int, H: int, T_q: int, T_k: int) -> None:
    """Raise ``ValueError`` unless ``mask`` is a bool mask in one of the accepted layouts.

    Accepted: ``(T_q, T_k)`` or ``(B|1, H|1, T_q|1, T_k)`` (see the module docstring). The
    message names the expected and the received shapes.
    """
    require_bool_mask(mask)
    shape = tuple(mask.shape)
    if mask.dim() == 2:
        ok = shape == (T_q, T_k)
    elif mask.dim() == 4:
        fits = [m == 1 or m == full for m, full in zip(shape[:3], (B, H, T_q), strict=True)]
        ok = all(fits) and shape[3] == T_k
    else:
        ok = False
    if not ok:  # the message is formatted here only: formatting sizes fixes them in a graph
        expected = f"({T_q}, {T_k}) or (B|1, H|1, T_q|1, T_k) = ({B}|1, {H}|1, {T_q}|1, {T_k})"
        raise ValueError(
            f"attention mask of shape {shape} does not fit: expected (T_q, T_k) = {expected}"
        )
