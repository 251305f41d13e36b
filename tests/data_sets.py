"""The real data sets (names, eng-fra, tinyshakespeare) for the tests that need them."""

import os
from pathlib import Path

import pytest

DATA_ROOT = os.environ.get("ATTNLAB_DATA_DIR")
REASON = (
    "needs the real data sets: set ATTNLAB_DATA_DIR to a folder holding names/, eng-fra/ and "
    "tinyshakespeare/ (see docs/testing.md)"
)
needs_data = pytest.mark.skipif(not DATA_ROOT, reason=REASON)


# A small data set in the names layout (one <Language>.txt per language, one name a line),
# holding the characters of the names the tests encode, accents included (but not 李).
MADE_UP_NAMES = {
    "Italian": "Rossi Russo Ferrari Esposito Bianchi Romano Colombo Ricci Marino Greco",
    "Japanese": "Nakamura Tanaka Yamamoto Suzuki Takahashi Watanabe Kobayashi Nakajima Yamada",
    "Norwegian": "Østby Hansen Johansen Olsen Larsen Sørensen Pedersen Bjørnstad Lie Kristiansen",
    "Russian": "Kozlov Volkov Sokolov Orlov Smirnov Ivanov Petrov Dostoevsky Tchaikovsky Zhukovsky",
    "Vietnamese": "Nguyễn Trần Lê Phạm Hoàng Huỳnh Phan Vũ Võ Đặng",
    "Irish": "O'Neill O'Brien Murphy Kelly Walsh O'Sullivan Byrne Ryan O'Connor",
}


def write_made_up_names(folder: Path) -> Path:
    """MADE_UP_NAMES in ``folder`` (made if missing), as ``--data-dir`` takes it: for the names
    tests that need a vocabulary and a split, not the real data's 20,074 names."""
    folder.mkdir(parents=True, exist_ok=True)
    for language, names in MADE_UP_NAMES.items():
        (folder / f"{language}.txt").write_text("\n".join(names.split()) + "\n", encoding="utf-8")
    return folder


def write_tutorial_pairs(folder: Path) -> Path:
    """A small ``eng-fra.txt`` in a new ``folder``: 60 distinct "I am xxx." pairs that the
    translate-small subset keeps (a few seconds of the translation pipeline)."""
    folder.mkdir()
    words = [a + b + c for a in "bcdfg" for b in "aeiou" for c in "lmnr"][:60]
    (folder / "eng-fra.txt").write_text("".join(f"I am {w}.\tJe suis {w}.\n" for w in words))
    return folder


def write_short_shakespeare(folder: Path) -> Path:
    """A Shakespeare-like ``input.txt`` in a new ``folder``: the real text cut to 40,000
    characters if the data sets are there, else one speech repeated."""
    folder.mkdir(exist_ok=True)
    if DATA_ROOT:
        text = Path(DATA_ROOT, "tinyshakespeare", "input.txt").read_text()[:40_000]
    else:
        text = "ROMEO:\nBut soft, what light through yonder window breaks?\n\n" * 700
    (folder / "input.txt").write_text(text)
    return folder
