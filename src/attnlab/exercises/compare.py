"""Comparing a part's outputs with the reference's, and saying in one line how they differ.

Used by :mod:`attnlab.exercises.checker` and :mod:`attnlab.exercises.probes`, in the child
process that checks a student's file.
"""

from __future__ import annotations

import itertools
import traceback
from pathlib import Path

import torch
from torch import Tensor

from attnlab.exercises.core import CASE_ATTRIBUTE, one_line

ATOL = RTOL = 1e-4


def close(got: tuple[Tensor, ...], want: tuple[Tensor, ...], strict: bool) -> bool:
    """Same shapes and values (NaN equal to NaN).

    ``strict=False`` lets a NaN in ``want`` match a number too, as long as something matches:
    a broken variant's fully masked row is NaN with -inf where a student's -1e9 gives numbers.
    """
    if len(got) != len(want):
        return False
    compared = 0
    for a, b in zip(got, want, strict=True):
        if a.shape != b.shape:
            return False
        a, b = a.detach().double(), b.detach().double()
        keep = torch.ones_like(b, dtype=torch.bool) if strict else ~b.isnan() | a.isnan()
        if not torch.allclose(a[keep], b[keep], rtol=RTOL, atol=ATOL, equal_nan=True):
            return False
        compared += int(keep.sum())
    return compared > 0


def which(i: int, count: int, labels: tuple[str, ...]) -> str:
    """How a message names output ``i`` of ``count``: ``the output``, ``output 2 of 4``, or
    ``output 2 of 4 (the attention weights, with the mask)`` when the part labels it."""
    name = f"output {i + 1} of {count}" if count > 1 else "the output"
    return f"{name} ({labels[i]})" if i < len(labels) else name


def shape_problem(
    got: tuple[object, ...], want: tuple[Tensor, ...], labels: tuple[str, ...] = ()
) -> str | None:
    """One sentence on the first output that is not a tensor of the reference's shape and kind
    of dtype; ``None`` when all are."""
    if len(got) != len(want):
        return f"returned {len(got)} outputs, expected {len(want)}"
    for i, (a, b) in enumerate(zip(got, want, strict=True)):
        named, shape = which(i, len(want), labels), tuple(b.shape)
        if a is None:
            return f"{named} is None (a missing return?), expected a tensor of shape {shape}"
        if not isinstance(a, Tensor):
            return f"{named} is a {type(a).__name__}, expected a tensor of shape {shape}"
        if a.shape != b.shape:
            return f"{named} has shape {tuple(a.shape)}, expected {tuple(b.shape)}"
        if a.dtype != b.dtype and (b.is_floating_point() or b.dtype == torch.bool):
            return f"{named} has dtype {a.dtype}, expected {b.dtype}"
    return None


def order_problem(
    got: tuple[Tensor, ...], want: tuple[Tensor, ...], labels: tuple[str, ...] = ()
) -> str | None:
    """One sentence when the outputs are the reference's in another order (``return attention,
    values`` for ``return values, attention``); else ``None``. Parts have at most a handful
    of outputs, so every order is tried."""
    if len(got) != len(want) or not 1 < len(got) <= 5:
        return None
    for order in itertools.permutations(range(len(want))):
        reordered = tuple(want[j] for j in order)
        if list(order) != sorted(order) and close(got, reordered, strict=True):
            i = next(i for i, j in enumerate(order) if i != j)
            return (
                f"{which(i, len(want), labels)} holds what {which(order[i], len(want), labels)} "
                "should: the outputs are returned in the wrong order"
            )
    return None


def value_problem(
    got: tuple[Tensor, ...],
    want: tuple[Tensor, ...],
    labels: tuple[str, ...] = (),
    unknown: str = " and match no mistake the checker knows",
) -> str:
    """One sentence on the first output whose values differ from the reference's: NaN where
    it has numbers, or the largest difference and where it is; ``unknown`` ends the latter."""
    for i, (a, b) in enumerate(zip(got, want, strict=True)):
        a, b = a.detach().double(), b.detach().double()
        where = f" in {which(i, len(want), labels)}" if len(want) > 1 or labels else ""
        if a.isnan().any() and not b.isnan().any():
            return f"the values are wrong{where}: NaN where the reference has numbers"
        if not torch.allclose(a, b, rtol=RTOL, atol=ATOL, equal_nan=True):
            error = (a - b).abs().nan_to_num(nan=float("inf"))
            index = tuple(int(j) for j in torch.unravel_index(error.argmax(), error.shape))
            return (
                f"the values are wrong{where} (largest difference {error.max():.3g} "
                f"at index {index}){unknown}"
            )
    return "the values are wrong"


def describe(error: BaseException, student_file: Path) -> str:
    """``raised TypeError: message (encoder.py, line 42 in norm, called from line 90 in
    forward)``, with the calls in the student's file that led to the error (see
    :func:`where`); ``calls sys.exit(3) (...)`` for a ``sys.exit``. A part that labels the
    call that failed (:func:`attnlab.exercises.core.case`) has that label in front:
    ``with a batch of 1: raised ...``."""
    if isinstance(error, SystemExit):
        code = "" if error.code is None else repr(error.code)
        text = f"calls sys.exit({code})"
    else:
        text = f"raised {type(error).__name__}: {one_line(str(error))}".rstrip(": ")
    calls = where(error, student_file)
    if calls:
        text += f" ({student_file.name}, {calls})"
    label = getattr(error, CASE_ATTRIBUTE, None)
    return f"{label}: {text}" if label else text


def where(error: BaseException, student_file: Path, shown: int = 3) -> str | None:
    """The frames of ``error``'s traceback that are in ``student_file``, innermost first:
    ``line 42 in norm, called from line 90 in forward`` (``line 7`` alone at the file's top
    level). attnlab's and torch's frames between them are left out, a line that calls itself
    is written once with a count (``line 5 in walk (300 times)``), and past ``shown`` frames
    the rest are counted (``and 2 more calls``); ``None`` when no frame is in the file."""
    frames = [
        (f.lineno, f.name)
        for f in reversed(traceback.extract_tb(error.__traceback__))
        if Path(f.filename) == student_file
    ]
    runs = [(frame, len(list(group))) for frame, group in itertools.groupby(frames)]
    if not runs:
        return None
    texts = []
    for (line, name), times in runs[:shown]:
        text = f"line {line}" if name == "<module>" else f"line {line} in {name}"
        texts.append(text if times == 1 else f"{text} ({times} times)")
    rest = len(runs) - shown
    more = f", and {rest} more call{'s' if rest > 1 else ''}" if rest > 0 else ""
    return ", called from ".join(texts) + more
