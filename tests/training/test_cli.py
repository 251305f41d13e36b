"""The attnlab command: outputs, --json, and one clear line + status 2 on bad input."""

import io
import json
import os
import subprocess
import sys

import pytest
import torch

import attnlab
from attnlab.nn import padding_mask
from attnlab.tasks.common import IGNORE

from ..cli_helpers import assert_one_line_error, run_cli
from .conftest import SMALL, train


def model_answers(run_dir, examples: int) -> tuple[list[str], list[list[int]], list[list[float]]]:
    """Inputs of the run's own test examples as the text a user types, and what the model
    answers for each, read where training put the answer: the target positions that are not
    padding (the reversal first, then padding; the model has seen only 2 epochs, so its
    answers are not all right). Returns (texts, answers, probabilities of the answers)."""
    run = attnlab.load_run(run_dir)
    tokens, targets = run.task.splits().test[:examples]  # (N, T) each, left-padded inputs
    pad = run.task.pad_id
    with torch.no_grad():
        probs = run.model(tokens, mask=padding_mask(tokens, pad)).softmax(-1)  # (N, T, 10)
    answer = targets != IGNORE  # (N, T)
    texts = [" ".join(str(int(t)) for t in row[row != pad]) for row in tokens]
    best, chosen = probs.max(-1)
    answers = [chosen[i][answer[i]].tolist() for i in range(examples)]
    confidences = [best[i][answer[i]].tolist() for i in range(examples)]
    return texts, answers, confidences


def test_predict_prints_one_line_per_input(capsys, trained_run):
    texts, answers, confidences = model_answers(trained_run, 3)
    code, out, _ = run_cli(capsys, "predict", str(trained_run), *texts)
    assert code == 0
    lines = out.strip().splitlines()
    assert len(lines) == 3
    for line, text, answer, confidence in zip(lines, texts, answers, confidences, strict=True):
        shown = f"{text}  ->  {' '.join(map(str, answer))}   (lowest per-token probability "
        assert line == f"{shown}{min(confidence):.3f})"


def test_predict_json_from_file_and_stdin(capsys, trained_run, tmp_path, monkeypatch):
    texts, answers, confidences = model_answers(trained_run, 4)
    inputs = tmp_path / "inputs.txt"
    inputs.write_text(f"{texts[0]}\n\n{chr(10).join(texts[1:])}\n")  # a blank line is skipped
    code, out, _ = run_cli(capsys, "predict", str(trained_run), "--file", str(inputs), "--json")
    assert code == 0
    predictions = json.loads(out)
    assert [p["input"] for p in predictions] == [list(map(int, t.split())) for t in texts]
    assert [p["prediction"] for p in predictions] == answers
    for p, confidence in zip(predictions, confidences, strict=True):
        assert p["confidence"] == pytest.approx(confidence, abs=5e-5)  # rounded to 4 places
    monkeypatch.setattr(sys, "stdin", io.StringIO(inputs.read_text()))
    code, out, _ = run_cli(capsys, "predict", str(trained_run), "--file", "-", "--json")
    assert code == 0 and json.loads(out) == predictions


def test_eval_json_and_text(capsys, trained_run):
    code, out, _ = run_cli(capsys, "eval", str(trained_run), "--json")
    assert code == 0
    report = json.loads(out)
    # by hand, from the model and the test split: the loss and accuracies over the answer
    # positions (targets that are not padding), a sequence right when all its tokens are
    run = attnlab.load_run(trained_run)
    tokens, targets = run.task.splits().test.tensors
    with torch.no_grad():
        logits = run.model(tokens, mask=padding_mask(tokens, run.task.pad_id))
    answer = targets != IGNORE
    right = logits.argmax(-1) == targets
    expected = {
        "loss": torch.nn.functional.cross_entropy(logits[answer], targets[answer]).item(),
        "token_accuracy": right[answer].float().mean().item(),
        "sequence_accuracy": (right | ~answer).all(-1).float().mean().item(),
    }
    assert report["metrics"] == pytest.approx(expected, rel=1e-5)
    assert 0 < expected["token_accuracy"] < 1  # neither all wrong nor all right
    assert len(report["samples"]) == 3 and "distribution" in report["samples"][0]
    code, out, _ = run_cli(capsys, "eval", str(trained_run))
    assert code == 0 and out.startswith("test set: loss")


