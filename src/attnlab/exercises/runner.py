"""Check students' files, each in a child process with a time limit (the parent never imports
a submission); :mod:`attnlab.exercises.grading` grades a folder of them with it.

It finds files, starts ``python -m attnlab.exercises.child`` (through
:mod:`attnlab.exercises.launcher`, so that a submission that kills its parent does not kill
this process) and reads back the verdicts it wrote; it imports the practicals (attnlab's own
code) only to know their parts.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import site
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path

from attnlab.errors import InputError
from attnlab.exercises.ready_made import ready_made
from attnlab.exercises.registry import PRACTICALS
from attnlab.exercises.registry import practical as get_practical
from attnlab.files import missing, read_text, refuse_non_file

LAUNCHER = Path(__file__).with_name("launcher.py")
STARTUP_S = 60.0  # importing torch and attnlab in the child, on a slow machine


@dataclass
class FileReport:
    """What the child found in one file: file-level problems and one verdict per part; and
    what the file takes ready-made (read by this process, not the child)."""

    practical: str
    file: Path
    problems: list[str] = field(default_factory=list)
    parts: list[dict[str, object]] = field(default_factory=list)
    ready_made: list[str] = field(default_factory=list)  # see attnlab.exercises.ready_made

    @property
    def exit_status(self) -> int:
        """2 for a problem with the file itself, 1 when a part does not pass, else 0."""
        if self.problems or any(p["status"] == "error" for p in self.parts):
            return 2
        return 0 if all(p["status"] == "pass" for p in self.parts) else 1

    def as_dict(self) -> dict[str, object]:
        return {
            "practical": self.practical,
            "file": str(self.file),
            "problems": self.problems,
            "parts": self.parts,
            "ready_made": self.ready_made,
        }


def practical_files(target: Path, practical: str | None = None) -> list[tuple[str, Path]]:
    """``[(practical, file)]`` in ``target``: a folder holding ``encoder.py``, ... or one file.

    A file counts as the practical its name says (``encoder.py``), or as ``practical`` when
    given. Raises :class:`InputError` for a missing path, a non-Python or empty file, or a
    folder without any practical's file.
    """
    if practical is not None and practical not in PRACTICALS:
        raise InputError(f"no practical '{practical}' (choose from {', '.join(PRACTICALS)})")
    if not target.exists():
        raise InputError(f"{target} {missing(target)}")
    if target.suffix == ".py":  # a folder or a FIFO named encoder.py
        refuse_non_file(target, InputError, "the checker reads a practical's file")
    if target.is_dir():
        for name in PRACTICALS if practical is None else [practical]:
            refuse_non_file(target / f"{name}.py", InputError, "a practical's file should be")
        found = [
            (name, target / f"{name}.py")
            for name in PRACTICALS
            if (target / f"{name}.py").is_file()
        ]
        if practical:
            found = [(n, f) for n, f in found if n == practical]
        if not found:
            wanted = f"{practical}.py" if practical else ", ".join(f"{n}.py" for n in PRACTICALS)
            raise InputError(f"{target} holds no practical's file (looked for {wanted})")
        for _, file in found:
            _check_python_file(file)
        return found
    _check_python_file(target)
    name = practical or target.stem
    if name not in PRACTICALS:
        raise InputError(
            f"{target.name} is not named after a practical: name it "
            f"{', '.join(f'{n}.py' for n in PRACTICALS)} or give --practical NAME"
        )
    return [(name, target)]


def _check_python_file(path: Path) -> None:
    if path.suffix != ".py":
        raise InputError(f"{path} is not a Python file (.py)")
    if not read_text(path).strip():
        raise InputError(f"{path} is empty")


class Launches:
    """The checking processes that several threads start (``grade --jobs N``), so that the main
    thread, stopped by Ctrl-C or SIGTERM, can kill them all at once (:meth:`kill_all`) and no
    thread starts another one after that."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._children: set[subprocess.Popen] = set()
        self._closed = False

    def add(self, child: subprocess.Popen) -> None:
        """Keep ``child`` until :meth:`discard`; one started after :meth:`kill_all` is killed."""
        with self._lock:
            if not self._closed:
                self._children.add(child)
                return
        _kill_group(child)

    def discard(self, child: subprocess.Popen) -> None:
        with self._lock:
            self._children.discard(child)

    def kill_all(self) -> None:
        """Kill every checking process (and all it started), now and from now on."""
        with self._lock:
            self._closed = True
            children = list(self._children)
        for child in children:
            _kill_group(child)


def _kill_group(child: subprocess.Popen) -> None:
    """Kill ``child``'s process group: the launcher and the checking process it started."""
    with contextlib.suppress(ProcessLookupError):  # it and all it started are gone
        os.killpg(child.pid, signal.SIGKILL)


