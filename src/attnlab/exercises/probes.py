"""What one eval-mode call's numbers cannot show: the checker's probes of a part.

A part's outputs can be right while the code is still wrong for training. These probes run
the part again, the reference's code and the student's alike, and compare what they do:

* :func:`run_recorded` (every run): a tensor the part handed over (:func:`core.given`) that
  the code changed in place (``x += ...``, ``q /= ...``) raises :class:`InputChangedError`;
* :func:`backward_problem`: the backward pass of a weighted sum of the outputs, with the
  inputs as leaves that require grad. It fails when an in-place operation overwrote a tensor
  that autograd needs; a gradient that does not reach a parameter or input the reference's
  reaches means the graph was cut (``.detach()``, ``.data``, ``torch.no_grad()``);
* :func:`dropout_problem`: two calls in train mode; the reference's differ (dropout acts),
  so a student's that agree have no dropout (a dropout left out where another one still
  acts is named by the checker's train-mode mistakes, :meth:`Diagnoser.train_mistake`);
* :func:`float64_problem`: inputs and weights in float64, where a ``.float()`` or a tensor
  made in float32 inside the code raises a dtype error or gives float32 outputs.

Like :mod:`attnlab.exercises.checker`, this runs only in the child process.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from attnlab.exercises.compare import close, describe, shape_problem, value_problem
from attnlab.exercises.core import Part, as_tuple, recording

if TYPE_CHECKING:
    from attnlab.exercises.checker import Diagnoser

SEED = 0
GRAD_RTOL, GRAD_ATOL = 1e-3, 1e-4


class InputChangedError(Exception):
    """The code under test changed, in place, a tensor the part handed to it."""


def run_recorded(
    part: Part,
    impl: ModuleType,
    train: bool = False,
    frozen: tuple[str, ...] = (),
    dtype: torch.dtype | None = None,
) -> tuple[Tensor, ...]:
    """``part.run(impl, SEED)``'s outputs (objects in train mode if ``train``, but for the
    classes named in ``frozen``; inputs and objects in ``dtype``); raises
    :class:`InputChangedError` when the code changed one of the part's inputs in place."""
    with recording(train=train, frozen=frozen, dtype=dtype) as record:
        outputs = as_tuple(part.run(impl, SEED))
    for tensor, copy in record.inputs:
        if not torch.equal(tensor.nan_to_num(), copy.nan_to_num()):
            raise InputChangedError(
                f"it overwrites a tensor it was given, of shape {tuple(tensor.shape)}, in place "
                "(+=, /=, masked_fill_, ...): its caller may still need it, and so may "
                "autograd; compute a new tensor instead (x = x + ...)"
            )
    return outputs


def gradients(part: Part, impl: ModuleType) -> dict[str, Tensor | None]:
    """The gradient of a fixed random weighting of the part's floating-point outputs with
    respect to each input the part handed over and each parameter of the objects it built,
    by name (``input 2 of shape (3, 7, 12)``, ``TransformerEncoderLayer.w_o.weight``); empty
    when no output depends on them. Raises what the forward or the backward pass raises."""
    with torch.random.fork_rng(), torch.enable_grad(), recording(grad=True) as record:
        torch.manual_seed(1)
        outputs = as_tuple(part.run(impl, SEED))
        loss = _weighted_sum(outputs)
        if loss is None:
            return {}
        loss.backward()
    named: dict[str, Tensor | None] = {}
    for i, (tensor, _) in enumerate(record.inputs):
        if tensor.requires_grad:
            named[f"input {i + 1} of shape {tuple(tensor.shape)}"] = tensor.grad
    for owner, module in record.modules:
        for name, parameter in module.named_parameters():
            named[f"{owner}.{name}"] = parameter.grad
    return named


def _weighted_sum(outputs: tuple[object, ...]) -> Tensor | None:
    """``sum_i (w_i * output_i).sum()`` over the outputs that carry a gradient, with fixed
    random ``w_i`` (a plain sum would hide a softmax's gradient: its rows sum to 1)."""
    terms = []
    for i, output in enumerate(outputs):
        if isinstance(output, Tensor) and output.requires_grad:
            weights = torch.randn(output.shape, generator=torch.Generator().manual_seed(100 + i))
            finite = torch.where(output.isfinite(), output, torch.zeros_like(output))
            terms.append((finite * weights.to(output.dtype)).sum())
    return torch.stack(terms).sum() if terms else None


