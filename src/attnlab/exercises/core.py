"""The data model of the exercises: a practical is parts to check and mistakes to recognise.

The contract, for whoever writes a practical (``attnlab/exercises/practicals/<name>.py``):

* ``templates/<name>.py`` is the skeleton the student gets: classes and functions with fixed
  signatures and ``raise NotImplementedError("TODO: ...")`` bodies. ``__init__`` methods may be
  complete, so that the attribute names (and so the ``state_dict`` keys) are fixed.
* ``solutions/<name>.py`` is the reference solution, importable as
  ``attnlab.exercises.solutions.<name>``. Templates and solutions import only torch: they are
  handed out as single files.
* ``practicals/<name>.py`` defines ``PRACTICAL = Practical(...)``. Each :class:`Part` has a
  ``run(impl, seed)`` that builds its inputs deterministically from ``seed``, builds the
  object under test from ``impl`` — the student's module, the solution module or a broken
  variant, all used alike — with the *same* weights (use :func:`instantiate`), and returns
  the outputs to compare. ``run`` must not depend on global random state except through
  what it builds itself: the checker calls it twice under different global seeds, and a part
  whose outputs differ (dropout left on in eval mode) is caught that way. Hand every input
  tensor over through :func:`randn` or :func:`given`: the checker's probes
  (:mod:`attnlab.exercises.probes`) see whether the code changed one in place, and make them
  leaves that require grad for a backward pass; in train mode :func:`instantiate` builds
  train-mode objects, to see dropout act.
* Each :class:`Mistake` is a deliberately broken copy of the solution, usually made by
  :func:`substitute` (a text substitution in the solution's source, so the broken variant is
  exactly the student's likely mistake, propagated to every part that uses it). When a part
  fails, the student's outputs are compared with every mistake's outputs for that part (same
  inputs, same weights); a match prints that mistake's hint. When none matches, the pairs of
  mistakes made together are tried (:func:`made_together`), and a match prints both hints.
  Make the inputs such that each mistake changes the outputs (masks that mask something,
  ``B != T != d_model``).

Everything here runs inside the child process that imports the student's file (see
:mod:`attnlab.exercises.child`); the ``attnlab`` process never imports a submission.
"""

from __future__ import annotations

import importlib
import inspect
import math
import sys
import types
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import torch
from torch import Tensor, nn

Outputs = Tensor | tuple[Tensor, ...]


class WeightsMismatchError(Exception):
    """The student's object has other parameter names or shapes than the reference's."""


@dataclass(frozen=True)
class Part:
    """One piece of a practical, checked on its own.

    ``name``: what the student sees, e.g. ``"TransformerEncoderLayer.self_attention"``.
    ``run(impl, seed)``: the part's outputs for the implementation module ``impl``.
    ``uses``: the names of ``impl`` the part needs (``"Class"`` or ``"Class.method"``); a
    missing one, or one whose signature differs from the template's, makes the part an error
    (not checked) instead of a failure. Defaults to the class and method of ``name``.
    ``summary``: one line of what the part does, for listings.
    ``outputs``: what each of ``run``'s outputs is (``"the attention weights, with the
    mask"``), so that a message names it: ``output 2 of 4 (the attention weights, with the
    mask) has shape ...``. Empty: outputs are named by their number only.
    """

    name: str
    run: Callable[[ModuleType, int], Outputs]
    uses: tuple[str, ...] = ()
    summary: str = ""
    outputs: tuple[str, ...] = ()

    def needed_names(self) -> tuple[str, ...]:
        if self.uses:
            return self.uses
        head = self.name.split(".")[0]
        return (head, self.name) if head != self.name else (self.name,)


