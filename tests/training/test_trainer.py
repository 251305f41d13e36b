"""The training pipeline end to end: resume, kill -9, NaN, determinism, what the model learns."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

import attnlab
from attnlab.cli import main
from attnlab.errors import TrainingError
from attnlab.runs import write_run_config
from attnlab.tasks.reverse import ReverseConfig, ReverseTask
from attnlab.training import TrainConfig, Trainer
from attnlab.training.checkpoint import load_checkpoint

from .conftest import train


def start_training(run_dir, train_size: int, *extra: str) -> subprocess.Popen:
    """``attnlab train reverse`` in a child process (2 epochs of batches of 50)."""
    args = ["train", "reverse", "--out", str(run_dir), "--no-progress",
            "--train-size", str(train_size), "--val-size", "100", "--test-size", "100",
            "--batch-size", "50", "--epochs", "2", *extra]  # fmt: skip
    return subprocess.Popen(
        [sys.executable, "-m", "attnlab.cli", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for(path, proc: subprocess.Popen, seconds: float = 120) -> None:
    """Wait until the training child has written ``path`` (it must not die first)."""
    deadline = time.monotonic() + seconds
    while not path.exists() and time.monotonic() < deadline:
        assert proc.poll() is None, proc.stderr.read()
        time.sleep(0.05)


def checkpoint_params(run_dir):
    return load_checkpoint(run_dir / "checkpoint.pt")["model"]


def test_resume_gives_the_same_parameters_as_training_straight(tmp_path):
    # dropout on: the RNG state must be restored too; 40 steps, interrupted at 25 (mid-epoch)
    options = ["--epochs", "2", "--dropout", "0.1"]
    assert train(tmp_path / "straight", *options) == 0
    assert train(tmp_path / "split", *options, "--max-steps", "25") == 0
    assert load_checkpoint(tmp_path / "split" / "checkpoint.pt")["step"] == 25
    assert (
        main(
            [
                "train",
                "reverse",
                "--resume",
                str(tmp_path / "split"),
                "--max-steps",
                "0",
                "--no-progress",
            ]
        )
        == 0
    )
    straight, split = (
        checkpoint_params(tmp_path / "straight"),
        checkpoint_params(tmp_path / "split"),
    )
    assert load_checkpoint(tmp_path / "split" / "checkpoint.pt")["step"] == 40
    assert straight.keys() == split.keys()
    for name in straight:
        assert torch.equal(straight[name], split[name]), name


def test_same_seed_same_metrics(tmp_path):
    assert train(tmp_path / "a", "--epochs", "1") == 0
    assert train(tmp_path / "b", "--epochs", "1") == 0
    a = json.loads((tmp_path / "a" / "metrics.json").read_text())
    b = json.loads((tmp_path / "b" / "metrics.json").read_text())
    assert a["history"] == b["history"] and a["test"]["metrics"] == b["test"]["metrics"]
    assert train(tmp_path / "c", "--epochs", "1", "--seed", "1") == 0
    c = json.loads((tmp_path / "c" / "metrics.json").read_text())
    assert c["history"] != a["history"]


def test_sigkill_leaves_a_loadable_checkpoint_and_resume_finishes(tmp_path):
    run_dir = tmp_path / "killed"
    # 800 steps, a checkpoint every 25
    proc = start_training(run_dir, 20_000, "--val-every", "25")
    wait_for(run_dir / "checkpoint.pt", proc)
    time.sleep(0.5)  # let it run on, past more checkpoint writes
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL

    step = load_checkpoint(run_dir / "checkpoint.pt")["step"]
    assert 0 < step < 800
    assert attnlab.load(run_dir)(torch.zeros(1, 16, dtype=torch.long)).shape == (1, 16, 10)
    assert main(["train", "reverse", "--resume", str(run_dir), "--no-progress"]) == 0
    assert load_checkpoint(run_dir / "checkpoint.pt")["step"] == 800


def test_nan_loss_stops_with_a_clear_message_and_keeps_the_last_good_checkpoint(tmp_path):
    task = ReverseTask(ReverseConfig(train_size=500, val_size=50, test_size=50))
    model = task.build_model()
    config = TrainConfig(epochs=1, batch_size=25, val_every=5)
    write_run_config(tmp_path, task, config, model)
    real_loss, calls = task.loss, []

    def loss_that_diverges(model, batch):
        calls.append(1)
        loss = real_loss(model, batch)
        return loss * float("nan") if len(calls) == 13 else loss

    task.loss = loss_that_diverges
    with pytest.raises(TrainingError, match=r"loss became nan at step 13.*checkpoint \(step 10\)"):
        Trainer(task, model, config, tmp_path, progress=False).fit()
    state = load_checkpoint(tmp_path / "checkpoint.pt")
    assert state["step"] == 10
    assert all(torch.isfinite(t).all() for t in state["model"].values())
    attnlab.load(tmp_path)  # the best weights are intact too


def test_a_one_layer_one_head_model_attends_to_the_flipped_index(tmp_path):
    out = tmp_path / "attn"
    assert (
        main(
            [
                "train",
                "reverse",
                "--out",
                str(out),
                "--no-progress",
                "--train-size",
                "20000",
                "--val-size",
                "200",
                "--test-size",
                "200",
                "--layers",
                "1",
                "--heads",
                "1",
                "--epochs",
                "2",
                "--batch-size",
                "64",
            ]
        )
        == 0
    )
    run = attnlab.load_run(out)
    tokens = torch.randint(0, 10, (64, 16))  # full-length sequences
    (weights,) = run.model.attention_maps(tokens)  # (B, 1, T, T)
    strongest = weights[:, 0].argmax(-1)  # (B, T): the key each output attends to most
    flipped = torch.arange(15, -1, -1).expand(64, 16)
    assert (strongest == flipped).float().mean() > 0.9
    assert (run.model(tokens).argmax(-1) == tokens.flip(1)).float().mean() > 0.95


def test_early_stopping(tmp_path):
    assert (
        train(
            tmp_path / "r",
            "--epochs",
            "10",
            "--val-every",
            "5",
            "--patience",
            "2",
            "--lr",
            "1e-9",
            "--schedule",
            "constant",
        )
        == 0
    )
    history = json.loads((tmp_path / "r" / "metrics.json").read_text())["history"]
    assert len(history) < 40  # stopped long before 10 epochs x 4 validations


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_other_optimizers_and_noam_schedule_train(tmp_path, optimizer):
    assert (
        train(
            tmp_path / "r",
            "--epochs",
            "1",
            "--optimizer",
            optimizer,
            "--schedule",
            "noam",
            "--lr",
            "1.0",
        )
        == 0
    )
    history = json.loads((tmp_path / "r" / "metrics.json").read_text())["history"]
    assert history[-1]["val_loss"] < 2.31  # below chance, ln(10)


def test_run_directory_contents(trained_run):
    names = {p.name for p in trained_run.iterdir()}
    assert {
        "config.json",
        "model.safetensors",
        "checkpoint.pt",
        "metrics.json",
        "plots",
        "tensorboard",
    } <= names
    config = json.loads((trained_run / "config.json").read_text())
    assert config["task"] == "reverse" and config["attnlab_version"] == attnlab.__version__
    assert config["train"]["lr"] == 2e-3 and config["model"]["class"] == "TokenPredictor"
    assert (trained_run / "plots" / "training_curves.png").stat().st_size > 0
    assert any((trained_run / "tensorboard").iterdir())
    metrics = json.loads((trained_run / "metrics.json").read_text())
    assert set(metrics["test"]["metrics"]) == {"loss", "token_accuracy", "sequence_accuracy"}


def test_ctrl_c_stops_after_the_step_and_saves_a_checkpoint(tmp_path):
    run_dir = tmp_path / "interrupted"
    proc = start_training(run_dir, 50_000)  # 1,000 steps per epoch
    wait_for(run_dir / "tensorboard", proc)
    time.sleep(1.0)  # well inside the first epoch of 1,000 steps
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert "Stopping after this step" in err
    step = load_checkpoint(run_dir / "checkpoint.pt")["step"]
    assert 0 < step < 1000  # stopped early, and the checkpoint is where it stopped
    assert "test set:" in out
