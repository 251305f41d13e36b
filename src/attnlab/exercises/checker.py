"""Check a student's module part by part, and diagnose a failure from the catalogue of mistakes.

This module runs in the child process that has imported the student's file (see
:mod:`attnlab.exercises.child`). A part's verdict is a :class:`Verdict`:
``pass``, ``fail`` (wrong outputs or an exception), ``todo`` (still raises
NotImplementedError), ``error`` (not checked: a missing name, a wrong signature, other weights)
or ``timeout``.
"""

from __future__ import annotations

import difflib
import inspect
import itertools
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from torch import Tensor

from attnlab.exercises.compare import (
    close,
    describe,
    order_problem,
    shape_problem,
    value_problem,
)
from attnlab.exercises.core import (
    Mistake,
    Part,
    Practical,
    ReturnError,
    WeightsMismatchError,
    made_together,
)
from attnlab.exercises.probes import (
    InputChangedError,
    probe,
    same_runs,
    same_twice,
    seeded_runs,
)


class PartTimeout(BaseException):
    """Raised by the alarm when a part runs past its time limit (not an Exception on purpose:
    a student's ``except Exception`` must not swallow it)."""


@dataclass
class Verdict:
    part: str
    status: str
    message: str = ""
    mistake: str | None = None

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def signature_problem(template: ModuleType, impl: ModuleType, name: str) -> str | None:
    """One sentence when ``impl`` lacks ``name`` (``Class`` or ``Class.method``) or its
    signature differs from the template's; ``None`` when it is fine."""
    expected, actual = _lookup(template, name), _lookup(impl, name)
    owner = name.split(".")[0]
    if _lookup(impl, owner) is None:
        return f"{owner} is missing{_similar(owner, impl, template)}"
    if actual is None:
        similar = _similar(name.split(".")[-1], _lookup(impl, owner), _lookup(template, owner))
        return f"{name} is missing{similar}"
    if inspect.isclass(expected):
        if not inspect.isclass(actual):
            return f"{name} must be a class"
        expected, actual = expected.__init__, actual.__init__
    if not callable(actual):
        return f"{name} must be a function"
    assert callable(expected)  # the template's own function or class
    want, got = _parameters(expected), _parameters(actual)
    if want != got:
        return f"{name} must take ({', '.join(want)}), not ({', '.join(got)})"
    return None


def _similar(name: str, owner: object, template: object) -> str:
    """`` (the file has EncoderLayer: keep the template's names)`` when ``owner`` (the
    student's module or class) defines a name close to the missing ``name`` that its twin in
    the template does not define (a class renamed, not another class of the template); else
    ``""``."""
    names = [n for n in dir(owner) if not n.startswith("__") and not hasattr(template, n)]
    close = [n for n in names if n.lower() == name.lower()]
    close = close or difflib.get_close_matches(name, names, n=1, cutoff=0.6)
    if not close:
        close = [n for n in names if len(n) > 3 and (n in name or name in n)][:1]
    where = "the file" if isinstance(owner, ModuleType) else "the class"
    return f" ({where} has {close[0]}: keep the template's names)" if close else ""


def _lookup(module: ModuleType, name: str) -> object | None:
    obj: object = module
    for piece in name.split("."):
        obj = getattr(obj, piece, None)
        if obj is None:
            return None
    return obj


def _parameters(function: Callable) -> list[str]:
    """Parameter names as written (``*args``, ``x=...`` for one with a default)."""
    try:
        signature = inspect.signature(function)
    except (TypeError, ValueError):
        return ["?"]
    shown = []
    for p in signature.parameters.values():
        star = "*" if p.kind is p.VAR_POSITIONAL else "**" if p.kind is p.VAR_KEYWORD else ""
        default = "=..." if p.default is not p.empty else ""
        shown.append(f"{star}{p.name}{default}")
    return shown


class VariantTimeoutError(Exception):
    """A broken variant ran past its time limit (two mistakes together can loop forever, e.g.
    decoding that ignores max_len and never feeds back the eos): no match."""