@dataclass(frozen=True)
class Mistake:
    """A known mistake: ``broken()`` returns the solution module with that mistake made.

    ``part`` names the part where the mistake is made (the hint may also be printed for parts
    that use it, when their outputs match the broken variant's); ``also``, other parts where
    the same mistake is made (pre-LN in each block of a layer). ``hint`` is one sentence
    that tells the student what to look at, without giving the answer away. ``train``: the
    mistake shows in train mode only (a dropout left out), so its variant is compared with
    the student's code in train mode, both run from the same random state, and only when the
    student's eval-mode outputs are right. ``downstream=False``: the mistake is looked for in
    ``part`` and ``also`` only, not in the parts that use them, for a mistake that those parts
    cannot tell from another one of the catalogue, whose hint there names both (rotate_half
    turned the wrong way gives, in attention, the scores of cos and sin swapped).
    """

    name: str
    part: str
    hint: str
    broken: Callable[[], ModuleType]
    also: tuple[str, ...] = ()
    train: bool = False
    downstream: bool = True

    def made_for(self, part: Part) -> bool:
        """Whether this mistake is looked for when ``part`` fails: it is made in ``part``,
        or (when :attr:`downstream`) in a part that ``part`` uses."""
        if part.name == self.part or part.name in self.also:
            return True
        names = {part.name, *part.needed_names()}
        return self.downstream and (self.part in names or bool(set(self.also) & names))


@dataclass(frozen=True)
class Practical:
    """A practical: the file ``template`` the student fills in, checked part by part.

    ``name`` is also the file name the student's work has (``encoder`` -> ``encoder.py``);
    ``template`` and ``solution`` are module names under ``attnlab.exercises.templates`` and
    ``attnlab.exercises.solutions``. ``complete``: the classes the template hands out written
    (the decoder's attention): when the checker runs a part in train mode to see the
    student's dropout act, their own dropout stays off.
    """

    name: str
    title: str
    template: str
    solution: str
    parts: list[Part]
    mistakes: list[Mistake] = field(default_factory=list)
    complete: tuple[str, ...] = ()

    def template_module(self) -> ModuleType:
        return importlib.import_module(f"attnlab.exercises.templates.{self.template}")

    def solution_module(self) -> ModuleType:
        return importlib.import_module(f"attnlab.exercises.solutions.{self.solution}")

    def part(self, name: str) -> Part:
        return next(p for p in self.parts if p.name == name)


@dataclass(frozen=True)
class Substitution:
    """A ``broken()`` for :class:`Mistake`: the source of solution module ``solution`` (a name
    under ``attnlab.exercises.solutions``) with each ``(old, new)`` of ``changes`` made in
    turn, executed as a module. Each ``old`` must occur exactly once in the source as it is
    by then (checked when the variant is built, so a stale substitution fails loudly in the
    tests instead of silently giving the solution)."""

    solution: str
    changes: tuple[tuple[str, str], ...]

    def __call__(self) -> ModuleType:
        module = importlib.import_module(f"attnlab.exercises.solutions.{self.solution}")
        source = _substituted(inspect.getsource(module), self.changes, self.solution)
        variant = types.ModuleType(f"{module.__name__}_broken")
        variant.__file__ = module.__file__
        sys.modules[variant.__name__] = variant  # dataclasses and inspect look modules up
        try:
            exec(compile(source, f"<{self.solution} with a mistake>", "exec"), variant.__dict__)
        finally:
            del sys.modules[variant.__name__]
        return variant

    def together_with(self, other: Substitution) -> Substitution | None:
        """Both substitutions in one copy of the solution; ``None`` when they are of different
        solutions or rewrite the same code (one's ``old`` is gone or doubled after the other)."""
        if other.solution != self.solution:
            return None
        both = Substitution(self.solution, self.changes + other.changes)
        module = importlib.import_module(f"attnlab.exercises.solutions.{self.solution}")
        try:
            _substituted(inspect.getsource(module), both.changes, self.solution)
        except AssertionError:
            return None
        return both


def _substituted(source: str, changes: tuple[tuple[str, str], ...], solution: str) -> str:
    """``source`` with each ``old`` -> ``new`` in turn; AssertionError if an ``old`` does not
    occur exactly once when its turn comes."""
    for old, new in changes:
        if source.count(old) != 1:
            raise AssertionError(f"{old!r} occurs {source.count(old)} times in {solution}")
        source = source.replace(old, new)
    return source


