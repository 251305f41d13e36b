"""Every tokenizer refuses a token id outside its vocabulary with an InputError, where Python
would read -1 as the last entry and a large id would be an IndexError, None or an
OverflowError from the Rust tokenizer."""

import pytest
import torch

from attnlab.data.bpe import BPEVocab
from attnlab.data.shakespeare import CharTokenizer
from attnlab.data.subword import SubwordTokenizer
from attnlab.data.vocab import CharVocab
from attnlab.errors import ConfigError, InputError

TEXTS = ["hello world", "le monde"] * 20


def _lookups():
    """(name, vocabulary size, function of a list of ids) for each tokenizer's id lookups."""
    char_vocab = CharVocab.from_texts(TEXTS)
    char_tokenizer = CharTokenizer("abc\n")
    subword = SubwordTokenizer.train(TEXTS, 40)
    bpe = BPEVocab.train(TEXTS, 40)
    return [
        ("CharVocab.tokens", len(char_vocab), char_vocab.tokens),
        ("CharTokenizer.decode", 4, char_tokenizer.decode),
        ("SubwordTokenizer.decode", len(subword), subword.decode),
        ("SubwordTokenizer.tokens", len(subword), subword.tokens),
        ("BPEVocab.tokens", len(bpe), bpe.tokens),
    ]


@pytest.mark.parametrize("index", range(5))
def test_ids_outside_the_vocabulary_are_refused_naming_the_id(index: int) -> None:
    name, size, lookup = _lookups()[index]
    for bad in (-1, size, 10**30):
        with pytest.raises(InputError, match=rf"token id {bad} is outside the vocabulary"):
            lookup([2, bad])
    with pytest.raises(InputError, match="token id 1.5 is not a whole number"):
        lookup([1.5])


def test_ids_in_range_still_decode_including_tensor_elements() -> None:
    tokenizer = CharTokenizer("abc\n")
    assert tokenizer.decode([3, 1, 0]) == "ca\n"  # sorted: "\n", a, b, c
    assert tokenizer.decode(torch.tensor([1, 2])) == "ab"
    vocab = CharVocab.from_texts(["ab"])
    assert vocab.tokens([0, 1, 2, 3]) == ["<unk>", "a", "b"]


@pytest.mark.parametrize("vocab_size", [-1, 1, 10**12, 2.5])
@pytest.mark.parametrize("tokenizer", [BPEVocab, SubwordTokenizer])
def test_training_refuses_a_vocabulary_size_before_the_trainer_sizes_its_tables(
    tokenizer, vocab_size
) -> None:
    # 10**12 aborted the process (out of memory in Rust), -1 was an OverflowError.
    expected = (
        "at most 16,777,216" if vocab_size == 10**12 else rf"a whole number >= \d; got {vocab_size}"
    )
    with pytest.raises(ValueError, match=f"vocab_size must be {expected}"):
        tokenizer.train(TEXTS, vocab_size)
    assert len(tokenizer.train(TEXTS, 40)) <= 40


def test_training_refuses_one_string_for_the_list_of_texts() -> None:
    # Iterated, a string is its characters: each was learnt as a text of its own.
    with pytest.raises(TypeError, match=r"texts must be a list of strings; got one str"):
        BPEVocab.train("hello world", 40)


@pytest.mark.parametrize(
    "tokenizer, kind", [(BPEVocab, "bpe"), (SubwordTokenizer, "subword")], ids=["bpe", "subword"]
)
def test_from_state_names_a_state_that_is_not_a_tokenizers_json(tokenizer, kind) -> None:
    # tokenizers raised a bare Exception ("expected value at line 1 column 1"), and a list
    # given to SubwordTokenizer was "'list' object is not an instance of 'str'".
    prefix = f"its vocabulary is not the JSON text of a {kind} tokenizer"
    with pytest.raises(ConfigError, match=rf"{prefix} \(tokenizers: expected value at line 1"):
        tokenizer.from_state("junk")
    with pytest.raises(ConfigError, match=rf"{prefix} \(tokenizers: Model missing"):
        tokenizer.from_state("{}")
    with pytest.raises(
        ConfigError, match=f"its vocabulary is a list, not the JSON text of a {kind}"
    ):
        tokenizer.from_state(["a", "b"])
    # words without spaces: tokenizers 0.15 (the oldest supported) writes a merge of pieces
    # that hold a space in a form it cannot read back
    trained = tokenizer.train(["lowest", "newer", "wider", "low"], 30)
    assert tokenizer.from_state(trained.state()).state() == trained.state()


def test_char_tokenizer_names_a_character_outside_its_vocabulary() -> None:
    tokenizer = CharTokenizer("abc\n")
    for encode in (tokenizer.encode, tokenizer.encode_tensor):
        # encode raised KeyError: 'z'; encode_tensor gave 'z' the id of its neighbour 'c'.
        with pytest.raises(InputError, match=r"outside the vocabulary of 4: 'z', 'Z'"):
            encode("abzZ")
        assert list(encode("cab")) == [3, 1, 2]
