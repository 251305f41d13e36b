"""Grade a folder of submissions into a CSV (``attnlab exercise grade``).

Every student is checked in child processes of their own (:func:`~attnlab.exercises.runner.
check_file`), ``jobs`` students at a time, and each student's grades are reported as soon as
their checks end. A grading stopped by Ctrl-C or SIGTERM keeps the grades it made: they are
written to the CSV, and ``resume`` grades only the students the CSV does not hold yet.
"""

from __future__ import annotations

import csv
import io
import signal
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

from attnlab.errors import InputError, Interrupted, OutputError
from attnlab.exercises.registry import PRACTICALS
from attnlab.exercises.runner import Launches, check_file, part_names, practical_files
from attnlab.files import check_output_file, printable, read_text, write_text

Row = dict[str, str]
Found = list[tuple[str, Path]] | str  # a student's (practical, file) pairs, or why none
GRADES = {"pass": "pass", "fail": "fail", "todo": "fail", "error": "error", "timeout": "timeout"}


def grade(
    submissions: Path,
    csv_path: Path,
    timeout: float,
    practical: str | None = None,
    jobs: int = 2,
    overwrite: bool = False,
    resume: bool = False,
    on_student: Callable[[Row], None] | None = None,
) -> list[Row]:
    """Check every student in ``submissions`` (one file or one folder each) and write the CSV.

    One row per student, one column per part (``pass``, ``fail``, ``error``, ``timeout``),
    ``total``, the number of parts passed, ``ready_made``, the library pieces each file uses
    that do a part's work (see :mod:`attnlab.exercises.ready_made`; the teacher decides what
    was allowed), and ``note``, why parts could not be checked (no practical's file, a file
    that does not import, a check that died; empty otherwise);
    ``on_student(row)`` is called as each student's checks end. A student's name is their
    file's or folder's, with any byte that is not UTF-8 written as ``\\xNN`` (see
    :func:`~attnlab.files.printable`). An existing ``csv_path`` (last week's grades, say)
    raises :class:`OutputError` before anyone is graded, unless ``overwrite``; with
    ``resume`` its rows are kept and only the other students are checked. A stop signal
    writes the rows made so far and raises :class:`Interrupted`, saying so.
    """
    check_output_file(csv_path)
    graded = _graded(csv_path) if resume else {}
    if not resume and csv_path.exists() and not overwrite:
        raise OutputError(
            f"{csv_path} already exists: choose another --csv, or pass --overwrite to replace it"
        )
    students = _students(submissions)
    _check_outside_submissions(csv_path, students)
    checks = _checks(students, practical)
    columns = _columns(checks)
    header = ["student", *columns, "total", "ready_made", "note"]
    if graded and list(next(iter(graded.values()))) != header:
        raise InputError(
            f"{csv_path} holds other columns than these submissions' parts: it is not their "
            "stopped grading; drop --resume, or choose another --csv"
        )
    rows = {name: row for name, row in graded.items() if name in map(printable, students)}
    todo = {s: found for s, found in checks.items() if printable(s) not in rows}

    def done(row: Row) -> None:
        rows[row["student"]] = row
        if on_student is not None:
            on_student(row)

    try:
        _grade_all(todo, columns, timeout, jobs, done)
    except KeyboardInterrupt as e:  # Ctrl-C, or SIGTERM / SIGHUP (attnlab.errors.Interrupted)
        if len(rows) == len(graded):
            raise  # no new grade to keep
        kept = [rows[printable(s)] for s in students if printable(s) in rows]
        _write_csv(csv_path, header, kept, replace=overwrite or resume)
        raise _stopped(e, f"{len(kept)} of {len(students)}", csv_path) from None
    ordered = [rows[printable(s)] for s in students]
    _write_csv(csv_path, header, ordered, replace=overwrite or resume)
    return ordered


def _stopped(stop: KeyboardInterrupt, counts: str, csv_path: Path) -> Interrupted:
    """The stop signal that ended a grading, saying where the ``counts`` grades made are."""
    signum = stop.signum if isinstance(stop, Interrupted) else signal.SIGINT
    return Interrupted(
        signum,
        f"the grades of {counts} students are in {csv_path}; the same command with --resume "
        "grades the others",
    )


def _checks(students: dict[str, Path], practical: str | None) -> dict[str, Found]:
    """Each student's practical files, ``(practical, path)``, or why there is none."""
    unnamed = [p.name for p in students.values() if p.is_file() and p.stem not in PRACTICALS]
    if unnamed and not practical:
        raise InputError(
            f"give --practical NAME: {unnamed[0]} is not named after a practical, so the "
            "checker cannot tell which one it is"
        )
    return {student: _student_files(target, practical) for student, target in students.items()}


