"""``--decoder-layer FILE.py:ClassName``: a student's decoder layer in the translation pipeline.

The student layer is the decoder practical's reference solution
(``attnlab/exercises/solutions/decoder.py``), loaded by file path as a student's would be. It
is independent code (its own attention with ``F.scaled_dot_product_attention``, its own
sublayers), so giving it attnlab's weights and comparing the logits and the searched
translations with attnlab's decoder tests the stacking, the masks it is given and the
cache-free decoding against attnlab's cached one.

The runs read a small ``eng-fra.txt`` written here (60 "I am xxx." pairs): the pipeline, not
the quality.
"""

import json
import shutil
import textwrap
from pathlib import Path

import pytest
import torch

import attnlab.exercises.solutions.decoder as solution
from attnlab.generation import beam_search, greedy_search
from attnlab.models import Seq2SeqConfig, Seq2SeqTransformer
from attnlab.nn import TransformerDecoder, padding_mask
from tests.cli_helpers import assert_one_line_error, run_cli
from tests.data_sets import write_tutorial_pairs

SOLUTION = f"{Path(solution.__file__)}:DecoderLayer"
TINY = [
    "--d-model=16", "--heads=2", "--layers=1", "--d-ff=32", "--dropout=0", "--bpe-vocab=100",
    "--max-tokens=8", "--batch-size=16", "--epochs=1", "--max-steps=3", "--warmup=1",
    "--beam=2", "--no-progress",
]  # fmt: skip


@pytest.fixture(scope="module")
def decoder_run(tmp_path_factory):
    """A translate-small run of a copy of the solution's layer, trained a few steps."""
    root = tmp_path_factory.mktemp("decoder")
    data = write_tutorial_pairs(root / "data")
    layer_file = root / "my_decoder.py"
    layer_file.write_text(Path(solution.__file__).read_text())
    from attnlab.cli import main

    out = root / "run"
    argv = ["train", "translate-small", "--data-dir", str(data), "--out", str(out), *TINY]
    assert main([*argv, "--decoder-layer", f"{layer_file}:DecoderLayer"]) == 0
    return out, data, layer_file


def test_a_decoder_layer_run_records_its_file_and_reloads(decoder_run, capsys):
    run, data, layer_file = decoder_run
    saved = json.loads((run / "config.json").read_text())["model"]["config"]
    assert saved["decoder_layer"] == f"{layer_file}:DecoderLayer"
    assert len(saved["decoder_layer_sha256"]) == 64
    assert saved["norm_first"] is False  # the practical's post-LN layer, unless asked
    report = json.loads((run / "metrics.json").read_text())
    report = report["test"] if "test" in report else report["report"]
    assert "bleu_beam2" in report["metrics"] and "attention_png" not in report
    assert "your decoder layer returns no attention maps" in report["attention_note"]
    code, out, err = run_cli(capsys, "eval", str(run), "--data-dir", str(data))
    assert code == 0 and "test set" in out, err
    code, out, err = run_cli(capsys, "translate", str(run), "i am bar", "--beam", "2")
    assert code == 0 and "->" in out, err
    code, out, err = run_cli(capsys, "predict", str(run), "i am bal")
    assert code == 0 and "->" in out, err
    code, _, err = run_cli(
        capsys, "train", "translate-small", "--resume", str(run), "--max-steps=5"
    )
    assert code == 0, err
    code, _, err = run_cli(capsys, "attention", str(run), "i am bar")
    assert_one_line_error(code, err, "your own decoder layer, which returns no attention maps")


def test_a_changed_decoder_layer_file_is_refused(decoder_run, capsys, tmp_path):
    run, _, layer_file = decoder_run
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    edited = tmp_path / "my_decoder.py"
    edited.write_text(layer_file.read_text() + "\n# edited after training\n")
    config = json.loads((copy / "config.json").read_text())
    config["model"]["config"]["decoder_layer"] = f"{edited}:DecoderLayer"  # same sha256
    (copy / "config.json").write_text(json.dumps(config))
    for command in (["translate", str(copy), "i am bar"], ["eval", str(copy)]):
        code, _, err = run_cli(capsys, *command)
        assert_one_line_error(code, err, "has changed since this run was trained")


