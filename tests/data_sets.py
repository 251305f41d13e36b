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