def test_attention_png(capsys, trained_run, tmp_path):
    out_png = tmp_path / "attn.png"
    code, out, _ = run_cli(
        capsys, "attention", str(trained_run), "3 1 4 1 5", "--out", str(out_png)
    )
    assert code == 0 and out_png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(
    "args, message",
    [
        (["predict", "{run}", "3 x 11"], "'x', '11' not in the vocabulary"),
        (["predict", "{run}", ""], "empty input"),
        (["predict", "{run}", "   "], "empty input"),
        (["predict", "{run}", " ".join(["1"] * 17)], "at most 16"),
        (["predict", "{run}"], "no input"),
        (["predict", "{run}", "--file", "/no/such/file"], "cannot read /no/such/file"),
        (["predict", "/no/such/run", "1 2"], "run directory /no/such/run does not exist"),
        (["predict", "{tmp}", "1 2"], "is not an attnlab run directory"),
        (["eval", "{tmp}"], "is not an attnlab run directory"),
        (["attention", "{run}", "1 2", "--out", "{tmp}/a.pdf"], "must be a .png"),
        (["train", "no-such-task"], "invalid choice: 'no-such-task'"),
        (["train", "reverse", "--min-len", "20"], "min_len <= seq_len"),
        (["train", "reverse", "--epochs", "zero"], "invalid int value: 'zero'"),
        (["train", "reverse", "--optimizer", "adagrad"], "optimizer must be one of"),
        (
            ["train", "reverse", "--resume", "{run}", "--lr", "0.1"],
            "--lr cannot change on --resume",
        ),
        (["train", "reverse", "--out", "{run}"], "already exists and is not empty"),
        (["train", "reverse", "--out", "{tmp}/new", "--device", "gpu0"], "unknown device 'gpu0'"),
    ],
)
def test_bad_input_is_one_clear_line_and_status_2(capsys, trained_run, tmp_path, args, message):
    args = [a.format(run=trained_run, tmp=tmp_path) for a in args]
    code, _, err = run_cli(capsys, *args)
    assert_one_line_error(code, err, message)


