"""``attnlab generate --pretrained DIR``: local Hugging Face GPT-2 and Llama folders (written
here by ``save_pretrained`` with random weights and a tokenizer trained on a few sentences)
generate exactly the text of Hugging Face's greedy ``generate``; broken folders get one line."""

import json
import shutil
import subprocess
import sys

import pytest
import torch

from attnlab.errors import InputError
from attnlab.pretrained_lm import load_pretrained_lm
from tests.cli_helpers import assert_one_line_error, run_cli
from tests.hugging_face import transformers_or_skip

transformers = transformers_or_skip(module_level=True)
tokenizers = pytest.importorskip("tokenizers")
from safetensors.torch import load_file, save_file  # noqa: E402
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers  # noqa: E402

SENTENCES = [
    "Attention is all you need.",
    "The Transformer relies entirely on self-attention to compute representations.",
    "Queries, keys and values are projected into several heads.",
    "A decoder predicts the next token from the tokens before it.",
] * 5
PROMPT = "The decoder predicts"
NEW_TOKENS = 12


def gpt2_tokenizer() -> Tokenizer:
    """A byte-level BPE like GPT-2's, with ``<|endoftext|>`` as its one special token."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300,
        special_tokens=["<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tokenizer.train_from_iterator(SENTENCES, trainer)
    return tokenizer


def llama_tokenizer() -> Tokenizer:
    """A SentencePiece-style BPE (``▁`` for spaces) that starts every text with ``<s>``."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace()
    tokenizer.decoder = decoders.Metaspace()
    trainer = trainers.BpeTrainer(vocab_size=120, special_tokens=["<unk>", "<s>", "</s>"])
    tokenizer.train_from_iterator(SENTENCES, trainer)
    tokenizer.post_processor = processors.TemplateProcessing(
        single="<s> $A", special_tokens=[("<s>", tokenizer.token_to_id("<s>"))]
    )
    return tokenizer


def save_gpt2(folder, **save_options):
    torch.manual_seed(0)
    tokenizer = gpt2_tokenizer()
    eos = tokenizer.token_to_id("<|endoftext|>")
    config = transformers.GPT2Config(
        vocab_size=tokenizer.get_vocab_size(),
        n_positions=32,
        n_embd=32,
        n_layer=2,
        n_head=4,
        bos_token_id=eos,
        eos_token_id=eos,
        initializer_range=0.2,  # logits of a few units, so greedy choices are clear-cut
    )
    return _save(transformers.GPT2LMHeadModel(config), tokenizer, folder, **save_options)


def save_llama(folder, **overrides):
    torch.manual_seed(0)
    tokenizer = llama_tokenizer()
    config = transformers.LlamaConfig(
        **{
            "vocab_size": tokenizer.get_vocab_size(),
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "max_position_embeddings": 32,
            "initializer_range": 0.2,
            "bos_token_id": tokenizer.token_to_id("<s>"),
            "eos_token_id": tokenizer.token_to_id("</s>"),
            "pad_token_id": None,
            **overrides,
        }
    )
    return _save(transformers.LlamaForCausalLM(config), tokenizer, folder)


