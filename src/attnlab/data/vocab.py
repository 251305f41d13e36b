"""A character vocabulary with padding and unknown tokens."""

from __future__ import annotations

import operator
from collections.abc import Iterable

from attnlab.errors import InputError

PAD, UNK = "<pad>", "<unk>"


def check_ids(ids: Iterable[int], vocab_size: int) -> list[int]:
    """``ids`` as a list of ints, each checked to lie in ``0 .. vocab_size - 1``.

    Raises :class:`~attnlab.errors.InputError` naming the first id that is not a whole
    number or lies outside the vocabulary: Python would read ``-1`` as the last entry.
    """
    checked = []
    for i in ids:
        try:
            index = operator.index(i)
        except TypeError:
            raise InputError(f"token id {i!r} is not a whole number") from None
        if isinstance(i, bool) or not 0 <= index < vocab_size:
            raise InputError(
                f"token id {i!r} is outside the vocabulary: ids run from 0 to {vocab_size - 1}"
            )
        checked.append(index)
    return checked


class CharVocab:
    """Characters <-> ids. Id 0 is padding and id 1 stands for any unseen character.

    Built from training text only, so that validation and test characters that never
    occur in training map to ``<unk>`` as they would for a user.
    """

    def __init__(self, chars: Iterable[str]):
        self.itos = [PAD, UNK, *sorted(set(chars))]
        self.stoi = {ch: i for i, ch in enumerate(self.itos)}

    pad_id = 0
    unk_id = 1

    def __len__(self) -> int:
        return len(self.itos)

    def encode(self, text: str) -> list[int]:
        """One id per character of ``text``; characters never seen in training become ``unk_id``."""
        return [self.stoi.get(ch, self.unk_id) for ch in text]

    def tokens(self, ids: Iterable[int]) -> list[str]:
        """The token of each id (``<unk>`` for unknown characters), padding dropped.

        Raises :class:`~attnlab.errors.InputError` for an id outside the vocabulary.
        """
        return [self.itos[i] for i in check_ids(ids, len(self)) if i != self.pad_id]

    @classmethod
    def from_texts(cls, texts: Iterable[str]) -> CharVocab:
        """The vocabulary of every character in ``texts`` (the training texts)."""
        return cls(ch for text in texts for ch in text)

    @classmethod
    def from_state(cls, state: list[str]) -> CharVocab:
        """Rebuild from :meth:`state`."""
        return cls(state)

    def state(self) -> list[str]:
        """The characters in id order (after the two special tokens), for config.json."""
        return self.itos[2:]
