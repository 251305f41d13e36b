"""The shakespeare task: data (location, checksum, split, blocks), a tiny training run through the
CLI, and the ``generate`` command with its errors."""

import functools
import io
import json
import re
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path

import pytest
import torch

from attnlab import machine
from attnlab.cli import main
from attnlab.data import shakespeare
from attnlab.data.shakespeare import BlockDataset, CharTokenizer, shakespeare_path
from attnlab.errors import ConfigError, DataError
from attnlab.models import GPT
from attnlab.tasks.shakespeare import ShakespeareConfig, ShakespeareTask

from ..cli_helpers import assert_one_line_error, run_cli
from ..data_sets import DATA_ROOT, needs_data, write_short_shakespeare

# A tiny GPT on short blocks: 200 steps of 12 blocks at a constant rate, validated twice;
# enough to learn more than the character frequencies (see the eval test).
TINY = [
    "--no-progress",
    "--block-size", "16",
    "--train-blocks", "2400",
    "--val-blocks", "24",
    "--layers", "1",
    "--heads", "2",
    "--d-model", "32",
    "--d-ff", "64",
    "--lr", "3e-3",
    "--schedule", "constant",
    "--warmup", "0",
    "--val-every", "100",
]  # fmt: skip


# -- data ----------------------------------------------------------------------------------


def test_tokenizer_round_trip_and_nanogpt_ids():
    tokenizer = CharTokenizer("hello world\n")
    assert tokenizer.chars == "\n dehlorw"  # sorted, as nanoGPT's stoi
    assert tokenizer.encode("hold") == [4, 6, 5, 2]
    assert tokenizer.encode_tensor("hold").tolist() == [4, 6, 5, 2]
    assert tokenizer.decode(tokenizer.encode("world\n")) == "world\n"
    assert tokenizer.unknown("why, hello?") == ["y", ",", "?"]
    assert CharTokenizer.from_state(tokenizer.state()).chars == tokenizer.chars


def test_blocks_are_inputs_and_next_token_targets():
    ids = torch.arange(100)
    random = BlockDataset.random(ids, n=50, block_size=8, seed=0)
    assert len(random) == 50
    for i in range(50):
        x, y = random[i]
        assert x.shape == y.shape == (8,)
        assert torch.equal(y, x + 1) and x[0] >= 0 and y[-1] < 100
    assert torch.equal(BlockDataset.random(ids, 50, 8, seed=0).offsets, random.offsets)
    stretch = (100 - 8) / 50  # stratified: block i starts inside the i-th of 50 equal stretches
    assert all(i * stretch - 1 < o < (i + 1) * stretch for i, o in enumerate(random.offsets))
    consecutive = BlockDataset.consecutive(ids, block_size=8)
    assert [int(consecutive[i][0][0]) for i in range(len(consecutive))] == list(range(0, 89, 8))
    with pytest.raises(DataError, match="fewer than one block"):
        BlockDataset.random(ids[:8], n=1, block_size=8, seed=0)


@pytest.mark.parametrize(
    "arguments, message",
    [
        ({"n": 0}, "n must be a whole number >= 1; got 0"),  # was ZeroDivisionError
        ({"n": -1}, "n must be a whole number >= 1; got -1"),  # was torch's arange error
        ({"n": 10**12}, "n must be at most 1,000,000,000 blocks; got 1,000,000,000,000"),  # 8 TB
        ({"block_size": 0}, "block_size must be a whole number >= 1; got 0"),  # was accepted
        ({"block_size": 2.5}, "block_size must be a whole number >= 1; got 2.5"),
        ({"seed": "1"}, "seed must be a whole number >= 0; got '1'"),  # was torch's manual_seed
        ({"seed": 2**63}, "seed must be at most 9,223,372,036,854,775,807; got"),
        ({"ids": list(range(100))}, r"ids must be a tensor \(N,\); got list"),
        ({"ids": torch.zeros(100)}, r"ids must be integer token ids \(N,\); got torch.float32"),
    ],
)
def test_random_blocks_refuse_bad_arguments_before_allocating(arguments, message):
    valid = {"ids": torch.arange(100), "n": 5, "block_size": 8, "seed": 0}
    with pytest.raises((ValueError, TypeError), match=message):
        BlockDataset.random(**{**valid, **arguments})
    assert len(BlockDataset.random(**{**valid, "n": 1, "block_size": 1})) == 1  # the boundary