def _save(model, tokenizer, folder, **save_options):
    """Save ``model`` (norm gains perturbed, so that they matter) and ``tokenizer``."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "ln_" in name or "norm" in name:
                p.add_(0.2 * torch.randn_like(p))
    from transformers.utils import logging as hf_logging

    shown = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # its bar on stderr would land in the first test's capsys
    try:
        model.eval().save_pretrained(folder, **save_options)
    finally:
        if shown:
            hf_logging.enable_progress_bar()
    tokenizer.save(str(folder / "tokenizer.json"))
    return model, tokenizer


def hf_text(model, tokenizer, prompt=PROMPT, new_tokens=NEW_TOKENS) -> str:
    """Hugging Face's greedy continuation of ``prompt``, decoded with the folder's tokenizer."""
    ids = torch.tensor([tokenizer.encode(prompt).ids])  # (1, T)
    with torch.no_grad():
        out = model.generate(
            ids,
            attention_mask=torch.ones_like(ids),
            do_sample=False,
            max_new_tokens=new_tokens,
            pad_token_id=model.config.eos_token_id,
        )  # (1, T + n)
    return tokenizer.decode(out[0].tolist(), skip_special_tokens=True)


@pytest.fixture(scope="module")
def gpt2_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("gpt2")
    return folder, *save_gpt2(folder)


@pytest.fixture(scope="module")
def llama_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("llama")
    return folder, *save_llama(folder)


def generate_cli(capsys, folder, *extra):
    return run_cli(
        capsys,
        "generate",
        "--pretrained",
        str(folder),
        "--prompt",
        PROMPT,
        "--temperature",
        "0",
        "--max-new-tokens",
        str(NEW_TOKENS),
        *extra,
    )


# -- equal to Hugging Face -------------------------------------------------------------------
@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_greedy_text_equals_hugging_face_generate(family, request, capsys):
    folder, model, tokenizer = request.getfixturevalue(f"{family}_folder")
    code, out, err = generate_cli(capsys, folder)
    assert code == 0, err
    assert out == hf_text(model, tokenizer) + "\n"
    code, uncached, _ = generate_cli(capsys, folder, "--no-cache")
    assert (code, uncached) == (0, out)


def test_a_sharded_folder_generates_the_same_text(tmp_path, capsys):
    model, tokenizer = save_gpt2(tmp_path, max_shard_size="20KB")
    assert (tmp_path / "model.safetensors.index.json").is_file()
    assert len(list(tmp_path.glob("model-*-of-*.safetensors"))) > 1
    assert not (tmp_path / "model.safetensors").exists()
    code, out, err = generate_cli(capsys, tmp_path)
    assert code == 0, err
    assert out == hf_text(model, tokenizer) + "\n"


def test_a_tied_llama_without_lm_head_loads(tmp_path, capsys):
    model, tokenizer = save_llama(tmp_path, tie_word_embeddings=True)
    assert "lm_head.weight" not in load_file(tmp_path / "model.safetensors")
    code, out, err = generate_cli(capsys, tmp_path)
    assert code == 0, err
    assert out == hf_text(model, tokenizer) + "\n"


def test_the_loader_returns_an_eval_model_and_its_tokenizer(gpt2_folder, llama_folder):
    for folder, _, tokenizer in (gpt2_folder, llama_folder):
        loaded = load_pretrained_lm(folder)
        assert not loaded.model.training
        assert loaded.context == 32
        ids = loaded.tokenizer.encode(PROMPT)
        assert ids == tokenizer.encode(PROMPT).ids
        assert loaded.tokenizer.decode(ids) == PROMPT


def test_help_documents_pretrained(capsys):
    code, out, _ = run_cli(capsys, "generate", "--help")
    assert code == 0
    assert "--pretrained DIR" in out and "Llama" in out


# -- bad input: one line, exit status 2 -------------------------------------------------------
@pytest.fixture
def gpt2_copy(gpt2_folder, tmp_path):
    shutil.copytree(gpt2_folder[0], tmp_path, dirs_exist_ok=True)
    return tmp_path


@pytest.fixture
def llama_copy(llama_folder, tmp_path):
    shutil.copytree(llama_folder[0], tmp_path, dirs_exist_ok=True)
    return tmp_path


def edit_config(folder, **changes):
    config = json.loads((folder / "config.json").read_text())
    config.update(changes)
    (folder / "config.json").write_text(json.dumps(config))


def test_a_folder_without_config_json(gpt2_copy, capsys):
    (gpt2_copy / "config.json").unlink()
    code, _, err = generate_cli(capsys, gpt2_copy)
    assert_one_line_error(code, err, "it has no config.json")


def test_an_unknown_model_type_names_the_supported_ones(gpt2_copy, capsys):
    edit_config(gpt2_copy, model_type="mistral")
    code, _, err = generate_cli(capsys, gpt2_copy)
    assert_one_line_error(code, err, "model_type 'mistral'")
    assert "supported: gpt2, llama" in err


@pytest.mark.parametrize("family, field", [("gpt2", "n_layer"), ("llama", "num_hidden_layers")])
def test_a_billion_layers_is_refused_before_anything_is_built(family, field, request, capsys):
    folder = request.getfixturevalue(f"{family}_copy")
    edit_config(folder, **{field: 10**9})
    code, _, err = generate_cli(capsys, folder)
    assert_one_line_error(code, err, f"{field} must be at most 10,000; got 1,000,000,000")


@pytest.mark.parametrize(
    "family, field, shapes",
    [  # the saved feed-forward input: GPT-2's 4 x 32 rows; Llama's gate and up stacked, 2 x 64
        ("gpt2", "n_inner", "(128, 32) but the config needs (48, 32)"),
        ("llama", "intermediate_size", "(128, 32) but the config needs (96, 32)"),
    ],
)
def test_mismatched_tensor_shapes(family, field, shapes, request, capsys):
    folder = request.getfixturevalue(f"{family}_copy")
    edit_config(folder, **{field: 48})
    code, _, err = generate_cli(capsys, folder)
    message = f"tensor 'layers.0.feed_forward.linear1.weight' has shape {shapes}: the weights"
    assert_one_line_error(code, err, message + " do not match config.json")


@pytest.mark.parametrize(
    "family, field, value, message",
    [
        ("gpt2", "vocab_size", 10**12, "vocab_size must be at most 16,777,216"),
        ("gpt2", "n_inner", 10**12, "d_ff must be at most 262,144"),
        ("gpt2", "n_embd", 10**12, "d_model must be at most 65,536"),
        ("gpt2", "n_embd", 12 * 2**60, "d_model must be at most 65,536"),
        ("llama", "vocab_size", 10**12, "vocab_size must be at most 16,777,216"),
        ("llama", "intermediate_size", 10**12, "intermediate_size must be at most 262,144"),
    ],
)
def test_a_huge_size_is_refused_by_the_config_before_allocating(
    family, field, value, message, request, capsys
):
    """A size of 10**12 in config.json would be terabytes: refused by the model's config."""
    folder = request.getfixturevalue(f"{family}_copy")
    edit_config(folder, **{field: value})
    code, _, err = generate_cli(capsys, folder)
    assert_one_line_error(code, err, message)


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_quantized_integer_weights_are_refused_not_cast_to_float(family, request, capsys):
    """An int8 matrix copied into float weights would load, and generate nonsense."""
    folder = request.getfixturevalue(f"{family}_copy")
    state = load_file(folder / "model.safetensors")
    name = "transformer.h.0.attn.c_attn.weight" if family == "gpt2" else "model.norm.weight"
    state[name] = state[name].to(torch.int8)
    save_file(state, folder / "model.safetensors", metadata={"format": "pt"})
    code, _, err = generate_cli(capsys, folder)
    assert_one_line_error(code, err, "holds int8 values: attnlab loads unquantized weights")


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_a_missing_tensor(family, request, capsys):
    folder = request.getfixturevalue(f"{family}_copy")
    state = load_file(folder / "model.safetensors")
    name = "transformer.h.1.mlp.c_fc.weight" if family == "gpt2" else "model.norm.weight"
    del state[name]
    save_file(state, folder / "model.safetensors", metadata={"format": "pt"})
    code, _, err = generate_cli(capsys, folder)
    assert_one_line_error(code, err, f"has no tensor {name!r}")


