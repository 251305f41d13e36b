"""The translation tasks: the tutorial's subset and split, the subword tokenizer, and a tiny
run through the whole pipeline and the CLI."""

import json

import pytest

from attnlab.data.eng_fra import (
    min_sources,
    normalize_tutorial,
    split_by_source,
    tutorial_subset,
)
from attnlab.data.subword import SubwordTokenizer
from tests.cli_helpers import assert_one_line_error, run_cli

from ..data_sets import DATA_ROOT, REASON, needs_data

# A tiny model and few steps: the pipeline, not the quality.
TINY = [
    "--d-model", "32", "--heads", "2", "--layers", "1",
    "--d-ff", "64", "--bpe-vocab", "300", "--batch-size", "64", "--max-steps", "30",
    "--epochs", "1", "--no-progress", "--beam", "2",
]  # fmt: skip


def test_tutorial_normalisation():
    assert normalize_tutorial("J'ai froid.") == "j ai froid"
    assert normalize_tutorial("Êtes-vous prêts ?") == "etes vous prets ?"
    assert normalize_tutorial("  I'm OK!  ") == "i m ok !"


def test_tutorial_subset_filters_as_the_tutorial():
    pairs = [
        ("I'm cold.", "J'ai froid."),
        ("I'm cold.", "J'ai froid."),  # a duplicate
        ("You are very, very, very, very, very, very, very tall.", "Tu es grand."),  # 10 words
        ("It is cold.", "Il fait froid."),  # not an "i am / he is ..." sentence
        ("They're here!", "Ils sont là !"),
    ]
    assert tutorial_subset(pairs) == [
        ("i m cold", "j ai froid"),
        ("they re here !", "ils sont la !"),
    ]


def test_split_keeps_every_translation_of_a_source_together():
    pairs = [(f"s{i % 40}", f"t{i}") for i in range(200)]  # 40 sources, 5 translations each
    train, val, test = split_by_source(pairs, seed=0, val_fraction=0.1, test_fraction=0.1)
    assert len(train) + len(val) + len(test) == 200
    sources = [{s for s, _ in split} for split in (train, val, test)]
    assert not (sources[0] & sources[1] or sources[0] & sources[2] or sources[1] & sources[2])
    assert len(sources[1]) == len(sources[2]) == 4
    assert split_by_source(pairs, 0, 0.1, 0.1) == (train, val, test)  # seeded


@pytest.mark.parametrize(
    "val_fraction, test_fraction, message",
    [
        (0, 0.1, "val_fraction must be a number strictly between 0 and 1; got 0"),  # hung
        (1.5, 0.1, "val_fraction must be a number strictly between 0 and 1; got 1.5"),
        (0.1, float("nan"), "test_fraction must be a number strictly between 0 and 1; got nan"),
        (0.6, 0.6, r"val_fraction \+ test_fraction must be below 1, .*; got 0.6 \+ 0.6"),
        (5e-324, 0.1, "val_fraction must be at least 1e-12; got 5e-324"),
        (0.5, 0.49999, r"must leave at least 0.0001 .* for training; got 0.5 \+ 0.49999"),
    ],
)
def test_split_and_min_sources_refuse_held_out_fractions_that_leave_no_split(
    val_fraction, test_fraction, message
):
    """min_sources counted up forever for 0, 1.5 or 0.6 + 0.6; split_by_source gave 0.6 + 0.6
    an empty training split without a word, and NaN failed in Python's words."""
    pairs = [(f"s{i}", f"t{i}") for i in range(100)]
    with pytest.raises(ValueError, match=message):
        min_sources(val_fraction, test_fraction)
    with pytest.raises(ValueError, match=message):
        split_by_source(pairs, 0, val_fraction, test_fraction)
    with pytest.raises(ValueError, match="seed must be a whole number >= 0; got '0'"):
        split_by_source(pairs, "0", 0.1, 0.1)  # was torch's manual_seed error
    assert min(map(len, split_by_source(pairs, 0, 0.49, 0.49))) >= 1  # near the boundary