def _columns(checks: dict[str, Found]) -> list[str]:
    """``practical:part`` for every part of every practical that some student handed in."""
    handed_in = {n for found in checks.values() if not isinstance(found, str) for n, _ in found}
    names = [n for n in PRACTICALS if n in handed_in]
    return [f"{n}:{p}" for n in names for p in part_names(n)]


def _grade_all(
    checks: dict[str, Found],
    columns: list[str],
    timeout: float,
    jobs: int,
    done: Callable[[Row], None],
) -> None:
    """Grade the students of ``checks``, ``jobs`` at a time, calling ``done(row)`` as each
    one's checks end.

    Ctrl-C or SIGTERM (raised in this, the main thread) cancels the checks not started and
    kills the running ones before it goes on up: without that, leaving the pool would wait for
    every check, queued ones included, for up to their whole time limit each.
    """
    launches = Launches()
    pool = ThreadPoolExecutor(max_workers=max(1, jobs))
    try:
        futures = [
            pool.submit(_grade_student, student, found, columns, timeout, launches)
            for student, found in checks.items()
        ]
        for future in as_completed(futures):
            done(future.result())
    except BaseException:
        pool.shutdown(wait=False, cancel_futures=True)
        launches.kill_all()
        raise
    finally:
        pool.shutdown(wait=True)  # at once after kill_all: the running checks' children are dead


def _grade_student(
    student: str,
    found: Found,
    columns: list[str],
    timeout: float,
    launches: Launches,
) -> Row:
    """One student's row: each of their files checked in a child process; ``error`` for the
    parts of practicals they did not hand in. ``found`` is ``(practical, file)`` pairs, or the
    sentence that says why there is none."""
    row = {"student": printable(student), **dict.fromkeys(columns, "error")}
    notes = [found] if isinstance(found, str) else []
    borrowed = []
    for name, path in [] if isinstance(found, str) else found:
        report = check_file(name, path, [], timeout, launches)
        row.update({f"{name}:{p['part']}": GRADES[str(p["status"])] for p in report.parts})
        if report.problems:
            notes.append(f"{path.name}: {'; '.join(report.problems)}")
        if report.ready_made:
            borrowed.append(f"{path.name}: {', '.join(report.ready_made)}")
    row["total"] = str(sum(row[c] == "pass" for c in columns))
    row["ready_made"] = printable("; ".join(borrowed))
    row["note"] = printable("; ".join(notes))
    return row


def _student_files(target: Path, practical: str | None) -> Found:
    """A student's practical files, or, when the submission is empty or holds none (all their
    parts graded ``error``), the sentence that says so."""
    try:
        return practical_files(target, practical)
    except InputError as e:
        return str(e).replace(str(target), "the folder" if target.is_dir() else target.name)


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


def _check_outside_submissions(csv_path: Path, students: dict[str, Path]) -> None:
    """Refuse a CSV that is a student's submission or lies in their folder: with
    ``--overwrite`` it replaced the file it graded."""
    target = csv_path.resolve()
    for name, path in students.items():
        submission = path.resolve()
        if target == submission or submission in target.parents:
            raise OutputError(
                f"{csv_path} is in {printable(name)}'s submission: write the grades outside "
                "the folder of submissions"
            )


def _graded(csv_path: Path) -> dict[str, Row]:
    """The rows of a stopped grading's CSV, by student, for ``--resume``."""
    if not csv_path.is_file():
        raise InputError(f"--resume: {csv_path} does not exist, so there is no grading to resume")
    rows = list(csv.DictReader(io.StringIO(read_text(csv_path))))
    if not rows or not {"student", "total"} <= set(rows[0]) or None in rows[0]:
        raise InputError(f"--resume: {csv_path} is not a CSV of grades (student, parts, total)")
    return {row["student"]: row for row in rows}


def _write_csv(path: Path, columns: list[str], rows: list[Row], replace: bool) -> None:
    """Write the grades; without ``replace``, a CSV that another process (a second ``grade
    --csv`` of the same name) wrote while these grades were made is kept, and these go beside
    it, under the first free name ``NAME-2.csv``, ``NAME-3.csv``, ...: one sentence says so."""
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    try:
        write_text(path, text.getvalue(), replace=replace)
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