def seq2seq_pair(norm_first: bool = False) -> tuple[Seq2SeqTransformer, Seq2SeqTransformer]:
    """attnlab's encoder-decoder and the same model with the solution's decoder layers, all
    weights copied from attnlab's (the parameter names coincide: Q, K, V stacked in
    ``qkv_proj`` head by head, ``out_proj``, ``feed_forward.linear1/2``, ``norm1..3``)."""
    config = Seq2SeqConfig(
        src_vocab_size=23, tgt_vocab_size=23, d_model=16, num_heads=2, d_ff=32, dropout=0.0,
        num_encoder_layers=2, num_decoder_layers=2, norm_first=norm_first, max_len=20,
    )  # fmt: skip
    torch.manual_seed(0)
    ours = Seq2SeqTransformer(config).eval()
    yours = Seq2SeqTransformer(Seq2SeqConfig(**{**vars(config), "decoder_layer": SOLUTION}))
    yours.load_state_dict(ours.state_dict())  # strict: every name has its twin
    return ours, yours.eval()


def test_the_solutions_layer_with_attnlabs_weights_gives_attnlabs_logits():
    ours, yours = seq2seq_pair()
    assert type(yours.transformer.decoder.layers[0]).__name__ == "DecoderLayer"
    assert type(yours.transformer.decoder.layers[0]) is not type(ours.transformer.decoder.layers[0])
    generator = torch.Generator().manual_seed(1)
    src = torch.randint(4, 23, (3, 7), generator=generator)  # (B, S)
    src[1, 5:] = 0  # padding at the end of the second source
    tgt_in = torch.randint(4, 23, (3, 6), generator=generator)  # (B, T)
    with torch.no_grad():
        torch.testing.assert_close(yours(src, tgt_in), ours(src, tgt_in), atol=1e-5, rtol=1e-5)
    # Search: attnlab's decoder with its key/value cache, the student's re-reading the prefix.
    assert yours.make_cache() is None
    torch.testing.assert_close(
        greedy_search(yours, src, max_new_tokens=10, return_logits=True),
        greedy_search(ours, src, max_new_tokens=10, return_logits=True),
        atol=1e-4,
        rtol=1e-4,
    )
    assert torch.equal(
        beam_search(yours, src, 3, max_new_tokens=10), beam_search(ours, src, 3, max_new_tokens=10)
    )


def test_decoding_without_memory_is_refused_in_one_sentence_as_with_attnlabs_layer():
    # A user's layer keeps no cache, so memory must come with every step; without it the
    # stack used to fail on memory.shape (AttributeError) where attnlab's raises ValueError.
    ours, yours = seq2seq_pair()
    tgt_in = torch.randint(4, 23, (2, 3))  # (B, T)
    for model in (ours, yours):
        with pytest.raises(ValueError, match=r"cross-attention needs memory \(or a filled cache\)"):
            model.decode(tgt_in, None, None)


def test_pre_ln_stacks_of_a_users_layer_end_in_a_norm_as_attnlabs():
    ours, yours = seq2seq_pair(norm_first=True)  # the load was strict: both have decoder.norm
    # The solution's layer is post-LN whatever norm_first says; the stack around it must end
    # in a LayerNorm as attnlab's pre-LN stacks do. The reference: attnlab's own decoder stack
    # of post-LN layers with a final norm, holding the same weights (a gain and a shift on the
    # final norm, so that leaving it out, or applying it twice, shows).
    stack = yours.transformer.decoder
    with torch.no_grad():
        stack.norm.weight.normal_()
        stack.norm.bias.normal_()
    reference = TransformerDecoder(2, 16, 2, 32, dropout=0.0, final_norm=True).eval()
    reference.load_state_dict(stack.state_dict())
    generator = torch.Generator().manual_seed(2)
    x, memory = (
        torch.randn(3, 6, 16, generator=generator),
        torch.randn(3, 7, 16, generator=generator),
    )
    memory_mask = padding_mask(torch.tensor([7, 5, 2]))
    with torch.no_grad():
        got = stack(x, memory, memory_mask=memory_mask, is_causal=True)
        expected = reference(x, memory, memory_mask=memory_mask, is_causal=True)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