class Diagnoser:
    """Runs the parts for the reference and the catalogue's broken variants, on demand.

    ``variant_limit()`` bounds each run of a variant (the child's alarm, raising
    :class:`PartTimeout`): a variant that runs past it matches nothing.
    """

    def __init__(
        self,
        practical: Practical,
        variant_limit: Callable[[], AbstractContextManager] = nullcontext,
    ):
        self.practical = practical
        self.variant_limit = variant_limit
        self.reference = practical.solution_module()
        self._outputs: dict[tuple[str, str], tuple[tuple[Tensor, ...], bool]] = {}
        self._broken: dict[str, ModuleType] = {}
        self._failures: dict[tuple[str, str], Exception] = {}
        self._train_runs: dict[tuple[str, str], tuple[tuple[Tensor, ...], ...]] = {}
        self.probed: dict[str, Any] = {}  # the reference's results of the probes, by part

    def outputs(self, part: Part, impl: ModuleType, key: str) -> tuple[tuple[Tensor, ...], bool]:
        """``(outputs, deterministic)`` of ``part`` for ``impl``, cached under ``key``."""
        if (key, part.name) not in self._outputs:
            self._outputs[key, part.name] = run_twice(part, impl)
        return self._outputs[key, part.name]

    def expected(self, part: Part) -> tuple[Tensor, ...]:
        return self.outputs(part, self.reference, "reference")[0]

    def relevant(self, part: Part, train: bool = False) -> list[Mistake]:
        """The mistakes made in ``part`` or in a part it uses: those seen in eval mode, or
        with ``train`` those seen in train mode only (:attr:`Mistake.train`)."""
        return [m for m in self.practical.mistakes if m.train == train and m.made_for(part)]

    def matches(self, part: Part, got: tuple[Tensor, ...], deterministic: bool) -> list[Mistake]:
        """The catalogue's mistakes whose broken variant gives what the student gives; when
        none does, the pairs of mistakes made together that do (see :func:`made_together`).
        Only mistakes made in ``part`` or in a part it uses are tried."""
        relevant = self.relevant(part)
        found = self._matching(part, relevant, got, deterministic)
        if found:
            return found
        pairs = [made_together(a, b) for a, b in itertools.combinations(relevant, 2)]
        return self._matching(part, [p for p in pairs if p is not None], got, deterministic)

    def matches_error(self, part: Part, error: Exception) -> list[Mistake]:
        """The mistakes whose broken variant raises what the student's code raised on
        ``part``: the same exception type with the same message (a mistake that breaks one
        of the part's calls, e.g. keys from the decoder with a memory mask of another
        length)."""
        found = []
        for mistake in self.relevant(part):
            try:
                self._variant(part, mistake)
            except Exception as theirs:
                if _same_error(theirs, error):
                    found.append(mistake)
        return found

    def _variant(self, part: Part, mistake: Mistake) -> tuple[tuple[Tensor, ...], bool]:
        """The outputs of ``part`` with ``mistake`` made; raises what that variant raises
        (remembered, so that it runs once)."""
        if (mistake.name, part.name) in self._failures:
            raise self._failures[mistake.name, part.name]
        try:
            try:
                with self.variant_limit():
                    return self.outputs(part, self._module(mistake), mistake.name)
            except PartTimeout:
                raise VariantTimeoutError(mistake.name) from None
        except Exception as e:
            self._failures[mistake.name, part.name] = e
            raise

    def _module(self, mistake: Mistake) -> ModuleType:
        """The solution with ``mistake`` made (built once)."""
        if mistake.name not in self._broken:
            self._broken[mistake.name] = mistake.broken()
        return self._broken[mistake.name]

    def train_mistake(
        self, part: Part, impl: ModuleType, limit: Callable[[], AbstractContextManager]
    ) -> Mistake | None:
        """The train-mode mistake (a dropout left out), or pair of them made together, whose
        variant gives what the student's ``part`` gives in train mode from the same two
        random states, where the reference's gives other numbers; ``None`` when there is
        none, or when the student's code draws its dropout masks otherwise (then nothing can
        be said from the numbers). Only the student's code runs inside ``limit()``."""
        mistakes = self.relevant(part, train=True)
        if not mistakes:
            return None
        try:
            with limit():
                got = seeded_runs(part, impl, True, self.practical.complete)
        except Exception:  # the train-mode probe of probe() names it
            return None
        if same_runs(got, self._seeded(part, self.reference, "reference")):
            return None
        pairs = [made_together(a, b) for a, b in itertools.combinations(mistakes, 2)]
        return self._train_matching(part, mistakes, got) or self._train_matching(
            part, [p for p in pairs if p is not None], got
        )

    def _train_matching(
        self, part: Part, mistakes: list[Mistake], got: tuple[tuple[Tensor, ...], ...]
    ) -> Mistake | None:
        """The first of ``mistakes`` whose variant's train-mode runs are ``got`` and not the
        reference's."""
        reference = self._seeded(part, self.reference, "reference")
        for mistake in mistakes:
            try:
                with self.variant_limit():
                    theirs = self._seeded(part, self._module(mistake), mistake.name)
            except (Exception, PartTimeout):  # a variant that cannot run matches nothing
                continue
            if not same_runs(theirs, reference) and same_runs(got, theirs):
                return mistake
        return None

    def _seeded(self, part: Part, impl: ModuleType, key: str) -> tuple[tuple[Tensor, ...], ...]:
        """:func:`seeded_runs` of ``part`` in train mode for ``impl``, cached under ``key``."""
        if (key, part.name) not in self._train_runs:
            runs = seeded_runs(part, impl, True, self.practical.complete)
            self._train_runs[key, part.name] = runs
        return self._train_runs[key, part.name]

    def _matching(
        self, part: Part, mistakes: list[Mistake], got: tuple[Tensor, ...], deterministic: bool
    ) -> list[Mistake]:
        found = []
        for mistake in mistakes:
            try:
                theirs, theirs_deterministic = self._variant(part, mistake)
            except Exception:  # a mistake this part cannot even run with: no match
                continue
            if not theirs_deterministic:
                if not deterministic:
                    found.append(mistake)
            elif (
                deterministic
                and not close(theirs, self.expected(part), strict=True)
                and close(got, theirs, strict=False)
            ):
                found.append(mistake)
        return found


