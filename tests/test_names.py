"""The names task: the real data (read through ATTNLAB_DATA_DIR, as in CI), a short run and
``compare`` on it; the models and the BPE vocabulary, which need only a vocabulary, on a small
made-up data set, so that a bare ``pytest`` runs them too."""

import io
import json
import sys
from collections import Counter

import pytest
import torch

import attnlab
from attnlab.cli import main
from attnlab.data.names import names_dir, read_names, stratified_split
from attnlab.interop import from_torch
from attnlab.options import build
from attnlab.tasks.names import NamesConfig, NamesTask

from .cli_helpers import assert_one_line_error, run_cli
from .data_sets import DATA_ROOT, REASON, needs_data, write_made_up_names


@pytest.fixture(scope="module")
def made_up_names(tmp_path_factory):
    """The folder of MADE_UP_NAMES, as --data-dir takes it."""
    return write_made_up_names(tmp_path_factory.mktemp("names"))


def names_config(data_dir, **fields) -> NamesConfig:
    """The one place this file builds a NamesConfig, from flat fields (model sizes included)."""
    return build(NamesConfig, {"data_dir": str(data_dir), **fields})


@pytest.fixture(scope="module")
def pairs():
    return read_names(names_dir())


@pytest.fixture(scope="module")
def names_run(tmp_path_factory):
    """A small transformer trained for two epochs on the real split."""
    if not DATA_ROOT:  # the tests using it are marked too; this keeps a new one from erroring
        pytest.skip(REASON)
    out = tmp_path_factory.mktemp("names") / "run"
    code = main(
        [
            "train",
            "names",
            "--out",
            str(out),
            "--no-progress",
            "--epochs",
            "2",
            "--d-model",
            "64",
            "--layers",
            "2",
            "--d-ff",
            "128",
            "--class-weight-power",
            "0",
            "--batch-size",
            "128",
            "--lr",
            "2e-3",
        ]
    )
    assert code == 0
    return out


@needs_data
def test_the_real_data(pairs):
    folder = names_dir()
    lines = sum(len(p.read_text(encoding="utf-8").splitlines()) for p in folder.glob("*.txt"))
    assert lines == 20_074
    languages = Counter(language for _, language in pairs)
    assert len(languages) == 18
    assert len(pairs) == len(set(pairs)) < lines  # identical lines dropped
    assert any(not name.isascii() for name, _ in pairs)  # Unicode kept, not folded to ASCII


@needs_data
def test_the_split_leaks_no_pair_and_keeps_every_language(pairs):
    train, val, test = stratified_split(pairs, seed=0)
    assert len(train) + len(val) + len(test) == len(pairs)
    assert not set(train) & set(val) and not set(train) & set(test) and not set(val) & set(test)
    for split in (val, test):
        assert {language for _, language in split} == {language for _, language in pairs}
    share = Counter(language for _, language in test)["Russian"] / len(test)
    overall = Counter(language for _, language in pairs)["Russian"] / len(pairs)
    assert share == pytest.approx(overall, abs=0.01)  # stratified
    assert stratified_split(pairs, seed=0) == (train, val, test)
    assert stratified_split(pairs, seed=1)[2] != test


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"val_fraction": 0.6, "test_fraction": 0.6}, r"must be below 1, .* got 0.6 \+ 0.6"),
        ({"test_fraction": -0.1}, "test_fraction must be a number strictly between 0 and 1"),
        ({"seed": "0"}, "seed must be a whole number >= 0; got '0'"),  # torch's manual_seed
    ],
)
def test_the_split_refuses_fractions_and_seeds_out_of_range(changes, message):
    """0.6 + 0.6 gave an empty training split without a word."""
    made_up = [(f"name{i}", "Czech") for i in range(10)]
    with pytest.raises(ValueError, match=message):
        stratified_split(made_up, **{"seed": 0, **changes})
    assert [len(part) for part in stratified_split(made_up, 0, 0.4, 0.4)] == [2, 4, 4]


@needs_data
def test_a_short_run_beats_the_majority_class(names_run):
    report = json.loads((names_run / "metrics.json").read_text())["test"]
    support = {k: v["support"] for k, v in report["per_class"].items()}
    majority = max(support.values()) / sum(support.values())
    assert report["metrics"]["accuracy"] > majority + 0.1
    assert (names_run / "plots" / "confusion_matrix.png").stat().st_size > 0
    assert len(report["confusion_matrix"]["counts"]) == 18


