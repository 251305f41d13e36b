"""Every user mistake, through the attnlab command: exit status 2, exactly one line on stderr,
no traceback, and nothing half-written.

The first cases are those a fuzzing pass found; the rest cover every subcommand with numeric
extremes (0, negative, nan, inf, 2^63), wrong types, bad paths, encodings and standard input.
"""

import errno
import io
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from matplotlib.figure import Figure

from attnlab.cli import main

from .cli_helpers import assert_one_line_error, run_cli
from .data_sets import write_made_up_names, write_short_shakespeare, write_tutorial_pairs

BIG = str(2**64)
BIG_MODEL = ["--d-model", "65536", "--d-ff", "262144", "--layers", "1024"]
TINY_REVERSE = ["--train-size", "200", "--val-size", "20", "--test-size", "20",
                "--batch-size", "50", "--epochs", "1", "--no-progress"]  # fmt: skip


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A tiny reverse run."""
    out = tmp_path_factory.mktemp("bad-input") / "reverse"
    assert main(["train", "reverse", "--out", str(out), *TINY_REVERSE]) == 0
    return out


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """Small data sets for the tasks that read one (--data-dir {data}/text, pairs or names), so
    that the cases refused after reading their data run where the real data sets are absent."""
    folder = tmp_path_factory.mktemp("data")
    write_short_shakespeare(folder / "text")
    write_tutorial_pairs(folder / "pairs")
    write_made_up_names(folder / "names")
    return folder


@pytest.fixture
def paths(tmp_path):
    """A file, a FIFO with no writer, an empty file and a file of non-UTF-8 bytes."""
    (tmp_path / "file.txt").write_text("3 1 4\n")
    (tmp_path / "empty.txt").write_text("")
    (tmp_path / "latin1.txt").write_bytes("caf\xe9\n".encode("latin-1"))
    os.mkfifo(tmp_path / "fifo")
    return tmp_path


def edited_run(run, tmp_path, edit) -> str:
    """A copy of ``run`` whose config.json is ``edit(config)`` (a value to dump, or a string)."""
    copy = tmp_path / "edited"
    copy.mkdir()
    for name in ("model.safetensors", "checkpoint.pt"):
        (copy / name).write_bytes((run / name).read_bytes())
    edited = edit(json.loads((run / "config.json").read_text()))
    text = edited if isinstance(edited, str) else json.dumps(edited)
    (copy / "config.json").write_text(text)
    return str(copy)


def with_model(config, **fields):
    config["model"]["config"].update(fields)
    return config


def with_task(config, **fields):
    config["task_config"].update(fields)
    return config


def train(*args):
    return ["train", "reverse", "--out", "{tmp}/new", *args]


FOUND_BY_FUZZING = [
    (train("--d-model", "0"), "d_model must be at least 1; got 0"),
    (train("--d-model", "-4"), "d_model must be at least 1; got -4"),
    (train("--heads", "0"), "heads must be at least 1; got 0"),
    (train("--heads", "3", "--d-model", "32"), "heads must divide d_model"),
    (train("--dropout", "1.5"), "dropout must be below 1; got 1.5"),
    (train("--dropout", "-0.1"), "dropout must not be negative; got -0.1"),
    (train("--dropout", "nan"), "dropout must be a finite number; got nan"),
    (train("--val-size", "0"), "val_size must be at least 1; got 0"),
    (train("--test-size", "0"), "test_size must be at least 1; got 0"),
    (train("--seed", BIG), "seed must be at most"),
    (train("--layers", "-1"), "layers must be at least 1; got -1"),
    # a new --out (checked first, before the data and the model): none is made
    (["train", "reverse", "--out", "{tmp}/fresh", *BIG_MODEL], "parameters: training"),
    (["train", "names", "--positional", "foo"], "positional must be learned or sinusoidal"),
    (["train", "names", "--tokenizer", "words"], "tokenizer must be char or bpe"),
    (["train", "names", "--bpe-vocab", "0"], "bpe_vocab must be at least 50; got 0"),
    (train("--epoch", "8"), "unrecognized arguments: --epoch 8"),
    (["train", "reverse", "--resume", "{run}", "--epoch", "8"], "unrecognized arguments"),
    (["predict", "{run}", "²"], "'²' not in the vocabulary"),
    (["predict", "{run}", "--file", "{tmp}/fifo"], "it is not a regular file"),
    (["generate", "{run}", "--temperature", "nan"], "--temperature must be a finite number"),
    (["translate", "{run}", "hello", "--beam", "100000"], "--beam must be at most 1,000"),
    (["eval", "{run}", "--data-dir", "{tmp}"], "task 'reverse' reads no data set"),
    (train(), "{tmp}/new exists and is not a directory"),  # see test below: --out is a file
    # text that is not UTF-8 (the shell passes any bytes; Python keeps them as surrogates)
    (["predict", "{run}", "ab\udcffc"], "argument INPUT: 'ab\\xffc' is not UTF-8 text"),
    (["translate", "{run}", "\udcff"], "argument SENTENCE: '\\xff' is not UTF-8 text"),
    (["embed", "caf\udce9"], "argument TEXT: 'caf\\xe9' is not UTF-8 text"),
    (["similarity", "a", "\udcff"], "argument TEXT_B: '\\xff' is not UTF-8 text"),
    (["attention", "{run}", "\udcff"], "argument INPUT: '\\xff' is not UTF-8 text"),
    (["generate", "{run}", "--prompt", "\udcff"], "argument --prompt: '\\xff' is not UTF-8"),
    (["generate", "{run}", "--stop", "\udcff"], "argument --stop: '\\xff' is not UTF-8"),
    (train("--out", "{tmp}/x/\udcff"), "{tmp}/x/\\xff is not a UTF-8 path, where TensorBoard"),
    # compare: every variant's config is checked before any data is read ({tmp} holds no
    # input.txt) and before the first variant trains
    (
        ["compare", "shakespeare", "--kv-heads", "3", "--out", "{tmp}/cmp", "--data-dir", "{tmp}"],
        "variant 'llama': kv_heads must divide heads; got kv_heads=3, heads=4",
    ),
    (
        ["compare", "names", "--device", "cpu", "--precision", "fp16", "--out", "{tmp}/cmp"],
        "--precision fp16 needs a CUDA GPU",
    ),  # fmt: skip
]

OUR_OWN = [
    # train: numbers out of range, of the wrong type, or that cannot work together
    (train("--epochs", "0"), "epochs must be at least 1; got 0"),
    (train("--epochs", str(2**63)), "epochs must be at most 1,000,000"),
    (train("--epochs", "1.5"), "invalid int value: '1.5'"),
    (train("--batch-size", "0"), "batch_size must be at least 1; got 0"),
    (train("--lr", "0"), "lr must be positive; got 0.0"),
    (train("--lr", "-1"), "lr must not be negative; got -1.0"),
    (train("--lr", "inf"), "lr must be a finite number; got inf"),
    (train("--warmup", "-1"), "warmup must not be negative; got -1"),
    (train("--grad-clip", "-1"), "grad_clip must not be negative"),
    (train("--momentum", "1"), "momentum must be below 1; got 1.0"),
    (train("--weight-decay", "nan"), "weight_decay must be a finite number"),
    (train("--schedule", "linear"), "schedule must be one of cosine, noam, constant"),
    (train("--precision", "fp8"), "precision must be one of fp32, bf16, fp16"),
    (train("--device", "cpu", "--precision", "fp16"), "--precision fp16 needs a CUDA GPU"),
    (train("--device", "cuda:7"), "--device cuda:7 was asked for"),
    (train("--grad-accum", "0"), "grad_accum must be at least 1; got 0"),
    (train("--batch-size", "10", "--grad-accum", "3"), "must be a multiple of grad_accum"),
    (train("--min-lr", "1"), "min_lr must be between 0 and lr"),
    (train("--seq-len", "0"), "seq_len must be at least 1; got 0"),
    (train("--min-len", "0"), "min_len must be at least 1; got 0"),
    (train("--num-categories", "1"), "num_categories must be at least 2; got 1"),
    (train("--compile=yes"), "ignored explicit argument 'yes'"),
    (train("--no-such-flag"), "unrecognized arguments: --no-such-flag"),
    (["train", "digits", "--patch-size", "16"], "patch_size must be at most 8; got 16"),
    (["train", "shakespeare", "--activation", "swish"], "activation must be one of gelu"),
    (["train", "translate-small", "--direction", "de-en"], "direction must be en-fr or fr-en"),
    # accepted up to 100,000 before: a model that never ends a sentence decoded max_tokens + 1
    # tokens for each test sentence, each step attending over all of them
    (["train", "translate", "--max-tokens", "100000"], "max_tokens must be at most 1,024"),
    (["train", "translate-small", "--max-tokens", BIG], "max_tokens must be at most 1,024"),
    (
        [
            "train",
            "translate-small",
            "--bpe-vocab",
            "100",
            "--beam",
            "1000",
            "--out",
            "{tmp}/t",
            "--data-dir",
            "{data}/pairs",
        ],
        "beam must be at most the vocabulary size, 100 here (--bpe-vocab 100); got 1000",
    ),  # fmt: skip
    ([], "give a COMMAND: train, compare, eval"),
    # argparse asked for "COMMAND, rest" and "TASK, rest", naming a field of its own
    (["--"], "give a COMMAND: train, compare, eval"),
    (["train"], "attnlab train: error: give a TASK: reverse, "),
    (["compare"], "attnlab compare: error: give a TASK: names, shakespeare, translate-small"),
    # an empty value where the default is "not given" ("$DATA" unset) was taken for the default
    (["train", "names", "--data-dir", "", "--out", "{tmp}/n"], "argument --data-dir: it is empty"),
    (train("--layer", "", *TINY_REVERSE), "argument --layer: it is empty: give a value, or"),
    (["compare", "names", "--data-dir", ""], "argument --data-dir: it is empty"),
    (["eval", "{run}", "--data-dir", ""], "argument --data-dir: it is empty"),
    (["bench", "gpt", "--quick", "--data-dir", ""], "argument --data-dir: it is empty"),
    # compare
    (["compare", "names", "--budget", "0"], "--budget must be a positive number"),
    (["compare", "names", "--budget", "nan"], "--budget must be a positive number"),
    (["compare", "names", "--budget", "inf"], "--budget must be a positive number"),
    (["compare", "reverse"], "invalid choice: 'reverse'"),
    # an option the variants set was ignored without a word: --model gru trained all three
    (
        ["compare", "names", "--model", "gru", "--budget", "1", "--out", "{tmp}/cmp"],
        "--model cannot be given to attnlab compare names: its variants (attnlab, torch, gru)",
    ),  # fmt: skip
    (
        ["compare", "shakespeare", "--arch", "llama", "--budget", "1", "--out", "{tmp}/cmp"],
        "--arch cannot be given to attnlab compare shakespeare: its variants (gpt, llama) set it",
    ),  # fmt: skip
    # eval, predict: run directories and inputs
    (["eval", "{tmp}/file.txt"], "{tmp}/file.txt is a file, not a run directory"),
    (["eval", "{tmp}/missing"], "run directory {tmp}/missing does not exist"),
    (
        ["train", "reverse", "--resume", "{run}", "--out", "{tmp}/elsewhere"],
        "give --out or --resume, not both",
    ),  # fmt: skip
    (["eval", "{run}", "--device", "gpu0"], "unknown device 'gpu0'"),
    (["predict", "{run}", "-1"], "'-1' not in the vocabulary"),
    (["predict", "{run}", "1.5"], "'1.5' not in the vocabulary"),
    (["predict", "{run}", "--file", "{tmp}/empty.txt"], "has no non-empty lines"),
    (["predict", "{run}", "--file", "{tmp}/latin1.txt"], "it is not UTF-8 text"),
    (["predict", "{run}", "--file", "{tmp}"], "it is a directory"),
    (["predict", "{run}", "--file", "{tmp}/missing.txt"], "cannot read {tmp}/missing.txt: No such"),
    # translate and generate: numbers and runs of the wrong kind
    (["translate", "{run}", "hi", "--beam", "0"], "--beam must be at least 1; got 0"),
    (["translate", "{run}", "hi", "--beam", "-3"], "--beam must be at least 1; got -3"),
    (["translate", "{run}", "hi"], "attnlab translate needs a translate"),
    (["generate", "{run}", "--temperature", "inf"], "--temperature must be a finite number"),
    (["generate", "{run}", "--temperature", "-1"], "--temperature must be 0 or more"),
    (["generate", "{run}", "--top-k", "0"], "--top-k must be at least 1; got 0"),
    (["generate", "{run}", "--top-p", "0"], "--top-p must be in (0, 1]"),
    (["generate", "{run}", "--top-p", "nan"], "--top-p must be in (0, 1]"),
    (["generate", "{run}", "--max-new-tokens", "0"], "--max-new-tokens must be at least 1"),
    (["generate", "{run}", "--max-new-tokens", BIG], "--max-new-tokens must be at most"),
    (["generate", "{run}", "--seed", "-1"], "--seed must be from 0"),
    (["generate", "{run}", "--stop", ""], "--stop must not be empty"),
    (["generate", "{run}"], "which does not generate text"),
    # attention: outputs
    (["attention", "{run}", "1 2", "--out", "{tmp}/a.pdf"], "must be a .png"),
    (["attention", "{run}", "1 2", "--out", "{tmp}/dir.png"], "it is a directory"),
    (["attention", "{run}", "1 2", "--out", "{tmp}/file.txt/a.png"], "is a file, not a directory"),
    (["attention", "{run}", "1 2", "3 4"], "give one RUN_DIR and one INPUT"),
    (["attention", "1 2"], "give a RUN_DIR before the input"),
    # embed and similarity: texts and checkpoints
    (["embed"], "no text: give texts"),
    (["embed", "--file", "{tmp}/fifo"], "it is not a regular file"),
    (["embed", "hello", "--pretrained", "{tmp}/missing"], "directory {tmp}/missing does not exist"),
    (["similarity", "only one"], "the following arguments are required: TEXT_B"),
    # bench
    (["bench", "--repeats", "0"], "--repeats must be positive"),
    (["bench", "--repeats", BIG], "--repeats must be positive and at most"),
    (["bench", "--threads", "-2"], "--threads must be positive"),
    (["bench", "--threads", "4096"], "CPUs of this machine; got 4096"),
    (["bench", "--peak-tflops", "nan"], "--peak-tflops must be positive"),
    (["bench", "--precision", "fp8"], "invalid choice: 'fp8'"),
    (["bench", "no-such-suite"], "unknown benchmark suite 'no-such-suite': choose from encoder"),
    (["bench", "--device", "cuda:7"], "--device cuda:7 was asked for"),
    (["bench", "--device", "cpu:99"], "--device cpu:99: PyTorch sees the CPUs as one device, cpu"),
    # grade: each job is a process that loads PyTorch
    (
        ["exercise", "grade", "{tmp}", "--csv", "{tmp}/g.csv", "--jobs", "0"],
        "--jobs must be from 1",
    ),
    (
        ["exercise", "grade", "{tmp}", "--csv", "{tmp}/g.csv", "--jobs", "100000"],
        "each check is a process that loads PyTorch, so more at once only adds memory); got 100000",
    ),
    (["bench", "--device", "cpu", "--precision", "fp16"], "--precision fp16 needs a CUDA GPU"),
    (["bench", "gpt", "--quick", "--data-dir", "{tmp}/no"], "--data-dir {tmp}/no does not exist"),
    (["bench", "gpt", "--quick", "--data-dir", "{tmp}"], "holds no input.txt file of the tiny"),
]


CASES = FOUND_BY_FUZZING + OUR_OWN


@pytest.mark.parametrize("args, message", CASES, ids=[" ".join(args) for args, _ in CASES])
def test_a_bad_input_is_one_line_and_status_2(capsys, run, paths, data, args, message):
    (paths / "dir.png").mkdir()
    (paths / "new").write_text("a file where the run directory should go\n")
    args = [a.format(run=run, tmp=paths, data=data) for a in args]
    before = sorted(p.name for p in paths.iterdir())
    code, _, err = run_cli(capsys, *args)
    assert_one_line_error(code, err, message.format(tmp=paths))
    assert sorted(p.name for p in paths.iterdir()) == before  # nothing written, nothing left
    assert (paths / "new").read_text().startswith("a file where")


def test_enough_bad_inputs_are_covered():
    assert len(OUR_OWN) >= 40


NOT_A_RUN = "config.json is not the config of an attnlab run"
LONG_VALUE = "x" * 100_000
LONG_SHOWN = "'" + "x" * 69 + "... (100,002 characters)"
# Each edit, and what the one line must say of it.
HAND_EDITED = {
    "null": (lambda c: None, NOT_A_RUN),
    "a list": (lambda c: [1, 2, 3], NOT_A_RUN),
    "an unknown model": (lambda c: {**c, "model": "x"}, NOT_A_RUN),
    "an unknown task": (lambda c: {**c, "task": "no-such-task"}, NOT_A_RUN),
    "arrays 100,000 deep": (
        lambda c: "[" * 100_000 + "]" * 100_000,
        "config.json is not the JSON of an attnlab run (nested too deep)",
    ),
    "a string for a size": (
        lambda c: with_model(c, d_model="wide"),
        "the model config in config.json is invalid (d_model must be a whole number; got 'wide')",
    ),
    "a float for a size": (
        lambda c: with_task(c, seq_len=16.5),
        "the task config in config.json is invalid: seq_len must be a whole number; got 16.5",
    ),
    "a task config that is a number": (lambda c: {**c, "task_config": 7}, NOT_A_RUN),
    "a list for the model size": (  # was "ReverseConfig has no field 'size'"
        lambda c: with_task(c, size=[1, 32]),
        "the task config in config.json is invalid: size must be a JSON object of layers, "
        "d_model, heads, d_ff, dropout; got [1, 32]",
    ),
    "an unknown task field": (
        lambda c: with_task(c, colour="red"),
        "the task config in config.json is invalid: ReverseConfig has no field 'colour'",
    ),
    "an unknown model field": (  # was Python's "__init__() got an unexpected keyword"
        lambda c: with_model(c, colour="red"),
        "the model config in config.json is invalid (TokenPredictorConfig has no field 'colour')",
    ),
    "a model field removed": (
        lambda c: {**c, "model": {**c["model"], "config": {"d_model": 32}}},
        "the model config in config.json is invalid (TokenPredictorConfig needs a value for",
    ),
    "a huge model": (  # the widest d_model a config allows, and more memory than there is
        lambda c: with_model(c, d_model=65_536, num_heads=1),
        "the model config in config.json is invalid (the model has ",
    ),
    "a billion layers": (  # refused before even the meta device builds them
        lambda c: with_model(c, num_layers=10**9),
        "the model config in config.json is invalid (num_layers must be at most 10,000; "
        "got 1,000,000,000)",
    ),
    "a size the task config does not give": (
        lambda c: with_model(c, max_len=c["model"]["config"]["max_len"] + 1),
        "config.json was edited: its task gives a model with max_len = ",
    ),
    "a size past PyTorch's 64-bit counts": (  # the meta build raised, with C++ frames
        lambda c: with_model(c, d_model=2**40),
        "the model config in config.json is invalid (d_model must be at most 65,536; got "
        "1,099,511,627,776)",
    ),
    "a size past 64 bits": (
        lambda c: with_model(c, d_model=10**20),
        "the model config in config.json is invalid (d_model must be at most 65,536; got ",
    ),
    "a number of 5,000 digits": (  # json's own refusal is a ValueError, not a JSONDecodeError
        lambda c: json.dumps(c).replace('"seq_len": 16', '"seq_len": ' + "9" * 5000),
        "config.json is not the JSON of an attnlab run (it holds a number of more than 4,300 "
        "digits)",
    ),
    "a train config that is a list": (lambda c: {**c, "train": []}, NOT_A_RUN),
    # a value of 100,000 characters was quoted whole: a line of 100 kB
    "a long string for a choice": (
        lambda c: {**c, "train": {**c["train"], "optimizer": LONG_VALUE}},
        f"optimizer must be one of adamw, adam, sgd; got {LONG_SHOWN}",
    ),
    "a long field name": (
        lambda c: with_task(c, **{LONG_VALUE: 1}),
        f"the task config in config.json is invalid: ReverseConfig has no field {LONG_SHOWN}",
    ),
    "a long list for a size": (
        lambda c: with_model(c, d_model=[1] * 50_000),
        "(d_model must be a whole number; got [1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, "
        "1, 1, 1, 1, 1, 1, 1, 1, ... (150,000 characters))",
    ),
    "a long value the task does not give": (
        lambda c: with_model(c, layer_sha256=LONG_VALUE),
        f"with layer_sha256 = None, but the model config says {LONG_SHOWN}",
    ),
    "an unknown optimizer": (
        lambda c: {**c, "train": {**c["train"], "optimizer": "x"}},
        "the training config in config.json is invalid: optimizer must be one of adamw, "
        "adam, sgd; got 'x'",
    ),
}


@pytest.mark.parametrize("edit, message", HAND_EDITED.values(), ids=HAND_EDITED.keys())
@pytest.mark.parametrize("command", ["eval", "predict", "resume"])
def test_a_hand_edited_config_json_is_one_line(capsys, run, tmp_path, command, edit, message):
    copy = edited_run(run, tmp_path, edit)
    argv = {
        "eval": ["eval", copy],
        "predict": ["predict", copy, "1 2 3"],
        "resume": ["train", "reverse", "--resume", copy, "--no-progress"],
    }[command]
    before = (tmp_path / "edited" / "config.json").read_bytes()
    code, _, err = run_cli(capsys, *argv)
    assert_one_line_error(code, err, message)
    assert (tmp_path / "edited" / "config.json").read_bytes() == before


@pytest.mark.parametrize("command", ["predict", "translate", "embed"])
def test_a_closed_stdin_is_one_line(capsys, monkeypatch, run, command):
    closed = io.StringIO()
    closed.close()
    monkeypatch.setattr(sys, "stdin", closed)
    argv = [command, str(run), "--file", "-"] if command != "embed" else [command, "--file", "-"]
    code, _, err = run_cli(capsys, *argv)
    assert_one_line_error(code, err, "standard input is closed")


@pytest.mark.parametrize("errors", ["strict", "surrogateescape"])  # the second: a C.UTF-8 locale
def test_binary_stdin_is_one_line(capsys, monkeypatch, errors):
    binary = io.TextIOWrapper(io.BytesIO(b"\xff\xfe\x00\x81 binary"), "utf-8", errors)
    monkeypatch.setattr(sys, "stdin", binary)
    code, _, err = run_cli(capsys, "embed", "--file", "-")
    assert_one_line_error(code, err, "standard input is not UTF-8 text")


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs Linux's /dev/full")
def test_a_full_standard_output_is_one_line(run):
    """``attnlab predict ... > /dev/full``, in a process of its own: every write fails."""
    with open("/dev/full", "w") as full:
        command = [sys.executable, "-m", "attnlab", "predict", str(run), "1 2 3"]
        done = subprocess.run(command, stdout=full, stderr=subprocess.PIPE, text=True)
    assert_one_line_error(
        done.returncode, done.stderr, "cannot write to standard output: No space left on device"
    )


def test_compare_into_a_full_folder_suggests_no_resume(capsys, tmp_path, data):
    (tmp_path / "old-run.txt").write_text("last week's comparison\n")
    argv = ["compare", "names", "--out", str(tmp_path), "--data-dir", str(data / "names")]
    code, _, err = run_cli(capsys, *argv)
    assert_one_line_error(code, err, f"{tmp_path} already exists and is not empty")
    assert err.strip().endswith("choose another --out")  # compare has no --resume
    assert [p.name for p in tmp_path.iterdir()] == ["old-run.txt"]


def test_a_full_disk_keeps_the_good_file(capsys, monkeypatch, run, tmp_path):
    good = tmp_path / "attn.png"
    assert main(["attention", str(run), "1 2 3", "--out", str(good)]) == 0
    before = good.read_bytes()

    def fill_the_disk(fig, path, **kwargs):
        Path(path).write_bytes(b"\x89PNG half a file")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(Figure, "savefig", fill_the_disk)
    code, _, err = run_cli(capsys, "attention", str(run), "3 2 1", "--out", str(good))
    assert_one_line_error(code, err, f"cannot write {good}: No space left on device")
    assert good.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["attn.png"]  # no temporary file left


def test_an_unwritable_place_is_one_line(capsys, run):
    code, _, err = run_cli(capsys, "attention", str(run), "1 2", "--out", "/proc/attn.png")
    assert_one_line_error(code, err, "cannot write /proc/attn.png")
    code, _, err = run_cli(capsys, "train", "reverse", "--out", "/proc/attnlab-run")
    assert_one_line_error(code, err, "cannot create the run directory /proc/attnlab-run: No such")


def test_a_gpu_index_beyond_the_machines_gpus_is_one_line(capsys, monkeypatch, tmp_path):
    """--device cuda:7 on a machine with one GPU (faked here: nothing reaches CUDA first)."""
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    for args in (train("--device", "cuda:7"), ["bench", "encoder", "--device", "cuda:7"]):
        code, _, err = run_cli(capsys, *(a.format(tmp=tmp_path) for a in args))
        assert_one_line_error(code, err, "--device cuda:7 was asked for, but this machine has 1")
    assert not (tmp_path / "new").exists()


def test_an_output_that_is_a_fifo_is_refused_and_left_alone(capsys, run, tmp_path):
    """A device or a FIFO given as an output used to be replaced by a plain file (attnlab
    writes beside the destination and renames over it): /dev/full became a 442-byte file."""
    csv, png = tmp_path / "grades.csv", tmp_path / "attention.png"
    os.mkfifo(csv)
    os.mkfifo(png)
    for argv in (
        ["exercise", "grade", str(tmp_path / "none"), "--csv", str(csv)],
        ["attention", str(run), "1 2 3", "--out", str(png)],
    ):
        target = Path(argv[-1])
        code, _, err = run_cli(capsys, *argv)
        assert_one_line_error(code, err, f"cannot write {target}: it is not a regular file")
        assert stat.S_ISFIFO(target.stat().st_mode)


def test_an_output_that_is_a_symlink_keeps_its_link(capsys, run, tmp_path):
    target, link = tmp_path / "maps" / "attention.png", tmp_path / "latest.png"
    target.parent.mkdir()
    link.symlink_to(target)
    assert main(["attention", str(run), "1 2 3", "--out", str(link)]) == 0
    assert link.is_symlink() and target.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")


# The file each data-reading task needs in its --data-dir.
DATA_FILES = {"shakespeare": "input.txt", "translate-small": "eng-fra.txt", "names": "Greek.txt"}


@pytest.mark.parametrize("task, name", DATA_FILES.items(), ids=DATA_FILES.keys())
def test_a_folder_in_place_of_a_data_file_is_one_line(capsys, tmp_path, task, name):
    """A --data-dir whose data file is a directory ended in an IsADirectoryError traceback."""
    data_file = tmp_path / "data" / name
    data_file.mkdir(parents=True)
    out = tmp_path / "run"
    code, _, err = run_cli(
        capsys, "train", task, "--data-dir", str(data_file.parent), "--out", str(out)
    )
    assert_one_line_error(code, err, f"cannot read {data_file}: it is a directory")
    assert not out.exists()  # refused before a run directory is made


def run_copy(run, tmp_path) -> Path:
    """A copy of ``run``'s files (not its plots or TensorBoard folders)."""
    copy = tmp_path / "copy"
    copy.mkdir()
    for name in ("config.json", "model.safetensors", "checkpoint.pt", "metrics.json"):
        (copy / name).write_bytes((run / name).read_bytes())
    return copy