def _same_error(first: BaseException, second: BaseException) -> bool:
    """Whether two exceptions are the same failure: one type, one message."""
    return type(first) is type(second) and str(first) == str(second)


def run_twice(part: Part, impl: ModuleType) -> tuple[tuple[Tensor, ...], bool]:
    """The part's outputs under two global seeds in eval mode, and whether the two calls
    agreed; :class:`InputChangedError` when the code changed an input in place."""
    return same_twice(part, impl, train=False)


def check_part(
    diagnoser: Diagnoser,
    part: Part,
    impl: ModuleType,
    student_file: Path,
    limit: Callable[[], AbstractContextManager] = nullcontext,
) -> Verdict:
    """The verdict on one part of the student's module ``impl``.

    Only the student's code runs inside ``limit()`` (the child's alarm): the reference and
    the catalogue's variants, run for the diagnosis, do not count against the student's time.
    """
    try:
        with limit():
            got, deterministic = diagnoser.outputs(part, impl, "student")
    except NotImplementedError:
        return Verdict(part.name, "todo", "not written yet (TODO)")
    except WeightsMismatchError as e:
        return Verdict(part.name, "error", str(e))
    except (ReturnError, InputChangedError) as e:
        return Verdict(part.name, "fail", str(e))
    except PartTimeout:
        raise
    except Exception as e:
        mistakes = diagnoser.matches_error(part, e)
        if mistakes:
            hint = "; or ".join(m.hint for m in mistakes)
            return Verdict(part.name, "fail", hint, mistakes[0].name)
        return Verdict(part.name, "fail", describe(e, student_file))
    except BaseException as e:  # sys.exit() or KeyboardInterrupt too: the other parts go on
        return Verdict(part.name, "fail", describe(e, student_file))
    want = diagnoser.expected(part)
    problem = shape_problem(got, want, part.outputs)
    tensors = len(got) == len(want) and all(isinstance(a, Tensor) for a in got)
    if problem and not tensors:
        return Verdict(part.name, "fail", problem)
    if not problem and deterministic and close(got, want, strict=True):
        return _probed(diagnoser, part, impl, student_file, limit)
    mistakes = diagnoser.matches(part, got, deterministic)  # some change shapes (greedy decoding)
    if mistakes:
        return Verdict(part.name, "fail", "; or ".join(m.hint for m in mistakes), mistakes[0].name)
    problem = (order_problem(got, want, part.outputs) if tensors else None) or problem
    if problem:
        return Verdict(part.name, "fail", problem)
    if not deterministic:
        return Verdict(
            part.name,
            "fail",
            "two calls in eval mode give different outputs (dropout that ignores eval mode, "
            "such as F.dropout without training=self.training, does this)",
        )
    return Verdict(part.name, "fail", value_problem(got, want, part.outputs))


def _probed(
    diagnoser: Diagnoser,
    part: Part,
    impl: ModuleType,
    student_file: Path,
    limit: Callable[[], AbstractContextManager],
) -> Verdict:
    """The verdict on a part whose outputs are right: ``pass`` unless a train-mode mistake
    of the catalogue matches (:meth:`Diagnoser.train_mistake`) or a probe of
    :mod:`attnlab.exercises.probes` (backward pass, train mode) finds a problem."""
    try:
        mistake = diagnoser.train_mistake(part, impl, limit)
        if mistake:
            return Verdict(part.name, "fail", mistake.hint, mistake.name)
        problem = probe(diagnoser, part, impl, student_file, limit)
    except PartTimeout:
        raise
    except BaseException as e:  # the student's code, in a run the probes did not expect
        problem = describe(e, student_file)
    return Verdict(part.name, "fail", problem) if problem else Verdict(part.name, "pass")
