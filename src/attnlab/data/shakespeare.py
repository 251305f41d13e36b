"""Tiny Shakespeare: 1,115,394 characters of Shakespeare's plays, one file ``input.txt``.

The corpus of Karpathy's char-rnn, also used by nanoGPT's ``shakespeare_char``. Read as
nanoGPT reads it: one token per character (65 distinct characters), the first 90% of the
text for training and the last 10% for validation, split by position. A language model
learns from blocks of ``block_size + 1`` consecutive characters: the first ``block_size`` are
the input, and the same block shifted by one is the target (the next character at every
position).
"""

from __future__ import annotations

import numbers
import os
import shutil
import urllib.error
import urllib.request
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from attnlab.data.download import (
    CHUNK,
    cache_dir,
    hint_for,
    locate,
    read_data_text,
    sha256_of,
    staging_dir,
)
from attnlab.data.vocab import check_ids
from attnlab.errors import DataError, InputError
from attnlab.machine import check_memory
from attnlab.nn.spec import check_whole_number, not_a_tensor
from attnlab.options import MAX_SEED

URL = "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt"
SHA256 = "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"
FILENAME = "input.txt"
HINT = (
    "pass --data-dir DIR (the folder holding input.txt) or set ATTNLAB_DATA_DIR to a folder "
    "holding tinyshakespeare/input.txt"
)
TRAIN_FRACTION = 0.9


def shakespeare_path(data_dir: str | Path | None = None) -> Path:
    """``input.txt`` in ``data_dir``, in ``$ATTNLAB_DATA_DIR/tinyshakespeare``, or downloaded.

    A download is checked against :data:`SHA256` before it enters the cache
    (``$ATTNLAB_CACHE/tinyshakespeare``); a file that fails the check is deleted and refused.
    """
    found = locate("tinyshakespeare", data_dir, FILENAME)
    if found is not None:
        return found / FILENAME
    target = cache_dir() / "tinyshakespeare" / FILENAME
    if target.is_file():
        return target
    hint = hint_for("tinyshakespeare", FILENAME, HINT)
    with staging_dir(target.parent, hint) as tmp:
        download = Path(tmp) / FILENAME
        try:
            with urllib.request.urlopen(URL, timeout=60) as response, open(download, "wb") as f:
                shutil.copyfileobj(response, f, CHUNK)
        except (urllib.error.URLError, OSError) as e:
            reason = getattr(e, "reason", e)
            raise DataError(f"could not download tiny Shakespeare ({reason}); {hint}") from e
        actual = sha256_of(download)
        if actual != SHA256:
            raise DataError(
                f"the downloaded {FILENAME} failed its checksum (sha256 {actual[:16]}..., "
                f"expected {SHA256[:16]}...): the download is corrupt or not the official file"
            )
        os.replace(download, target)
    return target


def read_text(path: Path) -> str:
    """The whole text of ``path`` (UTF-8); an empty, unreadable or undecodable file, or a
    directory in its place, is a DataError."""
    text = read_data_text(path)
    if not text:
        raise DataError(f"{path} is empty")
    return text


