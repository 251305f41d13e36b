"""A bidirectional GRU classifier: the recurrent baseline the Transformer is compared with."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence

from attnlab.models.common import check_counts, check_flags, check_token_ids
from attnlab.nn.embedding import check_token_batch, embed_tokens


@dataclass
class GRUClassifierConfig:
    """Hyperparameters of :class:`GRUClassifier`; a value out of its range raises
    ``ValueError`` when the config is made (sizes >= 1, ``pad_id`` in the vocabulary,
    ``dropout`` in ``[0, 1)``)."""

    vocab_size: int
    num_classes: int
    pad_id: int = 0
    d_embed: int = 64
    hidden: int = 128
    num_layers: int = 1
    dropout: float = 0.1
    bidirectional: bool = True

    def __post_init__(self) -> None:
        check_counts(self, ("vocab_size", "num_classes", "d_embed", "hidden", "num_layers"))
        check_token_ids(self, self.vocab_size, "vocab_size", ("pad_id",))
        dropout = self.dropout
        if isinstance(dropout, bool) or not isinstance(dropout, (int, float)):
            raise ValueError(f"dropout must be a number in [0, 1); got {dropout!r}")
        if not (math.isfinite(dropout) and 0 <= dropout < 1):
            raise ValueError(f"dropout must be in [0, 1); got {dropout!r}")
        check_flags(self, ("bidirectional",))


class GRUClassifier(nn.Module):
    """Embedding -> (bi)GRU over the real tokens -> final hidden states -> linear head.

    Input: token ids ``(B, T)`` padded with ``pad_id`` at the end, each in
    ``[0, vocab_size)``. Output: logits ``(B, num_classes)``. Padding is skipped with a packed
    sequence, so it never reaches the recurrence; a row of padding only (or ``T = 0``) reads
    one padding token.
    """

    config_class = GRUClassifierConfig

    def __init__(self, config: GRUClassifierConfig):
        super().__init__()
        self.config = config
        self.embed = nn.Embedding(config.vocab_size, config.d_embed, padding_idx=config.pad_id)
        self.gru = nn.GRU(
            config.d_embed,
            config.hidden,
            num_layers=config.num_layers,
            batch_first=True,
            dropout=config.dropout if config.num_layers > 1 else 0.0,
            bidirectional=config.bidirectional,
        )
        directions = 2 if config.bidirectional else 1
        self.dropout = nn.Dropout(config.dropout)
        self.head = nn.Linear(directions * config.hidden, config.num_classes)

    def forward(self, tokens: Tensor) -> Tensor:
        """Logits ``(B, num_classes)`` of token ids ``(B, T)`` padded at the end: the head on the
        GRU's final hidden states (both directions' when bidirectional)."""
        check_token_batch(tokens)
        B, T = tokens.shape
        if T == 0:  # no position at all: as a row of padding only, one padding token
            tokens = tokens.new_full((B, 1), self.config.pad_id)  # (B, 1)
        x = self.dropout(embed_tokens(self.embed, tokens))  # (B, T, d_embed); checks the ids
        if B == 0:  # nothing to pack: no logits
            return self.head.weight.new_zeros(0, self.config.num_classes)  # (0, num_classes)
        lengths = (tokens != self.config.pad_id).sum(dim=1).clamp(min=1)  # (B,)
        packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
        _, h_n = self.gru(packed)  # (layers * directions, B, hidden)
        last = h_n[-2:] if self.config.bidirectional else h_n[-1:]  # (directions, B, hidden)
        features = torch.cat(list(last), dim=-1)  # (B, directions * hidden)
        return self.head(self.dropout(features))  # (B, num_classes)
