"""``attnlab exercise grade``: every student in their own process; none can harm the others."""

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from attnlab.exercises.registry import practical

from ..cli_helpers import assert_one_line_error, run_cli
from .helpers import plant

PARTS = [f"encoder:{p.name}" for p in practical("encoder").parts]
NORM, CLS = "encoder:TransformerEncoderLayer.norm", "encoder:TransformerEncoder.concat_cls"
NORM_CODE = "mean = x.mean(dim=-1, keepdim=True)"


def submissions(root, marker):
    """good (a folder; it leaves a marker with its process id when imported), broken,
    crashing in a part, looping in a part, and exiting at import."""
    (root / "good").mkdir(parents=True)
    marking = f"import math\nimport os\n\nopen({str(marker)!r}, 'w').write(str(os.getpid()))\n"
    plant(root / "good" / "encoder.py", "encoder", {"import math\n": marking})
    plant(
        root / "broken.py", "encoder", {"torch.cat([cls, x], dim=1)": "torch.cat([x, cls], dim=1)"}
    )
    plant(root / "crashing.py", "encoder", {NORM_CODE: f"import os; os._exit(3); {NORM_CODE}"})
    plant(
        root / "looping.py",
        "encoder",
        {"cls = self.cls_token": "while True:\n            pass\n        cls = self.cls_token"},
    )
    (root / "exiting.py").write_text("import sys\nsys.exit(0)\n")


def test_grade_writes_one_row_per_student_whatever_their_code_does(capsys, tmp_path):
    marker = tmp_path / "imported-by"
    submissions(tmp_path / "subs", marker)
    grades = tmp_path / "grades.csv"
    code, out, err = run_cli(
        capsys, "exercise", "grade", str(tmp_path / "subs"), "--csv", str(grades),
        "--practical", "encoder", "--timeout", "3",
    )  # fmt: skip
    assert code == 0, err
    rows = {row["student"]: row for row in csv.DictReader(grades.open())}
    assert list(next(iter(rows.values()))) == ["student", *PARTS, "total", "ready_made", "note"]
    n = len(PARTS)
    good = {"student": "good", **dict.fromkeys(PARTS, "pass"), "total": str(n)}
    good |= {"ready_made": "", "note": ""}
    assert rows["good"] == good
    broken = {p: "pass" for p in PARTS} | {
        CLS: "fail",
        "encoder:TransformerEncoder.forward": "fail",
    }
    assert {p: rows["broken"][p] for p in PARTS} == broken
    looping = {p: "pass" for p in PARTS} | {
        CLS: "timeout",
        "encoder:TransformerEncoder.forward": "timeout",
    }
    assert {p: rows["looping"][p] for p in PARTS} == looping
    crashed_from = PARTS.index(NORM)
    assert [rows["crashing"][p] for p in PARTS] == ["pass"] * crashed_from + ["error"] * (
        n - crashed_from
    )
    assert rows["crashing"]["note"] == (
        "crashing.py: could not be checked from TransformerEncoderLayer.norm on: the checking "
        "process died (exit status 3)"
    )
    exits = "exiting.py: it calls sys.exit() when it is imported"
    assert rows["exiting"] == {"student": "exiting", **dict.fromkeys(PARTS, "error"), "total": "0",
                               "ready_made": "", "note": exits}  # fmt: skip
    assert f"exiting: 0 of {n} parts pass; {exits}\n" in out
    assert "good: 9 of 9 parts pass" in out.replace(str(n), "9")
    # The student's code ran, but never in this process, and this process never imported it.
    assert int(marker.read_text()) != os.getpid()
    subs = tmp_path / "subs"
    files = [getattr(m, "__file__", None) for m in list(sys.modules.values())]
    assert not [f for f in files if f and Path(f).resolve().is_relative_to(subs.resolve())]