class CharTokenizer:
    """One id per distinct character, in sorted order (nanoGPT's ``shakespeare_char`` ids).

    Built from the whole text, as nanoGPT does, so that every character of the validation
    part has an id. It has no padding or unknown token: a language model over a fixed text
    never needs them, and a user's character outside the vocabulary is refused instead.
    """

    def __init__(self, chars: str):
        self.chars = "".join(sorted(set(chars)))
        self.stoi = {ch: i for i, ch in enumerate(self.chars)}

    def __len__(self) -> int:
        return len(self.chars)

    def unknown(self, text: str) -> list[str]:
        """The distinct characters of ``text`` outside the vocabulary, in order of appearance."""
        missing = set(text) - self.stoi.keys()
        return [ch for ch in dict.fromkeys(text) if ch in missing] if missing else []

    def encode(self, text: str) -> list[int]:
        """Ids of the characters of ``text``; a character outside the vocabulary raises
        :class:`~attnlab.errors.InputError`."""
        if self.unknown(text):  # else a bare KeyError: 'z'
            self._refuse_unknown(text)
        return [self.stoi[ch] for ch in text]

    def encode_tensor(self, text: str) -> Tensor:
        """:meth:`encode` as a tensor ``(len(text),)``, vectorised for a whole corpus.

        The characters are sorted by code point, so a character's id is its rank among them:
        a binary search of each code point in the vocabulary's.
        """
        codes = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)  # (N,)
        table = np.frombuffer(self.chars.encode("utf-32-le"), dtype=np.uint32)  # (V,), sorted
        # A character outside the vocabulary would silently get its neighbour's id.
        if not np.isin(codes, table).all():
            self._refuse_unknown(text)
        return torch.from_numpy(np.searchsorted(table, codes).astype(np.int64))  # (N,)

    def _refuse_unknown(self, text: str) -> None:
        """Raise :class:`~attnlab.errors.InputError` naming ``text``'s unknown characters."""
        shown = ", ".join(repr(ch) for ch in self.unknown(text)[:5])
        raise InputError(f"text has characters outside the vocabulary of {len(self)}: {shown}")

    def decode(self, ids: Iterable[int]) -> str:
        """The text of ``ids``; an id outside the vocabulary raises
        :class:`~attnlab.errors.InputError`."""
        return "".join(self.chars[i] for i in check_ids(ids, len(self.chars)))

    def state(self) -> str:
        """The characters in id order, for config.json."""
        return self.chars

    @classmethod
    def from_state(cls, state: str) -> CharTokenizer:
        """Rebuild from :meth:`state`."""
        return cls(state)


def split_by_position(ids: Tensor, train_fraction: float = TRAIN_FRACTION) -> tuple[Tensor, Tensor]:
    """The first ``train_fraction`` of ``ids (N,)`` and the rest, as nanoGPT splits them;
    ``train_fraction`` is strictly between 0 and 1."""
    _check_fraction(train_fraction)
    n_train = _train_length(len(ids), train_fraction)
    return ids[:n_train], ids[n_train:]


def _check_fraction(train_fraction: float) -> None:
    """Refuse a ``train_fraction`` that is not a number strictly between 0 and 1."""
    # Outside (0, 1) a split is silently one-sided (1.5 or -1), NaN failed in Python's words,
    # and min_length divided by zero at 0 or 1 and counted up forever past them.
    if not isinstance(train_fraction, numbers.Real) or not 0 < train_fraction < 1:
        raise ValueError(
            f"train_fraction must be a number strictly between 0 and 1; got {train_fraction!r}"
        )


def _train_length(n: int, train_fraction: float) -> int:
    return int(n * train_fraction)


def min_length(block_size: int, train_fraction: float = TRAIN_FRACTION) -> int:
    """The fewest tokens whose :func:`split_by_position` leaves one block of ``block_size + 1``
    tokens in each part (``block_size`` a whole number >= 1).

    Neither part shrinks as the length grows, so every length from the answer on fits: double
    a length until it fits, then bisect between it and the last one that did not.
    """
    check_whole_number("block_size", block_size, 1)  # 0 or -5 gave a length without a word
    _check_fraction(train_fraction)

    def fits(n: int) -> bool:
        n_train = _train_length(n, train_fraction)
        return min(n_train, n - n_train) >= block_size + 1

    # Counting up one length at a time took about 1 / train_fraction steps (10**10 at 1e-10).
    too_short, enough = 2 * block_size + 1, 2 * block_size + 2  # each part needs block_size + 1
    while not fits(enough):
        too_short, enough = enough, 2 * enough
    while enough - too_short > 1:
        middle = (too_short + enough) // 2
        too_short, enough = (too_short, middle) if fits(middle) else (middle, enough)
    return enough


def check_length(path: Path, text: str, block_size: int) -> None:
    """Refuse a text too short to give both of its parts one block (see :func:`min_length`)."""
    needed = min_length(block_size)
    if len(text) < needed:
        raise DataError(
            f"{path} has {len(text):,} characters, too few for --block-size {block_size}: the "
            f"text needs at least {needed:,}, so that its first {TRAIN_FRACTION:.0%} and its "
            f"last {1 - TRAIN_FRACTION:.0%} each hold one block of {block_size + 1} characters"
        )