def check_file(
    practical: str,
    path: Path,
    parts: list[str],
    timeout: float,
    launches: Launches | None = None,
) -> FileReport:
    """Check ``path`` as ``practical`` in a child process; ``parts`` empty means all.

    Each part (and the import) has ``timeout`` seconds; the whole child is killed after
    ``timeout`` per part plus the start-up allowance. Parts the child did not report get
    ``timeout`` (it was killed) or ``error`` (it died). ``launches`` keeps the child while it
    runs (see :class:`Launches`).
    """
    report = FileReport(practical, path, ready_made=ready_made(practical, read_text(path)))
    with tempfile.TemporaryDirectory(prefix="attnlab-check-") as tmp:
        results = Path(tmp) / "results.jsonl"
        command = [sys.executable, "-I", str(LAUNCHER)]  # the student's parent: see launcher
        command += [sys.executable, "-m", "attnlab.exercises.child", practical, str(path.resolve())]
        command += [str(results), str(timeout), *parts]
        limit = STARTUP_S + timeout * (len(parts or part_names(practical)) + 1)
        work = Path(tmp) / "work"  # the student's working folder, beside our results
        work.mkdir()
        status = _run_child(command, work, limit, launches or Launches())
        lines = results.read_text(encoding="utf-8").splitlines() if results.exists() else []
    for line in lines:
        record = json.loads(line)
        if record.pop("event") == "problem":
            report.problems.append(str(record["message"]))
        else:
            report.parts.append(record)
    _account_for_a_dead_child(report, parts, status, limit)
    return report


def _run_child(command: list[str], cwd: Path, limit: float, launches: Launches) -> int | None:
    """The launcher's exit status (``-N``: signal N killed it), or ``None`` when it ran past
    ``limit`` s; either way, it and all it started are killed before this returns (also when
    Ctrl-C or SIGTERM interrupts the wait)."""
    child = subprocess.Popen(
        command,
        cwd=cwd,
        env=_child_environment(cwd),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # its own process group: killing it kills what it started
    )
    launches.add(child)
    try:
        return child.wait(timeout=limit)
    except subprocess.TimeoutExpired:
        return None
    finally:
        _kill_group(child)
        child.wait()
        launches.discard(child)


def _child_environment(work: Path) -> dict[str, str]:
    """This process's environment with ``HOME`` and ``TMPDIR`` set to ``work``, the student's
    fresh working folder, so that what their code writes to ``~`` or to a temporary file lands
    there and goes with it. ``PYTHONUSERBASE`` keeps the real home's user site-packages, where
    attnlab and torch may be installed (``pip install --user``). This is no sandbox: an
    absolute or ``../`` path still reaches whatever the teacher may write."""
    moved = {"HOME": str(work), "TMPDIR": str(work), "PYTHONUSERBASE": site.getuserbase()}
    return {**os.environ, **moved}


def _account_for_a_dead_child(
    report: FileReport, parts: list[str], status: int | None, limit: float
) -> None:
    """Verdicts for the parts a killed, crashed or stopped child never reported, and one
    problem that says why, and from which part on when the parts before it were checked.

    When a signal killed the launcher, the student's code did it (see
    :mod:`attnlab.exercises.launcher`), and every part is an error: the verdicts the child
    wrote after the kill were racing our killing it, so none of them is kept.
    """
    killed = status is not None and status < 0
    if killed:
        report.parts.clear()
    reported = {p["part"] for p in report.parts}
    unreported = [n for n in parts or part_names(report.practical) if n not in reported]
    if status == 0 and not unreported:
        return
    why, verdict = _why_it_stopped(status, limit)
    if killed or not (reported or report.problems):
        report.problems.append(f"could not be checked: {why}")
    elif unreported:  # the parts before it passed or failed on their own
        report.problems.append(f"could not be checked from {unreported[0]} on: {why}")
    for name in unreported:
        report.parts.append({"part": name, "status": verdict, "message": why, "mistake": None})
        if verdict == "error" and not killed:  # the part running when it died, then the rest
            why = "not checked: the checking process had died"


def _why_it_stopped(status: int | None, limit: float) -> tuple[str, str]:
    """``(why, verdict)`` for a check that ended with the launcher's ``status`` before it
    had reported every part."""
    if status == 0:  # only os._exit(0) ends the child early with 0: sys.exit() is caught
        return (
            "the checking process ended early (exit status 0: does the code call os._exit?)",
            "error",
        )
    if status is None:
        return f"the check was stopped after {limit:g} s in all", "timeout"
    if status < 0:  # a signal killed the launcher itself: see attnlab.exercises.launcher
        return (
            f"the checking process was killed by {_signal_name(-status)} (does the code kill "
            "its parent process or its process group?)",
            "error",
        )
    if status > 128:  # the launcher's way of saying that signal status - 128 killed the check
        return f"the checking process was killed by {_signal_name(status - 128)}", "error"
    return f"the checking process died (exit status {status})", "error"


def _signal_name(number: int) -> str:
    """``SIGKILL`` for 9; real-time signals, which have no name, as ``signal 34``."""
    try:
        return signal.Signals(number).name
    except ValueError:  # a real-time signal has no name
        return f"signal {number}"


def part_names(practical: str) -> list[str]:
    """The names of the practical's parts, in order."""
    return [p.name for p in get_practical(practical).parts]