def test_grade_notes_code_that_ends_its_own_check_and_ignores_what_it_prints(capsys, tmp_path):
    """os._exit(0) or a kill of itself in a part: a one-line note, the parts before it kept,
    and the next student graded; ten megabytes printed at import and in a part change
    nothing."""
    subs = tmp_path / "subs"
    subs.mkdir()
    kill = f"import os, signal; os.kill(os.getpid(), signal.SIGKILL); {NORM_CODE}"
    plant(subs / "a_killing_itself.py", "encoder", {NORM_CODE: kill})
    plant(subs / "b_ending.py", "encoder", {NORM_CODE: f"import os; os._exit(0); {NORM_CODE}"})
    printing = f"print('x' * 10**7); {NORM_CODE}"
    plant(
        subs / "c_printing.py",
        "encoder",
        {"import math\n": "import math\n\nprint('y' * 10**7)\n", NORM_CODE: printing},
    )
    plant(subs / "d_good.py", "encoder", {})
    grades = tmp_path / "grades.csv"
    code, out, err = run_cli(
        capsys, "exercise", "grade", str(subs), "--csv", str(grades), "--practical", "encoder",
        "--timeout", "5",
    )  # fmt: skip
    assert code == 0, err
    rows = {row["student"]: row for row in csv.DictReader(grades.open())}
    checked = PARTS.index(NORM)
    why = {
        "a_killing_itself": "the checking process was killed by SIGKILL",
        "b_ending": "the checking process ended early (exit status 0: does the code call "
        "os._exit?)",
    }
    for student, died in why.items():
        grades_of = [rows[student][p] for p in PARTS]
        assert grades_of == ["pass"] * checked + ["error"] * (len(PARTS) - checked)
        assert rows[student]["note"] == (
            f"{student}.py: could not be checked from TransformerEncoderLayer.norm on: {died}"
        )
    for student in ("c_printing", "d_good"):
        assert (rows[student]["total"], rows[student]["note"]) == (str(len(PARTS)), "")
    assert len(out.splitlines()) == 5 and "yyyy" not in out + err and "xxxx" not in out + err


def test_students_code_runs_in_a_fresh_folder_that_is_also_its_home_and_tmpdir(
    capsys, tmp_path, monkeypatch
):
    """Not the teacher's folder nor the submissions': files written to a relative path, to
    ``~`` or to a temporary file go there, and go with it. (An absolute path or enough
    ``../`` still reach anything: see docs/students.md.)"""
    teacher, subs, seen = tmp_path / "teacher", tmp_path / "subs", tmp_path / "seen.json"
    teacher.mkdir()
    subs.mkdir()
    monkeypatch.chdir(teacher)
    spying = (
        "import json, os, tempfile\nfrom pathlib import Path\n\n"
        "open('left-behind.txt', 'w').write('x')\n"
        "(Path.home() / 'in-home.txt').write_text('x')\n"
        f"open({str(seen)!r}, 'w').write(json.dumps([os.getcwd(), str(Path.home()), "
        "tempfile.gettempdir()]))\n"
    )
    plant(subs / "spy.py", "encoder", {"import math\n": f"import math\n{spying}"})
    code, _, err = run_cli(
        capsys, "exercise", "grade", str(subs), "--csv", "grades.csv", "--practical", "encoder"
    )
    assert code == 0, err
    cwd, home, tmpdir = (Path(p) for p in json.loads(seen.read_text()))
    assert home == tmpdir == cwd
    assert not cwd.is_relative_to(teacher) and not cwd.is_relative_to(subs)
    assert not cwd.exists()
    assert sorted(p.name for p in teacher.iterdir()) == ["grades.csv"]
    assert sorted(p.name for p in subs.iterdir()) == ["spy.py"]


