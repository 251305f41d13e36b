"""``--layer FILE.py:ClassName``: a student's encoder layer in the real training pipeline.

The student layer here is the encoder practical's reference solution
(``attnlab/exercises/solutions/encoder.py``), loaded by file path as a student's would be. Its
initial weights are copied into attnlab's own layers (a fixed name mapping), both models are
trained with the same seed, data order and schedule, and the test metrics must agree.

Tolerance: the two layers compute the same function in a different order (three Q, K, V
matmuls against attnlab's one stacked projection; a written-out softmax against
``F.scaled_dot_product_attention``; a hand-written LayerNorm against ``nn.LayerNorm``), so they
differ by float32 rounding (~1e-6) from the first step, and a few optimizer steps carry that
along: the losses must agree to 1e-3 and the accuracies to one test example in 500.
"""

import dataclasses
import json
import textwrap
from pathlib import Path

import pytest
import torch

import attnlab.exercises.solutions.encoder as solution
from attnlab.experiments.launch import configs_from, train
from attnlab.models import (
    Llama,
    LlamaConfig,
    Seq2SeqConfig,
    Seq2SeqTransformer,
    SequenceClassifier,
    SequenceClassifierConfig,
)
from attnlab.runs import load_run, write_run_config
from attnlab.tasks import get_task
from attnlab.training.trainer import Trainer, batches_on, loader
from tests.cli_helpers import assert_one_line_error, run_cli
from tests.data_sets import needs_data, write_made_up_names

SOLUTION = f"{Path(solution.__file__)}:TransformerEncoderLayer"
TINY = {"d_model": 16, "heads": 2, "d_ff": 32, "dropout": 0.0}
STEPS = {"epochs": 1, "max_steps": 4, "batch_size": 256, "warmup": 2, "seed": 3}
NAMES = {**TINY, "layers": 2, "max_len": 12}
REVERSE = {**TINY, "layers": 1, "train_size": 256, "val_size": 64, "test_size": 500}


@pytest.fixture(scope="module")
def names_dir(tmp_path_factory) -> Path:
    """A small names folder: the tests that need a vocabulary, not the real 20,074 names."""
    return write_made_up_names(tmp_path_factory.mktemp("names"))


