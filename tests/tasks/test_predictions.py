"""Every task's predictions for a user's inputs: all inputs read before the model runs, then
each prediction made and handed on as soon as it is ready (``attnlab predict`` prints it then),
on the model's own device and without recording gradients.

A file of 200,000 inputs printed nothing until the last was predicted, Ctrl-C lost them all,
and a run's model moved to a GPU could not predict names or reversals (the inputs stayed on
the CPU)."""

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from attnlab.cli import main
from attnlab.errors import InputError
from attnlab.runs import load_run

from ..cli_helpers import assert_one_line_error, run_cli
from ..data_sets import write_made_up_names, write_short_shakespeare, write_tutorial_pairs

TINY = ["--d-model", "16", "--heads", "2", "--d-ff", "32", "--layers", "1", "--epochs", "1",
        "--max-steps", "2", "--warmup", "1", "--no-progress"]  # fmt: skip


def _digit_images(folder: Path) -> list[str]:
    """Two 8x8 grayscale PNG files in ``folder``: a vertical and a horizontal bar."""
    folder.mkdir()
    paths = []
    for i, bar in enumerate((np.s_[:, 3:5], np.s_[3:5, :])):
        pixels = np.zeros((8, 8), dtype=np.uint8)
        pixels[bar] = 255
        Image.fromarray(pixels).save(folder / f"bar{i}.png")
        paths.append(str(folder / f"bar{i}.png"))
    return paths


# task -> (writes its small data into a folder and returns it, or None; its small flags;
#          writes two good inputs into a folder and returns them; a bad input)
TASKS: dict[str, tuple[Callable | None, list[str], Callable[[Path], list[str]], str]] = {
    "reverse": (None, ["--seq-len", "6"], lambda _: ["3 1 4 1 5", "2 7"], "3 1 x"),
    "names": (write_made_up_names, ["--max-len", "12"], lambda _: ["Nakamura", "Rossi"], "3 1 4"),
    "digits": (None, [], lambda folder: _digit_images(folder / "images"), "missing.png"),
    "shakespeare": (
        write_short_shakespeare,
        ["--block-size", "16", "--train-blocks", "64", "--val-blocks", "16"],
        lambda _: ["ROMEO:", "JULIET:"],
        "ROMEO: 李",
    ),
    "translate-small": (
        write_tutorial_pairs,
        ["--max-tokens", "8", "--bpe-vocab", "100", "--batch-size", "16"],
        lambda _: ["I am bal.", "I am cel."],
        "   ",
    ),
}


@pytest.fixture(scope="module", params=TASKS)
def tiny_run(request, tmp_path_factory):
    """(the run directory of a two-step run of the task, two good inputs, a bad input)"""
    write_data, flags, write_inputs, bad = TASKS[request.param]
    folder = tmp_path_factory.mktemp(request.param)
    data = ["--data-dir", str(write_data(folder / "data"))] if write_data else []
    run = folder / "run"
    assert main(["train", request.param, "--out", str(run), *data, *TINY, *flags]) == 0
    return run, write_inputs(folder), bad


class ModuleCalls:
    """Counts every call of every module of a model, and whether gradients were on."""

    def __init__(self, model: nn.Module) -> None:
        self.count, self.grad_enabled = 0, set()
        for module in model.modules():
            module.register_forward_pre_hook(self._called)

    def _called(self, module: nn.Module, args: object) -> None:
        self.count += 1
        self.grad_enabled.add(torch.is_grad_enabled())


def test_a_bad_input_is_refused_before_the_model_runs(tiny_run, device):
    run_dir, good, bad = tiny_run
    loaded = load_run(run_dir)
    model = loaded.model.to(device)
    calls = ModuleCalls(model)
    with pytest.raises(InputError):
        loaded.task.predictions(model, [*good, bad])  # the call itself, before any next()
    assert calls.count == 0


def test_each_prediction_is_made_when_it_is_asked_for_on_the_models_device(tiny_run, device):
    run_dir, good, _ = tiny_run
    loaded = load_run(run_dir)
    model = loaded.model.to(device)
    alone = ModuleCalls(model)
    first_alone = loaded.task.predict(model, good[:1])
    one_prediction = alone.count
    assert one_prediction > 0 and alone.grad_enabled == {False}

    stream = ModuleCalls(model)
    predictions = loaded.task.predictions(model, good)
    assert stream.count == 0  # the inputs are read, and nothing is predicted yet
    first = next(predictions)
    assert stream.count == one_prediction  # the first input's work and no more
    rest = list(predictions)
    assert stream.count > one_prediction and stream.grad_enabled == {False}
    assert [first] == first_alone and len(rest) == 1


def test_predict_prints_each_prediction_as_it_is_made_and_ctrl_c_keeps_them(
    capsys, tmp_path, monkeypatch
):
    """The second prediction is interrupted: the first is on standard output already."""
    import attnlab.runs

    def interrupted_at_the_second_input(*args, **kwargs):
        loaded = load_run(*args, **kwargs)
        calls = []

        def stop_at_the_second(module: nn.Module, args: object) -> None:
            calls.append(1)
            if len(calls) == 2:
                raise KeyboardInterrupt

        loaded.model.register_forward_pre_hook(stop_at_the_second)  # one call per reversal
        return loaded

    run = tmp_path / "run"
    assert main(["train", "reverse", "--out", str(run), "--seq-len", "6", *TINY]) == 0
    capsys.readouterr()
    monkeypatch.setattr(attnlab.runs, "load_run", interrupted_at_the_second_input)
    inputs = tmp_path / "inputs.txt"
    inputs.write_text("3 1 4\n2 7 1\n")
    code, out, err = run_cli(capsys, "predict", str(run), "--file", str(inputs))
    assert code == 130 and err == "attnlab: interrupted\n"
    [line] = out.splitlines()
    assert line.startswith("3 1 4  ->  ")

    inputs.write_text("3 1 4\n2 7 1\n" * 1000 + "3 1 x\n")  # a bad input on the last line
    monkeypatch.setattr(attnlab.runs, "load_run", load_run)
    code, out, err = run_cli(capsys, "predict", str(run), "--file", str(inputs))
    assert_one_line_error(code, err, "'x' not in the vocabulary")
    assert out == ""