def test_grade_bad_input(capsys, tmp_path):
    (tmp_path / "subs").mkdir()
    (tmp_path / "subs" / "alice.py").write_text("x = 1\n")
    cases = [
        (["grade", str(tmp_path / "nowhere"), "--csv", str(tmp_path / "g.csv")], "is not a folder"),
        (["grade", str(tmp_path / "subs"), "--csv", str(tmp_path / "g.csv")], "give --practical"),
        (
            ["grade", str(tmp_path / "subs"), "--csv", str(tmp_path), "--practical", "encoder"],
            "is a directory",
        ),
        (
            ["grade", str(tmp_path / "subs"), "--csv", "g.csv", "--practical", "nope"],
            "no practical 'nope'",
        ),
        (["grade", str(tmp_path / "subs")], "the following arguments are required: --csv"),
    ]
    (tmp_path / "empty").mkdir()
    cases.append(
        (
            ["grade", str(tmp_path / "empty"), "--csv", str(tmp_path / "g.csv")],
            "holds no submissions",
        )
    )
    for args, pattern in cases:
        code, _, err = run_cli(capsys, "exercise", *args)
        assert_one_line_error(code, err, pattern)
    assert not (tmp_path / "g.csv").exists()


def test_grade_writes_names_that_are_not_utf8_with_their_bytes_escaped(capsys, tmp_path):
    subs = tmp_path / "subs"
    subs.mkdir()
    folder = subs / os.fsdecode(b"caf\xe9")  # Latin-1 bytes: not UTF-8
    folder.mkdir()
    (folder / "encoder.py").write_text("x = 1\n")
    (subs / os.fsdecode(b"\xff.py")).write_text("x = 1\n")
    grades = tmp_path / "grades.csv"
    code, out, err = run_cli(
        capsys, "exercise", "grade", str(subs), "--csv", str(grades), "--practical", "encoder"
    )
    assert code == 0, err
    rows = list(csv.DictReader(grades.open(encoding="utf-8")))
    assert [row["student"] for row in rows] == ["caf\\xe9", "\\xff"]
    assert all(row["total"] == "0" for row in rows)
    assert "caf\\xe9: 0 of" in out and "\\xff: 0 of" in out


def test_grade_notes_why_a_student_has_parts_it_could_not_check(capsys, tmp_path):
    # "ivan: 0 of 9 parts pass" said the same for no file, a misnamed one and a syntax error.
    subs = tmp_path / "subs"
    (subs / "ivan").mkdir(parents=True)
    (subs / "ivan" / "my_encoder.py").write_text("x = 1\n")  # not named after the practical
    (subs / "olga.py").write_text("def f(:\n")
    grades = tmp_path / "grades.csv"
    code, out, err = run_cli(
        capsys, "exercise", "grade", str(subs), "--csv", str(grades), "--practical", "encoder"
    )
    assert code == 0, err
    notes = {row["student"]: row["note"] for row in csv.DictReader(grades.open())}
    assert notes == {
        "ivan": "the folder holds no practical's file (looked for encoder.py)",
        "olga": "olga.py: line 1: invalid syntax, so the file does not import",
    }
    n = len(PARTS)
    assert out.splitlines()[:2] == sorted(f"{s}: 0 of {n} parts pass; {notes[s]}" for s in notes)


KILLS = {
    "parent_killer": "os.kill(os.getppid(), signal.SIGKILL)",
    "parent_terminator": "os.kill(os.getppid(), signal.SIGTERM)",
    "group_killer": "os.killpg(0, signal.SIGKILL)",
}


def killing_when_imported(kill: str) -> dict[str, str]:
    """The change to plant into a solution to make ``kill`` when the file is imported."""
    return {"import math\n": f"import math\nimport os\nimport signal\n\n{kill}\n"}


def grade_in_a_process(*args: str) -> subprocess.CompletedProcess:
    """``attnlab exercise ARGS`` in a process of its own: if a submission kills the grader, it
    must not take pytest with it."""
    command = [sys.executable, "-m", "attnlab", "exercise", *args]
    return subprocess.run(command, capture_output=True, text=True)


