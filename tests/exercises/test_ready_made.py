"""What a student's file takes ready-made: read from the code, reported beside the verdicts."""

import csv
import json

import pytest

from attnlab.exercises.ready_made import ready_made
from attnlab.exercises.registry import PRACTICALS

from ..cli_helpers import run_cli
from .helpers import plant, solution_text

NORM_CODE = "mean = x.mean(dim=-1, keepdim=True)  # (B, T, 1)"
# The encoder's norm part written with torch's layer norm: it passes, on torch's code.
TORCH_NORM = {NORM_CODE: "return torch.nn.functional.layer_norm(x, x.shape[-1:])"}


@pytest.mark.parametrize("name", PRACTICALS)
def test_the_reference_solutions_take_nothing_beyond_their_skeletons(name):
    assert ready_made(name, solution_text(name)) == []


def test_each_way_of_naming_a_piece_is_read_through_the_imports():
    source = "\n".join([
        "import torch",                                                   # 1
        "import torch.nn.functional as F",                                # 2
        "from torch import nn",                                           # 3
        "from torch.nn.functional import scaled_dot_product_attention as sdpa",  # 4
        "from attnlab.nn import MultiHeadAttention",                      # 5
        "norm = nn.LayerNorm(8)",                                         # 6
        "y = F.layer_norm(x, (8,)) + torch.nn.functional.layer_norm(x, (8,))",  # 7
        "mask = nn.Transformer.generate_square_subsequent_mask(5)",       # 8
        "z = torch.layer_norm(x, (8,)); own = F.softmax(x, -1) @ nn.Linear(8, 8).weight",  # 9
    ])  # fmt: skip
    assert ready_made("encoder", source) == [
        "torch.nn.functional.scaled_dot_product_attention (line 4)",  # imported, not called
        "attnlab.nn.MultiHeadAttention (line 5)",
        "torch.nn.LayerNorm (line 6)",
        "torch.nn.functional.layer_norm (line 7)",
        "torch.nn.Transformer (line 8)",
        "torch.layer_norm (line 9)",  # softmax and Linear are the student's own building bricks
    ]


def test_what_the_skeleton_hands_out_is_not_reported():
    # The decoder's skeleton gives an attention built on F.scaled_dot_product_attention and
    # nn.LayerNorm sublayers; the encoder's gives neither.
    source = "import torch.nn.functional as F\nout = F.scaled_dot_product_attention(q, k, v)\n"
    assert ready_made("decoder", source) == []
    assert ready_made("encoder", source) == [
        "torch.nn.functional.scaled_dot_product_attention (line 2)"
    ]


def test_a_file_that_does_not_parse_reports_nothing_here():
    assert ready_made("encoder", "def forward(self:\n") == []
    assert ready_made("encoder", "x = 1\0\n") == []


def test_check_passes_the_part_and_says_it_ran_on_torchs_code(capsys, tmp_path):
    student = plant(tmp_path / "encoder.py", "encoder", TORCH_NORM)
    line = 1 + student.read_text().split("\n").index(
        "        return torch.nn.functional.layer_norm(x, x.shape[-1:])"
    )
    code, out, err = run_cli(capsys, "exercise", "check", str(student), "--part", "norm")
    assert (code, err) == (0, "")
    assert out.splitlines() == [
        "✓ TransformerEncoderLayer.norm",
        "1 of 1 parts pass",
        f"note: uses ready-made torch.nn.functional.layer_norm (line {line}): a part that calls "
        "it passes on that code, not yours",
    ]
    code, out, _ = run_cli(capsys, "exercise", "check", str(student), "--part", "norm", "--json")
    assert json.loads(out)["files"][0]["ready_made"] == [
        f"torch.nn.functional.layer_norm (line {line})"
    ]


def test_the_grades_name_what_each_student_took_ready_made(capsys, tmp_path):
    (tmp_path / "subs").mkdir()
    plant(tmp_path / "subs" / "alice.py", "encoder", {})
    plant(tmp_path / "subs" / "bob.py", "encoder", TORCH_NORM)
    grades = tmp_path / "grades.csv"
    code, out, err = run_cli(
        capsys, "exercise", "grade", str(tmp_path / "subs"), "--csv", str(grades),
        "--practical", "encoder", "--timeout", "20",
    )  # fmt: skip
    assert code == 0, err
    rows = {row["student"]: row for row in csv.DictReader(grades.open())}
    assert rows["alice"]["ready_made"] == ""
    assert rows["bob"]["ready_made"].startswith("bob.py: torch.nn.functional.layer_norm (line ")
    assert rows["alice"]["total"] == rows["bob"]["total"]  # the grades themselves are the same
    n = rows["bob"]["total"]
    assert f"bob: {n} of {n} parts pass; ready-made: {rows['bob']['ready_made']}\n" in out
    assert f"alice: {n} of {n} parts pass\n" in out