def test_foreign_and_damaged_run_directories(capsys, trained_run, tmp_path):
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "config.json").write_text('{"name": "bert-base", "hidden_size": 768}')
    code, _, err = run_cli(capsys, "predict", str(foreign), "1 2")
    assert_one_line_error(code, err, "is not the config of an attnlab run")

    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text((trained_run / "config.json").read_text())
    weights = (trained_run / "model.safetensors").read_bytes()
    (broken / "model.safetensors").write_bytes(weights[: len(weights) // 3])
    code, _, err = run_cli(capsys, "predict", str(broken), "1 2")
    assert_one_line_error(code, err, "not a readable safetensors file")

    (broken / "config.json").write_text("{not json")
    code, _, err = run_cli(capsys, "eval", str(broken))
    assert_one_line_error(code, err, "is not valid JSON")


def test_a_run_of_another_task_cannot_be_resumed_as_reverse(capsys, trained_run, tmp_path):
    other = tmp_path / "other"
    other.mkdir()
    config = json.loads((trained_run / "config.json").read_text())
    config["task"] = "no-such-task"
    (other / "config.json").write_text(json.dumps(config))
    code, _, err = run_cli(capsys, "train", "reverse", "--resume", str(other))
    assert_one_line_error(code, err, "is not the config of an attnlab run")


@pytest.mark.parametrize("argv", [["train", "reverse"], ["exercise", "check", "my"], ["--help"]])
def test_on_windows_every_command_is_one_sentence_pointing_to_wsl(capsys, monkeypatch, argv):
    monkeypatch.setattr(os, "name", "nt")  # what Python reports on Windows
    code, out, err = run_cli(capsys, *argv)
    assert out == ""
    assert_one_line_error(code, err, "the attnlab command runs on Linux and macOS, not on Windows")
    assert "run it in WSL" in err


def test_console_script_exit_status_and_help():
    result = subprocess.run(
        [sys.executable, "-m", "attnlab.cli", "predict", "/no/such/run", "1"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2 and result.stderr.count("\n") == 1
    help_text = subprocess.run(
        [sys.executable, "-m", "attnlab.cli", "train", "reverse", "--help"],
        capture_output=True,
        text=True,
    ).stdout
    for flag in (
        "--epochs",
        "--batch-size",
        "--lr",
        "--d-model",
        "--heads",
        "--layers",
        "--seed",
        "--out",
        "--resume",
    ):
        assert flag in help_text
    assert "(default: 0.002)" in help_text  # the task's own default learning rate


@pytest.mark.parametrize("command", [["train", "names"], ["compare", "names"], ["bench"]])
def test_help_names_a_folder_dir_and_says_no_empty_default(command):
    help_text = subprocess.run(
        [sys.executable, "-m", "attnlab.cli", *command, "--help"],
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
    ).stdout
    assert "--data-dir DIR " in help_text  # the docs' --data-dir DIR
    assert "(default: )" not in help_text  # no --data-dir, no --layer: nothing to show


def test_positional_inputs_may_come_before_or_after_options(capsys, trained_run):
    code_a, out_a, _ = run_cli(capsys, "predict", str(trained_run), "--json", "3 1 4")
    code_b, out_b, _ = run_cli(capsys, "predict", str(trained_run), "3 1 4", "--json")
    assert code_a == code_b == 0
    assert json.loads(out_a) == json.loads(out_b)
    assert json.loads(out_a)[0]["input"] == [3, 1, 4]


def test_resume_takes_epochs_and_no_compile(capsys, tmp_path):
    run_dir = tmp_path / "run"
    assert train(run_dir, "--epochs", "1", "--max-steps", "3", "--compile") == 0
    assert json.loads((run_dir / "config.json").read_text())["train"]["compile"] is True
    code, _, err = run_cli(
        capsys, "train", "reverse", "--resume", str(run_dir), "--epochs", "2", "--no-compile",
        "--max-steps", "0", "--no-progress",
    )  # fmt: skip
    assert code == 0, err
    saved = json.loads((run_dir / "config.json").read_text())["train"]
    assert saved["epochs"] == 2 and saved["compile"] is False and saved["max_steps"] == 0
    history = json.loads((run_dir / "metrics.json").read_text())["history"]
    assert history[-1]["step"] == 40  # two epochs of 20 steps: --epochs was taken


@pytest.mark.parametrize("abbreviation", ["--epoch", "--d-mod", "--no-comp"])
def test_option_abbreviations_are_refused(capsys, tmp_path, abbreviation):
    args = ["train", "reverse", "--out", str(tmp_path / "r"), abbreviation, "8"]
    code, _, err = run_cli(capsys, *args)
    assert_one_line_error(code, err, f"unrecognized arguments: {abbreviation}")
    assert not (tmp_path / "r").exists()


HELP_PAGES = [
    ["--help"],
    ["train", "--help"],
    *[["train", task, "--help"] for task in
      ("reverse", "names", "digits", "shakespeare", "translate", "translate-small")],
    ["compare", "names", "--help"],
    *[[command, "--help"] for command in
      ("eval", "predict", "translate", "generate", "attention", "embed", "similarity", "bench")],
]  # fmt: skip


@pytest.mark.parametrize("argv", HELP_PAGES, ids=" ".join)
def test_help_pages_are_plain_text(capsys, argv):
    code, out, _ = run_cli(capsys, *argv)
    assert code == 0 and out.startswith("usage: attnlab")
    for markup in (":class:", ":mod:", ":func:", "``", "seed's", "practical"):
        assert markup not in out, markup


def bar_draws(capsys, tmp_path, monkeypatch, mininterval: float) -> list[str]:
    """Each drawing of the progress bar on stderr, in order, by a one-epoch run of 20 steps
    that validates once, at its end, in two batches (100 examples, 50 a batch), with tqdm's
    minimum interval between redraws set to ``mininterval`` seconds."""
    from attnlab.training import trainer

    class Bar(trainer.tqdm):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, mininterval=mininterval, **kwargs)

    monkeypatch.setattr(trainer, "tqdm", Bar)
    main_args = ["train", "reverse", "--out", str(tmp_path / "r"), "--epochs", "1"]
    code, _, err = run_cli(capsys, *main_args, *SMALL)
    assert code == 0, err
    return [line for line in err.split("\r") if line.startswith("train reverse:")]


def test_the_progress_bar_redraws_at_tqdms_pace_not_at_every_step(capsys, tmp_path, monkeypatch):
    """With tqdm's minimum interval between redraws made endless, a 20-step run draws the bar
    when it opens, when its validation starts and when it closes, and no more: nothing forces
    a redraw at every step (which wrote a line per step, 240 KB for ``train reverse``, into a
    redirected log)."""
    draws = bar_draws(capsys, tmp_path, monkeypatch, mininterval=1e9)
    validating = [draw for draw in draws if "validating" in draw]
    assert len(validating) == 1 and validating[0].rstrip().endswith("validating 1/2]"), draws
    assert 1 <= len(draws) - len(validating) <= 3, draws


def test_the_progress_bar_counts_the_validation_batches(capsys, tmp_path, monkeypatch):
    """A long validation (52 s for an untrained translate model on 2 cores) looked like a hung
    step: the bar now counts its batches, and shows the training figures again after it."""
    draws = bar_draws(capsys, tmp_path, monkeypatch, mininterval=0)
    counts = [draw.rsplit("validating ", 1)[1].rstrip() for draw in draws if "validating" in draw]
    assert counts == ["1/2]", "2/2]"], draws
    assert "loss=" in draws[-1] and "validating" not in draws[-1]
