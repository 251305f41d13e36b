"""``attnlab exercise start / check / solve`` through the command, each check in a child process."""

import json

import pytest

from attnlab.exercises.registry import PRACTICALS, practical

from ..cli_helpers import assert_one_line_error, run_cli
from .helpers import plant

PARTS = [p.name for p in practical("encoder").parts]


def test_start_writes_the_skeleton_and_check_says_every_part_is_todo(capsys, tmp_path):
    code, out, _ = run_cli(capsys, "exercise", "start", str(tmp_path / "work"), "--part", "encoder")
    assert code == 0 and (tmp_path / "work" / "encoder.py").is_file()
    code, out, err = run_cli(capsys, "exercise", "check", str(tmp_path / "work"))
    assert code == 1 and err == ""
    assert out.splitlines()[: len(PARTS)] == [f"✗ {p}: not written yet (TODO)" for p in PARTS]


def test_solve_writes_solutions_that_pass_every_part_in_json(capsys, tmp_path):
    assert run_cli(capsys, "exercise", "solve", str(tmp_path))[0] == 0
    code, out, _ = run_cli(capsys, "exercise", "check", str(tmp_path / "encoder.py"), "--json")
    assert code == 0
    report = json.loads(out)
    assert report["status"] == 0
    assert [(p["part"], p["status"]) for p in report["files"][0]["parts"]] == [
        (p, "pass") for p in PARTS
    ]


def test_a_syntax_error_is_one_sentence_and_status_2(capsys, tmp_path):
    (tmp_path / "encoder.py").write_text("import torch\n\ndef broken(:\n")
    code, out, err = run_cli(capsys, "exercise", "check", str(tmp_path))
    assert_one_line_error(code, err, "encoder.py: line 3:")
    assert "does not import" in err
    assert out.count("not checked: the file does not import") == len(PARTS)


def test_a_null_byte_is_named_without_a_line_number(capsys, tmp_path):
    """Python's SyntaxError for a null byte has no line: the sentence said 'line None'."""
    (tmp_path / "encoder.py").write_bytes(b"import torch\x00\n")
    code, _, err = run_cli(capsys, "exercise", "check", str(tmp_path))
    assert_one_line_error(
        code, err, "encoder.py: source code string cannot contain null bytes, so the file does"
    )


@pytest.mark.parametrize("given", ["folder", "file"])
def test_a_practicals_file_that_is_a_folder_is_named_as_such(capsys, tmp_path, given):
    """It was reported as missing: 'holds no practical's file (looked for encoder.py, ...)'."""
    (tmp_path / "encoder.py").mkdir()
    target = tmp_path if given == "folder" else tmp_path / "encoder.py"
    code, _, err = run_cli(capsys, "exercise", "check", str(target))
    assert_one_line_error(code, err, f"cannot read {tmp_path / 'encoder.py'}: it is a directory")


def test_a_missing_class_and_a_wrong_signature_leave_the_other_parts_checked(capsys, tmp_path):
    path = plant(
        tmp_path / "encoder.py",
        "encoder",
        {
            "class PositionalEncoding(nn.Module):": "class PositionEncoding(nn.Module):",
            "PositionalEncoding(d_model, max_len)": "PositionEncoding(d_model, max_len)",
            "def norm(self, x: Tensor)": "def norm(self, x: Tensor, eps: float)",
        },
    )
    code, out, err = run_cli(capsys, "exercise", "check", str(path))
    assert code == 2
    assert err.splitlines() == [  # one line for both problems
        "attnlab: error: encoder.py: PositionalEncoding is missing (the file has "
        "PositionEncoding: keep the template's names); "
        "TransformerEncoderLayer.norm must take (self, x), not (self, x, eps)"
    ]
    lines = dict(
        line[2:].split(": ", 1) if ": " in line else (line[2:], "")
        for line in out.splitlines()[:-1]
    )
    assert lines["TransformerEncoderLayer.self_attention"] == ""  # passes
    assert lines["TransformerEncoder.concat_cls"] == ""
    assert lines["TransformerEncoderLayer.norm"].startswith(
        "not checked: TransformerEncoderLayer.norm must take"
    )
    assert lines["PositionalEncoding.forward"] == (
        "not checked: PositionalEncoding is missing (the file has PositionEncoding: keep the "
        "template's names)"
    )


def test_part_selects_parts_by_name_or_method(capsys, tmp_path):
    path = plant(
        tmp_path / "encoder.py",
        "encoder",
        {"torch.cat([cls, x], dim=1)": "torch.cat([x, cls], dim=1)"},
    )
    code, out, _ = run_cli(capsys, "exercise", "check", str(path), "--part", "concat_cls", "norm")
    assert code == 1
    assert out.splitlines() == [
        "✓ TransformerEncoderLayer.norm",
        "✗ TransformerEncoder.concat_cls: the CLS token is appended at the end: it goes in "
        "front, at position 0",
        "1 of 2 parts pass",
    ]