def test_random_blocks_refuse_more_than_the_machine_holds(monkeypatch):
    monkeypatch.setattr(machine, "available_memory", lambda: 1000)
    with pytest.raises(ConfigError, match="drawing 100 random blocks needs about 2,400 bytes"):
        BlockDataset.random(torch.arange(1000), n=100, block_size=8, seed=0)


@pytest.mark.parametrize("block_size", [0, -3, 2.5])
def test_consecutive_blocks_refuse_a_block_size_below_one(block_size):
    """0 and -3 failed inside torch.arange; 2.5 built blocks sliced with float bounds."""
    message = f"block_size must be a whole number >= 1; got {block_size}"
    with pytest.raises(ValueError, match=message):
        BlockDataset.consecutive(torch.arange(100), block_size)
    assert len(BlockDataset.consecutive(torch.arange(2), 1)) == 1  # the boundary


@pytest.mark.parametrize("fraction", [1.5, -1, 0, 1, float("nan"), "0.9"])
def test_split_and_min_length_refuse_a_fraction_outside_0_1(fraction):
    """1.5 and -1 split silently into one part, 0 divided by zero in min_length (which then
    counted up forever for 1.5), NaN failed in Python's words."""
    message = f"train_fraction must be a number strictly between 0 and 1; got {fraction!r}"
    with pytest.raises(ValueError, match=re.escape(message)):
        shakespeare.split_by_position(torch.arange(10), fraction)
    with pytest.raises(ValueError, match=re.escape(message)):
        shakespeare.min_length(8, fraction)


def test_min_length_is_the_fewest_tokens_even_for_extreme_fractions():
    """It counted up one length at a time: about 10**10 steps for a fraction of 1e-10."""
    for fraction in (0.9, 0.5, 1e-10, 1 - 1e-9):
        n = shakespeare.min_length(8, fraction)
        shorter = [min(int(m * fraction), m - int(m * fraction)) for m in (n - 1, n)]
        assert shorter[0] < 9 <= shorter[1]  # a block of 9 fits in both parts from n on
    with pytest.raises(ValueError, match="block_size must be a whole number >= 1; got 0"):
        shakespeare.min_length(0)


@needs_data
def test_real_data_split_90_10_by_position():
    task = ShakespeareTask(ShakespeareConfig())
    assert len(task.tokenizer) == 65
    ids = task.token_ids()
    assert ids.shape == (1_115_394,)
    assert task.decode(ids[:14].tolist()) == "First Citizen:"
    splits = task.splits()
    n_train = 1_003_854  # int(0.9 * 1,115,394)
    assert torch.equal(splits.train.ids, ids[:n_train])
    assert torch.equal(splits.test.ids, ids[n_train:]) and splits.val.ids is splits.test.ids
    assert len(splits.train) == 24_000 and len(splits.val) == 240
    assert len(splits.test) == (len(ids) - n_train - 1) // 64  # the whole held-out part
    assert int(splits.train.offsets.max()) + 65 <= n_train


@pytest.fixture
def offline(monkeypatch, tmp_path):
    """No ATTNLAB_DATA_DIR, an empty download cache, and downloads served by ``serve``."""
    monkeypatch.delenv("ATTNLAB_DATA_DIR", raising=False)
    monkeypatch.setenv("ATTNLAB_CACHE", str(tmp_path / "cache"))
    served = {}

    def urlopen(url, timeout):
        if "body" not in served:
            raise urllib.error.URLError("no network in this test")
        assert url == shakespeare.URL
        return io.BytesIO(served["body"])

    monkeypatch.setattr(urllib.request, "urlopen", urlopen)
    return served


def test_a_download_that_fails_its_checksum_is_refused_and_not_cached(offline, tmp_path):
    offline["body"] = b"First Citizen:\nnot quite the real text\n"
    with pytest.raises(DataError, match="failed its checksum"):
        shakespeare_path()
    assert not list((tmp_path / "cache").rglob("input.txt"))


def test_no_network_and_no_data_points_at_data_dir(offline):
    with pytest.raises(DataError, match="pass --data-dir DIR"):
        shakespeare_path()