def backward_problem(
    reference: dict[str, Tensor | None], part: Part, impl: ModuleType, student_file: Path
) -> str | None:
    """One sentence when the backward pass of the student's ``part`` fails, or does not
    bring ``reference``'s gradients (:func:`gradients` of the reference); else ``None``."""
    try:
        theirs = gradients(part, impl)
    except Exception as e:
        # "output 0 of SoftmaxBackward0" (torch 2.3 names the backward node), later "of Softmax"
        inplace = re.search(
            r"modified by an inplace operation.*?output \d+ of (\w+?)(?:Backward\d*)?\b", str(e)
        )
        if inplace:
            return (
                "the backward pass fails: an in-place operation (+=, mul_, masked_fill_, "
                "ReLU(inplace=True), ...) changed a tensor that autograd needs (the output of "
                f"{inplace.group(1)}); use the operation that returns a new tensor"
            )
        return f"the backward pass fails: {describe(e, student_file)}"
    flowing = {n: g for n, g in reference.items() if g is not None and bool(g.abs().sum() > 0)}
    for name in flowing:  # first the gradients that do not arrive: they say the most
        got = theirs.get(name)
        if got is None or not bool(got.abs().sum() > 0):
            return (
                f"the outputs are right, but no gradient reaches {name}: something cuts it "
                "from the graph (.detach(), .data, .item(), torch.no_grad(), NumPy)"
            )
    for name, want in flowing.items():
        got = theirs[name]
        assert got is not None  # the loop above returned otherwise
        got = got.double()
        atol = GRAD_ATOL * max(1.0, float(want.abs().max()))
        if not torch.allclose(got, want.double(), rtol=GRAD_RTOL, atol=atol):
            error = float((got - want.double()).abs().max())
            return (
                f"the outputs are right, but the gradient of {name} differs from the "
                f"reference's (largest difference {error:.3g})"
            )
    return None


def seeded_runs(
    part: Part, impl: ModuleType, train: bool, frozen: tuple[str, ...] = ()
) -> tuple[tuple[Tensor, ...], tuple[Tensor, ...]]:
    """The part's outputs from two global random states, seeds 1 and 2 (see
    :func:`run_recorded` for ``train`` and ``frozen``). Code whose dropout draws the
    reference's masks in the reference's order gives the reference's numbers in train mode."""
    with torch.random.fork_rng():
        torch.manual_seed(1)
        first = run_recorded(part, impl, train, frozen)
        torch.manual_seed(2)
        second = run_recorded(part, impl, train, frozen)
    return first, second


def same_runs(got: tuple[tuple[Tensor, ...], ...], want: tuple[tuple[Tensor, ...], ...]) -> bool:
    """Whether each run of :func:`seeded_runs` in ``got`` gives the tensors of its twin in
    ``want``: the same shapes, kinds of dtype and values."""
    return all(
        shape_problem(a, b) is None and close(a, b, strict=True)
        for a, b in zip(got, want, strict=True)
    )


def same_twice(
    part: Part, impl: ModuleType, train: bool, frozen: tuple[str, ...] = ()
) -> tuple[tuple[Tensor, ...], bool]:
    """The part's outputs under two global seeds, and whether the two calls agreed (see
    :func:`run_recorded` for ``train`` and ``frozen``)."""
    first, second = seeded_runs(part, impl, train, frozen)
    same = len(first) == len(second) and all(
        isinstance(a, Tensor)
        and isinstance(b, Tensor)
        and a.shape == b.shape
        and torch.equal(a.isnan(), b.isnan())
        and torch.equal(a.nan_to_num(), b.nan_to_num())
        for a, b in zip(first, second, strict=True)
    )
    return first, same


def dropout_problem(
    reference_varies: bool, part: Part, impl: ModuleType, frozen: tuple[str, ...]
) -> str | None:
    """One sentence when the reference's ``part`` varies between two calls in train mode
    (``reference_varies``: dropout acts) and the student's does not; else ``None``. The
    classes named in ``frozen`` (handed out complete) stay in eval mode, so that only the
    student's own dropout acts."""
    if not reference_varies:
        return None
    _, same = same_twice(part, impl, train=True, frozen=frozen)
    if same:
        return (
            "dropout is missing: in train mode two calls give the same outputs, where the "
            "reference's differ (dropout acts in train mode only, e.g. self.dropout(...))"
        )
    return None


def float64_problem(
    reference: tuple[Tensor, ...], part: Part, impl: ModuleType, student_file: Path
) -> str | None:
    """One sentence when the student's ``part`` with float64 inputs and weights raises, or
    does not give ``reference`` (the reference's outputs in float64); else ``None``."""
    try:
        got = run_recorded(part, impl, dtype=torch.float64)
    except Exception as e:
        return f"with float64 inputs and weights: {describe(e, student_file)}"
    problem = shape_problem(got, reference, part.outputs)
    if problem is None and not close(got, reference, strict=True):
        problem = value_problem(got, reference, part.outputs, unknown="")
    return f"with float64 inputs and weights, {problem}" if problem else None


def probe(
    diagnoser: Diagnoser,
    part: Part,
    impl: ModuleType,
    student_file: Path,
    limit: Callable[[], AbstractContextManager],
) -> str | None:
    """The first problem the probes find in the student's ``part`` (whose outputs are right),
    or ``None``. The reference's results are kept in ``diagnoser.probed``; only the student's
    code runs inside ``limit()``."""
    frozen = diagnoser.practical.complete
    if part.name not in diagnoser.probed:
        reference = diagnoser.reference
        varies = not same_twice(part, reference, True, frozen)[1]
        in_float64 = run_recorded(part, reference, dtype=torch.float64)
        diagnoser.probed[part.name] = (gradients(part, reference), varies, in_float64)
    want, varies, in_float64 = diagnoser.probed[part.name]
    with limit():
        problem = backward_problem(want, part, impl, student_file)
        if problem:
            return problem
        try:
            problem = dropout_problem(varies, part, impl, frozen)
        except Exception as e:
            return f"in train mode: {describe(e, student_file)}"
        return problem or float64_problem(in_float64, part, impl, student_file)