def attnlab_state_from(student: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The student model's state dict under attnlab's parameter names (layers stacked the
    same way, ``encoder.layers.i.``): Q, K, V stacked into ``qkv_proj``, LayerNorm gains."""
    rename = {
        "w_o": "self_attn.out_proj",
        "linear1": "feed_forward.linear1",
        "linear2": "feed_forward.linear2",
    }
    norms = {"gamma1": "norm1.weight", "beta1": "norm1.bias"}
    norms |= {"gamma2": "norm2.weight", "beta2": "norm2.bias"}
    state = {}
    for name, value in student.items():
        prefix, _, last = name.rpartition(".")
        layer, _, module = prefix.rpartition(".")
        if module in ("w_q", "w_k", "w_v"):
            if module == "w_q":
                qkv = [student[f"{layer}.w_{p}.{last}"] for p in "qkv"]
                state[f"{layer}.self_attn.qkv_proj.{last}"] = torch.cat(qkv)
        elif module in rename:
            state[f"{layer}.{rename[module]}.{last}"] = value
        elif last in norms:
            state[f"{prefix}.{norms[last]}"] = value
        else:
            state[name] = value
    return state


def metrics_with_attnlabs_layer(task_name: str, options: dict, out: Path) -> dict:
    """Test metrics of attnlab's own layers trained from the student run's initial weights."""
    task_cls = get_task(task_name)
    task_config, train_config = configs_from(task_cls, options)
    torch.manual_seed(train_config.seed)  # as attnlab.train does before building the model
    student_init = task_cls(task_config).build_model().state_dict()
    task = task_cls(dataclasses.replace(task_config, layer=""))  # the same window, norm_first
    model = task.build_model()
    model.load_state_dict(attnlab_state_from(student_init))
    out.mkdir()
    write_run_config(out, task, train_config, model)
    Trainer(task, model, train_config, out, progress=False).fit()
    run = load_run(out)
    test = loader(run.task.splits().test, run.task, batch_size=256)
    return run.task.evaluate(run.model, batches_on(test, torch.device("cpu")))


@pytest.mark.parametrize(
    "task_name, options, metrics",
    [
        pytest.param("names", NAMES, ("accuracy", "macro_f1"), marks=needs_data),
        ("reverse", REVERSE, ("token_accuracy", "sequence_accuracy")),
    ],
)
def test_the_reference_layer_trains_like_attnlabs_own(tmp_path, task_name, options, metrics):
    options = {**options, **STEPS, "layer": SOLUTION}
    result = train(task_name, out=tmp_path / "yours", **options)
    yours = result.report["metrics"]
    ours = metrics_with_attnlabs_layer(task_name, options, tmp_path / "ours")
    assert yours["loss"] == pytest.approx(ours["loss"], abs=1e-3)
    for name in metrics:
        assert yours[name] == pytest.approx(ours[name], abs=1 / 500)
    assert result.run.model.encoder.layers[0].__class__.__name__ == "TransformerEncoderLayer"


def test_a_layer_run_reloads_resumes_and_refuses_a_changed_file(tmp_path, capsys):
    layer_file = tmp_path / "my_layer.py"
    layer_file.write_text(Path(solution.__file__).read_text())
    run_dir = tmp_path / "run"
    flags = [f"--{k.replace('_', '-')}={v}" for k, v in {**REVERSE, **STEPS}.items()]
    layer = f"{layer_file}:TransformerEncoderLayer"
    code, out, _ = run_cli(
        capsys, "train", "reverse", "--layer", layer, "--out", str(run_dir), *flags
    )
    assert code == 0
    saved = json.loads((run_dir / "config.json").read_text())["model"]["config"]
    assert saved["layer"] == layer and len(saved["layer_sha256"]) == 64
    code, out, _ = run_cli(capsys, "eval", str(run_dir))
    assert code == 0 and "test set" in out
    code, out, _ = run_cli(capsys, "predict", str(run_dir), "1 2 3")
    assert code == 0 and "->" in out
    code, _, err = run_cli(capsys, "train", "reverse", "--resume", str(run_dir), "--max-steps=8")
    assert code == 0, err
    layer_file.write_text(layer_file.read_text() + "\n# edited after training\n")
    code, _, err = run_cli(capsys, "eval", str(run_dir))
    assert_one_line_error(code, err, "has changed since this run was trained")


def test_compare_with_a_layer_has_three_rows(tmp_path, capsys, names_dir):
    options = {**NAMES, **STEPS, "data_dir": names_dir}
    flags = [f"--{k.replace('_', '-')}={v}" for k, v in options.items()]
    code, out, err = run_cli(
        capsys, "compare", "names", "--layer", SOLUTION, "--budget", "1", "--json",
        "--out", str(tmp_path), *flags,
    )  # fmt: skip
    assert code == 0, err
    rows = json.loads(out[out.index("[") :])
    assert [row["variant"] for row in rows] == ["yours", "attnlab", "torch"]
    # the same architecture three times: the same number of parameters, up to the LayerNorm
    # gains torch and attnlab keep as weight/bias and the solution as gamma/beta (same count)
    assert len({row["parameters"] for row in rows}) == 1


BAD_LAYERS = {
    "empty.py": "",
    "syntax.py": "class Layer(nn.Module:\n",
    "raises.py": "raise RuntimeError('no GPU here')\n",
    "notmodule.py": "class Layer:\n    pass\n",
    "fewargs.py": """
        from torch import nn
        class Layer(nn.Module):
            def __init__(self, d_model):
                super().__init__()
    """,
    "shape.py": """
        from torch import nn
        class Layer(nn.Module):
            def __init__(self, d_model, num_heads, d_ff, dropout):
                super().__init__()
            def forward(self, x, mask=None):
                return x[:, 0]
    """,
    "tuple.py": """
        from torch import nn
        class Layer(nn.Module):
            def __init__(self, d_model, num_heads, d_ff, dropout):
                super().__init__()
            def forward(self, x, mask=None):
                return x, None
    """,
    "script.py": """
        import sys
        sys.exit("usage: python script.py")
    """,
    "nulbyte.py": "x = 1\x00\n",  # said "a syntax error on line None"
    "nomask.py": """
        from torch import nn
        class Layer(nn.Module):
            def __init__(self, d_model, num_heads, d_ff, dropout):
                super().__init__()
            def forward(self, x):
                return x
    """,
}


@pytest.mark.parametrize(
    "spec, pattern",
    [
        ("missing.py:Layer", "missing.py does not exist"),
        ("notes.txt:Layer", "is not a Python file"),
        ("folder.py:Layer", "is not a Python file"),
        ("empty.py:Layer", "defines no class Layer"),
        ("syntax.py", "takes FILE.py:ClassName"),
        ("syntax.py:Layer", "has a syntax error on line 1"),
        ("nulbyte.py:Layer", "nulbyte.py has a syntax error: source code string cannot contain"),
        ("raises.py:Layer", "raises.py raised RuntimeError: no GPU here"),
        ("script.py:Layer", "script.py called sys.exit('usage: python script.py'): a layer file"),
        ("fewargs.py:Nope", "defines no class Nope"),
        ("notmodule.py:Layer", "is not a subclass of torch.nn.Module"),
        ("fewargs.py:Layer", "Layer(d_model, num_heads, d_ff, dropout) failed"),
        ("shape.py:Layer", "returned shape (2, 16) for x of shape (2, 3, 16)"),
        ("tuple.py:Layer", "must return one tensor (B, T, d_model); it returned a tuple"),
        ("nomask.py:Layer", "Layer.forward(x (2, 3, 16), mask=(2, 1, 1, 3)) raised TypeError"),
    ],
)
@pytest.mark.parametrize("command", ["train", "compare"])
def test_a_layer_that_does_not_fit_gets_one_sentence(
    tmp_path, capsys, names_dir, spec, pattern, command
):
    for name, source in BAD_LAYERS.items():
        (tmp_path / name).write_text(textwrap.dedent(source))
    (tmp_path / "notes.txt").write_text("not python\n")
    (tmp_path / "folder.py").mkdir()
    file, _, name = spec.partition(":")
    layer = f"{tmp_path / file}:{name}" if name else str(tmp_path / file)
    out = tmp_path / "run"
    argv = [command, "names", "--layer", layer, "--out", str(out), "--data-dir", str(names_dir)]
    code, _, err = run_cli(capsys, *argv, "--d-model=16")
    assert_one_line_error(code, err, pattern)
    assert not out.exists()  # refused before any run directory was made


def test_layer_options_that_contradict_it_are_refused(capsys):
    code, _, err = run_cli(capsys, "train", "names", "--layer", SOLUTION, "--window", "2")
    assert_one_line_error(code, err, "padding mask (B, 1, 1, T) only")
    code, _, err = run_cli(capsys, "train", "names", "--layer", SOLUTION, "--backend", "torch")
    assert_one_line_error(code, err, "--layer replaces attnlab's transformer layer")


def test_the_probe_leaves_the_seeded_initial_weights_alone():
    """The probe builds a layer of its own before the model: without its own random-number
    state, the model's embedding (drawn first, before any layer) would change."""
    task_cls = get_task("reverse")
    yours, ours = (
        task_cls(configs_from(task_cls, {**REVERSE, "layer": layer})[0]) for layer in (SOLUTION, "")
    )
    torch.manual_seed(0)
    with_probe = yours.build_model().embed.state_dict()
    torch.manual_seed(0)
    without = ours.build_model().embed.state_dict()
    assert with_probe.keys() == without.keys()
    assert all(torch.equal(with_probe[k], without[k]) for k in without)


@pytest.mark.parametrize("layer", [-1, 2.5, True])
def test_a_model_config_names_a_layer_that_is_not_a_string(layer):

    # "'int' object has no attribute 'rpartition'" before
    message = r"a layer is given as a string FILE.py:ClassName; got "
    with pytest.raises(TypeError, match=message):
        SequenceClassifier(SequenceClassifierConfig(10, 2, layer=layer))
    with pytest.raises(TypeError, match=message):
        Seq2SeqTransformer(Seq2SeqConfig(10, 10, decoder_layer=layer))
    with pytest.raises(TypeError, match=message):
        Llama(LlamaConfig(10, 16, 32, 1, 2, layer=layer))