@needs_data
def test_the_verified_download_is_cached(offline, tmp_path):
    real = Path(DATA_ROOT, "tinyshakespeare", "input.txt")
    offline["body"] = real.read_bytes()
    path = shakespeare_path()
    assert path == tmp_path / "cache" / "tinyshakespeare" / "input.txt"
    del offline["body"]  # the second call must not download again
    assert shakespeare_path() == path and path.read_bytes() == real.read_bytes()


def test_data_dir_without_input_txt_is_one_line_error(capsys, tmp_path):
    code, _, err = run_cli(capsys, "train", "shakespeare", "--data-dir", str(tmp_path), *TINY)
    assert_one_line_error(code, err, "holds no input.txt file of the tinyshakespeare data set")


def test_a_text_too_short_for_the_block_size_is_one_line(capsys, tmp_path):
    """A few characters were refused only once the run directory was made (and left behind);
    the sentence now gives the length the 90/10 split really needs: 161 for blocks of 16."""
    data, out = tmp_path / "data", tmp_path / "run"
    data.mkdir()
    (data / "input.txt").write_text("ab" * 80)  # 160 characters: 16 held out, one too few
    argv = ["train", "shakespeare", "--data-dir", str(data), "--out", str(out), *TINY]
    code, _, err = run_cli(capsys, *argv)
    assert_one_line_error(
        code,
        err,
        "input.txt has 160 characters, too few for --block-size 16: the text needs "
        "at least 161, so that its first 90% and its last 10% each hold one block of 17",
    )
    assert not out.exists()
    (data / "input.txt").write_text("ab" * 80 + "c")  # 161: exactly one block in each part
    splits = ShakespeareTask(ShakespeareConfig(data_dir=str(data), block_size=16)).splits()
    assert len(splits.test) == 1 and splits.train.ids.shape == (144,)


# -- a tiny run through the CLI ------------------------------------------------------------


@pytest.fixture(scope="module")
def text_dir(tmp_path_factory):
    """A small Shakespeare-like text (the real one if available, cut to 40,000 characters)."""
    return write_short_shakespeare(tmp_path_factory.mktemp("text"))


