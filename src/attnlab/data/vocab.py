"""A character vocabulary with padding and unknown tokens."""

from __future__ import annotations

from collections.abc import Iterable

PAD, UNK = "<pad>", "<unk>"


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
        return [self.stoi.get(ch, self.unk_id) for ch in text]

    def tokens(self, ids: Iterable[int]) -> list[str]:
        """The token of each id (``<unk>`` for unknown characters), padding dropped."""
        return [self.itos[i] for i in ids if i != self.pad_id]

    @classmethod
    def from_texts(cls, texts: Iterable[str]) -> CharVocab:
        return cls(ch for text in texts for ch in text)

    @classmethod
    def from_state(cls, state: list[str]) -> CharVocab:
        """Rebuild from :meth:`state`."""
        return cls(state)

    def state(self) -> list[str]:
        """The characters in id order (after the two special tokens), for config.json."""
        return self.itos[2:]
