"""The classic surnames data set: 18 files ``<Language>.txt``, one surname per line.

From the PyTorch tutorial "Classifying Names with a Character-Level RNN" (``data.zip``).
Unlike the tutorial, names keep their Unicode characters (NFC-normalised, not folded to
ASCII), identical (name, language) lines are dropped, and the split is stratified by
language so that no (name, language) pair appears in two splits.
"""

from __future__ import annotations

import numbers
import unicodedata
from pathlib import Path

import torch

from attnlab.data.download import fetch_archive, hint_for, locate, read_data_text
from attnlab.errors import DataError
from attnlab.nn.spec import check_whole_number
from attnlab.options import MAX_SEED

URL = "https://download.pytorch.org/tutorial/data.zip"
SHA256 = "fb317e80248faeb62dc25ef3390ae24ca34b94e276bbc5141fd8862c2200bff5"
HINT = (
    "pass --data-dir DIR (the folder holding Arabic.txt ... Vietnamese.txt) or set "
    "ATTNLAB_DATA_DIR to a folder holding names/"
)

Pair = tuple[str, str]  # (name, language)
MIN_TO_SPLIT = 3  # names a language needs to give one to validation and one to test
# The smallest shares check_held_out accepts. A held-out fraction f needs about 0.5 / f
# source sentences before a split gives it one: below 1e-12 that is over 5e11, far beyond
# any data set (and a subnormal f overflows the float arithmetic). eng_fra.min_sources
# tries split sizes one at a time for the training share s, about 2 / s of them: 1e-4 keeps
# that to some 20,000 tries (0.5 + 0.4999999999 had taken about 10^10).
MIN_HELD_OUT = 1e-12
MIN_TRAIN_SHARE = 1e-4


def names_dir(data_dir: str | Path | None = None) -> Path:
    """The folder of ``<Language>.txt`` files: ``data_dir``, ``$ATTNLAB_DATA_DIR/names``,
    or the verified download cache."""
    found = locate("names", data_dir, "*.txt")
    if found is not None:
        return found
    hint = hint_for("names", "*.txt", HINT)
    return fetch_archive(URL, SHA256, "pytorch-tutorial-data", hint) / "data" / "names"


def read_names(folder: Path) -> list[Pair]:
    """All distinct (name, language) pairs, NFC-normalised, in file then line order."""
    pairs: dict[Pair, None] = {}
    for path in sorted(folder.glob("*.txt")):
        for line in read_data_text(path).splitlines():
            name = unicodedata.normalize("NFC", line.strip())
            if name:
                pairs[(name, path.stem)] = None
    if not pairs:
        raise DataError(f"{folder} holds no names")
    return list(pairs)


def stratified_split(
    pairs: list[Pair], seed: int, val_fraction: float = 0.1, test_fraction: float = 0.1
) -> tuple[list[Pair], list[Pair], list[Pair]]:
    """Split the distinct pairs into train / val / test, per language, shuffled with ``seed``.

    Every language gets ``round(n * fraction)`` (at least one, if it has :data:`MIN_TO_SPLIT`
    names or more) examples in val and in test. Since the pairs are distinct, no pair can be
    in two splits; a name listed under two languages may be (the data set's own ambiguity).
    """
    check_held_out(val_fraction, test_fraction)
    check_seed(seed)
    by_language: dict[str, list[Pair]] = {}
    for pair in pairs:
        by_language.setdefault(pair[1], []).append(pair)
    g = torch.Generator().manual_seed(seed)
    train, val, test = [], [], []
    for language in sorted(by_language):
        group = by_language[language]
        order = torch.randperm(len(group), generator=g).tolist()
        shuffled = [group[i] for i in order]
        minimum = 1 if len(group) >= MIN_TO_SPLIT else 0
        n_val = max(minimum, round(len(group) * val_fraction))
        n_test = max(minimum, round(len(group) * test_fraction))
        val += shuffled[:n_val]
        test += shuffled[n_val : n_val + n_test]
        train += shuffled[n_val + n_test :]
    return train, val, test


def check_held_out(val_fraction: float, test_fraction: float) -> None:
    """Refuse held-out fractions that are not numbers strictly between 0 and 1, or that leave
    nothing to train on (``val_fraction + test_fraction >= 1``)."""
    # Else 0.6 and 0.6 left training empty without a word, NaN failed in Python's words, and
    # eng_fra.min_sources counted up forever for 0, -0.1 or 1.5.
    for name, value in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if not isinstance(value, numbers.Real) or not 0 < value < 1:
            raise ValueError(f"{name} must be a number strictly between 0 and 1; got {value!r}")
        if value < MIN_HELD_OUT:
            raise ValueError(f"{name} must be at least {MIN_HELD_OUT:g}; got {value!r}")
    if val_fraction + test_fraction >= 1:
        raise ValueError(
            f"val_fraction + test_fraction must be below 1, to leave examples for training; "
            f"got {val_fraction} + {test_fraction}"
        )
    if 1 - val_fraction - test_fraction < MIN_TRAIN_SHARE:
        raise ValueError(
            f"val_fraction + test_fraction must leave at least {MIN_TRAIN_SHARE:g} of the "
            f"examples for training; got {val_fraction} + {test_fraction}"
        )


def check_seed(seed: int) -> None:
    """Refuse a seed outside ``[0, MAX_SEED]``, the task configs' range (a string or 2**70
    failed in torch's ``manual_seed``)."""
    check_whole_number("seed", seed)
    if seed > MAX_SEED:
        raise ValueError(f"seed must be at most {MAX_SEED:,}; got {seed:,}")


def check_split(folder: Path, splits: tuple[list[Pair], list[Pair], list[Pair]]) -> None:
    """Refuse the names of ``folder`` if their split leaves validation or test empty."""
    if not all(splits):
        raise DataError(
            f"the names data set in {folder} is too small to split: validation and test need "
            f"one name each, which takes at least one language of {MIN_TO_SPLIT} names or more"
        )
