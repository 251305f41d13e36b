"""A subword tokenizer for sentences: byte-pair encoding with word boundaries kept.

Trained with Hugging Face ``tokenizers`` on the training split only. Spaces become the
``▁`` marker at the start of the following piece (the "Metaspace" scheme of SentencePiece),
so that :meth:`SubwordTokenizer.decode` restores the text exactly: BLEU is computed on that
detokenised text, never on pieces.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import cast

from tokenizers import Tokenizer

from attnlab.data.bpe import tokenizer_from_state, train_bpe
from attnlab.data.vocab import PAD, UNK, check_ids
from attnlab.errors import DataError

BOS, EOS = "<s>", "</s>"


class SubwordTokenizer:
    """Text <-> subword ids. Ids 0-3 are padding, unknown, start and end of sentence.

    One tokenizer serves both languages of a translation task (a shared vocabulary, as in
    the paper's section 5.1), so the model can share one embedding matrix between them.
    """

    pad_id, unk_id, bos_id, eos_id = 0, 1, 2, 3

    def __init__(self, tokenizer: Tokenizer):
        self.tokenizer = tokenizer
        specials = [tokenizer.token_to_id(t) for t in (PAD, UNK, BOS, EOS)]
        if specials != [0, 1, 2, 3]:
            raise DataError(f"special tokens {PAD} {UNK} {BOS} {EOS} must have ids 0-3")

    @classmethod
    def train(cls, texts: Iterable[str], vocab_size: int) -> SubwordTokenizer:
        """Learn ``vocab_size`` pieces (special tokens and characters included) from ``texts``."""
        return cls(train_bpe(texts, vocab_size, [PAD, UNK, BOS, EOS], metaspace=True))

    @classmethod
    def from_state(cls, state: str) -> SubwordTokenizer:
        """Rebuild from :meth:`state`; anything else is a
        :class:`~attnlab.errors.ConfigError` of one sentence."""
        return cls(tokenizer_from_state(state, "subword"))

    def state(self) -> str:
        """The tokenizer as Hugging Face's JSON text (``Tokenizer.from_str`` reads it)."""
        return self.tokenizer.to_str()

    def __len__(self) -> int:
        return self.tokenizer.get_vocab_size()

    def encode(self, text: str) -> list[int]:
        """Piece ids of ``text``, without start or end markers."""
        return self.tokenizer.encode(text).ids

    def decode(self, ids: Iterable[int]) -> str:
        """Text of ``ids``; special tokens (padding, start, end) are dropped."""
        return self.tokenizer.decode(check_ids(ids, len(self)), skip_special_tokens=True)

    def tokens(self, ids: Iterable[int]) -> list[str]:
        """The piece of each id (for attention-map labels)."""
        pieces = [self.tokenizer.id_to_token(i) for i in check_ids(ids, len(self))]
        return cast("list[str]", pieces)  # id_to_token gives None only to unknown ids
