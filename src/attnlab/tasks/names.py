"""Name -> language: classify a surname into one of 18 languages of origin, character by character.

A Transformer encoder with a learned CLS token
(:class:`~attnlab.models.SequenceClassifier`); ``--model gru`` trains a bidirectional-GRU
baseline, ``--backend torch`` swaps in PyTorch's ``nn.TransformerEncoderLayer`` and
``--layer FILE.py:ClassName`` a layer of your own (its contract: ``attnlab.models.user_layer``).

Data: 18 files ``<Language>.txt`` from ``--data-dir``, ``$ATTNLAB_DATA_DIR/names`` or the
verified download of the PyTorch tutorial's ``data.zip``. Names are NFC-normalised (accents
kept), identical (name, language) lines dropped, and the split is stratified and seeded
(80/10/10). Characters never seen in training map to ``<unk>``; names longer than
``--max-len`` characters are cut to their first ``max_len`` characters, with a warning.

Local attention (``--window``, default 1): every character attends only to its neighbours
(and to the CLS token, which attends to all), in each of the three layers, so the layers
compose character n-grams of growing width, which is what marks a surname's language; this
measured about +0.01 accuracy and +0.02 macro-F1 over full attention (docs/tasks/names.md).

Class imbalance (Russian is about half of the data, Vietnamese 0.4%): the loss weights each
language by ``(1 / frequency) ** class_weight_power`` (default 0.3, normalised to mean 1).
Plain cross-entropy (power 0) maximises accuracy but all but ignores the small languages
(low macro-F1); full inverse-frequency weights (power 1) trade too much accuracy for them.
"""

from __future__ import annotations

import sys
import unicodedata
from collections import Counter
from collections.abc import Iterator
from functools import cached_property
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from sklearn.metrics import confusion_matrix, f1_score, precision_recall_fscore_support
from torch import Tensor, nn
from torch.nn.utils.rnn import pad_sequence
from torch.utils.data import Dataset

from attnlab.configs.tasks import CARDS, NamesConfig
from attnlab.data.bpe import BPEVocab
from attnlab.data.names import check_split, names_dir, read_names, stratified_split
from attnlab.data.vocab import CharVocab
from attnlab.errors import DataError, InputError
from attnlab.models import (
    GRUClassifier,
    GRUClassifierConfig,
    SequenceClassifier,
    SequenceClassifierConfig,
)
from attnlab.tasks.base import AttentionView, Splits, Task
from attnlab.tasks.common import model_device, shown, spread, top_k
from attnlab.tasks.registry import register
from attnlab.tasks.user_layer import user_layer_fields

TOP_K = 3


class NamesDataset(Dataset):
    """(token ids ``(T,)``, language id) pairs of encoded names."""

    def __init__(
        self,
        pairs: list[tuple[str, str]],
        vocab: CharVocab | BPEVocab,
        languages: list[str],
        max_len: int,
    ):
        self.pairs = pairs
        index = {language: i for i, language in enumerate(languages)}
        self.tokens = [torch.tensor(vocab.encode(name[:max_len])) for name, _ in pairs]
        self.labels = torch.tensor([index[language] for _, language in pairs])

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor]:
        return self.tokens[i], self.labels[i]


