"""Sequence reversal: the classic first exercise for a Transformer encoder.

Input: a sequence of digits ``0 .. num_categories-1``; target: the same sequence reversed.
A 1-layer, 1-head :class:`~attnlab.models.TokenPredictor` solves it when output position
``i`` attends to input position ``T-1-i`` — which is what its attention map shows.

The classic tutorial uses sequences of exactly 16 digits. attnlab also trains on shorter
ones (``min_len``, default 1) so that ``attnlab predict RUN "3 1 4 1 5"`` works: a sequence
of length ``L`` is *left*-padded to ``seq_len`` and the padding is masked out of attention.
Output position ``i`` still reverses input position ``seq_len-1-i``, and the answer is in the
first ``L`` outputs. Pass ``--min-len 16`` for the tutorial's fixed length.

``--layer FILE.py:ClassName`` trains a layer of your own in place of attnlab's (its
contract: ``attnlab.models.user_layer``).
"""

from __future__ import annotations

from collections.abc import Iterator, Sized
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import Dataset, TensorDataset

from attnlab.configs.tasks import CARDS, ReverseConfig
from attnlab.errors import InputError
from attnlab.machine import check_memory
from attnlab.models import TokenPredictor, TokenPredictorConfig
from attnlab.nn import padding_mask
from attnlab.tasks.base import AttentionView, Splits, Task
from attnlab.tasks.common import IGNORE, CrossEntropyTally, model_device, shown
from attnlab.tasks.registry import register
from attnlab.tasks.user_layer import user_layer_fields

KEPT_BYTES_PER_TOKEN = 2 * 8  # tokens and targets, int64
PEAK_BYTES_PER_TOKEN = 2 * 8 + 2  # while one split is made: random digits, a flipped copy (int64)
# and two padding masks (bool)


def reverse_data_bytes(config: ReverseConfig) -> int:
    """Bytes the three generated splits need at their peak (the last split being made while
    the others are kept)."""
    sizes = (config.train_size, config.val_size, config.test_size)
    kept = sum(sizes) * config.seq_len * KEPT_BYTES_PER_TOKEN
    return kept + max(sizes) * config.seq_len * PEAK_BYTES_PER_TOKEN


def make_reverse_data(config: ReverseConfig, size: int, seed: int) -> TensorDataset:
    """``size`` left-padded examples ``(tokens, targets)``, each ``(seq_len,)``.

    Padding uses the token id ``num_categories`` in the input and ``IGNORE`` in the target.
    """
    g = torch.Generator().manual_seed(seed)
    T, pad = config.seq_len, config.num_categories
    digits = torch.randint(config.num_categories, (size, T), generator=g)  # (N, T)
    lengths = torch.randint(config.min_len, T + 1, (size,), generator=g)  # (N,)
    is_pad = torch.arange(T)[None, :] < (T - lengths)[:, None]  # (N, T): the first T-L are pad
    tokens = digits.masked_fill(is_pad, pad)  # (N, T)
    targets = tokens.flip(1).masked_fill(is_pad.flip(1), IGNORE)  # (N, T): answer first
    return TensorDataset(tokens, targets)