def edited_copy(run, tmp_path, edit):
    """A copy of ``run`` whose config.json ``edit`` (config -> None) changed in place."""
    edited = tmp_path / "edited"
    edited.mkdir()
    config = json.loads((run / "config.json").read_text())
    edit(config)
    (edited / "config.json").write_text(json.dumps(config))
    (edited / "model.safetensors").write_bytes((run / "model.safetensors").read_bytes())
    return edited


@needs_data
def test_a_run_whose_task_was_edited_to_another_model_is_refused(capsys, names_run, tmp_path):
    """config.json's task config edited to "model": "gru" beside the saved transformer: the
    run used to load as the transformer, silently not what its config says."""
    edited = edited_copy(names_run, tmp_path, lambda c: c["task_config"].update(model="gru"))
    code, _, err = run_cli(capsys, "predict", str(edited), "Nakamura")
    assert_one_line_error(
        code, err, "config.json was edited: its task gives a GRUClassifier, but the model saved"
    )


@needs_data
def test_a_char_run_edited_to_the_bpe_tokenizer_is_refused(capsys, names_run, tmp_path):
    """It used to say "('list' object is not an instance of 'str')"."""
    edited = edited_copy(names_run, tmp_path, lambda c: c["task_config"].update(tokenizer="bpe"))
    code, _, err = run_cli(capsys, "predict", str(edited), "Nakamura")
    assert_one_line_error(
        code, err, "(its vocabulary is a list, not the JSON text of a bpe tokenizer (was its"
    )


@needs_data
@pytest.mark.parametrize("languages", [[0, 1, 2], ["Greek"], ["Greek", "Greek"], "Greek", [""]])
def test_a_run_whose_languages_were_edited_to_non_names_is_refused(
    capsys, names_run, tmp_path, languages
):
    """Integers for languages used to be printed as the predicted classes."""
    edited = edited_copy(names_run, tmp_path, lambda c: c["task_state"].update(languages=languages))
    code, _, err = run_cli(capsys, "predict", str(edited), "Nakamura")
    assert_one_line_error(
        code, err, "the task state in config.json is invalid (its languages must be two names"
    )


@needs_data
def test_predict_top3_with_unseen_characters(capsys, names_run):
    code, out, err = run_cli(
        capsys,
        "predict",
        str(names_run),
        "Nakamura",
        "Øystein",
        "李",
        "Nguyễn",
        "O'Neill",
        "--json",
    )
    assert code == 0, err
    predictions = json.loads(out)
    names = ["Nakamura", "Øystein", "李", "Nguyễn", "O'Neill"]
    assert [p["name"] for p in predictions] == names
    run = attnlab.load_run(names_run)
    vocab, languages = run.task.vocab, run.task.languages
    assert vocab.encode("李") == [vocab.unk_id]  # never seen in training: read as <unk>
    for name, p in zip(names, predictions, strict=True):
        # the model's own answer: softmax over the 18 languages of the name's characters
        with torch.no_grad():
            probabilities = run.model(torch.tensor([vocab.encode(name)])).softmax(-1)[0]
        best = probabilities.topk(3)
        assert [t["language"] for t in p["top"]] == [languages[i] for i in best.indices]
        shown = torch.tensor([t["probability"] for t in p["top"]])
        torch.testing.assert_close(shown, best.values, atol=0.5e-4 + 1e-7, rtol=0)  # 4 decimals


@needs_data
def test_names_bad_input(capsys, names_run, monkeypatch):
    for bad in ("", "   "):
        code, _, err = run_cli(capsys, "predict", str(names_run), bad)
        assert_one_line_error(code, err, "empty name: give a surname such as Nakamura")
    code, out, err = run_cli(capsys, "predict", str(names_run), "A" * 40)
    assert code == 0 and "reads only the first 20" in err
    monkeypatch.setattr(sys, "stdin", io.StringIO("Schmidt\nRossi\n"))
    code, out, _ = run_cli(capsys, "predict", str(names_run), "--file", "-")
    assert code == 0 and [line.split()[0] for line in out.splitlines()] == ["Schmidt", "Rossi"]
    code, _, err = run_cli(capsys, "train", "names", "--data-dir", "/no/such/folder")
    assert_one_line_error(code, err, "/no/such/folder does not exist")


