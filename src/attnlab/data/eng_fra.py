"""English-French sentence pairs (Tatoeba via manythings.org), as in the PyTorch tutorial.

One pair per line, ``English<TAB>French`` (135,842 lines), in the tutorial's ``data.zip``
(the same archive as the names data set) as ``data/eng-fra.txt``.

Two views of it:

* the tutorial's subset (:func:`tutorial_subset`): text normalised as the tutorial does
  (ASCII, lower case, "!" and "?" split off, every other sign dropped), fewer than 10 words
  a side, English starting with "i am", "he is", ... and their contractions: 11,439
  distinct pairs;
* all pairs, NFC-normalised, with their own case and punctuation.

:func:`split_by_source` splits pairs so that all translations of a source sentence land in
the same split: no source sentence is in two splits.
"""

from __future__ import annotations

import math
import re
import unicodedata
from pathlib import Path

import torch

from attnlab.data.download import fetch_archive, hint_for, locate, read_data_text
from attnlab.data.names import SHA256, URL, check_held_out, check_seed
from attnlab.errors import DataError

FILE = "eng-fra.txt"
HINT = (
    "pass --data-dir DIR (the folder holding eng-fra.txt) or set ATTNLAB_DATA_DIR to a folder "
    "holding eng-fra/"
)

Pair = tuple[str, str]  # (English, French)

# The tutorial's filter: English sentences of these forms (after normalisation, in which
# "i'm" has become "i m").
ENGLISH_PREFIXES = (
    "i am ",
    "i m ",
    "he is",
    "he s ",
    "she is",
    "she s ",
    "you are",
    "you re ",
    "we are",
    "we re ",
    "they are",
    "they re ",
)
MAX_WORDS = 10  # the tutorial keeps pairs of fewer than 10 words a side


def eng_fra_file(data_dir: str | Path | None = None) -> Path:
    """``eng-fra.txt`` in ``data_dir``, ``$ATTNLAB_DATA_DIR/eng-fra``, or the verified download."""
    found = locate("eng-fra", data_dir, FILE)
    if found is not None:
        return found / FILE
    hint = hint_for("eng-fra", FILE, HINT)
    return fetch_archive(URL, SHA256, "pytorch-tutorial-data", hint) / "data" / FILE


def read_pairs(path: Path) -> list[Pair]:
    """All (English, French) pairs of the file, NFC-normalised, in file order."""
    lines = read_data_text(path).splitlines()
    pairs = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) < 2 or not fields[0].strip() or not fields[1].strip():
            raise DataError(f"{path}, line {number}: expected 'English<TAB>French'")
        english, french = (unicodedata.normalize("NFC", f.strip()) for f in fields[:2])
        pairs.append((english, french))
    if not pairs:
        raise DataError(f"{path} holds no sentence pairs")
    return pairs


def normalize_tutorial(text: str) -> str:
    """The tutorial's normalisation: ASCII, lower case, ``!?`` split off, other signs dropped.

    The current tutorial's rules (its older version kept the full stop as a word too).

    >>> normalize_tutorial("J'ai froid.")
    'j ai froid'
    >>> normalize_tutorial("Êtes-vous prêts ?")
    'etes vous prets ?'
    """
    text = "".join(
        ch for ch in unicodedata.normalize("NFD", text) if unicodedata.category(ch) != "Mn"
    )
    text = re.sub(r"([.!?])", r" \1", text.lower().strip())
    text = re.sub(r"[^a-zA-Z!?]+", " ", text)
    return text.strip()


def tutorial_subset(pairs: list[Pair]) -> list[Pair]:
    """The tutorial's short "i am / he is / ..." pairs, normalised, duplicates dropped."""
    kept: dict[Pair, None] = {}
    for english, french in pairs:
        english, french = normalize_tutorial(english), normalize_tutorial(french)
        if (
            len(english.split(" ")) < MAX_WORDS
            and len(french.split(" ")) < MAX_WORDS
            and english.startswith(ENGLISH_PREFIXES)
        ):
            kept[(english, french)] = None
    return list(kept)


def split_by_source(
    pairs: list[tuple[str, str]], seed: int, val_fraction: float, test_fraction: float
) -> tuple[list, list, list]:
    """Split (source, target) pairs into train / val / test, grouped by source sentence.

    The distinct source sentences are shuffled with ``seed`` and cut by the fractions; each
    pair follows its source, so a sentence with several translations has them all in one
    split (the test set's references are never seen in training as a source).
    """
    check_held_out(val_fraction, test_fraction)
    check_seed(seed)
    sources = list(dict.fromkeys(source for source, _ in pairs))
    order = torch.randperm(len(sources), generator=torch.Generator().manual_seed(seed)).tolist()
    n_val, n_test = _held_out(len(sources), val_fraction, test_fraction)
    split_of = {}
    for rank, i in enumerate(order):
        split_of[sources[i]] = 1 if rank < n_val else 2 if rank < n_val + n_test else 0
    splits: tuple[list, list, list] = ([], [], [])
    for pair in pairs:
        splits[split_of[pair[0]]].append(pair)
    return splits


def _held_out(n_sources: int, val_fraction: float, test_fraction: float) -> tuple[int, int]:
    """How many of ``n_sources`` source sentences go to val and to test."""
    return round(n_sources * val_fraction), round(n_sources * test_fraction)


def min_sources(val_fraction: float, test_fraction: float) -> int:
    """The fewest distinct source sentences that :func:`split_by_source` splits into three
    non-empty parts (the fractions are positive, and below 1 together)."""
    check_held_out(val_fraction, test_fraction)
    n = _min_held_out_sources(min(val_fraction, test_fraction))
    while True:
        n_val, n_test = _held_out(n, val_fraction, test_fraction)
        if min(n_val, n_test, n - n_val - n_test) >= 1:
            return n
        n += 1


def _min_held_out_sources(fraction: float) -> int:
    """The fewest source sentences (at least 3) of which ``fraction`` rounds to one or more.

    Found by bisection, since the rounded share only grows with the count: counting up one
    at a time took about 0.5 / fraction steps (5e9 for 1e-10).
    """
    low, high = 2, max(3, math.ceil(1 / fraction) + 1)  # low fails (or is below 3), high holds
    while high - low > 1:
        middle = (low + high) // 2
        if round(middle * fraction) >= 1:
            high = middle
        else:
            low = middle
    return high
