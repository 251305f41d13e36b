"""A trained run reads its data set again (eval, --resume) only if it is the same data: from
other data its seeded split would differ, and the test report would not be the run's."""

import json
import shutil
from pathlib import Path

import pytest

from attnlab.cli import main

from ..cli_helpers import assert_one_line_error, run_cli
from ..data_sets import write_made_up_names, write_short_shakespeare, write_tutorial_pairs

TINY = ["--d-model", "16", "--heads", "2", "--d-ff", "32", "--layers", "1", "--epochs", "1",
        "--max-steps", "2", "--warmup", "1", "--no-progress"]  # fmt: skip
OTHER_DATA = "is not the data this run was trained on (its contents differ)"


def _add_a_name(folder: Path) -> None:
    with open(folder / "Irish.txt", "a", encoding="utf-8") as f:
        f.write("Gallagher\n")


def _change_a_pair(folder: Path) -> None:
    path = folder / "eng-fra.txt"
    path.write_text(path.read_text().replace("Je suis bal.", "Je suis bel.", 1))


def _add_a_line(folder: Path) -> None:
    with open(folder / "input.txt", "a") as f:
        f.write("Amen.\n")


TASKS = {  # task -> (its small data, its small flags, an edit of that data)
    "names": (write_made_up_names, ["--max-len", "12", "--batch-size", "256"], _add_a_name),
    "translate-small": (
        write_tutorial_pairs,
        ["--max-tokens", "8", "--bpe-vocab", "100", "--batch-size", "16", "--beam", "2"],
        _change_a_pair,
    ),
    "shakespeare": (
        write_short_shakespeare,
        ["--block-size", "16", "--train-blocks", "64", "--val-blocks", "16"],
        _add_a_line,
    ),
}


def _trained(tmp_path: Path, task: str) -> tuple[Path, Path]:
    """A tiny run of ``task`` trained on its small data, and that data."""
    write, flags, _ = TASKS[task]
    data, run = write(tmp_path / "data"), tmp_path / "run"
    assert main(["train", task, "--out", str(run), "--data-dir", str(data), *TINY, *flags]) == 0
    return run, data


@pytest.mark.parametrize("task", TASKS)
def test_eval_reads_a_copy_of_the_runs_data_and_refuses_edited_data(capsys, tmp_path, task):
    run, data = _trained(tmp_path, task)
    copy = shutil.copytree(data, tmp_path / "copy")  # the same data, in another folder
    code, _, err = run_cli(capsys, "eval", str(run), "--data-dir", str(copy))
    assert code == 0, err
    TASKS[task][2](copy)
    code, _, err = run_cli(capsys, "eval", str(run), "--data-dir", str(copy))
    assert_one_line_error(code, err, OTHER_DATA)
    assert "give the run's data with --data-dir" in err


def test_a_run_without_the_record_reads_any_data_and_a_bad_record_is_one_sentence(capsys, tmp_path):
    run, data = _trained(tmp_path, "names")
    _add_a_name(data)
    config = json.loads((run / "config.json").read_text())
    assert len(config["task_state"]["data_sha256"]) == 64
    for value, code_wanted in ((None, 0), ("not a sha256", 2)):  # an older run; an edit
        config["task_state"]["data_sha256"] = value
        (run / "config.json").write_text(json.dumps(config))
        code, _, err = run_cli(capsys, "eval", str(run), "--data-dir", str(data))
        assert code == code_wanted, err
    assert_one_line_error(code, err, "data_sha256 must be 64 hexadecimal digits; got 'not a")