@needs_data
def test_attention_of_the_cls_token(capsys, names_run, tmp_path):
    png = tmp_path / "a.png"
    code, _, err = run_cli(capsys, "attention", str(names_run), "Nakamura", "--out", str(png))
    assert code == 0, err
    assert png.read_bytes()[:4] == b"\x89PNG"
    run = attnlab.load_run(names_run)
    view = run.task.attention(run.model, "Nakamura")
    assert view.key_labels == ["[CLS]", *"Nakamura"]
    for weights in view.maps:  # (H, 1, 1 + T): a distribution over the name per head
        torch.testing.assert_close(weights.sum(-1), torch.ones(weights.shape[:2]))


@pytest.mark.parametrize("window", [0, 1])
def test_torch_backend_equals_attnlab_with_the_same_weights(made_up_names, window):
    sizes = {"d_model": 32, "heads": 4, "layers": 2, "d_ff": 64, "dropout": 0.0, "window": window}
    task = NamesTask(names_config(made_up_names, backend="torch", **sizes))
    torch_model = task.build_model().eval()
    ours = (
        NamesTask(names_config(made_up_names, **sizes), vocab=task.vocab, languages=task.languages)
        .build_model()
        .eval()
    )
    state = {k: v for k, v in torch_model.state_dict().items() if not k.startswith("encoder.")}
    ours.load_state_dict(state, strict=False)
    ours.encoder = from_torch(torch_model.encoder.encoder)
    tokens = torch.tensor(
        [task.vocab.encode("Nakamura") + [0, 0], task.vocab.encode("Li") + [0] * 8]
    )
    torch.testing.assert_close(ours(tokens), torch_model(tokens), atol=1e-5, rtol=0)


def test_gru_baseline_ignores_padding_and_has_no_attention(made_up_names):
    task = NamesTask(names_config(made_up_names, model="gru", d_model=32, layers=1, dropout=0.0))
    model = task.build_model().eval()
    short = torch.tensor([task.vocab.encode("Rossi")])
    padded = torch.tensor([task.vocab.encode("Rossi") + [0] * 6])
    torch.testing.assert_close(model(short), model(padded))
    with pytest.raises(attnlab.errors.InputError, match="GRU"):
        task.attention(model, "Rossi")


@needs_data
def test_compare_trains_every_variant_on_the_same_split(capsys, tmp_path):
    code, out, err = run_cli(
        capsys,
        "compare",
        "names",
        "--budget",
        "2",
        "--out",
        str(tmp_path / "c"),
        "--d-model",
        "16",
        "--layers",
        "1",
        "--d-ff",
        "32",
        "--json",
    )
    assert code == 0, err
    rows = json.loads(out[out.index("[") :])
    assert [r["variant"] for r in rows] == ["attnlab", "torch", "gru"]
    assert rows[0]["parameters"] == rows[1]["parameters"]  # same hyperparameters, same size
    for row in rows:  # the steps the run's own history ends at, at the rate they were trained
        metrics = json.loads((tmp_path / "c" / row["variant"] / "metrics.json").read_text())
        assert row["steps"] == metrics["history"][-1]["step"] > 0
        assert row["steps_per_second"] == pytest.approx(row["steps"] / row["train_seconds"])
    for variant in ("attnlab", "torch", "gru"):
        config = json.loads((tmp_path / "c" / variant / "config.json").read_text())
        assert config["task_config"]["split_seed"] == 0
    code, _, err = run_cli(capsys, "compare", "names", "--budget", "0")
    assert code == 2 and "--budget must be a positive" in err


def test_bpe_tokenizer_survives_the_run_config_round_trip(made_up_names):
    task = NamesTask(names_config(made_up_names, tokenizer="bpe", bpe_vocab=80))
    state = json.loads(json.dumps(task.state()))  # as written to and read from config.json
    again = NamesTask.from_state(task.config, state)
    for name in ("Nakamura", "Kozlovsky", "O'Neill", "Øystein"):
        assert again.vocab.encode(name) == task.vocab.encode(name)
    assert len(task.vocab) == 80
    assert len(task.vocab.encode("Kozlovsky")) < len("Kozlovsky")  # merged into subwords
    assert task.vocab.encode("李") == [task.vocab.unk_id]