@pytest.fixture(scope="module")
def tiny_run(text_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("shakespeare") / "run"
    assert (
        main(["train", "shakespeare", "--out", str(out), "--data-dir", str(text_dir), *TINY]) == 0
    )
    return out


def held_out_unigram_entropy(text_dir: Path) -> float:
    """The unigram entropy of the held-out text, in nats per character: the best loss of a
    model of the character frequencies alone, which ignores the characters before (3.2 nats
    on the real text, against ln(vocab) = 4.1 for uniform guessing, which an untrained model
    scores). A trained model must do clearly better."""
    text = (text_dir / "input.txt").read_text()
    held_out = text[int(0.9 * len(text)) :]  # eval reads the last 10% of the text
    counts = torch.tensor(list(Counter(held_out).values()), dtype=torch.float64)
    frequencies = counts / counts.sum()
    return -(frequencies * frequencies.log()).sum().item()


def test_training_writes_a_run_that_eval_reports(tiny_run, text_dir, capsys):
    code, out, _ = run_cli(capsys, "eval", str(tiny_run), "--json")
    assert code == 0
    report = json.loads(out)
    metrics = report["metrics"]
    assert metrics["perplexity"] == pytest.approx(torch.tensor(metrics["loss"]).exp().item())
    assert 0 < metrics["loss"] < held_out_unigram_entropy(text_dir) - 0.2
    sample = report["samples"][0]
    assert len(sample["continuation"]) == 200
    code, out, _ = run_cli(capsys, "eval", str(tiny_run))
    assert "held-out text" in out and "perplexity" in out and "sample:" in out


def test_the_run_reloads_as_a_gpt_with_the_saved_vocabulary(tiny_run):
    from attnlab.runs import load_run

    run = load_run(tiny_run)
    assert isinstance(run.model, GPT) and run.model.config.block_size == 16
    assert run.config["task_config"]["bias"] is False
    assert run.task.tokenizer.chars == run.config["task_state"]["vocab"]


def test_predict_and_attention(tiny_run, capsys, tmp_path):
    code, out, _ = run_cli(capsys, "predict", str(tiny_run), "ROMEO:")
    assert code == 0 and out.startswith("ROMEO:") and len(out) >= len("ROMEO:") + 200
    code, out, _ = run_cli(
        capsys, "attention", str(tiny_run), "ROMEO:", "--out", str(tmp_path / "a.png")
    )
    assert code == 0 and (tmp_path / "a.png").is_file()
    code, _, err = run_cli(
        capsys, "attention", str(tiny_run), "a" * 17, "--out", str(tmp_path / "b.png")
    )
    assert_one_line_error(code, err, "the model sees at most 16 at a time")


def test_attention_maps_that_do_not_fit_in_memory_are_refused_before_the_forward(
    tiny_run, capsys, tmp_path, monkeypatch
):
    """A long-context model's maps (layers x heads x T x T floats) can be tens of GB: they
    are checked against the memory available before the model runs. Here the machine is
    made one byte too small for the maps of a 6-character text, and for nothing else."""
    from attnlab import machine
    from attnlab.tasks import shakespeare

    size = json.loads((tiny_run / "config.json").read_text())["task_config"]["size"]
    maps_bytes = size["layers"] * size["heads"] * 6 * 6 * 4  # float32 weights
    real_check = machine.check_memory

    def one_byte_short_for_maps(needed: int, what: str, advice: str) -> None:
        if what.startswith("the attention maps"):
            monkeypatch.setattr(machine, "available_memory", lambda: maps_bytes - 1)
        real_check(needed, what, advice)

    monkeypatch.setattr(shakespeare, "check_memory", one_byte_short_for_maps)
    code, _, err = run_cli(
        capsys, "attention", str(tiny_run), "ROMEO:", "--out", str(tmp_path / "a.html")
    )
    layers, heads = size["layers"], size["heads"]
    assert_one_line_error(
        code, err, f"the attention maps of 6 characters ({layers} layers x {heads} heads x 6 x 6"
    )
    assert "give a shorter text" in err and not (tmp_path / "a.html").exists()


# -- generate ------------------------------------------------------------------------------


def test_generate_streams_the_prompt_and_the_new_tokens(tiny_run, capsys):
    args = ["generate", str(tiny_run), "--prompt", "ROMEO:", "--max-new-tokens", "40"]
    code, out, _ = run_cli(capsys, *args, "--seed", "3")
    assert code == 0 and out.startswith("ROMEO:") and len(out) == len("ROMEO:") + 40 + 1
    assert run_cli(capsys, *args, "--seed", "3")[1] == out  # seeded: the same text again
    greedy = run_cli(capsys, *args, "--temperature", "0")[1]
    assert run_cli(capsys, *args, "--temperature", "0", "--no-cache")[1] == greedy


def test_generate_compiled_writes_the_greedy_text(tiny_run, capsys, monkeypatch):
    # dynamo's "eager" backend: the steps are captured as with inductor, without C++ (the
    # inductor run of generate(compile=True) is in the slow tests)
    monkeypatch.setattr(torch, "compile", functools.partial(torch.compile, backend="eager"))
    args = ["generate", str(tiny_run), "--prompt", "ROMEO:", "--max-new-tokens", "30"]
    greedy = run_cli(capsys, *args, "--temperature", "0")[1]
    code, out, _ = run_cli(capsys, *args, "--temperature", "0", "--compile")
    assert code == 0 and out == greedy


def test_generate_compile_without_a_cxx_compiler_is_one_line(tiny_run, capsys):
    inductor_config = pytest.importorskip("torch._inductor.config")
    torch._dynamo.reset()  # no graph compiled by an earlier test may be reused
    with inductor_config.patch({"cpp.cxx": ("/nonexistent/c++",)}):
        args = ["generate", str(tiny_run), "--max-new-tokens", "3", "--compile"]
        code, _, err = run_cli(capsys, *args)
    assert_one_line_error(code, err, "torch.compile cannot compile the model here")
    assert "No working C++ compiler" in err
    torch._dynamo.reset()


def test_generate_cut_short_by_ctrl_c_ends_its_line(tiny_run, capsys, monkeypatch):
    """The text written so far ends with a newline, so that the one line saying why it
    stopped does not follow it on the same line of a terminal."""
    from attnlab import generation

    def three_tokens_then_ctrl_c(model, ids, *args, on_token, **kwargs):
        for token in (5, 6, 7):
            on_token(torch.tensor([token]))
        raise KeyboardInterrupt

    monkeypatch.setattr(generation, "generate", three_tokens_then_ctrl_c)
    code, out, err = run_cli(capsys, "generate", str(tiny_run), "--prompt", "ROMEO:")
    assert code == 130 and err == "attnlab: interrupted\n"
    assert out.startswith("ROMEO:") and out.endswith("\n") and len(out) == len("ROMEO:") + 3 + 1


def test_generate_stops_at_the_stop_string(tiny_run, capsys):
    code, out, _ = run_cli(
        capsys, "generate", str(tiny_run), "--prompt", "ROMEO:", "--stop", "e", "--seed", "0"
    )
    assert code == 0 and out.rstrip("\n").endswith("e") and out.count("e") == 1


@pytest.mark.parametrize(
    "args, message",
    [
        (["--prompt", "ROMEO€"], "outside this model's vocabulary of"),
        (["--prompt", ""], "empty prompt"),
        (["--max-new-tokens", "0"], "--max-new-tokens must be at least 1; got 0"),
        (["--max-new-tokens", "-5"], "--max-new-tokens must be at least 1; got -5"),
        (["--top-p", "0"], "--top-p must be in (0, 1]"),
        (["--top-p", "1.5"], "--top-p must be in (0, 1]"),
        (["--top-k", "0"], "--top-k must be at least 1"),
        (["--temperature", "-1"], "--temperature must be 0 or more"),
        (["--compile", "--no-cache"], "--compile needs the key/value cache"),
    ],
)
def test_generate_refuses_bad_input_in_one_line(tiny_run, capsys, args, message):
    code, _, err = run_cli(capsys, "generate", str(tiny_run), *args)
    assert_one_line_error(code, err, message)


def test_generate_refuses_a_run_of_another_task(capsys, tmp_path):
    out = tmp_path / "reverse"
    small = ["--train-size", "100", "--val-size", "10", "--test-size", "10", "--epochs", "1"]
    assert main(["train", "reverse", "--out", str(out), "--no-progress", *small]) == 0
    capsys.readouterr()
    code, _, err = run_cli(capsys, "generate", str(out), "--prompt", "3 1 4")
    assert_one_line_error(code, err, "a run of task 'reverse', which does not generate text")


TASK_STATE_EDITS = {
    "no vocabulary": ({}, "the task state in config.json is invalid (it has no 'vocab')"),
    "a number": ({"vocab": 5}, "the task state in config.json is invalid ("),
    "a shorter vocabulary": (
        {"vocab": "abc"},
        "config.json was edited: its task gives a model with vocab_size = 3, but the model "
        "config says",
    ),
}


@pytest.mark.parametrize("state, message", TASK_STATE_EDITS.values(), ids=TASK_STATE_EDITS)
def test_a_hand_edited_vocabulary_is_one_line(capsys, tiny_run, text_dir, tmp_path, state, message):
    """The vocabulary lives in config.json's task state; edited, it no longer reads the
    model's ids (a shorter one used to fail with an IndexError in the middle of generating)."""
    copy = tmp_path / "edited"
    copy.mkdir()
    for name in ("model.safetensors", "checkpoint.pt"):
        (copy / name).write_bytes((tiny_run / name).read_bytes())
    config = json.loads((tiny_run / "config.json").read_text())
    (copy / "config.json").write_text(json.dumps({**config, "task_state": state}))
    for argv in (
        ["generate", str(copy), "--max-new-tokens", "3"],
        ["eval", str(copy), "--data-dir", str(text_dir)],
        ["train", "shakespeare", "--resume", str(copy), "--no-progress"],
    ):
        code, _, err = run_cli(capsys, *argv)
        assert_one_line_error(code, err, message)


def test_more_random_blocks_than_the_memory_holds_are_refused(monkeypatch, capsys, tmp_path):
    """--train-blocks up to 10^9 is allowed where memory holds its offsets; here it does not."""
    monkeypatch.setattr(machine, "available_memory", lambda: 10**9)  # 1 GB
    out = tmp_path / "run"
    argv = ["train", "shakespeare", "--train-blocks", "100000000", "--out", str(out)]
    code, _, err = run_cli(capsys, *argv)
    assert_one_line_error(code, err, "drawing 100,000,240 random blocks needs about 2.2 GB")
    assert not out.exists()
