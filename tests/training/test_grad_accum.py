"""Gradient accumulation: N micro-batches make the same optimizer step as one batch of N*B."""

import json

import pytest
import torch

from attnlab.cli import main
from attnlab.training.checkpoint import load_checkpoint

from ..conftest import fp32_atol

# Fixed-length sequences (equal token counts: the token-mean loss is an example mean) and
# plain SGD (see tests/training/test_distributed.py for why not Adam in exact comparisons).
# 410 examples in global batches of 40: 10 full steps and a last one of 10 examples, which
# 4 micro-batches split unevenly (3, 3, 2, 2).
OPTIONS = ["--train-size", "410", "--val-size", "40", "--test-size", "40", "--min-len", "16",
           "--batch-size", "40", "--epochs", "1", "--val-every", "4", "--optimizer", "sgd",
           "--lr", "0.5", "--no-progress"]  # fmt: skip


def test_grad_accum_gives_the_same_updates_as_one_big_batch(tmp_path, device):
    options = [*OPTIONS, "--device", str(device)]
    assert main(["train", "reverse", "--out", str(tmp_path / "big"), *options]) == 0
    accumulated = ["--out", str(tmp_path / "accum"), *options, "--grad-accum", "4"]
    assert main(["train", "reverse", *accumulated]) == 0

    big = load_checkpoint(tmp_path / "big" / "checkpoint.pt")
    accum = load_checkpoint(tmp_path / "accum" / "checkpoint.pt")
    assert big["step"] == accum["step"] == 11  # steps are optimizer steps, not micro-batches
    for name, value in big["model"].items():
        torch.testing.assert_close(
            accum["model"][name], value, rtol=0, atol=fp32_atol(device, 1e-6), msg=name
        )  # CUDA: 1e-5
    # the same schedule and the same logged (global-batch) training loss
    history = [
        json.loads((tmp_path / run / "metrics.json").read_text())["history"]
        for run in ("big", "accum")
    ]
    assert [h["lr"] for h in history[0]] == [h["lr"] for h in history[1]]
    for a, b in zip(*history, strict=True):
        assert a["train_loss"] == pytest.approx(b["train_loss"], abs=fp32_atol(device, 1e-6))


def test_resume_with_another_grad_accum_continues_the_same_run(tmp_path):
    run = str(tmp_path / "run")
    assert main(["train", "reverse", "--out", run, *OPTIONS, "--max-steps", "5"]) == 0
    resume = ["train", "reverse", "--resume", run, "--grad-accum", "2", "--max-steps", "0"]
    assert main([*resume, "--no-progress"]) == 0
    assert main(["train", "reverse", "--out", str(tmp_path / "straight"), *OPTIONS]) == 0
    resumed = load_checkpoint(tmp_path / "run" / "checkpoint.pt")
    straight = load_checkpoint(tmp_path / "straight" / "checkpoint.pt")
    assert resumed["step"] == 11
    for name, value in straight["model"].items():
        torch.testing.assert_close(resumed["model"][name], value, rtol=0, atol=1e-6, msg=name)