@register
class ReverseTask(Task):
    """Reverse a sequence of digits (see the module docstring)."""

    card = CARDS["reverse"]

    @property
    def pad_id(self) -> int:
        """The padding id, ``num_categories`` (the id after the digits)."""
        return self.config.num_categories

    def check_data_fits(self) -> None:
        """Refuse, with a ConfigError, generated splits larger than this machine's memory."""
        c = self.config
        check_memory(
            reverse_data_bytes(c),
            f"the generated data ({c.train_size + c.val_size + c.test_size:,} sequences of "
            f"{c.seq_len:,} tokens)",
            "choose a smaller --train-size, --val-size, --test-size or --seq-len",
        )

    def splits(self) -> Splits:
        """Three generated splits (seeds ``data_seed``, ``+ 1``, ``+ 2``) of left-padded digit
        sequences and their reversals."""
        c = self.config
        self.check_data_fits()
        return Splits(
            train=make_reverse_data(c, c.train_size, c.data_seed),
            val=make_reverse_data(c, c.val_size, c.data_seed + 1),
            test=make_reverse_data(c, c.test_size, c.data_seed + 2),
        )

    def build_model(self) -> nn.Module:
        """A :class:`~attnlab.models.TokenPredictor` over the digits and the pad token, one class
        per digit."""
        c = self.config
        layer = user_layer_fields(c.layer, c.size) if c.layer else {}
        return TokenPredictor(
            TokenPredictorConfig(
                num_classes=c.num_categories,
                vocab_size=c.num_categories + 1,  # the digits and the pad token
                d_model=c.size.d_model,
                num_heads=c.size.heads,
                num_layers=c.size.layers,
                d_ff=c.size.d_ff,
                dropout=c.size.dropout,
                max_len=c.seq_len,
                **layer,
            )
        )

    def _logits(self, model: nn.Module, tokens: Tensor) -> Tensor:
        return model(tokens, mask=padding_mask(tokens, self.pad_id))  # (B, T, C)

    def loss(self, model: nn.Module, batch: Any) -> Tensor:
        """Cross-entropy of the reversed digit at every position, ignoring padding."""
        tokens, targets = batch
        logits = self._logits(model, tokens)  # (B, T, C)
        # (B*T, C) against (B*T,)
        return F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=IGNORE)

    @torch.no_grad()
    def evaluate(self, model: nn.Module, batches: Any) -> dict[str, float]:
        """Mean cross-entropy, per-token accuracy and whole-sequence accuracy, padding ignored."""
        tally, correct_seqs, seqs = CrossEntropyTally(), 0, 0
        for tokens, targets in batches:
            logits = self._logits(model, tokens)  # (B, T, C)
            right = tally.add(logits.flatten(0, 1), targets.flatten())  # (B * T,)
            correct_seqs += int(right.view_as(targets).all(dim=1).sum())  # right: (B, T)
            seqs += tokens.size(0)
        return {
            "loss": tally.loss,
            "token_accuracy": tally.accuracy,
            "sequence_accuracy": correct_seqs / seqs,
        }

    # -- users' inputs ------------------------------------------------------------------
    def parse(self, text: str) -> Tensor:
        """``"3 1 4 1 5"`` -> left-padded token ids ``(1, seq_len)``; InputError if invalid."""
        c = self.config
        words = text.replace(",", " ").split()
        if not words:
            raise InputError(
                f"empty input: give digits 0..{c.num_categories - 1} separated by spaces, "
                'e.g. "3 1 4 1 5"'
            )
        bad = [w for w in words if not (w.isascii() and w.isdigit() and int(w) < c.num_categories)]
        if bad:
            raise InputError(
                f"{', '.join(shown(w) for w in bad[:5])}"
                f"{f' and {len(bad) - 5:,} more' if len(bad) > 5 else ''} not in the vocabulary: "
                f"this model reverses digits 0..{c.num_categories - 1}"
            )
        if len(words) > c.seq_len:
            raise InputError(
                f"input has {len(words)} tokens; this model reverses at most {c.seq_len}"
            )
        digits = [int(w) for w in words]
        return torch.tensor([[self.pad_id] * (c.seq_len - len(digits)) + digits])

    def predictions(self, model: nn.Module, texts: list[str]) -> Iterator[dict[str, Any]]:
        """For each digit sequence: the predicted reversal and each digit's probability."""
        inputs = [self.parse(text) for text in texts]  # each (1, T): all read before any runs
        return (self._prediction(model, tokens) for tokens in inputs)

    @torch.no_grad()
    def _prediction(self, model: nn.Module, tokens: Tensor) -> dict[str, Any]:
        """The prediction for one parsed input ``tokens (1, T)``."""
        L = int((tokens != self.pad_id).sum())
        logits = self._logits(model, tokens.to(model_device(model)))  # (1, T, C)
        probs = logits.softmax(-1)[0, :L]  # (L, C)
        confidence, predicted = probs.max(-1)  # (L,), (L,)
        return {
            "input": [int(t) for t in tokens[0, -L:]],
            "prediction": predicted.tolist(),
            "confidence": [round(p, 4) for p in confidence.tolist()],
        }

    def format_prediction(self, prediction: dict[str, Any]) -> str:
        """``input -> output`` with the lowest per-token probability (and right / WRONG for a test
        example)."""
        source = " ".join(map(str, prediction["input"]))
        output = " ".join(map(str, prediction["prediction"]))
        worst = min(prediction["confidence"])
        line = f"{source}  ->  {output}   (lowest per-token probability {worst:.3f})"
        if "target" in prediction:
            line += "  right" if prediction["target"] == prediction["prediction"] else "  WRONG"
        return line

    @torch.no_grad()
    def attention(self, model: nn.Module, text: str) -> AttentionView:
        """Each layer's attention ``(H, L, L)`` of the ``L`` answer positions over the ``L`` input
        digits."""
        predictor = cast(TokenPredictor, model)  # the class build_model builds
        if predictor.config.layer:
            raise InputError("this run trained your own layer, which returns no attention maps")
        tokens = self.parse(text)  # (1, T)
        L = int((tokens != self.pad_id).sum())
        mask = padding_mask(tokens, self.pad_id)
        maps = predictor.attention_maps(tokens, mask=mask)
        predicted = self._logits(model, tokens)[0, :L].argmax(-1).tolist()
        # Only the first L outputs are the answer, and padded keys get zero weight: show the
        # (L answers) x (L input tokens) block, where reversal is the anti-diagonal.
        return AttentionView(
            maps=[m[0, :, :L, -L:] for m in maps],  # each (H, L, L)
            query_labels=[f"out {i} = {p}" for i, p in enumerate(predicted)],
            key_labels=[str(t) for t in tokens[0, -L:].tolist()],
            title=f"reverse: {text.strip()}",
        )

    @torch.no_grad()
    def samples(self, model: nn.Module, dataset: Dataset, n: int) -> list[dict[str, Any]]:
        """The first ``n`` sequences of ``dataset`` with their targets and predictions."""
        device = model_device(model)
        out = []
        for i in range(min(n, len(cast(Sized, dataset)))):  # torch's Dataset declares no len
            tokens, targets = dataset[i]
            real = tokens != self.pad_id
            L = int(real.sum())
            probs = self._logits(model, tokens[None].to(device)).softmax(-1)[0, :L].cpu()  # (L, C)
            out.append(
                {
                    "input": tokens[real].tolist(),
                    "target": targets[:L].tolist(),
                    "prediction": probs.argmax(-1).tolist(),
                    "confidence": [round(p, 4) for p in probs.max(-1).values.tolist()],
                    "distribution": [[round(p, 3) for p in row] for row in probs.tolist()],
                }
            )
        return out
