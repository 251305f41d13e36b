"""``attnlab train shakespeare --arch llama --layer FILE.py:LlamaBlock``: a student's Llama
block in attnlab's Llama, through training, reloading, generation and comparison.

The student block here is the llama practical's reference solution
(``attnlab/exercises/solutions/llama.py``), loaded by file path as a student's would be. Its
weights map onto attnlab's own Llama block (W_Q, W_K, W_V stacked into ``qkv_proj``; W1 and
W3 into ``linear1``), so a Llama of attnlab's blocks with the same weights is the reference:
the same logits, the same generated text (attnlab's with its key/value cache, the student's
recomputing the context), and the same training.
"""

import dataclasses
import json
import textwrap
from pathlib import Path

import pytest
import torch

import attnlab.exercises.solutions.encoder as encoder_solution
import attnlab.exercises.solutions.llama as solution
from attnlab.errors import InputError
from attnlab.experiments.launch import configs_from, train
from attnlab.generation import generate
from attnlab.models import Llama, LlamaConfig
from attnlab.runs import load_run, write_run_config
from attnlab.tasks import get_task
from attnlab.training.trainer import Trainer, batches_on, loader
from tests.cli_helpers import assert_one_line_error, run_cli
from tests.conftest import fp32_atol
from tests.tasks.test_shakespeare import text_dir  # noqa: F401

SOLUTION = f"{Path(solution.__file__)}:LlamaBlock"
TINY = {
    "arch": "llama", "block_size": 16, "train_blocks": 96, "val_blocks": 24, "layers": 2,
    "heads": 4, "kv_heads": 2, "d_model": 32, "d_ff": 64,
}  # fmt: skip
STEPS = {"epochs": 1, "max_steps": 4, "batch_size": 12, "warmup": 0, "lr": 3e-3, "seed": 5}


def flags(options: dict) -> list[str]:
    return [f"--{k.replace('_', '-')}={v}" for k, v in options.items()]


