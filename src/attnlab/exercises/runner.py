"""Check students' files, each in a child process with a time limit (the parent never imports
a submission), and grade a folder of submissions into a CSV.

It finds files, starts ``python -m attnlab.exercises.child`` (through
:mod:`attnlab.exercises.launcher`, so that a submission that kills its parent does not kill
this process) and reads back the verdicts it wrote; it imports the practicals (attnlab's own
code) only to know their parts.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from attnlab.errors import InputError, OutputError
from attnlab.exercises.registry import PRACTICALS
from attnlab.exercises.registry import practical as get_practical
from attnlab.files import check_output_file, printable, read_text, write_text

LAUNCHER = Path(__file__).with_name("launcher.py")
STARTUP_S = 60.0  # importing torch and attnlab in the child, on a slow machine
GRADES = {"pass": "pass", "fail": "fail", "todo": "fail", "error": "error", "timeout": "timeout"}


@dataclass
class FileReport:
    """What the child found in one file: file-level problems and one verdict per part."""

    practical: str
    file: Path
    problems: list[str] = field(default_factory=list)
    parts: list[dict[str, object]] = field(default_factory=list)

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
        raise InputError(f"{target} does not exist")
    if target.is_dir():
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
    report = FileReport(practical, path)
    with tempfile.TemporaryDirectory(prefix="attnlab-check-") as tmp:
        results = Path(tmp) / "results.jsonl"
        command = [sys.executable, "-I", str(LAUNCHER)]  # the student's parent: see launcher
        command += [sys.executable, "-m", "attnlab.exercises.child", practical, str(path.resolve())]
        command += [str(results), str(timeout), *parts]
        limit = STARTUP_S + timeout * (len(parts or part_names(practical)) + 1)
        (Path(tmp) / "work").mkdir()  # the student's working folder, beside our results
        status = _run_child(command, Path(tmp) / "work", limit, launches or Launches())
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


def _account_for_a_dead_child(
    report: FileReport, parts: list[str], status: int | None, limit: float
) -> None:
    """Verdicts for the parts a killed or crashed child never reported.

    When a signal killed the launcher, the student's code did it (see
    :mod:`attnlab.exercises.launcher`), and every part is an error: the verdicts the child
    wrote after the kill were racing our killing it, so none of them is kept.
    """
    if status == 0:
        return
    why, verdict = _why_it_stopped(status, limit)
    killed = status is not None and status < 0
    if killed:
        report.parts.clear()
    reported = {p["part"] for p in report.parts}
    if killed or not (reported or report.problems):
        report.problems.append(f"{report.file.name} could not be checked: {why}")
    for name in parts or part_names(report.practical):
        if name not in reported:
            report.parts.append({"part": name, "status": verdict, "message": why, "mistake": None})
            if verdict == "error" and not killed:  # the part running when it died, then the rest
                why = "not checked: the checking process had died"


def _why_it_stopped(status: int | None, limit: float) -> tuple[str, str]:
    """``(why, verdict)`` for a check that ended with the launcher's ``status``, not 0."""
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


def grade(
    submissions: Path,
    csv_path: Path,
    timeout: float,
    practical: str | None = None,
    jobs: int = 2,
    overwrite: bool = False,
) -> list[dict[str, str]]:
    """Check every student in ``submissions`` (one file or one folder each) and write the CSV.

    One row per student, one column per part (``pass``, ``fail``, ``error``, ``timeout``), and
    ``total``, the number of parts passed. Each file is checked in its own process. A
    student's name is their file's or folder's, with any byte that is not UTF-8 written as
    ``\\xNN`` (see :func:`~attnlab.files.printable`). An existing ``csv_path`` (last week's
    grades, say) raises :class:`OutputError` before anyone is graded, unless ``overwrite``.
    """
    check_output_file(csv_path)
    if csv_path.exists() and not overwrite:
        raise OutputError(
            f"{csv_path} already exists: choose another --csv, or pass --overwrite to replace it"
        )
    students = _students(submissions)
    unnamed = [p.name for p in students.values() if p.is_file() and p.stem not in PRACTICALS]
    if unnamed and not practical:
        raise InputError(
            f"give --practical NAME: {unnamed[0]} is not named after a practical, so the "
            "checker cannot tell which one it is"
        )
    checks = {student: _student_files(target, practical) for student, target in students.items()}
    names = [n for n in PRACTICALS if any(n == m for found in checks.values() for m, _ in found)]
    columns = [f"{n}:{p}" for n in names for p in part_names(n)]
    tasks = [(s, n, f) for s, found in checks.items() for n, f in found]
    reports = _check_all(tasks, timeout, jobs)
    rows = []
    for student in students:
        row = {"student": printable(student), **dict.fromkeys(columns, "error")}
        for (owner, name, _), report in zip(tasks, reports, strict=True):
            if owner == student:
                row.update({f"{name}:{p['part']}": GRADES[str(p["status"])] for p in report.parts})
        row["total"] = str(sum(row[c] == "pass" for c in columns))
        rows.append(row)
    _write_csv(csv_path, ["student", *columns, "total"], rows, overwrite)
    return rows


def _check_all(tasks: list[tuple[str, str, Path]], timeout: float, jobs: int) -> list[FileReport]:
    """The reports of ``(student, practical, file)`` checks, ``jobs`` at a time.

    Ctrl-C or SIGTERM (raised in this, the main thread) cancels the checks not started and
    kills the running ones before it goes on up: without that, leaving the pool would wait for
    every check, queued ones included, for up to their whole time limit each.
    """
    launches = Launches()
    pool = ThreadPoolExecutor(max_workers=max(1, jobs))
    try:
        return list(pool.map(lambda t: check_file(t[1], t[2], [], timeout, launches), tasks))
    except BaseException:
        pool.shutdown(wait=False, cancel_futures=True)
        launches.kill_all()
        raise
    finally:
        pool.shutdown(wait=True)  # at once after kill_all: the running checks' children are dead


def _student_files(target: Path, practical: str | None) -> list[tuple[str, Path]]:
    """A student's practical files; none (all their parts graded ``error``) when the
    submission is empty or holds none."""
    try:
        return practical_files(target, practical)
    except InputError:
        return []


def _students(submissions: Path) -> dict[str, Path]:
    if not submissions.is_dir():
        raise InputError(f"{submissions} is not a folder of submissions")
    students = {
        (p.stem if p.is_file() else p.name): p
        for p in sorted(submissions.iterdir())
        if not p.name.startswith((".", "__")) and (p.is_dir() or p.suffix == ".py")
    }
    if not students:
        raise InputError(f"{submissions} holds no submissions (one .py file or folder each)")
    return students


def _write_csv(path: Path, columns: list[str], rows: list[dict[str, str]], overwrite: bool) -> None:
    """Write the grades; without ``overwrite``, a CSV that another process (a second ``grade
    --csv`` of the same name) wrote while these grades were made is kept, and these go beside
    it, under the first free name ``NAME-2.csv``, ``NAME-3.csv``, ...: one sentence says so."""
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    try:
        write_text(path, text.getvalue(), replace=overwrite)
        return
    except FileExistsError:
        pass
    for n in range(2, 10_000):
        kept = path.with_name(f"{path.stem}-{n}{path.suffix}")
        try:
            write_text(kept, text.getvalue(), replace=False)
            break
        except FileExistsError:
            continue
    else:
        raise OutputError(f"{path} was written by another process while grading")
    raise OutputError(
        f"{path} was written by another process while grading, and is kept: these grades "
        f"are in {kept}"
    )