# A path of a run put where the run writes the other kind: (name, what to put there).
IN_THE_WAY = {
    "model.safetensors": "folder",
    "checkpoint.pt": "folder",
    "metrics.json": "folder",
    "plots": "file",
    "tensorboard": "file",
}


@pytest.mark.parametrize("name, kind", IN_THE_WAY.items(), ids=IN_THE_WAY.keys())
def test_resume_refuses_a_path_in_the_way_before_training(capsys, run, tmp_path, name, kind):
    """A folder where a resumed run writes a file used to stop it at its next checkpoint,
    losing the steps since the last one (a file where it writes TensorBoard's folder: a
    traceback after training)."""
    copy = run_copy(run, tmp_path)
    (copy / name).unlink(missing_ok=True)
    if kind == "folder":
        (copy / name).mkdir()
    else:
        (copy / name).write_text("in the way\n")
    before = (copy / "config.json").read_bytes()
    code, _, err = run_cli(
        capsys, "train", "reverse", "--resume", str(copy), "--epochs", "2", "--no-progress"
    )
    assert_one_line_error(code, err, f"{copy / name} is in the way: the run writes a ")
    assert (copy / "config.json").read_bytes() == before  # refused before training began


@pytest.mark.parametrize(
    "keep_model, left",
    [(True, "its best weights are kept apart, in model.safetensors (for eval and predict)"),
     (False, "the run must be trained again")],
)  # fmt: skip
def test_resume_from_a_truncated_checkpoint_says_so(capsys, run, tmp_path, keep_model, left):
    """It said "cannot be loaded as a checkpoint (RuntimeError)"."""
    copy = run_copy(run, tmp_path)
    whole = (copy / "checkpoint.pt").read_bytes()
    (copy / "checkpoint.pt").write_bytes(whole[: len(whole) // 2])
    if not keep_model:
        (copy / "model.safetensors").unlink()
    code, _, err = run_cli(capsys, "train", "reverse", "--resume", str(copy), "--no-progress")
    assert_one_line_error(code, err, f"{copy / 'checkpoint.pt'} is truncated or corrupt (")
    assert err.strip().endswith(f"), so the run cannot be resumed; {left}"), err


@pytest.mark.parametrize("name", ["config.json", "model.safetensors"])
def test_a_folder_in_place_of_a_run_file_is_named_as_such(capsys, run, tmp_path, name):
    """It used to be reported as missing ("the run has no saved model yet")."""
    copy = run_copy(run, tmp_path)
    (copy / name).unlink()
    (copy / name).mkdir()
    code, _, err = run_cli(capsys, "predict", str(copy), "1 2 3")
    assert_one_line_error(code, err, f"cannot read {copy / name}: it is a directory")


EMPTY_PATHS = [
    ["exercise", "start", ""],
    ["exercise", "solve", ""],
    ["exercise", "check", ""],
    ["exercise", "grade", "", "--csv", "grades.csv"],
    ["exercise", "grade", ".", "--csv", ""],
    ["train", "reverse", "--out", "", *TINY_REVERSE],
    ["train", "reverse", "--resume", ""],
    ["compare", "names", "--out", ""],
    ["attention", "runs/r", "1 2", "--out", ""],  # was "--out must be a .png ...; got ."
    ["predict", "", "1 2"],
    ["eval", ""],
    ["translate", "", "je suis"],
    ["generate", ""],
    ["generate", "--pretrained", ""],
    ["predict", "runs/r", "1 2", "--file", ""],  # was "cannot read .: it is a directory"
    ["translate", "runs/r", "--file", ""],
    ["embed", "--file", ""],
]


@pytest.mark.parametrize("argv", EMPTY_PATHS, ids=" ".join)
def test_an_empty_path_is_refused_not_taken_for_the_current_folder(
    capsys, monkeypatch, tmp_path, argv
):
    """Path("") is ".": exercise start "$DIR" with DIR unset wrote the skeletons into the
    current folder, and train --out "" trained into it when it was empty."""
    monkeypatch.chdir(tmp_path)
    code, _, err = run_cli(capsys, *argv)
    assert_one_line_error(code, err, ": it is empty: give a path")
    assert list(tmp_path.iterdir()) == []


# A path that ls shows but Path.exists calls missing: a link that loops, or points nowhere.
LINKS = {
    "loop": lambda link: link.symlink_to(link.name),
    "dangling": lambda link: link.symlink_to("gone"),
}
SAYS = {
    "loop": "leads through a symbolic link that loops",
    "dangling": "is a symbolic link to gone, which does not exist",
}


@pytest.mark.parametrize("kind", LINKS)
@pytest.mark.parametrize(
    "argv",
    [["eval", "{link}"], ["predict", "{link}", "1 2"], ["exercise", "check", "{link}"],
     ["generate", "--pretrained", "{link}"], ["embed", "hi", "--pretrained", "{link}"]],
    ids=lambda argv: " ".join(argv[:2]),
)  # fmt: skip
def test_a_broken_symbolic_link_is_named_as_such(capsys, monkeypatch, tmp_path, kind, argv):
    """It was said not to exist, which ``ls`` contradicts."""
    monkeypatch.chdir(tmp_path)
    LINKS[kind](tmp_path / "link")
    code, _, err = run_cli(capsys, *(a.format(link="link") for a in argv))
    assert_one_line_error(code, err, f"link {SAYS[kind]}")


LONG_NAME = "x" * 300  # Linux file systems allow names of 255 bytes
NAME_TOO_LONG = [
    ["train", "reverse", "--out", "{tmp}/" + LONG_NAME],
    ["eval", "{tmp}/" + LONG_NAME],
    ["attention", "{run}", "1 2", "--out", "{tmp}/" + LONG_NAME + ".png"],
    ["exercise", "start", "{tmp}/" + LONG_NAME],
    ["exercise", "grade", "{tmp}", "--csv", "{tmp}/" + LONG_NAME + ".csv"],
    ["train", "names", "--data-dir", "{tmp}/" + LONG_NAME],
    ["train", "reverse", "--layer", "{tmp}/" + LONG_NAME + ".py:Layer"],
    ["generate", "--pretrained", "{tmp}/" + LONG_NAME],
    ["embed", "hello", "--pretrained", "{tmp}/" + LONG_NAME],
]


@pytest.mark.parametrize("argv", NAME_TOO_LONG, ids=lambda argv: " ".join(argv[:2]))
def test_a_name_too_long_for_the_file_system_is_one_line(capsys, run, tmp_path, argv):
    """Path.exists raises ENAMETOOLONG instead of answering False: it ended in a traceback."""
    code, _, err = run_cli(capsys, *(a.format(run=run, tmp=tmp_path) for a in argv))
    assert_one_line_error(code, err, f"cannot use {str(tmp_path)[:50]}")
    assert err.rstrip().endswith("a name in it is too long for the file system")
    assert list(tmp_path.iterdir()) == []


def test_a_closed_standard_output_is_one_line(capsys, monkeypatch, run):
    """``attnlab predict ... >&-``: Python's sys.stdout is then None, and the first print
    ended in an AttributeError traceback with exit status 1."""
    monkeypatch.setattr(sys, "stdout", None)
    code, _, err = run_cli(capsys, "predict", str(run), "1 2 3")
    assert_one_line_error(code, err, "cannot write to standard output: it is closed")


@pytest.mark.parametrize("command", ["train", "compare"])
def test_a_full_out_folder_is_named_before_the_data_is_read(capsys, tmp_path, command):
    # It was named only after the data set was read (translate trains its tokenizer then), and
    # without the data the user heard of the data first.
    full, empty = tmp_path / "full", tmp_path / "empty"  # empty holds no names data
    full.mkdir(), empty.mkdir()
    (full / "notes.txt").write_text("mine")
    code, _, err = run_cli(capsys, command, "names", "--out", str(full), "--data-dir", str(empty))
    assert_one_line_error(code, err, f"{full} already exists and is not empty: choose another")
    assert [p.name for p in full.iterdir()] == ["notes.txt"]


@pytest.mark.parametrize("task", ["names", "shakespeare"])
@pytest.mark.parametrize("cache", ["a file", "below a file", "unwritable"])
def test_an_unusable_download_cache_is_one_line(capsys, monkeypatch, tmp_path, task, cache):
    """With no data given, the loaders make the download cache: $ATTNLAB_CACHE (or $HOME)
    being a file or read-only ended in a FileExistsError traceback, before any download."""
    (tmp_path / "file").write_text("not a folder\n")
    place = {"a file": "file", "below a file": "file/cache", "unwritable": "/proc/attnlab"}[cache]
    monkeypatch.setenv("ATTNLAB_CACHE", str(tmp_path / place))
    monkeypatch.delenv("ATTNLAB_DATA_DIR", raising=False)
    out = tmp_path / "run"
    code, _, err = run_cli(capsys, "train", task, "--out", str(out))
    assert_one_line_error(code, err, "cannot write the download cache ")
    assert "; set ATTNLAB_CACHE to a writable folder, or pass --data-dir DIR" in err
    assert not out.exists()
    assert (tmp_path / "file").read_text() == "not a folder\n"


@pytest.mark.parametrize("source", ["standard input", "a file"])
def test_inputs_past_the_size_limit_are_refused_before_they_are_held(
    capsys, monkeypatch, run, tmp_path, source
):
    """``yes | attnlab predict RUN --file -`` read standard input until memory ran out, and a
    data set given as --file was read whole before its first line was refused."""
    from attnlab.cli import common

    monkeypatch.setattr(common, "MAX_INPUT_BYTES", 2 << 20)
    big = b"x\n" * (3 << 19)  # 3 MiB
    if source == "standard input":
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(big), "utf-8"))
        given = "-"
    else:
        given = str(tmp_path / "inputs.txt")
        Path(given).write_bytes(big)
    code, _, err = run_cli(capsys, "predict", str(run), "--file", given)
    name = "standard input" if given == "-" else given
    assert_one_line_error(code, err, f"{name} holds more than 2 MiB, the most --file reads")