BYTES_PER_RANDOM_BLOCK = 3 * 8  # BlockDataset.random's peak: starts, jitter, offsets (8 bytes)
# The most blocks BlockDataset.random draws, ShakespeareConfig's bound on --train-blocks:
# 10**9 blocks of the default 64 characters read tiny Shakespeare's training part about 64,000
# times over, in 24 GB at the peak; beyond it a count is a typo (10**12 tried to allocate 8 TB).
MAX_BLOCKS = 10**9


class BlockDataset(Dataset):
    """Blocks of a token sequence: item ``i`` starts at ``offsets[i]``.

    Item: ``(x, y)``, each ``(block_size,)``: ``x = ids[o : o + block_size]`` and
    ``y = ids[o + 1 : o + block_size + 1]``, the next token at every position.
    """

    def __init__(self, ids: Tensor, offsets: Tensor, block_size: int):
        self.ids = ids
        self.offsets = offsets
        self.block_size = block_size

    def __len__(self) -> int:
        return len(self.offsets)

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor]:
        o = int(self.offsets[i])
        return self.ids[o : o + self.block_size], self.ids[o + 1 : o + self.block_size + 1]

    @classmethod
    def random(cls, ids: Tensor, n: int, block_size: int, seed: int) -> BlockDataset:
        """``n`` blocks (``1 <= n <=`` :data:`MAX_BLOCKS`) of token ids ``(N,)`` at random
        offsets drawn with ``seed`` (in ``[0, MAX_SEED]``), spread evenly over ``ids``.

        The range of offsets is cut into ``n`` equal stretches and block ``i`` starts at a
        uniformly random point of stretch ``i`` (stratified sampling). Offsets drawn uniformly
        from the whole range instead would, at the baby GPT's 24,000 blocks of 65 characters
        over 1M positions, leave about a fifth of the text in no block and repeat other parts.
        """
        _check_blocks(ids, block_size)
        # n sizes three tensors: 0 divided by zero, -1 failed inside torch.arange.
        check_whole_number("n", n, 1)
        if n > MAX_BLOCKS:
            raise ValueError(f"n must be at most {MAX_BLOCKS:,} blocks; got {n:,}")
        # The task config's range; else a string or 2**70 failed in torch's manual_seed.
        check_whole_number("seed", seed)
        if seed > MAX_SEED:
            raise ValueError(f"seed must be at most {MAX_SEED:,}; got {seed:,}")
        check_memory(n * BYTES_PER_RANDOM_BLOCK, f"drawing {n:,} random blocks", "pass a smaller n")
        g = torch.Generator().manual_seed(seed)
        stretch = (len(ids) - block_size) / n
        starts = torch.arange(n, dtype=torch.float64) * stretch  # (n,)
        jitter = torch.rand(n, generator=g, dtype=torch.float64) * stretch  # (n,)
        offsets = (starts + jitter).long().clamp(max=len(ids) - block_size - 1)  # (n,)
        return cls(ids, offsets, block_size)

    @classmethod
    def consecutive(cls, ids: Tensor, block_size: int) -> BlockDataset:
        """Every non-overlapping block of token ids ``(N,)``, from the start: the whole
        sequence, read once."""
        _check_blocks(ids, block_size)
        offsets = torch.arange(0, len(ids) - block_size, block_size)  # (n,)
        return cls(ids, offsets, block_size)


def _check_blocks(ids: Tensor, block_size: int) -> None:
    """Refuse ``ids`` that are not integer token ids ``(N,)``, a ``block_size`` that is not a
    whole number >= 1, and ``ids`` shorter than one block of ``block_size + 1``."""
    # A list or a 2-D tensor gave blocks that are not runs of tokens, float ids blocks that no
    # embedding takes; block_size 0 or -3 failed inside torch.arange, 2.5 sliced with floats.
    if not isinstance(ids, Tensor):
        raise not_a_tensor("ids", ids, "(N,)")
    if ids.dim() != 1 or ids.is_floating_point() or ids.is_complex():
        raise ValueError(f"ids must be integer token ids (N,); got {ids.dtype} {tuple(ids.shape)}")
    check_whole_number("block_size", block_size, 1)
    if len(ids) < block_size + 1:
        raise DataError(
            f"the text part has {len(ids)} characters, fewer than one block of "
            f"{block_size + 1}: use a smaller --block-size or a longer text"
        )
