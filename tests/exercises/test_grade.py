"""``attnlab exercise grade``: every student in their own process; none can harm the others."""

import csv
import os
import sys
from pathlib import Path

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
    assert list(next(iter(rows.values()))) == ["student", *PARTS, "total"]
    n = len(PARTS)
    assert rows["good"] == {"student": "good", **dict.fromkeys(PARTS, "pass"), "total": str(n)}
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
    assert rows["exiting"] == {"student": "exiting", **dict.fromkeys(PARTS, "error"), "total": "0"}
    assert "good: 9 of 9 parts pass" in out.replace(str(n), "9")
    # The student's code ran, but never in this process, and this process never imported it.
    assert int(marker.read_text()) != os.getpid()
    subs = tmp_path / "subs"
    files = [getattr(m, "__file__", None) for m in list(sys.modules.values())]
    assert not [f for f in files if f and Path(f).resolve().is_relative_to(subs.resolve())]


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
        (["grade", str(tmp_path / "subs")], "--csv"),
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