def test_grade_survives_submissions_that_kill_their_parent_or_their_process_group(tmp_path):
    subs = tmp_path / "subs"
    subs.mkdir()
    for name, kill in KILLS.items():  # correct solutions, but for the kill when imported
        plant(subs / f"{name}.py", "encoder", killing_when_imported(kill))
    kill_in_norm = f"os.kill(os.getppid(), signal.SIGKILL); {NORM_CODE}"
    plant(subs / "norm_killer.py", "encoder", {NORM_CODE: f"import os, signal; {kill_in_norm}"})
    plant(subs / "good.py", "encoder", {})
    grades = tmp_path / "grades.csv"
    done = grade_in_a_process("grade", str(subs), "--csv", str(grades), "--practical", "encoder")
    assert done.returncode == 0, (done.returncode, done.stderr)
    rows = {row["student"]: row for row in csv.DictReader(grades.open())}
    assert rows["good"]["total"] == str(len(PARTS))
    # Every part an error, even those that passed before the kill in the norm part.
    for name in [*KILLS, "norm_killer"]:
        assert {k: v for k, v in rows[name].items() if k != "note"} == {
            "student": name, **dict.fromkeys(PARTS, "error"), "total": "0", "ready_made": ""
        }  # fmt: skip
        assert "could not be checked" in rows[name]["note"]
    assert "good: 9 of 9 parts pass" in done.stdout.replace(str(len(PARTS)), "9")


def test_check_says_that_the_code_killed_its_parent(tmp_path):
    plant(tmp_path / "encoder.py", "encoder", killing_when_imported(KILLS["parent_killer"]))
    done = grade_in_a_process("check", str(tmp_path / "encoder.py"), "--json")
    assert done.returncode == 2, (done.returncode, done.stderr)
    (report,) = json.loads(done.stdout)["files"]
    assert report["problems"] == [
        "could not be checked: the checking process was killed by SIGKILL (does the "
        "code kill its parent process or its process group?)"
    ]


def test_grade_refuses_an_existing_csv_before_grading_unless_told_to_overwrite(capsys, tmp_path):
    subs = tmp_path / "subs"
    subs.mkdir()
    marker = tmp_path / "imported"
    (subs / "alice.py").write_text(f"open({str(marker)!r}, 'w').close()\n")
    grades = tmp_path / "grades.csv"
    grades.write_text("student,total\nlast week,9\n")
    args = ["exercise", "grade", str(subs), "--csv", str(grades), "--practical", "encoder"]
    code, _, err = run_cli(capsys, *args)
    assert_one_line_error(code, err, f"{grades} already exists")
    assert "--overwrite" in err
    assert grades.read_text() == "student,total\nlast week,9\n"
    assert not marker.exists()  # refused before anyone was graded
    code, out, err = run_cli(capsys, *args, "--overwrite")
    assert code == 0, err
    assert [row["student"] for row in csv.DictReader(grades.open())] == ["alice"]
    assert marker.exists()


def test_grade_refuses_a_csv_that_is_a_students_submission_even_with_overwrite(capsys, tmp_path):
    """``--csv subs/zed/encoder.py --overwrite`` replaced zed's code with the grades."""
    subs = tmp_path / "subs"
    (subs / "zed").mkdir(parents=True)
    (subs / "zed" / "encoder.py").write_text("x = 1\n")
    (subs / "alice.py").write_text("x = 1\n")
    for target in (subs / "zed" / "encoder.py", subs / "alice.py", subs / "zed" / "g.csv"):
        args = ["exercise", "grade", str(subs), "--csv", str(target), "--practical", "encoder"]
        code, _, err = run_cli(capsys, *args, "--overwrite")
        assert_one_line_error(code, err, f"{target} is in ")
    assert (subs / "zed" / "encoder.py").read_text() == (subs / "alice.py").read_text() == "x = 1\n"
    assert not (subs / "zed" / "g.csv").exists()


def looping_when_imported(marker: Path, release: Path) -> str:
    """A submission that, once imported by the checking process, leaves its PID in
    ``marker`` and loops, swallowing the checker's time limit for its import: only a kill ends
    it (attnlab's, or the whole check's limit, an hour away here), or ``release`` appearing."""
    released = f"os.path.exists({str(release)!r})"
    return (
        f"import os\n\nopen({str(marker)!r}, 'w').write(str(os.getpid()))\n"
        f"while not {released}:\n"
        f"    try:\n        while not {released}:\n            pass\n"
        "    except BaseException:\n        pass\n"
    )


