"""A byte-pair-encoding (subword) vocabulary, trained with Hugging Face ``tokenizers``."""

from __future__ import annotations

from collections.abc import Iterable
from typing import cast

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from attnlab.data.vocab import PAD, UNK, check_ids
from attnlab.errors import ConfigError
from attnlab.nn.spec import MAX_ENTRIES, check_whole_number


def train_bpe(
    texts: Iterable[str], vocab_size: int, special_tokens: list[str], metaspace: bool = False
) -> Tokenizer:
    """A Hugging Face BPE tokenizer of ``vocab_size`` pieces learnt from ``texts``.

    ``special_tokens`` get the first ids, in order. ``metaspace=True`` keeps word boundaries
    (a space becomes the marker ``▁`` on the next piece) so that decoding restores the text.
    ``vocab_size`` is in ``[len(special_tokens), MAX_ENTRIES]``.
    """
    # The trainer sizes its tables by vocab_size before reading a text: 10**12 aborted the
    # whole process (out of memory in Rust), and -1 overflowed its unsigned size.
    check_whole_number("vocab_size", vocab_size, len(special_tokens))
    if vocab_size > MAX_ENTRIES:
        raise ValueError(f"vocab_size must be at most {MAX_ENTRIES:,}; got {vocab_size:,}")
    # A string is an iterable of its characters: each would be learnt as a text of its own.
    if isinstance(texts, str):
        raise TypeError("texts must be a list of strings; got one str (wrap it: [text])")
    tokenizer = Tokenizer(models.BPE(unk_token=UNK))
    if metaspace:
        tokenizer.pre_tokenizer = pre_tokenizers.Metaspace()
        tokenizer.decoder = decoders.Metaspace()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=special_tokens, show_progress=False
    )
    tokenizer.train_from_iterator(texts, trainer)
    return tokenizer


def tokenizer_from_state(state: object, kind: str) -> Tokenizer:
    """The Hugging Face tokenizer of ``state``, its JSON text (a run's config.json holds it);
    anything else is a :class:`~attnlab.errors.ConfigError` naming the ``kind`` ("bpe")."""
    if not isinstance(state, str):  # a character vocabulary's list, say
        raise ConfigError(
            f"its vocabulary is a {type(state).__name__}, not the JSON text of a {kind} "
            "tokenizer (was its tokenizer edited?)"
        )
    try:
        return Tokenizer.from_str(state)
    except Exception as e:  # tokenizers raises a bare Exception ("expected value at line 1")
        raise ConfigError(
            f"its vocabulary is not the JSON text of a {kind} tokenizer (tokenizers: {e}; was "
            "its tokenizer edited?)"
        ) from e


class BPEVocab:
    """Subword pieces <-> ids, with the interface of :class:`~attnlab.data.vocab.CharVocab`.

    Id 0 is padding and id 1 stands for characters never seen in training. BPE (Sennrich
    et al. 2016) starts from single characters and repeatedly merges the most frequent
    adjacent pair, so frequent endings such as ``ov`` or ``ski`` become single tokens.
    """

    pad_id = 0
    unk_id = 1

    def __init__(self, tokenizer: Tokenizer):
        self.tokenizer = tokenizer

    @classmethod
    def train(cls, texts: Iterable[str], vocab_size: int) -> BPEVocab:
        """A vocabulary of at most ``vocab_size`` pieces (padding and ``<unk>`` included) learnt
        from ``texts`` by BPE."""
        return cls(train_bpe(texts, vocab_size, [PAD, UNK]))

    @classmethod
    def from_state(cls, state: str) -> BPEVocab:
        """Rebuild from :meth:`state`; anything but a tokenizer's JSON text (a character
        vocabulary's list, say) is a :class:`~attnlab.errors.ConfigError` of one sentence."""
        return cls(tokenizer_from_state(state, "bpe"))

    def state(self) -> str:
        """The tokenizer as Hugging Face's JSON text, for config.json."""
        return self.tokenizer.to_str()

    def __len__(self) -> int:
        return self.tokenizer.get_vocab_size()

    def encode(self, text: str) -> list[int]:
        """The ids of ``text``'s pieces; characters never seen in training become ``unk_id``."""
        return self.tokenizer.encode(text).ids

    def tokens(self, ids: Iterable[int]) -> list[str]:
        """The piece of each id, padding dropped."""
        pieces = [
            self.tokenizer.id_to_token(i) for i in check_ids(ids, len(self)) if i != self.pad_id
        ]
        return cast("list[str]", pieces)  # id_to_token gives None only to unknown ids
