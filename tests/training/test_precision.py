"""Mixed precision, torch.compile and device selection, and their command-line errors."""

import functools
import json

import pytest
import torch

import attnlab
from attnlab.cli import main
from attnlab.training.checkpoint import load_checkpoint
from attnlab.training.devices import resolve_device

from ..cli_helpers import assert_one_line_error, run_cli
from ..conftest import DEVICES
from .conftest import train


def history(run_dir):
    return json.loads((run_dir / "metrics.json").read_text())["history"]


# (device, precision) pairs: bf16 autocast everywhere, fp16 with loss scaling on CUDA only.
MIXED = [(d, "bf16") for d in DEVICES] + [(d, "fp16") for d in DEVICES if d == "cuda"]


# How far the mixed-precision run's weights may end from the fp32 run's, as a fraction of how
# far the fp32 run moved them from their initial values in 8 steps (bf16 on the CPU: 0.001
# measured). fp16's loss scaling may skip a step whose scaled gradients overflow.
DRIFT = {"bf16": 0.02, "fp16": 0.25}


def flat_weights(run_dir) -> torch.Tensor:
    state = load_checkpoint(run_dir / "checkpoint.pt")["model"]
    assert all(t.dtype == torch.float32 and torch.isfinite(t).all() for t in state.values())
    return torch.cat([t.flatten() for t in state.values()])


@pytest.mark.parametrize("device, precision", MIXED, ids=[f"{d}-{p}" for d, p in MIXED])
def test_mixed_precision_trains_like_fp32_and_keeps_float32_weights(tmp_path, device, precision):
    common = ["--val-every", "4", "--device", device]
    assert train(tmp_path / "init", *common, "--max-steps", "0") == 0  # the initial weights
    assert train(tmp_path / "fp32", *common, "--max-steps", "8") == 0
    assert train(tmp_path / precision, *common, "--max-steps", "8", "--precision", precision) == 0
    init, fp32, mixed = (flat_weights(tmp_path / n) for n in ("init", "fp32", precision))
    moved = (fp32 - init).norm()
    assert moved > 0.1  # 2.95 measured: the fp32 run trained
    assert (mixed - init).norm() > (1 - DRIFT[precision]) * moved  # so did the mixed one
    assert (mixed - fp32).norm() <= DRIFT[precision] * moved  # along the same path
    assert not torch.equal(mixed, fp32)  # the matmuls really ran in 16 bits
    losses = [history(tmp_path / n)[-1]["val_loss"] for n in ("fp32", precision)]
    assert losses[1] == pytest.approx(losses[0], abs=5e-3)  # 2e-4 measured for bf16


def test_compile_saves_plain_weight_names_and_resumes(tmp_path, monkeypatch):
    # The "eager" backend traces the model with TorchDynamo (what --compile wraps around the
    # model) but skips generating C++ kernels, which takes about half a minute here; the slow
    # test below runs the real compiler.
    monkeypatch.setattr(torch, "compile", functools.partial(torch.compile, backend="eager"))
    run = tmp_path / "compiled"
    assert train(run, "--compile", "--max-steps", "4") == 0
    model = attnlab.load(run)  # plain names: no "_orig_mod." (compile) or "module." (DDP)
    assert set(load_checkpoint(run / "checkpoint.pt")["model"]) == set(model.state_dict())
    assert (
        main(["train", "reverse", "--resume", str(run), "--max-steps", "6", "--no-progress"]) == 0
    )
    assert load_checkpoint(run / "checkpoint.pt")["step"] == 6


@pytest.mark.slow
def test_compile_with_inductor_trains_like_eager(tmp_path):
    options = ["--max-steps", "4", "--optimizer", "sgd", "--lr", "0.5"]
    assert train(tmp_path / "eager", *options) == 0
    assert train(tmp_path / "compiled", *options, "--compile") == 0
    eager = load_checkpoint(tmp_path / "eager" / "checkpoint.pt")["model"]
    compiled = load_checkpoint(tmp_path / "compiled" / "checkpoint.pt")["model"]
    assert eager.keys() == compiled.keys()
    for name, value in eager.items():
        torch.testing.assert_close(compiled[name], value, rtol=1e-4, atol=1e-5, msg=name)


def test_resume_may_change_precision(tmp_path):
    run = tmp_path / "r"
    assert train(run, "--max-steps", "3") == 0
    resume = ["train", "reverse", "--resume", str(run), "--max-steps", "5", "--no-progress"]
    assert main([*resume, "--precision", "bf16"]) == 0
    assert load_checkpoint(run / "checkpoint.pt")["step"] == 5


def test_auto_device_prefers_cuda_then_mps_then_cpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu")
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert resolve_device("auto") == torch.device("mps")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto") == torch.device("cuda")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--grad-accum", "0"], "grad_accum must be at least 1; got 0"),
        (["--grad-accum", "3"], "batch_size 128 must be a multiple of grad_accum 3"),
        (["--precision", "fp64"], "precision must be one of fp32, bf16, fp16"),
        (["--precision", "fp16", "--device", "cpu"], "--precision fp16 needs a CUDA GPU"),
        (["--device", "cuda"], "--device cuda was asked for, but this PyTorch sees no CUDA GPU"),
        (["--device", "mps"], "--device mps was asked for, but this PyTorch sees no Apple MPS"),
        (["--device", "tpu7"], "unknown device 'tpu7'"),
    ],
)
def test_bad_scaling_options_are_one_line_errors(capsys, tmp_path, monkeypatch, args, message):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    out = tmp_path / "run"
    code, _, err = run_cli(capsys, "train", "reverse", "--out", str(out), "--no-progress", *args)
    assert_one_line_error(code, err, message)
    assert not out.exists()  # refused before making a run directory


def test_bf16_on_a_gpu_without_bfloat16_is_refused(capsys, tmp_path, monkeypatch):
    # A GPU older than Ampere, pretended: the check runs before anything touches CUDA.
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: False)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "Tesla V100")
    args = ["--out", str(tmp_path / "run"), "--device", "cuda", "--precision", "bf16"]
    code, _, err = run_cli(capsys, "train", "reverse", *args)
    assert_one_line_error(code, err, "Tesla V100 has no bfloat16 support: use --precision fp16")