TINY = ["--no-progress", "--epochs", "1", "--batch-size", "64",
        "--d-model", "8", "--heads", "1", "--layers", "1", "--d-ff", "8"]  # fmt: skip


@pytest.fixture(scope="module")
def made_up_run(made_up_names, tmp_path_factory):
    """One epoch of a tiny model on MADE_UP_NAMES."""
    out = tmp_path_factory.mktemp("names") / "made-up-run"
    assert main(["train", "names", "--data-dir", str(made_up_names), "--out", str(out), *TINY]) == 0
    return out


@pytest.mark.parametrize("files", [{"eng-fra.txt": "Go.\tVa !\n"}, {"notes.txt": "todo\n"}])
def test_eval_on_a_folder_of_other_files_is_one_line(capsys, made_up_run, tmp_path, files):
    """eval --data-dir pointing at the eng-fra folder, or at a folder of no language files,
    ended in a KeyError traceback: their file names are no language the run knows."""
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    code, _, err = run_cli(capsys, "eval", str(made_up_run), "--data-dir", str(tmp_path))
    stem = name.removesuffix(".txt")
    assert_one_line_error(
        code, err, f"{tmp_path} holds 1 language(s) this run was not trained on ({stem})"
    )


def test_eval_on_a_folder_without_a_language_of_the_run_is_one_line(
    capsys, made_up_run, made_up_names, tmp_path
):
    """The seeded split of fewer languages is another split: eval reported on a test set
    holding names the run trained on, with exit status 0."""
    for language_file in made_up_names.iterdir():
        if language_file.name != "Irish.txt":
            (tmp_path / language_file.name).write_bytes(language_file.read_bytes())
    code, _, err = run_cli(capsys, "eval", str(made_up_run), "--data-dir", str(tmp_path))
    assert_one_line_error(
        code,
        err,
        f"{tmp_path} has no names of 1 language(s) this run was trained on (Irish): is it the "
        "names data set of the run?",
    )


def test_training_on_one_language_is_one_line(capsys, tmp_path):
    """The eng-fra folder given to the names task trained a classifier of one class."""
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "eng-fra.txt").write_text("Go.\tVa !\nRun!\tCours !\nWow!\tÇa alors !\n")
    argv = ["train", "names", "--data-dir", str(tmp_path / "data"), "--out", str(tmp_path / "run")]
    code, _, err = run_cli(capsys, *argv, *TINY)
    assert_one_line_error(code, err, "holds names of one language only (eng-fra): the names task")
    assert not (tmp_path / "run").exists()


def test_too_few_names_to_split_is_one_line(capsys, tmp_path):
    """Two names a language left validation and test empty: torch.cat of an empty list."""
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "Italian.txt").write_text("Rossi\nRusso\n")
    (tmp_path / "data" / "Greek.txt").write_text("Papadopoulos\n")
    argv = ["train", "names", "--data-dir", str(tmp_path / "data"), "--out", str(tmp_path / "run")]
    code, _, err = run_cli(capsys, *argv, *TINY)
    assert_one_line_error(
        code,
        err,
        "is too small to split: validation and test need one name each, which takes "
        "at least one language of 3 names or more",
    )
    assert not (tmp_path / "run").exists()
    (tmp_path / "data" / "Greek.txt").write_text("Papadopoulos\nPapas\nGeorgiou\n")  # enough
    assert NamesTask(names_config(tmp_path / "data")).languages == ["Greek", "Italian"]


@pytest.mark.parametrize("text", ["3 1 4 1 5", "!!!", "\x01"])
@pytest.mark.parametrize("command", ["predict", "attention"])
def test_an_input_without_letters_is_refused(capsys, made_up_run, tmp_path, command, text):
    """A reverse input given to a names run was classified (all its characters <unk> or
    spaces), with a language and a probability, as if it were a surname."""
    out = ["--out", str(tmp_path / "a.png")] if command == "attention" else []
    code, _, err = run_cli(capsys, command, str(made_up_run), text, *out)
    assert_one_line_error(code, err, f"{text!r} has no letters: give a surname such as Nakamura")
    assert list(tmp_path.iterdir()) == []