def test_min_sources_returns_at_once_for_a_tiny_fraction():
    """min_sources counted up one size at a time: about 5e8 steps for 1e-9 (a hang)."""
    n = min_sources(1e-9, 0.1)
    assert round(n * 1e-9) == 1 and round((n - 1) * 1e-9) == 0  # validation's first source
    assert n == 500_000_001  # 5e8 * 1e-9 is 0.5, which rounds to 0
    assert min_sources(0.5, 0.4998) == 5  # 2 + 2 held out, 1 left to train


def test_subword_tokenizer_round_trips_text_and_saves_its_state():
    texts = ["je suis fatigue", "tu es fatigue", "il est tres fatigue", "nous sommes la"] * 5
    tokenizer = SubwordTokenizer.train(texts, 60)
    ids = tokenizer.encode("il est fatigue")
    assert tokenizer.decode(ids) == "il est fatigue"
    assert tokenizer.decode([tokenizer.bos_id, *ids, tokenizer.eos_id, 0, 0]) == "il est fatigue"
    again = SubwordTokenizer.from_state(tokenizer.state())
    assert again.encode("nous sommes fatigue") == tokenizer.encode("nous sommes fatigue")


@needs_data
def test_subset_and_split_sizes_match_the_tutorial():
    from attnlab.tasks import get_task

    cls = get_task("translate-small")
    task = cls(cls.Config(direction="fr-en", bpe_vocab=500))
    train, val, test = task._pair_splits()
    assert len(train) + len(val) + len(test) == 11439  # the tutorial's 11,445 lines, deduplicated
    french_of_test = {source for source, _ in test}
    assert not french_of_test & {source for source, _ in train}


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    if not DATA_ROOT:
        pytest.skip(REASON)
    from attnlab.cli import main

    out = tmp_path_factory.mktemp("translate") / "run"
    assert main(["train", "translate-small", "--direction", "fr-en", "--out", str(out), *TINY]) == 0
    return out


def test_training_writes_a_full_report(small_run):
    metrics = json.loads((small_run / "metrics.json").read_text())
    test = metrics["test"]["metrics"] if "test" in metrics else metrics["report"]["metrics"]
    for key in ("loss", "perplexity", "bleu", "chrf", "bleu_beam2", "chrf_beam2"):
        assert key in test
    assert (small_run / "plots" / "attention.png").is_file()
    # Tokens per optimizer step are logged: 64 pairs of at most 32 + 33 tokens, at least 2.
    [entry] = metrics["history"]
    assert 64 * 2 <= entry["train_tokens_per_step"] <= 64 * (32 + 33)


def test_translate_cli_greedy_beam_and_json(small_run, capsys):
    """The command's translations are the loaded model's greedy and beam searches of the
    normalised sentence, decoded with the run's own subword vocabulary."""
    import torch

    from attnlab.generation import beam_search, greedy_search
    from attnlab.runs import load_run

    run = load_run(small_run)
    tokenizer, limit = run.task.tokenizer, run.task.config.max_tokens + 1

    def source(text: str) -> torch.Tensor:
        return torch.tensor([tokenizer.encode(normalize_tutorial(text))])  # (1, S)

    code, out, err = run_cli(capsys, "translate", str(small_run), "Je suis fatigué.", "--json")
    assert code == 0, err
    [result] = json.loads(out)
    assert result["direction"] == "fr-en" and result["beam"] == 1
    assert result["source"] == "Je suis fatigué."
    with torch.no_grad():  # without the key/value cache: the path the command does not take
        greedy = greedy_search(run.model, source("Je suis fatigué."), limit, use_cache=False)
    assert result["translation"] == tokenizer.decode(greedy[0].tolist())

    code, out, err = run_cli(capsys, "translate", str(small_run), "je suis fatigue", "--beam", "3")
    assert code == 0, err
    with torch.no_grad():
        best = beam_search(run.model, source("je suis fatigue"), 3,
                           run.task.config.length_penalty, limit, use_cache=False)  # fmt: skip
    assert out == f"je suis fatigue  ->  {tokenizer.decode(best[0].tolist())}\n"


