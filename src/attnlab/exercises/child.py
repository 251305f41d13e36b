"""The child process that imports one student file and checks it: the only place that does.

    python -m attnlab.exercises.child PRACTICAL FILE RESULTS TIMEOUT [PART ...]

It writes one JSON object per line to RESULTS, flushed as it goes, so that the parent keeps
what was found even when the student's code later crashes the process:
``{"event": "problem", "message": ...}`` for a file-level problem (does not import, a name
missing, a wrong signature) and ``{"event": "part", "part": ..., "status": ..., ...}`` for
each part. The student's import and each part run under an alarm of TIMEOUT seconds.
Whatever the student's code prints goes to stderr, which the parent discards.
"""

from __future__ import annotations

import importlib.util
import json
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import IO

import torch

from attnlab.exercises.checker import (
    Diagnoser,
    PartTimeout,
    Verdict,
    check_part,
    signature_problem,
)
from attnlab.exercises.compare import where
from attnlab.exercises.core import one_line
from attnlab.exercises.registry import practical as get_practical

VARIANT_S = 2.0  # a catalogue variant runs in milliseconds: one that takes this long loops


@contextmanager
def alarm(seconds: float) -> Iterator[None]:
    """Raise :class:`PartTimeout` in the block after ``seconds`` of wall-clock time."""

    def ring(signum: int, frame: object) -> None:
        raise PartTimeout

    previous = signal.signal(signal.SIGALRM, ring)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def import_student(path: Path, timeout: float) -> tuple[ModuleType | None, str | None]:
    """The student's module, or ``None`` and one sentence on why it does not import."""
    sys.path.insert(0, str(path.parent))
    spec = importlib.util.spec_from_file_location(f"student_{path.stem}", path)
    assert spec is not None and spec.loader is not None  # a .py file (checked by the runner)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses and pickling look the module up
    try:
        with alarm(timeout):
            spec.loader.exec_module(module)
    except SyntaxError as e:  # a null byte has no line number
        line = f"line {e.lineno}: " if e.lineno else ""
        return None, f"{line}{e.msg}, so the file does not import"
    except PartTimeout:
        return None, f"importing it took longer than {timeout:g} s (an endless loop?)"
    except SystemExit:
        return None, "it calls sys.exit() when it is imported"
    except BaseException as e:  # anything the student's top level raises
        if isinstance(e, ValueError) and "null bytes" in str(e):  # Python 3.10's SyntaxError
            return None, f"{e}, so the file does not import"
        calls = where(e, path)
        at = f" at {calls}" if calls else ""
        return None, f"it raises {type(e).__name__}{at} when it is imported: {one_line(str(e))}"
    return module, None


def write(out: IO[str], record: dict[str, object]) -> None:
    out.write(json.dumps(record) + "\n")
    out.flush()


def check(name: str, path: Path, out: IO[str], timeout: float, only: list[str]) -> None:
    """Import ``path`` and write a verdict for every part of practical ``name`` (or ``only``)."""
    practical = get_practical(name)
    parts = [p for p in practical.parts if not only or p.name in only]
    module, problem = import_student(path, timeout)
    if module is None:
        write(out, {"event": "problem", "message": problem})
        for part in parts:
            verdict = Verdict(part.name, "error", "not checked: the file does not import")
            write(out, {"event": "part", **verdict.as_dict()})
        return
    template = practical.template_module()
    problems = {}
    for needed in dict.fromkeys(n for p in parts for n in p.needed_names()):
        problems[needed] = signature_problem(template, module, needed)
    for problem in dict.fromkeys(p for p in problems.values() if p):
        write(out, {"event": "problem", "message": problem})
    diagnoser = Diagnoser(practical, lambda: alarm(VARIANT_S))
    for part in parts:
        missing = next((problems[n] for n in part.needed_names() if problems[n]), None)
        if missing:
            verdict = Verdict(part.name, "error", f"not checked: {missing}")
        else:
            try:
                verdict = check_part(diagnoser, part, module, path, lambda: alarm(timeout))
            except PartTimeout:
                verdict = Verdict(
                    part.name, "timeout", f"took longer than {timeout:g} s (an endless loop?)"
                )
        write(out, {"event": "part", **verdict.as_dict()})


def main(argv: list[str]) -> int:
    name, file, results, timeout, *only = argv
    torch.set_num_threads(1)  # tiny tensors: threads only cost, and graders run several checks
    with open(results, "w", encoding="utf-8") as out:
        sys.stdout = sys.stderr  # the student's prints must not mix with anything of ours
        check(name, Path(file).resolve(), out, float(timeout), only)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
