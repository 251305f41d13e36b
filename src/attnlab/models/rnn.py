"""A bidirectional GRU classifier: the recurrent baseline the Transformer is compared with."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence


@dataclass
class GRUClassifierConfig:
    """Hyperparameters of :class:`GRUClassifier`."""

    vocab_size: int
    num_classes: int
    pad_id: int = 0
    d_embed: int = 64
    hidden: int = 128
    num_layers: int = 1
    dropout: float = 0.1
    bidirectional: bool = True


class GRUClassifier(nn.Module):
    """Embedding -> (bi)GRU over the real tokens -> final hidden states -> linear head.

    Input: token ids ``(B, T)`` padded with ``pad_id`` at the end. Output: logits
    ``(B, num_classes)``. Padding is skipped with a packed sequence, so it never reaches
    the recurrence.
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
        lengths = (tokens != self.config.pad_id).sum(dim=1).clamp(min=1)  # (B,)
        x = self.dropout(self.embed(tokens))  # (B, T, d_embed)
        packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
        _, h_n = self.gru(packed)  # (layers * directions, B, hidden)
        last = h_n[-2:] if self.config.bidirectional else h_n[-1:]  # (directions, B, hidden)
        features = torch.cat(list(last), dim=-1)  # (B, directions * hidden)
        return self.head(self.dropout(features))  # (B, num_classes)