def test_attention_png_has_three_kinds(small_run, capsys, tmp_path):
    from attnlab.runs import load_run

    run = load_run(small_run)
    views = run.task.attention_views(run.model, "il est grand")
    assert [v.title.split(" ")[0] for v in views] == ["encoder", "decoder", "cross-attention"]
    encoder, decoder, cross = views
    S, T = len(encoder.key_labels), len(decoder.query_labels)
    assert encoder.maps[0].shape[-2:] == (S, S)
    assert decoder.maps[0].shape[-2:] == (T, T)
    assert cross.maps[0].shape[-2:] == (T, S)
    code, out, _ = run_cli(
        capsys, "attention", str(small_run), "il est grand", "--out", str(tmp_path / "a.png")
    )
    assert code == 0 and (tmp_path / "a.png").is_file()


@pytest.mark.parametrize(
    "args, message",
    [
        (["   "], "nothing to translate in '   ': give a sentence"),
        (["ж中🙂"], "in 'ж中🙂', normalised as the training data: it keeps no word"),
        (["je suis", "--beam", "0"], "--beam must be at least 1"),
        (["je suis", "--beam", "999"], "--beam must be at most the vocabulary size"),
        ([], "no input"),
    ],
)
def test_translate_cli_errors(small_run, capsys, args, message):
    code, _, err = run_cli(capsys, "translate", str(small_run), *args)
    assert_one_line_error(code, err, message)


def test_translate_refuses_a_run_of_another_task(capsys, tmp_path):
    from tests.training.conftest import train

    assert train(tmp_path / "reverse", "--max-steps", "2", "--epochs", "1") == 0
    capsys.readouterr()
    code, _, err = run_cli(capsys, "translate", str(tmp_path / "reverse"), "3 1 4")
    assert_one_line_error(code, err, "needs a translate or translate-small run")


def test_unseen_characters_are_read_as_unk_with_a_warning(capsys):
    from attnlab.errors import InputError
    from attnlab.tasks import get_task

    cls = get_task("translate")
    tokenizer = SubwordTokenizer.train(["I am cold.", "Je suis froid."] * 3, 60)
    task = cls(cls.Config(), tokenizer=tokenizer)
    ids = task.encode_source("I am 寒い")[0].tolist()
    assert tokenizer.unk_id in ids
    assert "never seen in training" in capsys.readouterr().err
    with pytest.raises(InputError, match="nothing to translate"):
        task.encode_source(" \t ")


def test_wrong_direction_is_a_one_line_error(capsys, tmp_path):
    code, _, err = run_cli(
        capsys, "train", "translate-small", "--direction", "de-en", "--out", str(tmp_path / "r")
    )
    assert_one_line_error(code, err, "direction must be en-fr or fr-en")


def test_a_hand_edited_tokenizer_is_one_line(capsys, small_run, tmp_path):
    """The subword tokenizer is Hugging Face JSON inside config.json's task state; text that
    ``tokenizers`` cannot parse gets one sentence, not its parser's exception."""
    copy = tmp_path / "edited"
    copy.mkdir()
    (copy / "model.safetensors").write_bytes((small_run / "model.safetensors").read_bytes())
    config = json.loads((small_run / "config.json").read_text())
    config["task_state"] = {"tokenizer": "{not json"}
    (copy / "config.json").write_text(json.dumps(config))
    code, _, err = run_cli(capsys, "translate", str(copy), "bonjour")
    assert_one_line_error(code, err, "the task state in config.json is invalid (")


def tutorial_pairs(n: int) -> str:
    """``n`` distinct lines of eng-fra.txt that the tutorial's subset keeps (it drops digits)."""
    words = [chr(ord("a") + i) * 3 for i in range(n)]
    return "".join(f"I am {word}.\tJe suis {word}.\n" for word in words)


