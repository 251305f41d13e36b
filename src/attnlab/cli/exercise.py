"""``attnlab exercise``: practicals to write yourself, a checker that says what is wrong, grading.

  attnlab exercise start DIR [--part encoder ...]   write the skeleton files to fill in
  attnlab exercise check DIR_OR_FILE [--part NAME ...] [--practical NAME] [--json]
                 [--timeout S]                      check each part; a failure names the
                                                    likely mistake (exit 0: all pass, 1: some
                                                    fail, 2: a file does not import, a name is
                                                    missing or a signature differs)
  attnlab exercise solve DIR [--part encoder ...]   write the reference solutions (teachers)
  attnlab exercise grade SUBMISSIONS_DIR --csv grades.csv [--timeout S] [--overwrite]
                 [--practical NAME] [--jobs N]      check every student (one .py file or one
                 [--resume]                         folder each), each in its own process; an
                                                    existing CSV is replaced only with
                                                    --overwrite; a stopped grading keeps its
                                                    grades, and --resume grades the others

Practicals: encoder (the names practical), attention (the reversal practical), decoder (the
translation practical), llama (today's blocks); a practical's file is named after it
(encoder.py). A student's code only ever runs in a child process, with a time limit for its
import and for each part.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from attnlab.cli.common import Parser, given_path
from attnlab.errors import InputError, OutputError

if TYPE_CHECKING:
    from attnlab.exercises.runner import FileReport

ACTIONS = ("start", "check", "solve", "grade")
MAX_TIMEOUT_S = 3600  # an hour per part: past that, a limit is no limit
GRADE_WARNING = """\
Grading runs each student's code with your rights: it can read, change or delete any file
you can and reach the network, and Python cannot sandbox it. Each check runs in its own
process, with the time limit, in a fresh temporary folder that is also its HOME and TMPDIR:
that keeps accidents small, not malice out. Grade in a container or under a throwaway
account."""


def parse(prog: str, argv: list[str]) -> argparse.Namespace:
    top = Parser(prog=prog, description=__doc__, usage=f"{prog} {{{','.join(ACTIONS)}}} ...")
    if argv and argv[0] in ("-h", "--help"):
        top.parse_args(argv)
    if not argv or argv[0] not in ACTIONS:
        shown = f"unknown action '{argv[0]}'" if argv else "give an action"
        top.error(f"{shown} (choose from {', '.join(ACTIONS)})")
    action = argv[0]
    epilog = GRADE_WARNING if action == "grade" else None
    parser = Parser(prog=f"{prog} {action}", description=__doc__, epilog=epilog)
    {"start": _files_options, "solve": _files_options, "check": _check_options}.get(
        action, _grade_options
    )(parser)
    args = parser.parse_intermixed_args(argv[1:])
    args.action = action
    timeout = getattr(args, "timeout", 1.0)
    if not 0 < timeout <= MAX_TIMEOUT_S:  # also false for nan
        parser.error(
            f"--timeout must be a number of seconds in (0, {MAX_TIMEOUT_S:,}]; got {timeout}"
        )
    return args


def _files_options(parser: Parser) -> None:
    parser.add_argument(
        "dir", type=given_path, metavar="DIR", help="folder to write the files into"
    )
    parser.add_argument("--part", nargs="+", metavar="NAME", help="only these practicals")


def _check_options(parser: Parser) -> None:
    parser.add_argument("target", type=given_path, metavar="DIR_OR_FILE", help="your work")
    parser.add_argument("--part", nargs="+", metavar="NAME", help="only these parts")
    parser.add_argument("--practical", metavar="NAME", help="for a file named otherwise")
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.add_argument(
        "--timeout",
        type=float,
        default=10.0,
        metavar="S",
        help="seconds for the import and each part",
    )


def _grade_options(parser: Parser) -> None:
    parser.add_argument(
        "submissions",
        type=given_path,
        metavar="SUBMISSIONS_DIR",
        help="one .py file or folder each",
    )
    parser.add_argument(
        "--csv", type=given_path, required=True, metavar="FILE", help="grades to write"
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="replace the --csv file if it exists"
    )
    parser.add_argument(
        "--resume",
        action="store_true",
        help="keep the grades of a stopped grading in --csv and grade the other students",
    )
    parser.add_argument(
        "--practical", metavar="NAME", help="the practical of files named after students"
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=10.0,
        metavar="S",
        help="seconds for the import and each part",
    )
    parser.add_argument(
        "--jobs", type=int, default=2, metavar="N", help="submissions checked at the same time"
    )


def run(args: argparse.Namespace) -> int:
    return {"start": _write_files, "solve": _write_files, "check": _check, "grade": _grade}[
        args.action
    ](args)


def _write_files(args: argparse.Namespace) -> int:
    """``start`` writes the skeletons, ``solve`` the solutions; never over an existing file."""
    from attnlab.exercises.registry import available, practical
    from attnlab.files import read_text, write_text

    names = args.part or available()
    practicals = [practical(name) for name in names]
    if args.dir.exists() and not args.dir.is_dir():
        raise OutputError(f"cannot write into {args.dir}: it is a file, not a folder")
    targets = [args.dir / f"{p.name}.py" for p in practicals]
    existing = [t for t in targets if t.exists()]
    if existing:
        raise OutputError(f"{existing[0]} already exists: move it away or choose another folder")
    for p, target in zip(practicals, targets, strict=True):
        module = p.template_module() if args.action == "start" else p.solution_module()
        assert module.__file__ is not None  # a module read from a .py file
        write_text(target, read_text(Path(module.__file__)))
        print(f"{target}: {p.title}")
        if args.action == "start":
            print("\n".join(f"  {part.name}: {part.summary}" for part in p.parts))
    if args.action == "start":
        print(f"fill in the TODOs, then: attnlab exercise check {args.dir}")
    return 0


def _check(args: argparse.Namespace) -> int:
    from attnlab.exercises.runner import check_file, part_names, practical_files

    files = practical_files(args.target, args.practical)
    chosen = {name: _parts(name, args.part) for name, _ in files}
    known = {piece for name, _ in files for n in part_names(name) for piece in (n, *n.split("."))}
    unknown = [w for w in args.part or [] if w not in known]
    if unknown:
        shown = ", ".join(f.name for _, f in files)
        raise InputError(
            f"no part called {unknown[0]!r} in {shown} (see attnlab exercise check --json)"
        )
    files = [(name, f) for name, f in files if chosen[name] or not args.part]
    reports = [check_file(name, f, chosen[name], args.timeout) for name, f in files]
    status = max(r.exit_status for r in reports)
    if args.json:
        print(json.dumps({"status": status, "files": [r.as_dict() for r in reports]}, indent=2))
    else:
        for report in reports:
            _print_report(report, several=len(reports) > 1)
    return status


def _parts(practical: str, wanted: list[str] | None) -> list[str]:
    """The parts of ``practical`` that ``wanted`` names (a part, its method name or its class)."""
    from attnlab.exercises.runner import part_names

    if not wanted:
        return []
    return [n for n in part_names(practical) if any(w in (n, *n.split(".")) for w in wanted)]


def _print_report(report: FileReport, several: bool) -> None:
    if report.problems:  # one line for all of them (e.g. every part missing: the wrong file)
        print(f"attnlab: error: {report.file.name}: {'; '.join(report.problems)}", file=sys.stderr)
    if several:
        print(f"{report.file}:")
    for part in report.parts:
        if part["status"] == "pass":
            print(f"✓ {part['part']}")
        else:
            print(f"✗ {part['part']}: {part['message']}")
    passed = sum(p["status"] == "pass" for p in report.parts)
    print(f"{passed} of {len(report.parts)} parts pass")
    if report.ready_made:
        print(
            f"note: uses ready-made {', '.join(report.ready_made)}: a part that calls it passes "
            "on that code, not yours"
        )


def _grade(args: argparse.Namespace) -> int:
    from attnlab.exercises.grading import grade
    from attnlab.exercises.registry import PRACTICALS
    from attnlab.files import printable

    if args.practical is not None and args.practical not in PRACTICALS:
        raise InputError(f"no practical '{args.practical}' (choose from {', '.join(PRACTICALS)})")
    most_jobs = max(2, os.cpu_count() or 1)
    if not 1 <= args.jobs <= most_jobs:
        raise InputError(
            f"--jobs must be from 1 to {most_jobs} (this machine's CPUs: each check is a "
            f"process that loads PyTorch, so more at once only adds memory); got {args.jobs}"
        )

    def report(row: dict[str, str]) -> None:  # as soon as a student's checks end
        parts = sum(":" in column for column in row)  # practical:part
        note = f"; {row['note']}" if row["note"] else ""
        borrowed = f"; ready-made: {row['ready_made']}" if row["ready_made"] else ""
        line = f"{row['student']}: {row['total']} of {parts} parts pass{borrowed}{note}"
        print(line, flush=True)

    grade(
        args.submissions, args.csv, args.timeout, args.practical, args.jobs, args.overwrite,
        args.resume, on_student=report,
    )  # fmt: skip
    print(f"wrote {printable(str(args.csv))}")
    return 0