def test_a_file_that_exits_or_loops_at_import_is_reported_not_obeyed(capsys, tmp_path):
    (tmp_path / "encoder.py").write_text("import sys\nsys.exit(0)\n")
    code, _, err = run_cli(capsys, "exercise", "check", str(tmp_path))
    assert_one_line_error(code, err, "it calls sys.exit() when it is imported")
    (tmp_path / "encoder.py").write_text("while True:\n    pass\n")
    code, _, err = run_cli(capsys, "exercise", "check", str(tmp_path), "--timeout", "2")
    assert_one_line_error(code, err, "importing it took longer than 2 s")


def write(path, text):
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize(
    "args, pattern",
    [
        (lambda t: ["check", str(t / "nowhere")], "does not exist"),
        (lambda t: ["check", write(t / "encoder.txt", "x = 1\n")], "is not a Python file"),
        (lambda t: ["check", write(t / "encoder.py", "")], "is empty"),
        (lambda t: ["check", str(t)], "holds no practical's file"),
        (lambda t: ["check", write(t / "mine.py", "x = 1\n")], "is not named after a practical"),
        (
            lambda t: ["check", write(t / "encoder.py", "x\n"), "--part", "nope"],
            "no part called 'nope'",
        ),
        (
            lambda t: ["check", write(t / "encoder.py", "x\n"), "--part", ""],
            "no part called '' in encoder.py",
        ),
        (
            lambda t: ["check", write(t / "mine.py", "x\n"), "--practical", "nope"],
            "no practical 'nope'",
        ),
        (lambda t: ["start", str(t), "--part", "nope"], "no practical 'nope'"),
        (lambda t: ["start", write(t / "file", "x")], "it is a file, not a folder"),
        (lambda t: ["solve", write(t / "file", "x") + "/sub"], "is a file, not a directory"),
        *[
            (
                lambda t, s=s: ["check", write(t / "encoder.py", "x\n"), "--timeout", s],
                f"--timeout must be a number of seconds in (0, 3,600]; got {s}",
            )
            for s in ("0.0", "-1.0", "nan", "inf", "1e+30")
        ],
        (
            lambda t: ["grade", str(t), "--csv", str(t / "g.csv"), "--timeout", "nan"],
            "--timeout must be a number of seconds",
        ),
        (lambda t: ["explode", str(t)], "unknown action"),
    ],
)
def test_bad_input_is_one_sentence_and_status_2(capsys, tmp_path, args, pattern):
    code, _, err = run_cli(capsys, "exercise", *args(tmp_path))
    assert_one_line_error(code, err, pattern)


def test_start_refuses_to_overwrite(capsys, tmp_path):
    (tmp_path / "encoder.py").write_text("# my work\n")
    code, _, err = run_cli(capsys, "exercise", "start", str(tmp_path))
    assert_one_line_error(code, err, "already exists")
    assert (tmp_path / "encoder.py").read_text() == "# my work\n"


def test_a_folder_whose_name_is_not_utf8_is_printed_with_its_bytes_escaped(capsys, tmp_path):
    """Python reads byte 0xff of a file name as the surrogate '\\udcff', which no UTF-8
    output accepts: the folder is printed as w\\xff instead of ending in a traceback."""
    folder = tmp_path / "w\udcff"
    for part in ("encoder", "attention"):
        assert run_cli(capsys, "exercise", "start", str(folder), "--part", part)[0] == 0
    code, out, err = run_cli(capsys, "exercise", "check", str(folder))
    assert code == 1 and err == ""
    assert f"{tmp_path}/w\\xff/encoder.py:" in out.splitlines()


def test_the_help_names_every_practical(capsys):
    code, out, _ = run_cli(capsys, "exercise", "--help")
    assert code == 0
    practicals = out.split("Practicals:")[1].split(";")[0]
    for name in PRACTICALS:
        assert f"{name} (" in practicals, name


def test_what_the_students_code_prints_is_not_shown(capsys, tmp_path):
    """As docs/students.md says: only the verdicts reach the terminal, however much it prints."""
    path = plant(
        tmp_path / "encoder.py", "encoder", {"import math\n": "import math\n\nprint('x' * 10**6)\n"}
    )
    code, out, err = run_cli(capsys, "exercise", "check", str(path))
    assert code == 0 and err == ""
    assert out.splitlines() == [f"✓ {p}" for p in PARTS] + [
        f"{len(PARTS)} of {len(PARTS)} parts pass"
    ]