@pytest.mark.parametrize("task", ["translate-small", "translate"])
def test_too_few_pairs_to_split_is_one_line(capsys, tmp_path, task):
    """An eng-fra.txt of a few lines left validation empty: ZeroDivisionError after training."""
    data, out = tmp_path / "data", tmp_path / "run"
    data.mkdir()
    (data / "eng-fra.txt").write_text(tutorial_pairs(10))
    code, _, err = run_cli(capsys, "train", task, "--data-dir", str(data), "--out", str(out))
    assert_one_line_error(
        code,
        err,
        f"eng-fra.txt gives the {task} task only 10 distinct source sentence(s): its "
        "split needs at least 11, so that validation and test (5% each) get one",
    )
    assert not out.exists()
    (data / "eng-fra.txt").write_text(tutorial_pairs(11))  # 9 + 1 + 1
    from attnlab.tasks import get_task

    cls = get_task(task)
    train, val, test = cls(cls.Config(data_dir=str(data), bpe_vocab=100))._pair_splits()
    assert (len(train), len(val), len(test)) == (9, 1, 1)


def test_a_max_tokens_that_leaves_a_split_empty_is_one_line(capsys, tmp_path):
    """--max-tokens 3 on the real data trained, then divided by the zero tokens of an empty
    test set; --max-tokens 2 left no training pair and blamed a missing model.safetensors.
    Now the value is refused first, and the minimum the sentence gives is exact."""
    from attnlab.errors import DataError
    from attnlab.tasks import get_task

    data, out = tmp_path / "data", tmp_path / "run"
    data.mkdir()
    words = ["cold", "tired", "tall", "happy", "hungry", "late", "ready", "sure", "sorry", "busy"]
    lines = [
        f"I am {' and '.join(words[i : i + k])}.\tJe suis {' et '.join(words[i : i + k])}.\n"
        for k in (1, 2, 3)
        for i in range(8)
    ]
    (data / "eng-fra.txt").write_text("".join(lines))
    argv = ["train", "translate-small", "--data-dir", str(data), "--out", str(out)]
    code, _, err = run_cli(capsys, *argv, "--max-tokens", "2", "--bpe-vocab", "100")
    message = "--max-tokens 2 leaves no pair in the training split: with this data it must be"
    assert_one_line_error(code, err, message)
    assert not out.exists()
    needed = int(err.rsplit(" ", 1)[1])
    cls = get_task("translate-small")
    with pytest.raises(DataError, match=f"--max-tokens {needed - 1} leaves no pair in the"):
        cls(cls.Config(data_dir=str(data), bpe_vocab=100, max_tokens=needed - 1))
    splits = cls(cls.Config(data_dir=str(data), bpe_vocab=100, max_tokens=needed)).splits()
    assert min(len(splits.train), len(splits.val), len(splits.test)) >= 1


def test_translations_are_printed_as_they_are_made_and_ctrl_c_keeps_them(
    small_run, capsys, monkeypatch, tmp_path
):
    """A file of 10,000 sentences printed nothing until the last was translated, and Ctrl-C
    an hour in lost every translation."""
    from attnlab.tasks import translate

    real_search, calls = translate.greedy_search, []

    def search_until_ctrl_c(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real_search(*args, **kwargs)

    monkeypatch.setattr(translate, "greedy_search", search_until_ctrl_c)
    sentences = tmp_path / "sentences.txt"
    sentences.write_text("je suis fatigue .\nil est grand .\n")
    code, out, err = run_cli(capsys, "translate", str(small_run), "--file", str(sentences))
    assert code == 130 and err == "attnlab: interrupted\n"
    [line] = out.splitlines()
    assert line.startswith("je suis fatigue .  ->  ")


def test_a_bad_sentence_is_refused_before_any_is_translated(small_run, capsys, monkeypatch):
    from attnlab.tasks import translate

    calls = []
    monkeypatch.setattr(translate, "greedy_search", lambda *args, **kwargs: calls.append(1))
    code, out, err = run_cli(capsys, "translate", str(small_run), "je suis .", "   ", "il est .")
    assert_one_line_error(code, err, "nothing to translate")
    assert calls == [] and out == ""