def substitute(solution: str, changes: dict[str, str]) -> Substitution:
    """The :class:`Substitution` of ``changes`` (``{old: new}``) in solution ``solution``."""
    return Substitution(solution, tuple(changes.items()))


def made_together(first: Mistake, second: Mistake) -> Mistake | None:
    """Both mistakes in one copy of the solution (students often make two at once), with both
    hints; ``None`` unless both are substitutions of the same solution that rewrite different
    code, and both are seen in the same mode (:attr:`Mistake.train`). Its ``part`` is the
    first mistake's, its ``also`` the other parts of both."""
    if not isinstance(first.broken, Substitution) or not isinstance(second.broken, Substitution):
        return None
    broken = first.broken.together_with(second.broken)
    if broken is None or first.train != second.train:
        return None
    hint = f"two mistakes: {first.hint}; and {second.hint}"
    also = tuple(dict.fromkeys((*first.also, second.part, *second.also)))
    name = f"{first.name}+{second.name}"
    downstream = first.downstream and second.downstream
    return Mistake(name, first.part, hint, broken, also, first.train, downstream)


def randomize_(module: nn.Module, generator: torch.Generator) -> None:
    """Give every parameter random values, so no mistake hides behind a 1 or a 0.

    Matrices (more than one row) get ``N(0, 1/fan_in)`` entries; vectors (biases, LayerNorm
    gains, tokens) get ``N(0, 1)`` ones: a LayerNorm gain of
    exactly 1 and bias of 0 would hide a missing gain or bias.
    """
    with torch.no_grad():
        for p in module.parameters():
            values = torch.randn(p.shape, generator=generator)
            if p.dim() >= 2 and p.shape[-2] > 1:
                values /= math.sqrt(p.shape[-1])
            p.copy_(values)


def instantiate(
    impl: ModuleType,
    reference: ModuleType,
    name: str,
    seed: int,
    *args: object,
    **kwargs: object,
) -> nn.Module:
    """``impl.<name>(*args, **kwargs)`` in eval mode (train mode in a :func:`recording` that
    asks for it), holding the reference's weights.

    The reference object ``reference.<name>(*args, **kwargs)`` is built and given random
    weights from ``seed`` (:func:`randomize_`); its ``state_dict`` is loaded into the object
    built from ``impl``. Raises :class:`WeightsMismatchError` (one sentence naming the parameter
    and shapes) when the two do not have the same parameters.
    """
    ref = getattr(reference, name)(*args, **kwargs)
    randomize_(ref, torch.Generator().manual_seed(seed))
    obj = getattr(impl, name)(*args, **kwargs)
    load_same_weights(obj, ref.state_dict(), name)
    if _recording is None:
        return obj.eval()
    _recording.modules.append((name, obj))
    if _recording.dtype is not None:
        obj.to(_recording.dtype)
    obj.train(_recording.train)
    for module in obj.modules():
        if type(module).__name__ in _recording.frozen:
            module.eval()
    return obj


def load_same_weights(obj: nn.Module, state: dict[str, Tensor], owner: str) -> None:
    """Load ``state`` into ``obj``, or raise :class:`WeightsMismatchError` saying what differs."""
    if not isinstance(obj, nn.Module):
        raise WeightsMismatchError(f"{owner} is not a torch.nn.Module (it must subclass nn.Module)")
    own = obj.state_dict()
    missing = [k for k in state if k not in own]
    if missing:
        raise WeightsMismatchError(
            f"{owner} has no parameter '{missing[0]}' (keep the attribute names of __init__)"
        )
    extra = [k for k in own if k not in state]
    if extra:
        raise WeightsMismatchError(
            f"{owner} has a parameter '{extra[0]}' the template does not have "
            "(keep __init__ as the template gives it)"
        )
    for key, value in state.items():
        if own[key].shape != value.shape:
            raise WeightsMismatchError(
                f"{owner}'s parameter '{key}' has shape {tuple(own[key].shape)}, "
                f"expected {tuple(value.shape)}"
            )
    obj.load_state_dict(state)


class ReturnError(Exception):
    """A call in a part's ``run`` returned something of the wrong kind (one tensor where a
    pair is due): its message, one sentence, is the verdict."""