@pytest.mark.parametrize("eos", ["x", [1.5], -5, [2, None]])
def test_an_eos_token_id_that_is_not_an_id(eos, llama_copy, capsys):
    edit_config(llama_copy, eos_token_id=eos)
    code, _, err = generate_cli(capsys, llama_copy)
    assert_one_line_error(code, err, f"has eos_token_id {eos!r}: give a token id (a whole number")


def test_heads_not_divisible_by_key_value_heads(llama_copy, capsys):
    edit_config(llama_copy, num_key_value_heads=3)
    code, _, err = generate_cli(capsys, llama_copy)
    assert_one_line_error(code, err, "num_attention_heads must be divisible by num_key_value_heads")


@pytest.mark.parametrize(
    "family, key", [("gpt2", "n_positions"), ("llama", "max_position_embeddings")]
)
def test_a_prompt_longer_than_the_context(family, key, request, capsys):
    folder = request.getfixturevalue(f"{family}_folder")[0]
    code, _, err = run_cli(capsys, "generate", "--pretrained", str(folder), "--prompt", "x y " * 40)
    assert_one_line_error(code, err, "tokens long but the model's context is 32 tokens")
    assert key in err


def test_a_missing_tokenizer(gpt2_copy, capsys):
    (gpt2_copy / "tokenizer.json").unlink()
    code, _, err = generate_cli(capsys, gpt2_copy)
    assert_one_line_error(code, err, "has no tokenizer.json")


def test_a_tokenizer_of_another_model(llama_copy, capsys):
    gpt2_tokenizer().save(str(llama_copy / "tokenizer.json"))  # 300 tokens; the model has 120
    code, _, err = run_cli(capsys, "generate", "--pretrained", str(llama_copy), "--prompt", "ýz")
    assert_one_line_error(code, err, "belongs to another model")


def test_pickled_weights_only_are_refused(gpt2_copy, capsys):
    (gpt2_copy / "model.safetensors").rename(gpt2_copy / "pytorch_model.bin")
    code, _, err = generate_cli(capsys, gpt2_copy)
    assert_one_line_error(code, err, "does not load pickled pytorch_model.bin")


@pytest.fixture
def sharded(tmp_path):
    save_gpt2(tmp_path, max_shard_size="20KB")
    return tmp_path