def attnlab_state_from(student: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A Llama state dict of the solution's blocks under the names of attnlab's blocks (the
    layers stacked the same way, ``layers.i.``): W_Q, W_K, W_V stacked into ``qkv_proj``
    (rows: the Q heads, the K heads, the V heads), W1 and W3 into ``linear1``."""
    state = {}
    for name, value in student.items():
        head, _, rest = name.partition(".self_attn.")
        if rest == "w_q.weight":
            qkv = [student[f"{head}.self_attn.w_{p}.weight"] for p in "qkv"]
            state[f"{head}.self_attn.qkv_proj.weight"] = torch.cat(qkv)
        elif rest == "w_o.weight":
            state[f"{head}.self_attn.out_proj.weight"] = value
        head, _, rest = name.partition(".feed_forward.")
        if rest == "w1.weight":
            w1, w3 = value, student[f"{head}.feed_forward.w3.weight"]
            state[f"{head}.feed_forward.linear1.weight"] = torch.cat([w1, w3])
        elif rest == "w2.weight":
            state[f"{head}.feed_forward.linear2.weight"] = value
        elif ".self_attn." not in name and ".feed_forward." not in name:
            state[name] = value  # embedding, the RMSNorm gains
    return state


def llama_pair(block_size: int = 12) -> tuple[Llama, Llama]:
    """A Llama of the solution's blocks (random weights, the RMSNorm gains too) and attnlab's
    own Llama with the same weights."""
    config = LlamaConfig(
        vocab_size=40, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=block_size,
        rms_norm_eps=1e-5, rope_theta=500.0, tie_word_embeddings=True,
    )  # fmt: skip
    torch.manual_seed(0)
    yours = Llama(dataclasses.replace(config, layer=SOLUTION)).eval()
    with torch.no_grad():
        for p in yours.parameters():
            p.normal_(std=0.3)
    ours = Llama(config).eval()
    ours.load_state_dict(attnlab_state_from(yours.state_dict()))
    return yours, ours


def test_the_solutions_blocks_with_attnlabs_weights_give_attnlabs_logits(device):
    """On every device: the solution builds its rotary tables and mask where x is."""
    yours, ours = (model.to(device) for model in llama_pair())
    assert type(yours.layers[0]).__name__ == "LlamaBlock"
    ids = torch.randint(0, 40, (3, 12), device=device)
    atol = fp32_atol(device, 1e-5)
    torch.testing.assert_close(yours(ids), ours(ids), atol=atol, rtol=1e-5)


def test_generation_recomputes_the_context_and_gives_the_text_of_attnlabs_cache(device):
    """Past the window of 12 positions too (the context slides by half a window)."""
    yours, ours = (model.to(device) for model in llama_pair())
    assert yours.make_cache() is None and ours.make_cache() is not None
    prompt = torch.randint(0, 40, (2, 4), device=device)
    for sampling in ({"temperature": 0}, {"temperature": 1.0, "top_k": 10, "seed": 7}):
        cached = generate(ours, prompt, 30, use_cache=True, **sampling)
        recomputed = generate(yours, prompt, 30, **sampling)  # use_cache=True: no cache to use
        assert recomputed.shape == (2, 34)
        assert torch.equal(recomputed, cached)


@pytest.mark.parametrize("option", ["static_cache", "compile"])
def test_generation_refuses_what_needs_a_cache_with_a_users_block(option):
    yours, _ = llama_pair()
    with pytest.raises(InputError, match="keep no key/value cache"):
        generate(yours, torch.tensor([[1, 2]]), 3, **{option: True})


def test_a_llama_of_users_blocks_refuses_what_its_blocks_cannot_do():
    yours, _ = llama_pair()
    ids = torch.tensor([[1, 2, 3]])
    with pytest.raises(ValueError, match="keeps no key/value cache"):
        yours(ids, cache=[])
    with pytest.raises(ValueError, match="no padding mask"):
        yours(ids, attention_mask=torch.ones(1, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match="no attention weights"):
        yours(ids, return_attention=True)
    with pytest.raises(ValueError, match="has no dropout"):
        LlamaConfig(layer=SOLUTION, dropout=0.1)


def test_the_solutions_block_trains_like_attnlabs_own(tmp_path, text_dir):  # noqa: F811
    options = {**TINY, **STEPS, "data_dir": str(text_dir), "layer": SOLUTION}
    result = train("shakespeare", out=tmp_path / "yours", **options)
    yours = result.report["metrics"]
    task_cls = get_task("shakespeare")
    task_config, train_config = configs_from(task_cls, options)
    torch.manual_seed(train_config.seed)  # as attnlab.train does before building the model
    student_init = task_cls(task_config).build_model().state_dict()
    task = task_cls(dataclasses.replace(task_config, layer=""))
    model = task.build_model()
    model.load_state_dict(attnlab_state_from(student_init))
    write_run_config(tmp_path / "ours", task, train_config, model)
    Trainer(task, model, train_config, tmp_path / "ours", progress=False).fit()
    run = load_run(tmp_path / "ours")
    test = loader(run.task.splits().test, run.task, batch_size=64)
    ours = run.task.evaluate(run.model, batches_on(test, torch.device("cpu")))
    assert yours["loss"] == pytest.approx(ours["loss"], abs=1e-3)
    assert yours["accuracy"] == pytest.approx(ours["accuracy"], abs=2e-3)


def test_a_llama_block_run_reloads_generates_resumes_and_refuses_a_changed_file(
    tmp_path,
    capsys,
    text_dir,  # noqa: F811
):
    block_file = tmp_path / "my_llama.py"
    block_file.write_text(Path(solution.__file__).read_text())
    run_dir, layer = tmp_path / "run", f"{block_file}:LlamaBlock"
    options = {**TINY, **STEPS, "data_dir": text_dir}
    code, _, err = run_cli(
        capsys, "train", "shakespeare", "--layer", layer, "--out", str(run_dir), *flags(options)
    )
    assert code == 0, err
    saved = json.loads((run_dir / "config.json").read_text())["model"]["config"]
    assert saved["layer"] == layer and len(saved["layer_sha256"]) == 64
    code, out, _ = run_cli(capsys, "eval", str(run_dir))
    assert code == 0 and "held-out text" in out
    code, out, err = run_cli(
        capsys, "generate", str(run_dir), "--prompt", "ROMEO:", "--max-new-tokens", "30"
    )
    assert code == 0, err
    assert out.startswith("ROMEO:") and len(out.rstrip("\n")) >= len("ROMEO:") + 1
    code, out, err = run_cli(capsys, "generate", str(run_dir), "--compile")
    assert_one_line_error(code, err, "drop --compile")
    assert out == ""
    code, _, err = run_cli(capsys, "attention", str(run_dir), "ROMEO")
    assert_one_line_error(code, err, "returns no attention maps")
    resume = ["train", "shakespeare", "--resume", str(run_dir), "--max-steps=6"]
    code, _, err = run_cli(capsys, *resume)
    assert code == 0, err
    block_file.write_text(block_file.read_text() + "\n# edited after training\n")
    code, _, err = run_cli(capsys, "generate", str(run_dir), "--prompt", "ROMEO:")
    assert_one_line_error(code, err, "has changed since this run was trained")


def test_compare_puts_the_block_beside_attnlabs_llama_block(tmp_path, capsys, text_dir):  # noqa: F811
    options = {**TINY, **STEPS, "data_dir": text_dir}
    code, out, err = run_cli(
        capsys, "compare", "shakespeare", "--layer", SOLUTION, "--budget", "1", "--json",
        "--out", str(tmp_path), *flags(options),
    )  # fmt: skip
    assert code == 0, err
    rows = json.loads(out[out.index("[") :])
    assert [row["variant"] for row in rows] == ["yours", "attnlab"]
    assert rows[0]["parameters"] == rows[1]["parameters"]  # the same Llama twice
    assert json.loads((tmp_path / "attnlab" / "config.json").read_text())["model"]["class"] == (
        "Llama"
    )


BAD_BLOCKS = {
    "shape.py": """
        from torch import nn
        class Block(nn.Module):
            def __init__(self, d_model, num_heads, num_kv_heads, d_ff, eps, rope_theta):
                super().__init__()
            def forward(self, x):
                return x[:, 0]
    """,
    "peeks.py": """
        from torch import nn
        class Block(nn.Module):
            def __init__(self, d_model, num_heads, num_kv_heads, d_ff, eps, rope_theta):
                super().__init__()
            def forward(self, x):
                return x + x.mean(dim=1, keepdim=True)  # every position reads the future
    """,
    "masked.py": """
        from torch import nn
        class Block(nn.Module):
            def __init__(self, d_model, num_heads, num_kv_heads, d_ff, eps, rope_theta):
                super().__init__()
            def forward(self, x, mask):
                return x
    """,
}


@pytest.mark.parametrize(
    "spec, pattern",
    [
        ("missing.py:Block", "does not exist"),
        ("shape.py:Nope", "defines no class Nope"),
        (
            f"{Path(encoder_solution.__file__)}:TransformerEncoderLayer",
            "TransformerEncoderLayer(d_model, num_heads, num_kv_heads, d_ff, eps, rope_theta) "
            "failed",
        ),
        ("shape.py:Block", "returned shape (2, 32) for x of shape (2, 3, 32)"),
        ("peeks.py:Block", "Block.forward is not causal"),
        ("masked.py:Block", "Block.forward(x (2, 3, 32)) raised TypeError"),
    ],
)
@pytest.mark.parametrize("command", ["train", "compare"])
def test_a_block_that_does_not_fit_gets_one_sentence(
    tmp_path,
    capsys,
    text_dir,  # noqa: F811
    spec,
    pattern,
    command,
):
    for name, source in BAD_BLOCKS.items():
        (tmp_path / name).write_text(textwrap.dedent(source))
    layer = spec if spec.startswith("/") else str(tmp_path / spec)
    out = tmp_path / "run"
    options = {**TINY, "data_dir": text_dir}
    code, _, err = run_cli(
        capsys, command, "shakespeare", "--layer", layer, "--out", str(out), *flags(options)
    )
    assert_one_line_error(code, err, pattern)
    assert not out.exists()  # refused before any run directory was made


@pytest.mark.parametrize(
    "args, message",
    [
        (["--arch", "gpt"], "--layer takes a Llama block of your own"),
        ([], "add --arch llama"),  # the default arch is gpt
        (["--arch", "llama", "--dropout", "0.1"], "a Llama block of your own has no dropout"),
    ],
)
def test_options_that_contradict_a_llama_block_are_refused(capsys, args, message):
    code, _, err = run_cli(capsys, "train", "shakespeare", "--layer", SOLUTION, *args)
    assert_one_line_error(code, err, message)