def unpack(result: object, names: tuple[str, ...], call: str) -> tuple[Any, ...]:
    """``result`` as the ``len(names)`` things ``call`` returns; :class:`ReturnError` naming
    what it returned instead (``MultiheadAttention(x, return_attention=True) returned a
    Tensor of shape (2, 5, 12), expected a tuple (output, attention)``)."""
    if isinstance(result, tuple | list) and len(result) == len(names):
        return tuple(result)
    if isinstance(result, tuple | list):
        what = f"{len(result)} values"
    elif isinstance(result, Tensor):
        what = f"a Tensor of shape {tuple(result.shape)}"
    else:
        what = "None" if result is None else f"a {type(result).__name__}"
    raise ReturnError(f"{call} returned {what}, expected a tuple ({', '.join(names)})")


@dataclass
class Recording:
    """What a part's ``run`` made while :func:`recording`, for the checker's probes.

    ``inputs``: each tensor handed to the code under test (:func:`given`) with a copy made
    before it was handed over, to see whether the code changed it in place. ``modules``: the
    objects :func:`instantiate` built, by class name. ``train``: build them in train mode,
    except their submodules of a class named in ``frozen``. ``grad``: make floating-point
    inputs leaves that require grad, for a backward pass. ``dtype``: the floating-point dtype
    of the inputs and objects (``None``: as made, float32).
    """

    train: bool = False
    grad: bool = False
    frozen: tuple[str, ...] = ()
    dtype: torch.dtype | None = None
    inputs: list[tuple[Tensor, Tensor]] = field(default_factory=list)
    modules: list[tuple[str, nn.Module]] = field(default_factory=list)


_recording: Recording | None = None


@contextmanager
def recording(
    train: bool = False,
    grad: bool = False,
    frozen: tuple[str, ...] = (),
    dtype: torch.dtype | None = None,
) -> Iterator[Recording]:
    """Record the inputs and objects of the part runs in this block (see :class:`Recording`).
    Parts run outside of any recording build eval-mode objects and plain inputs."""
    global _recording
    previous, _recording = _recording, Recording(train, grad, frozen, dtype)
    try:
        yield _recording
    finally:
        _recording = previous


def given(tensor: Tensor) -> Tensor:
    """``tensor`` as an input handed to the code under test: recorded with a copy in a
    :func:`recording` (a leaf that requires grad when it asks for gradients)."""
    if _recording is None:
        return tensor
    if _recording.dtype is not None and tensor.is_floating_point():
        tensor = tensor.to(_recording.dtype)
    if _recording.grad and tensor.is_floating_point():
        tensor = tensor.detach().requires_grad_()
    _recording.inputs.append((tensor, tensor.detach().clone()))
    return tensor


def randn(seed: int, *shape: int) -> Tensor:
    """A standard normal input of ``shape`` from ``seed`` (global random state untouched),
    handed over with :func:`given`."""
    return given(torch.randn(shape, generator=torch.Generator().manual_seed(seed)))


CASE_ATTRIBUTE = "attnlab_case"


@contextmanager
def case(label: str) -> Iterator[None]:
    """Label the calls of a part's ``run`` made in this block (``"with a batch of 1"``): an
    exception raised in it is reported with the label in front, so that the student knows
    which of the part's calls failed."""
    try:
        yield
    except Exception as e:
        if not hasattr(e, CASE_ATTRIBUTE):
            setattr(e, CASE_ATTRIBUTE, label)
        raise


def one_line(text: str, limit: int = 200) -> str:
    """The first line of ``text``, cut to ``limit`` characters (an exception's message can be
    a whole screen)."""
    first = text.strip().splitlines()[0] if text.strip() else ""
    return first if len(first) <= limit else first[: limit - 3].rstrip() + "..."


def as_tuple(outputs: Outputs) -> tuple[Tensor, ...]:
    """A part's outputs as a tuple (a single tensor becomes a 1-tuple)."""
    return tuple(outputs) if isinstance(outputs, Sequence) else (outputs,)