def test_a_broken_index(sharded, capsys):
    (sharded / "model.safetensors.index.json").write_text("{not json")
    code, _, err = generate_cli(capsys, sharded)
    assert_one_line_error(code, err, f"cannot read {sharded / 'model.safetensors.index.json'}: ")
    (sharded / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}}))
    code, _, err = generate_cli(capsys, sharded)
    assert_one_line_error(code, err, "has no weight_map")


@pytest.mark.parametrize(
    "text, reason",
    [("[" * 100_000 + "]" * 100_000, "nested too deep"),
     ('{"n_layer": ' + "9" * 5000 + "}", "it holds a number of more than 4,300 digits")],
    ids=["nested too deep", "5,000 digits"],
)  # fmt: skip
def test_a_config_json_python_cannot_parse(gpt2_copy, capsys, text, reason):
    (gpt2_copy / "config.json").write_text(text)
    code, _, err = generate_cli(capsys, gpt2_copy)
    assert_one_line_error(code, err, f"config.json: {reason}")


def test_an_index_naming_a_missing_shard(sharded, capsys):
    shard = next(sharded.glob("model-00001-of-*.safetensors"))
    shard.unlink()
    code, _, err = generate_cli(capsys, sharded)
    assert_one_line_error(code, err, f"is broken: it names {shard.name}, which is not in {sharded}")


def test_an_index_naming_the_wrong_shard(sharded, capsys):
    index = json.loads((sharded / "model.safetensors.index.json").read_text())
    name, shard = next(iter(index["weight_map"].items()))
    others = sorted(set(index["weight_map"].values()) - {shard})
    index["weight_map"][name] = others[0]
    (sharded / "model.safetensors.index.json").write_text(json.dumps(index))
    code, _, err = generate_cli(capsys, sharded)
    assert_one_line_error(code, err, f"tensor {name!r} is not in {others[0]}")


@pytest.mark.parametrize("both", [True, False])
def test_exactly_one_of_run_dir_and_pretrained(both, gpt2_folder, capsys):
    args = ["generate", "--prompt", "x"]
    if both:
        args += [str(gpt2_folder[0]), "--pretrained", str(gpt2_folder[0])]
    code, _, err = run_cli(capsys, *args)
    assert_one_line_error(code, err, "give exactly one of RUN_DIR")


def test_the_python_loader_raises_input_error(tmp_path):
    with pytest.raises(InputError, match="no config.json"):
        load_pretrained_lm(tmp_path)


def test_generation_imports_neither_transformers_nor_torch_load(gpt2_folder):
    """The run-time path reads safetensors and tokenizer.json only (a fresh interpreter)."""
    code = f"""
import sys, torch
def refuse(*args, **kwargs):
    raise AssertionError("torch.load (pickle) was called")
torch.load = refuse
from attnlab.cli import main
assert main(["generate", "--pretrained", {str(gpt2_folder[0])!r}, "--prompt", "The",
             "--max-new-tokens", "3", "--temperature", "0"]) == 0
assert "transformers" not in sys.modules, "transformers was imported"
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_weights_or_a_model_the_memory_cannot_hold_are_refused_before_allocating(
    family, request, capsys, monkeypatch
):
    """A 7B folder (14 GB of weights, then 28 GB of float32 model) on a 16 GB laptop ended in
    the kernel's OOM killer. Here the machine has one byte too few for one, then the other."""
    from attnlab import machine

    folder = request.getfixturevalue(f"{family}_copy")
    weights = (folder / "model.safetensors").stat().st_size
    parameters = sum(p.numel() for p in load_pretrained_lm(folder).model.parameters())
    monkeypatch.setattr(machine, "available_memory", lambda: weights - 1)
    code, _, err = generate_cli(capsys, folder)
    assert_one_line_error(code, err, f"reading the weights of {folder} needs about")
    free = iter([weights, parameters * 4 - 1])  # room for the weights, then not for the model
    monkeypatch.setattr(machine, "available_memory", lambda: next(free))
    code, _, err = generate_cli(capsys, folder)
    assert_one_line_error(code, err, f"the model of {folder} ({parameters:,} parameters in")


@pytest.mark.parametrize("name", ["config.json", "model.safetensors", "tokenizer.json"])
def test_a_folder_in_place_of_a_model_file_is_named_as_such(gpt2_copy, capsys, name):
    """It used to be reported as missing ("has neither model.safetensors nor ...")."""
    (gpt2_copy / name).unlink()
    (gpt2_copy / name).mkdir()
    code, _, err = generate_cli(capsys, gpt2_copy)
    assert_one_line_error(code, err, "it is a directory, where a model folder keeps a file")