@register
class NamesTask(Task):
    """Classify a surname into its language of origin (18 classes)."""

    card = CARDS["names"]

    def __init__(
        self,
        config: NamesConfig,
        vocab: CharVocab | BPEVocab | None = None,
        languages: list[str] | None = None,
    ):
        """Without ``vocab`` and ``languages``, both come from the training split."""
        super().__init__(config)
        self._splits: tuple[list, list, list] | None = None
        self._trained_languages = languages  # None: a new run, whose data decides them
        if vocab is None or languages is None:
            train, _, _ = self._pair_splits()
            names = [name[: config.max_len] for name, _ in train]
            if config.tokenizer == "bpe":
                vocab = BPEVocab.train(names, config.bpe_vocab)
            else:
                vocab = CharVocab.from_texts(names)
            languages = sorted({language for _, language in train})
        self.vocab = vocab
        self.languages = languages

    def state(self) -> dict[str, Any]:
        """The vocabulary and the list of languages, for config.json."""
        return {"vocab": self.vocab.state(), "languages": self.languages}

    @classmethod
    def from_state(cls, config: NamesConfig, state: dict[str, Any]) -> NamesTask:
        """Rebuild with the run's vocabulary and languages (two or more distinct names, else
        ``ValueError``)."""
        vocab_cls = BPEVocab if config.tokenizer == "bpe" else CharVocab
        languages = state["languages"]
        if not (
            isinstance(languages, list)
            and all(isinstance(name, str) and name for name in languages)
            and len(set(languages)) == len(languages) >= 2
        ):
            raise ValueError("its languages must be two names or more, each once")
        return cls(config, vocab_cls.from_state(state["vocab"]), languages)

    # -- data ---------------------------------------------------------------------------
    def _pair_splits(self) -> tuple[list, list, list]:
        if self._splits is None:
            folder = names_dir(self.config.data_dir or None)
            pairs = read_names(folder)
            self._check_languages(folder, {language for _, language in pairs})
            self.check_same_data(folder, pairs)
            splits = stratified_split(pairs, self.config.split_seed)
            check_split(folder, splits)
            self._splits = splits
        return self._splits

    def _check_languages(self, folder: Path, found: set[str]) -> None:
        """A new run needs two languages or more; a trained one, exactly the languages it
        knows (with one missing, the seeded split would differ, and its test set would hold
        names the run trained on)."""
        if self._trained_languages is None:
            if len(found) < 2:
                raise DataError(
                    f"{folder} holds names of one language only ({', '.join(found)}): the "
                    "names task needs a <Language>.txt file for each of two languages or more"
                )
            return
        unknown = sorted(found - set(self._trained_languages))
        missing = sorted(set(self._trained_languages) - found)
        if unknown:
            problem = f"holds {len(unknown)} language(s) this run was not trained on"
        elif missing:
            problem = f"has no names of {len(missing)} language(s) this run was trained on"
        else:
            return
        shown_languages = ", ".join((unknown or missing)[:3])
        raise DataError(
            f"{folder} {problem} ({shown_languages}): is it the names data set of the run?"
        )

    def splits(self) -> Splits:
        """(token ids, language id) datasets of the names, split per language
        (:func:`~attnlab.data.names.stratified_split`)."""
        train, val, test = (
            NamesDataset(pairs, self.vocab, self.languages, self.config.max_len)
            for pairs in self._pair_splits()
        )
        return Splits(train, val, test)

    def collate(self, samples: list[tuple[Tensor, Tensor]]) -> tuple[Tensor, Tensor]:
        """Token ids padded at the end ``(B, T)`` and language ids ``(B,)``."""
        tokens = pad_sequence(
            [t for t, _ in samples], batch_first=True, padding_value=self.vocab.pad_id
        )
        return tokens, torch.stack([label for _, label in samples])  # (B, T), (B,)

    @cached_property
    def class_weights(self) -> Tensor:
        """``(1 / frequency) ** power`` per language, from the training split, mean 1."""
        counts = Counter(language for _, language in self._pair_splits()[0])
        frequency = torch.tensor(
            [counts[language] for language in self.languages], dtype=torch.float
        )
        weights = frequency.pow(-self.config.class_weight_power)
        return weights / weights.mean()

    # -- model, loss, metrics -----------------------------------------------------------
    def build_model(self) -> nn.Module:
        """A :class:`~attnlab.models.SequenceClassifier` (or with ``--model gru`` a
        :class:`~attnlab.models.GRUClassifier`) with one class per language."""
        c = self.config
        if c.model == "gru":
            return GRUClassifier(
                GRUClassifierConfig(
                    vocab_size=len(self.vocab),
                    num_classes=len(self.languages),
                    pad_id=self.vocab.pad_id,
                    d_embed=c.size.d_model,
                    hidden=c.size.d_model,
                    num_layers=c.size.layers,
                    dropout=c.size.dropout,
                )
            )
        layer = user_layer_fields(c.layer, c.size) if c.layer else {}
        return SequenceClassifier(
            SequenceClassifierConfig(
                vocab_size=len(self.vocab),
                num_classes=len(self.languages),
                pad_id=self.vocab.pad_id,
                d_model=c.size.d_model,
                num_heads=c.size.heads,
                num_layers=c.size.layers,
                d_ff=c.size.d_ff,
                dropout=c.size.dropout,
                max_len=c.max_len,
                norm_first=c.norm_first,
                positional=c.positional,
                window=c.window or None,
                backend=c.backend,
                **layer,
            )
        )

    def loss(self, model: nn.Module, batch: Any) -> Tensor:
        """Label-smoothed cross-entropy of the language logits ``(B, num_classes)``, weighted by
        :attr:`class_weights`."""
        tokens, labels = batch
        return F.cross_entropy(
            model(tokens),
            labels,
            weight=self.class_weights.to(tokens.device),
            label_smoothing=self.config.label_smoothing,
        )

    def _predictions(self, model: nn.Module, batches: Any) -> tuple[Tensor, Tensor, float]:
        """All labels, predicted labels and the summed (unweighted) cross-entropy."""
        labels, predicted, loss_sum = [], [], 0.0
        for tokens, batch_labels in batches:
            logits = model(tokens)  # (B, num_classes)
            loss_sum += F.cross_entropy(logits, batch_labels, reduction="sum").item()
            labels.append(batch_labels.cpu())
            predicted.append(logits.argmax(-1).cpu())
        return torch.cat(labels), torch.cat(predicted), loss_sum

    @torch.no_grad()
    def evaluate(self, model: nn.Module, batches: Any) -> dict[str, float]:
        """Mean (unweighted) cross-entropy, accuracy and macro-F1 over the languages."""
        labels, predicted, loss_sum = self._predictions(model, batches)
        return {
            "loss": loss_sum / len(labels),
            "accuracy": (predicted == labels).float().mean().item(),
            "macro_f1": f1_score(labels, predicted, average="macro", zero_division=0),
        }

    @torch.no_grad()
    def report(
        self, model: nn.Module, dataset: Dataset, batches: Any, plots_dir: Path | None
    ) -> dict[str, Any]:
        """Metrics, a per-language table, a row-normalised confusion matrix (and its PNG in
        ``plots_dir``, if given) and samples."""

        labels, predicted, loss_sum = self._predictions(model, batches)
        precision, recall, f1, support = precision_recall_fscore_support(
            labels, predicted, labels=range(len(self.languages)), zero_division=0
        )
        matrix = confusion_matrix(labels, predicted, labels=range(len(self.languages)))
        report: dict[str, Any] = {
            "metrics": {
                "loss": loss_sum / len(labels),
                "accuracy": (predicted == labels).float().mean().item(),
                "macro_f1": float(f1.mean()),
            },
            "per_class": {
                language: {
                    "precision": float(precision[i]),
                    "recall": float(recall[i]),
                    "f1": float(f1[i]),
                    "support": int(support[i]),
                }
                for i, language in enumerate(self.languages)
            },
            "confusion_matrix": {"labels": self.languages, "counts": matrix.tolist()},
            "samples": self.samples(model, dataset, 5),
        }
        if plots_dir is not None:
            from attnlab.viz.confusion import plot_confusion_matrix

            png = plot_confusion_matrix(matrix, self.languages, plots_dir / "confusion_matrix.png")
            report["confusion_matrix"]["png"] = str(png)
        return report

    def format_report(self, report: dict[str, Any]) -> str:
        """The metrics, the per-language precision / recall / F1 table, the confusion matrix's PNG
        and the samples, for the terminal."""
        lines = ["test set: " + self.format_metrics(report["metrics"]), ""]
        if "per_class" in report:
            lines.append(
                f"{'language':<12} {'precision':>9} {'recall':>7} {'f1':>6} {'support':>8}"
            )
            for language, row in report["per_class"].items():
                lines.append(
                    f"{language:<12} {row['precision']:>9.3f} {row['recall']:>7.3f} "
                    f"{row['f1']:>6.3f} {row['support']:>8}"
                )
            if "png" in report["confusion_matrix"]:
                lines.append(f"confusion matrix: {report['confusion_matrix']['png']}")
        lines.append("samples:")
        lines += ["  " + self.format_prediction(sample) for sample in report["samples"]]
        return "\n".join(lines)

    # -- users' inputs ------------------------------------------------------------------
    def encode_name(self, text: str) -> Tensor:
        """A user's name -> token ids ``(1, T)``; empty names and names without a letter are
        refused, long ones cut."""
        name = text.strip()
        if not name:
            raise InputError("empty name: give a surname such as Nakamura")
        name = unicodedata.normalize("NFC", name)  # as the training data
        if not any(ch.isalpha() for ch in name):  # "3 1 4": another task's input, not a name
            raise InputError(f"{shown(name)} has no letters: give a surname such as Nakamura")
        if len(name) > self.config.max_len:
            print(
                f"attnlab: warning: {shown(name)} has {len(name):,} characters; this model "
                f"reads only the first {self.config.max_len}",
                file=sys.stderr,
            )
            name = name[: self.config.max_len]
        return torch.tensor([self.vocab.encode(name)])

    @torch.no_grad()
    def _top_k(self, model: nn.Module, tokens: Tensor) -> list[dict[str, Any]]:
        """The most probable languages of one name's ``tokens (1, T)``."""
        probs = model(tokens).softmax(-1)[0]  # (num_classes,)
        return top_k(probs, self.languages, TOP_K, "language")

    def predictions(self, model: nn.Module, texts: list[str]) -> Iterator[dict[str, Any]]:
        """For each name: its three most probable languages, with their probabilities."""
        names = [(text.strip(), self.encode_name(text)) for text in texts]  # all read first
        device = model_device(model)
        return (
            {"name": name, "top": self._top_k(model, tokens.to(device))} for name, tokens in names
        )

    def format_prediction(self, prediction: dict[str, Any]) -> str:
        """``name language probability, ...``, and the true language of a test name."""
        top = ", ".join(f"{t['language']} {t['probability']:.3f}" for t in prediction["top"])
        truth = f"  (true: {prediction['language']})" if "language" in prediction else ""
        return f"{prediction['name']:<16} {top}{truth}"

    @torch.no_grad()
    def attention(self, model: nn.Module, text: str) -> AttentionView:
        """What the CLS token attends to in one name: each layer's ``(H, 1, 1 + T)``."""
        if not isinstance(model, SequenceClassifier):
            raise InputError("this run trained a GRU, which has no attention maps")
        if model.config.layer:
            raise InputError("this run trained your own layer, which returns no attention maps")
        tokens = self.encode_name(text)  # (1, T)
        maps = model.attention_maps(tokens)  # each (1, H, 1 + T, 1 + T)
        chars = ["[CLS]", *self.vocab.tokens(tokens[0].tolist())]
        return AttentionView(
            maps=[m[0, :, :1, :] for m in maps],  # what the CLS token attends to: (H, 1, 1 + T)
            query_labels=["[CLS]"],
            key_labels=chars,
            title=f"names: what [CLS] attends to in {text.strip()!r}",
        )

    @torch.no_grad()
    def samples(self, model: nn.Module, dataset: Dataset, n: int) -> list[dict[str, Any]]:
        """``n`` names of ``dataset`` spread over its languages, with their top languages and the
        truth."""
        assert isinstance(dataset, NamesDataset)  # the splits hold NamesDatasets
        device = model_device(model)
        out = []
        for i in spread(n, len(dataset)):  # the test set is sorted by language
            name, language = dataset.pairs[i]
            tokens = dataset[i][0][None].to(device)  # (1, T)
            out.append({"name": name, "language": language, "top": self._top_k(model, tokens)})
        return out