@pytest.fixture
def release(tmp_path):
    """A file whose appearance ends the loops of :func:`looping_when_imported`: made at the end
    of the test, so that a failed one leaves no student's process spinning."""
    path = tmp_path / "release"
    yield path
    path.touch()


def wait_until(condition, what: str, timeout: float = 300) -> None:
    """Poll for an event; ``timeout`` only guards against a hang."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.02)


def alive(pid: int) -> bool:
    """Whether process ``pid`` still runs (a zombie, dead but not yet reaped, does not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    except OSError:  # no /proc: ask the kernel
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True
    return state not in ("Z", "X")


def stop_when_imported(marker: Path, sig: signal.Signals, *args: str):
    """``attnlab exercise ARGS`` in a process of its own, sent ``sig`` once the student's code
    wrote ``marker``; (status, stdout, stderr)."""
    command = [sys.executable, "-m", "attnlab", "exercise", *args]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_until(lambda: marker.exists() and marker.read_text(), "the student's code to run")
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=300)  # only a safety net: it ends at once
    finally:
        proc.kill()
        proc.wait()
    return proc.returncode, out, err


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=lambda s: s.name)
def test_a_stopped_grade_kills_the_running_checks_and_starts_no_more(tmp_path, release, sig):
    subs = tmp_path / "subs"
    subs.mkdir()
    looping, later = tmp_path / "looping", tmp_path / "later"
    (subs / "a_looping.py").write_text(looping_when_imported(looping, release))
    (subs / "b_later.py").write_text(f"open({str(later)!r}, 'w').close()\n")
    grades = tmp_path / "grades.csv"
    code, out, err = stop_when_imported(
        looping, sig, "grade", str(subs), "--csv", str(grades), "--practical", "encoder",
        "--jobs", "1", "--timeout", "600",
    )  # fmt: skip
    assert code == 128 + sig, err
    assert err.strip().splitlines() == [
        "attnlab: interrupted" + (" by SIGTERM" if sig == signal.SIGTERM else "")
    ]
    assert out == "" and not grades.exists()
    # The queued check was not started, and the looping one was killed, not waited for (for
    # the hour of its time limit) nor left running.
    assert not later.exists()
    wait_until(lambda: not alive(int(looping.read_text())), "the student's process to end")


def test_check_stopped_by_sighup_kills_its_checking_process_and_says_so(tmp_path, release):
    looping = tmp_path / "looping"
    (tmp_path / "encoder.py").write_text(looping_when_imported(looping, release))
    code, out, err = stop_when_imported(
        looping, signal.SIGHUP, "check", str(tmp_path / "encoder.py"), "--timeout", "600"
    )
    assert code == 128 + signal.SIGHUP, err
    assert err == "attnlab: interrupted by SIGHUP\n" and out == ""
    wait_until(lambda: not alive(int(looping.read_text())), "the student's process to end")


def test_a_csv_written_by_another_grade_meanwhile_is_kept_and_ours_goes_beside_it(
    capsys, monkeypatch, tmp_path
):
    from attnlab.exercises import grading, runner

    subs = tmp_path / "subs"
    subs.mkdir()
    (subs / "alice.py").write_text("x = 1\n")
    grades = tmp_path / "grades.csv"
    theirs = "student,total\nzed,9\n"

    def another_grade_finishes_first(practical, path, parts, timeout, launches=None):
        grades.write_text(theirs)  # a second `grade --csv grades.csv`, started at the same time
        return runner.FileReport(practical, path)

    monkeypatch.setattr(grading, "check_file", another_grade_finishes_first)
    args = ["exercise", "grade", str(subs), "--csv", str(grades), "--practical", "encoder"]
    code, out, err = run_cli(capsys, *args)
    kept = tmp_path / "grades-2.csv"
    assert_one_line_error(code, err, f"{grades} was written by another process while grading")
    assert f"these grades are in {kept}" in err
    assert grades.read_text() == theirs  # not replaced: no --overwrite
    assert [row["student"] for row in csv.DictReader(kept.open())] == ["alice"]
    assert not [p.name for p in tmp_path.iterdir() if ".tmp" in p.name]
    code, out, err = run_cli(capsys, *args, "--overwrite")  # told to: replaced
    assert code == 0, err
    assert [row["student"] for row in csv.DictReader(grades.open())] == ["alice"]