BAD_LAYERS = {
    "syntax.py": "class Layer(nn.Module:\n",
    "notmodule.py": "class Layer:\n    pass\n",
    "fewargs.py": """
        from torch import nn
        class Layer(nn.Module):
            def __init__(self, d_model):
                super().__init__()
    """,
    "encoder.py": """
        from torch import nn
        class Layer(nn.Module):
            def __init__(self, d_model, num_heads, d_ff, dropout):
                super().__init__()
            def forward(self, x, mask=None):
                return x
    """,
    "memory.py": """
        from torch import nn
        class Layer(nn.Module):
            def __init__(self, d_model, num_heads, d_ff, dropout):
                super().__init__()
            def forward(self, x, memory, tgt_mask=None, memory_mask=None):
                return memory
    """,
    "tuple.py": """
        from torch import nn
        class Layer(nn.Module):
            def __init__(self, d_model, num_heads, d_ff, dropout):
                super().__init__()
            def forward(self, x, memory, tgt_mask=None, memory_mask=None):
                return x, None
    """,
}


@pytest.mark.parametrize(
    "spec, pattern",
    [
        ("missing.py:Layer", "--decoder-layer: the file"),
        ("notes.txt:Layer", "is not a Python file"),
        ("syntax.py", "--decoder-layer takes FILE.py:ClassName"),
        ("syntax.py:Layer", "has a syntax error on line 1"),
        ("fewargs.py:Nope", "defines no class Nope"),
        ("notmodule.py:Layer", "is not a subclass of torch.nn.Module"),
        ("fewargs.py:Layer", "Layer(d_model, num_heads, d_ff, dropout) failed"),
        (
            "encoder.py:Layer",
            "Layer.forward(x (2, 3, 16), memory (2, 4, 16), tgt_mask=(3, 3), "
            "memory_mask=(2, 1, 1, 4)) raised TypeError",
        ),
        ("memory.py:Layer", "returned shape (2, 4, 16) for x of shape (2, 3, 16)"),
        ("tuple.py:Layer", "must return one tensor (B, T, d_model); it returned a tuple"),
    ],
)
def test_a_decoder_layer_that_does_not_fit_gets_one_sentence(tmp_path, capsys, spec, pattern):
    for name, source in BAD_LAYERS.items():
        (tmp_path / name).write_text(textwrap.dedent(source))
    (tmp_path / "notes.txt").write_text("not python\n")
    data = write_tutorial_pairs(tmp_path / "data")
    file, _, name = spec.partition(":")
    layer = f"{tmp_path / file}:{name}" if name else str(tmp_path / file)
    out = tmp_path / "run"
    code, _, err = run_cli(
        capsys, "train", "translate-small", "--decoder-layer", layer, "--data-dir", str(data),
        "--out", str(out), "--d-model=16", "--bpe-vocab=100",
    )  # fmt: skip
    assert_one_line_error(code, err, pattern)
    assert not out.exists()  # refused before any run directory was made


def test_compare_puts_the_decoder_layer_beside_attnlabs(tmp_path, capsys):
    data = write_tutorial_pairs(tmp_path / "data")
    code, out, err = run_cli(
        capsys, "compare", "translate-small", "--decoder-layer", SOLUTION, "--data-dir",
        str(data), "--budget", "1", "--json", "--out", str(tmp_path / "runs"), *TINY[:-1],
    )  # fmt: skip
    assert code == 0, err
    rows = json.loads(out[out.index("[") :])
    assert [row["variant"] for row in rows] == ["yours", "attnlab"]
    assert "test_bleu" in rows[0]
    # the same architecture twice: the solution's LayerNorms and linear layers are attnlab's
    assert rows[0]["parameters"] == rows[1]["parameters"]


def test_compare_of_a_translation_task_needs_a_decoder_layer(capsys):
    code, _, err = run_cli(capsys, "compare", "translate-small", "--budget", "1")
    assert_one_line_error(code, err, "give --decoder-layer FILE.py:ClassName")
