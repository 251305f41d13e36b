"""``attnlab train shakespeare --arch llama``: a Llama-style model (rotary positions, RMSNorm,
SwiGLU, grouped-query attention) beside the baby GPT, through the same CLI and run folder."""

import json

import pytest

from attnlab.cli import main
from attnlab.configs import CARDS
from attnlab.models import Llama
from attnlab.tasks.shakespeare import ShakespeareConfig, ShakespeareTask, llama_config

from ..cli_helpers import assert_one_line_error, run_cli
from .test_shakespeare import TINY, held_out_unigram_entropy, text_dir  # noqa: F401


@pytest.fixture(scope="module")
def llama_run(text_dir, tmp_path_factory):  # noqa: F811
    out = tmp_path_factory.mktemp("llama") / "run"
    args = ["train", "shakespeare", "--arch", "llama", "--kv-heads", "1", *TINY]
    assert main([*args, "--out", str(out), "--data-dir", str(text_dir)]) == 0
    return out


def test_the_llama_config_keeps_the_gpt_size_with_the_later_blocks():
    config = ShakespeareConfig(arch="llama", kv_heads=2)
    llama = llama_config(config, vocab_size=65)
    spec = llama.block_spec()
    assert (llama.num_hidden_layers, llama.hidden_size, llama.num_attention_heads) == (4, 128, 4)
    assert llama.max_position_embeddings == config.block_size == 64
    assert (spec.kv_heads, spec.positions, spec.norm, spec.activation, spec.bias) == (
        2, "rotary", "rmsnorm", "swiglu", False,
    )  # fmt: skip
    assert llama.intermediate_size == 344  # 2/3 of d_ff = 512, rounded up to a multiple of 8
    gpt = ShakespeareTask.__new__(ShakespeareTask)
    gpt.config, gpt.tokenizer = ShakespeareConfig(), list(range(65))
    llama_model = Llama(llama)
    count = sum(p.numel() for p in gpt.build_model().parameters())
    # SwiGLU's three matrices at 2/3 width match the GPT's two; the Llama lacks the position
    # table (8,192) and half the key/value projections (2 of 4 heads: 4 x 16,384): 9% fewer
    llama_count = sum(p.numel() for p in llama_model.parameters())
    assert llama_count == count - 64 * 128 - 4 * 2 * 128 * 64 + 4 * (3 * 128 * 344 - 2 * 128 * 512)


def test_a_llama_run_learns_reloads_and_generates(llama_run, text_dir, capsys):  # noqa: F811
    from attnlab.runs import load_run

    run = load_run(llama_run)
    assert isinstance(run.model, Llama)
    assert run.model.config.num_key_value_heads == 1  # multi-query attention, as asked
    assert run.config["task_config"]["arch"] == "llama"
    code, out, _ = run_cli(capsys, "eval", str(llama_run), "--json")
    metrics = json.loads(out)["metrics"]
    assert code == 0 and metrics["loss"] < held_out_unigram_entropy(text_dir) - 0.2
    code, out, _ = run_cli(capsys, "generate", str(llama_run), "--prompt", "ROMEO:")
    assert code == 0 and out.startswith("ROMEO:")


def test_compare_shakespeare_has_the_two_architectures():
    assert CARDS["shakespeare"].variants == {"gpt": {"arch": "gpt"}, "llama": {"arch": "llama"}}


@pytest.mark.parametrize(
    "args, message",
    [
        (["--arch", "llama", "--kv-heads", "3"], "kv_heads must divide heads; got kv_heads=3"),
        (["--arch", "mamba"], "arch must be gpt or llama; got 'mamba'"),
        (["--kv-heads", "0"], "kv_heads"),
    ],
)
def test_bad_architecture_options_are_one_line_errors(capsys, args, message):
    code, _, err = run_cli(capsys, "train", "shakespeare", *args, "--max-steps", "1")
    assert_one_line_error(code, err, message)
