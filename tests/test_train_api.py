"""``attnlab.train``: the Python function behind ``attnlab train``."""

import re

import pytest
from safetensors.torch import load_file

import attnlab
from attnlab.cli import main
from attnlab.errors import ConfigError, InputError

SMALL = {"train_size": 600, "val_size": 60, "test_size": 60, "batch_size": 50, "epochs": 2}


def test_train_returns_the_run_and_equals_the_command_line(tmp_path):
    result = attnlab.train("reverse", out=tmp_path / "python", **SMALL)
    assert result.run.dir == tmp_path / "python"
    assert set(result.report["metrics"]) == {"loss", "token_accuracy", "sequence_accuracy"}
    assert result.history[-1]["step"] == 2 * 12  # ceil(600 / 50) steps per epoch

    flags = [f"--{k.replace('_', '-')}={v}" for k, v in SMALL.items()]
    out = tmp_path / "cli"
    assert main(["train", "reverse", "--out", str(out), "--no-progress", *flags]) == 0
    python_weights = load_file(tmp_path / "python" / "model.safetensors")
    cli_weights = load_file(out / "model.safetensors")
    assert python_weights.keys() == cli_weights.keys()
    for name, tensor in python_weights.items():
        assert tensor.equal(cli_weights[name]), name  # same seed, same run, bit for bit


@pytest.mark.parametrize(
    "options, message",
    [
        ({"d_modle": 32}, "has no option 'd_modle'"),
        ({"d_model": 0}, "d_model must be at least 1; got 0"),
        ({"heads": 3, "d_model": 32}, "heads must divide d_model"),
        ({"dropout": float("nan")}, "dropout must be a finite number"),
        ({"epochs": "3"}, "epochs must be a whole number; got '3'"),
    ],
)
def test_bad_options_raise_config_error_before_any_run_directory(tmp_path, options, message):
    with pytest.raises(ConfigError, match=message):
        attnlab.train("reverse", out=tmp_path / "run", **options)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("value", [None, 3, ["runs/r"], ""])
def test_load_and_load_run_name_an_argument_that_is_not_a_path(value):
    # Path(None) was a bare TypeError from pathlib; Path("") the current folder.
    for load in (attnlab.load, attnlab.load_run):
        message = f"run_dir must be the path of a run directory; got {value!r}"
        with pytest.raises(InputError, match=re.escape(message)):
            load(value)


@pytest.mark.parametrize("name", ["out", "resume"])
def test_train_names_an_out_or_resume_that_is_not_a_path(tmp_path, monkeypatch, name):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(InputError, match=f"{name} must be the path of a run directory; got 3"):
        attnlab.train("reverse", **{name: 3})
    assert not (tmp_path / "runs").exists()


def test_evaluate_run_names_a_run_directory_given_in_place_of_the_run(tmp_path):
    from attnlab.evaluation import evaluate_run

    # "'str' object has no attribute 'model'" before
    with pytest.raises(TypeError, match=r"run must be a Run, as attnlab.load_run\(run_dir\) "):
        evaluate_run(str(tmp_path))