def test_a_stopped_grading_keeps_its_grades_and_resume_grades_only_the_others(
    capsys, tmp_path, release
):
    """Ctrl-C after two of four students kept nothing: an hour of grading was lost."""
    subs, imported = tmp_path / "subs", tmp_path / "imported"
    subs.mkdir()
    counting = f"import math\n\nopen({str(imported)!r}, 'a').write('a')\n"
    plant(subs / "a_good.py", "encoder", {"import math\n": counting})
    plant(
        subs / "b_broken.py",
        "encoder",
        {"torch.cat([cls, x], dim=1)": "torch.cat([x, cls], dim=1)"},
    )
    looping = tmp_path / "looping"
    (subs / "c_looping.py").write_text(looping_when_imported(looping, release))
    plant(subs / "d_later.py", "encoder", {})
    grades = tmp_path / "grades.csv"
    args = ["grade", str(subs), "--csv", str(grades), "--practical", "encoder", "--jobs", "1"]
    code, out, err = stop_when_imported(looping, signal.SIGINT, *args, "--timeout", "600")
    assert code == 128 + signal.SIGINT, err
    assert err.strip().splitlines() == [
        f"attnlab: interrupted: the grades of 2 of 4 students are in {grades}; the same "
        "command with --resume grades the others"
    ]
    assert out.splitlines() == ["a_good: 9 of 9 parts pass", "b_broken: 7 of 9 parts pass"]
    assert [row["student"] for row in csv.DictReader(grades.open())] == ["a_good", "b_broken"]
    assert imported.read_text() == "a"  # a_good was checked once

    release.touch()  # the looping student's import now ends
    code, out, err = run_cli(capsys, "exercise", *args, "--resume")
    assert code == 0, err
    missing = "PositionalEncoding is missing; TransformerEncoderLayer is missing; "
    assert out.splitlines() == [
        f"c_looping: 0 of 9 parts pass; c_looping.py: {missing}TransformerEncoder is missing",
        "d_later: 9 of 9 parts pass",
        f"wrote {grades}",
    ]
    assert imported.read_text() == "a"  # not checked again
    straight = tmp_path / "straight.csv"
    code, _, err = run_cli(capsys, "exercise", "grade", str(subs), "--csv", str(straight),
                           "--practical", "encoder")  # fmt: skip
    assert code == 0, err
    assert grades.read_text() == straight.read_text()  # as if it had never stopped


def test_resume_refuses_a_csv_that_is_not_this_gradings(capsys, tmp_path):
    subs = tmp_path / "subs"
    subs.mkdir()
    plant(subs / "alice.py", "encoder", {})
    grades = tmp_path / "grades.csv"
    args = ["exercise", "grade", str(subs), "--csv", str(grades), "--practical", "encoder",
            "--resume"]  # fmt: skip
    code, _, err = run_cli(capsys, *args)
    assert_one_line_error(code, err, f"--resume: {grades} does not exist")
    grades.write_text("name,score\nbob,3\n")
    code, _, err = run_cli(capsys, *args)
    assert_one_line_error(code, err, f"--resume: {grades} is not a CSV of grades")
    grades.write_text("student,attention:scaled_dot_product_attention,total\nbob,pass,1\n")
    code, _, err = run_cli(capsys, *args)
    assert_one_line_error(code, err, "holds other columns than these submissions' parts")
    assert grades.read_text().startswith("student,attention:")  # left as it was


def test_grade_help_says_that_students_code_runs_with_the_teachers_rights(capsys):
    code, out, _ = run_cli(capsys, "exercise", "grade", "--help")
    assert code == 0
    text = " ".join(out.split())
    assert "runs each student's code with your rights" in text
    assert "Python cannot sandbox it" in text and "in a container" in text
