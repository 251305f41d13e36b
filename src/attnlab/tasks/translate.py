"""English <-> French translation with the encoder-decoder Transformer of the paper.

Figure 1's :class:`~attnlab.models.Seq2SeqTransformer` trained with teacher
forcing ("outputs shifted right") and label-smoothed cross-entropy that ignores padding
(section 5.4), decoded greedily or with beam search and a key/value cache
(:mod:`attnlab.generation`).

Two tasks share this module:

* ``translate-small``: the classic tutorial's subset (text normalised as the tutorial does:
  ASCII, lower case, "!" and "?" split off, other signs dropped; fewer than 10 words a side;
  English starting with "i am", "he is", "she is", "you are", "we are", "they are" or their
  contractions): 11,439 distinct pairs, minutes on a laptop;
* ``translate``: every pair of the data set, with its case and punctuation, up to
  ``--max-tokens`` subword tokens a side.

Data: ``eng-fra.txt`` from ``--data-dir``, ``$ATTNLAB_DATA_DIR/eng-fra`` or the verified
download of the tutorial's ``data.zip``. The split (90/5/5) is seeded and grouped by source
sentence: all translations of a sentence are in one split. One BPE tokenizer (Hugging Face
``tokenizers``) is trained on the training split of both languages, and saved in the run's
config.json, so source and target share one embedding matrix, which is also the output
projection (section 3.4). BLEU and chrF (sacrebleu) are computed on detokenised text.

``--decoder-layer FILE.py:ClassName`` trains a decoder layer of your own in place of attnlab's
(its contract: ``attnlab.models.user_layer``); it keeps no key/value cache, so decoding
re-reads the prefix at each step, and it shows no attention maps.
"""

from __future__ import annotations

import sys
import unicodedata
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.rnn import pad_sequence
from torch.utils.data import Dataset

from attnlab.configs.tasks import CARDS, TranslateConfig
from attnlab.data.eng_fra import (
    eng_fra_file,
    min_sources,
    normalize_tutorial,
    read_pairs,
    split_by_source,
    tutorial_subset,
)
from attnlab.data.subword import SubwordTokenizer
from attnlab.errors import ConfigError, DataError, InputError
from attnlab.generation import beam_search, greedy_search
from attnlab.models import Seq2SeqConfig, Seq2SeqTransformer
from attnlab.tasks.base import AttentionView, Splits, Task
from attnlab.tasks.common import model_device, shown, spread
from attnlab.tasks.registry import register
from attnlab.tasks.user_layer import user_decoder_layer_fields

VAL_FRACTION = TEST_FRACTION = 0.05
SPLIT_NAMES = ("training", "validation", "test")


def encode_pair(tokenizer: SubwordTokenizer, source: str, target: str) -> tuple[list, list]:
    """The source's ids and the target's ids ending in </s>."""
    return tokenizer.encode(source), [*tokenizer.encode(target), tokenizer.eos_id]


class PairDataset(Dataset):
    """Encoded (source ids ``(S,)``, target ids ``(T,)`` ending in </s>) pairs, with the text;
    pairs with either side longer than ``limit`` tokens are dropped."""

    def __init__(self, pairs: list[tuple[str, str]], tokenizer: SubwordTokenizer, limit: int):
        self.pairs, self.sources, self.targets = [], [], []
        for source, target in pairs:
            src, tgt = encode_pair(tokenizer, source, target)
            if len(src) <= limit and len(tgt) <= limit:
                self.pairs.append((source, target))
                self.sources.append(torch.tensor(src))
                self.targets.append(torch.tensor(tgt))

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor]:
        return self.sources[i], self.targets[i]


class _TranslateBase(Task):
    """What both translation tasks share; they differ in the data they read."""

    def __init__(self, config: TranslateConfig, tokenizer: SubwordTokenizer | None = None):
        """Without ``tokenizer``, one is trained on the training split, and the data sets are
        built now, so that data too small for the split or for ``--max-tokens``, and a
        ``--beam`` wider than the vocabulary, are refused before a run directory is made."""
        super().__init__(config)
        self._splits: tuple[list, list, list] | None = None
        self._datasets: Splits | None = None
        if tokenizer is None:
            train, _, _ = self._pair_splits()
            self.tokenizer = SubwordTokenizer.train(
                (text for pair in train for text in pair), config.bpe_vocab
            )
            if config.beam > len(self.tokenizer):  # the test report's beam search would fail
                raise ConfigError(
                    f"beam must be at most the vocabulary size, {len(self.tokenizer):,} here "
                    f"(--bpe-vocab {config.bpe_vocab}); got {config.beam}"
                )
            self.splits()
        else:
            self.tokenizer = tokenizer

    def state(self) -> dict[str, Any]:
        """The subword tokenizer, for config.json."""
        return {"tokenizer": self.tokenizer.state()}

    @classmethod
    def from_state(cls, config: TranslateConfig, state: dict[str, Any]) -> _TranslateBase:
        """Rebuild with the run's subword tokenizer."""
        return cls(config, SubwordTokenizer.from_state(state["tokenizer"]))

    # -- data ---------------------------------------------------------------------------
    def read(self, path: Path) -> list[tuple[str, str]]:
        """All (English, French) pairs of ``path`` this task uses, in file order."""
        raise NotImplementedError

    def normalize(self, text: str) -> str:
        """A user's sentence, normalised as the training data."""
        raise NotImplementedError

    def _pair_splits(self) -> tuple[list, list, list]:
        """(source, target) text pairs of the three splits, in the configured direction."""
        if self._splits is None:
            path = eng_fra_file(self.config.data_dir or None)
            pairs = self.read(path)
            self.check_same_data(path, pairs)
            if self.config.direction == "fr-en":
                pairs = [(french, english) for english, french in pairs]
            splits = split_by_source(pairs, self.config.split_seed, VAL_FRACTION, TEST_FRACTION)
            if not all(splits):
                raise DataError(
                    f"{path} gives the {self.name} task only "
                    f"{len({source for source, _ in pairs})} distinct source sentence(s): its "
                    f"split needs at least {min_sources(VAL_FRACTION, TEST_FRACTION)}, so that "
                    f"validation and test ({VAL_FRACTION:.0%} each) get one"
                )
            self._splits = splits
        return self._splits

    def splits(self) -> Splits:
        """The encoded splits (built once); a ``--max-tokens`` that leaves one of them empty
        is refused with the smallest value that does not."""
        if self._datasets is None:
            pair_splits = self._pair_splits()
            limit = self.config.max_tokens
            datasets = [PairDataset(pairs, self.tokenizer, limit) for pairs in pair_splits]
            empty = [name for name, d in zip(SPLIT_NAMES, datasets, strict=True) if not len(d)]
            if empty:
                needed = max(min(map(self._length, pairs)) for pairs in pair_splits)
                raise DataError(
                    f"--max-tokens {limit} leaves no pair in the {empty[0]} split: with this "
                    f"data it must be at least {needed}"
                )
            self._datasets = Splits(*datasets)
        return self._datasets

    def _length(self, pair: tuple[str, str]) -> int:
        """The tokens of the longer side of ``pair`` (the target's with its </s>)."""
        return max(map(len, encode_pair(self.tokenizer, *pair)))

    def collate(self, samples: list[tuple[Tensor, Tensor]]) -> tuple[Tensor, Tensor]:
        """Source and target ids, each padded at the end: ``(B, S)`` and ``(B, T)``."""
        pad = self.tokenizer.pad_id
        src = pad_sequence([s for s, _ in samples], batch_first=True, padding_value=pad)
        tgt = pad_sequence([t for _, t in samples], batch_first=True, padding_value=pad)
        return src, tgt  # (B, S), (B, T)

    def tokens_of(self, batch: tuple[Tensor, Tensor]) -> int:
        """Real (non-padding) source and target tokens in a batch."""
        src, tgt = batch
        pad = self.tokenizer.pad_id
        return int((src != pad).sum() + (tgt != pad).sum())

    # -- model, loss, metrics -----------------------------------------------------------
    def build_model(self) -> nn.Module:
        """A :class:`~attnlab.models.Seq2SeqTransformer` whose source and target embeddings and
        output projection share one matrix (section 3.4)."""
        c, t = self.config, self.tokenizer
        layer = user_decoder_layer_fields(c.decoder_layer, c.size) if c.decoder_layer else {}
        return Seq2SeqTransformer(
            Seq2SeqConfig(
                src_vocab_size=len(t),
                tgt_vocab_size=len(t),
                pad_id=t.pad_id,
                bos_id=t.bos_id,
                eos_id=t.eos_id,
                d_model=c.size.d_model,
                num_heads=c.size.heads,
                num_encoder_layers=c.size.layers,
                num_decoder_layers=c.size.layers,
                d_ff=c.size.d_ff,
                dropout=c.size.dropout,
                norm_first=c.norm_first,
                max_len=c.max_tokens + 2,
                share_embeddings=True,
                tie_output=True,
                **layer,
            )
        )

    def loss(self, model: nn.Module, batch: Any) -> Tensor:
        """Label-smoothed cross-entropy of every target token given the target shifted right
        (teacher forcing), ignoring padding."""
        src, tgt = batch  # (B, S), (B, T)
        seq2seq = cast(Seq2SeqTransformer, model)  # build_model's class (or compiled: the same)
        logits = model(src, seq2seq.shift_right(tgt))  # (B, T, V)
        return F.cross_entropy(
            logits.flatten(0, 1),  # (B*T, V)
            tgt.flatten(),  # (B*T,)
            ignore_index=self.tokenizer.pad_id,
            label_smoothing=self.config.label_smoothing,
        )

    def _texts(self, ids: Tensor) -> list[str]:
        return [self.tokenizer.decode(row) for row in ids.tolist()]

    def _scores(self, hypotheses: list[str], references: list[str]) -> dict[str, float]:
        import sacrebleu

        # The tutorial's text is lower case with "!" and "?" split off by design (sacrebleu
        # would warn that it looks tokenised).
        lowercase = self.name == "translate-small"
        bleu = sacrebleu.corpus_bleu(hypotheses, [references], lowercase=lowercase, force=lowercase)
        chrf = sacrebleu.corpus_chrf(hypotheses, [references])
        return {"bleu": bleu.score, "chrf": chrf.score}

    @torch.no_grad()
    def _evaluate(self, model: nn.Module, batches: Any, beam: int) -> dict[str, Any]:
        """Loss, perplexity, token accuracy, BLEU and chrF; with the texts."""
        pad = self.tokenizer.pad_id
        loss_sum, correct, tokens = 0.0, 0, 0
        sources, references, hypotheses = [], [], []
        seq2seq = cast(Seq2SeqTransformer, model)  # build_model's class (or compiled: the same)
        for src, tgt in batches:
            logits = model(src, seq2seq.shift_right(tgt))  # (B, T, V)
            real = tgt != pad  # (B, T)
            loss_sum += F.cross_entropy(  # (B*T, V) against (B*T,)
                logits.flatten(0, 1), tgt.flatten(), ignore_index=pad, reduction="sum"
            ).item()
            correct += int(((logits.argmax(-1) == tgt) & real).sum())
            tokens += int(real.sum())
            if beam == 1:
                output = greedy_search(model, src, max_new_tokens=self.config.max_tokens + 1)
            else:
                output = beam_search(
                    model,
                    src,
                    beam,
                    self.config.length_penalty,
                    max_new_tokens=self.config.max_tokens + 1,
                )
            sources += self._texts(src)
            references += self._texts(tgt)
            hypotheses += self._texts(output)
        loss = loss_sum / tokens
        return {
            "metrics": {
                "loss": loss,
                "perplexity": float(torch.tensor(loss).exp()),
                "token_accuracy": correct / tokens,
                **self._scores(hypotheses, references),
            },
            "texts": (sources, references, hypotheses),
        }

    def evaluate(self, model: nn.Module, batches: Any) -> dict[str, float]:
        """Loss, perplexity and token accuracy, and the BLEU and chrF of greedy translations."""
        return self._evaluate(model, batches, beam=1)["metrics"]

    def format_metrics(self, metrics: dict[str, float]) -> str:
        """The metrics on one line, BLEU and chrF with two decimals."""
        return "  ".join(
            f"{k} {v:.2f}" if k.startswith(("bleu", "chrf")) else f"{k} {v:.4f}"
            for k, v in metrics.items()
        )

    @torch.no_grad()
    def report(
        self, model: nn.Module, dataset: Dataset, batches: Any, plots_dir: Path | None
    ) -> dict[str, Any]:
        """Greedy and beam-search scores, sample translations and (into ``plots_dir``, if
        given) a plot of the three kinds of attention of the first sample."""
        batches = list(batches)
        greedy = self._evaluate(model, batches, beam=1)
        beam = self._evaluate(model, batches, beam=self.config.beam)
        metrics = dict(greedy["metrics"])
        metrics[f"bleu_beam{self.config.beam}"] = beam["metrics"]["bleu"]
        metrics[f"chrf_beam{self.config.beam}"] = beam["metrics"]["chrf"]
        sources, references, hypotheses = greedy["texts"]
        picks = spread(5, len(sources))
        samples = [
            {
                "source": sources[i],
                "reference": references[i],
                "translation": hypotheses[i],
                f"beam{self.config.beam}": beam["texts"][2][i],
            }
            for i in picks
        ]
        report = {
            "metrics": metrics,
            "decoding": {"greedy": "bleu, chrf", f"beam {self.config.beam}": "*_beam*"},
            "tokens": {"test_pairs": len(sources)},
            "samples": samples,
        }
        if cast(Seq2SeqTransformer, model).config.decoder_layer:
            report["attention_note"] = "not plotted: your decoder layer returns no attention maps"
        elif plots_dir is not None:
            from attnlab.viz.heatmaps import plot_attention_views

            views = self.attention_views(model, sources[picks[0]])
            report["attention_png"] = str(plot_attention_views(views, plots_dir / "attention.png"))
        return report

    def format_report(self, report: dict[str, Any]) -> str:
        """The test metrics, each sample's source, reference, greedy and beam translations, and the
        attention plot, for the terminal."""
        lines = ["test set: " + self.format_metrics(report["metrics"]), "samples:"]
        for sample in report["samples"]:
            lines.append(f"  {sample['source']}")
            lines.append(f"    reference: {sample['reference']}")
            lines.append(f"    greedy:    {sample['translation']}")
            beam_key = next(k for k in sample if k.startswith("beam"))
            lines.append(f"    {beam_key + ':':<10} {sample[beam_key]}")
        if "attention_png" in report:
            lines.append(f"attention (encoder, decoder, cross): {report['attention_png']}")
        if "attention_note" in report:
            lines.append(f"attention: {report['attention_note']}")
        return "\n".join(lines)

    # -- users' inputs ------------------------------------------------------------------
    def encode_source(self, text: str) -> Tensor:
        """A user's sentence -> source ids ``(1, S)``; refuses empty input, cuts long input."""
        sentence = self.normalize(text)
        if not sentence:
            kept = ": give a sentence"
            if text.strip():  # signs the training data's normalisation drops, e.g. "ж中"
                kept = ", normalised as the training data: it keeps no word; give a sentence"
            raise InputError(f"nothing to translate in {shown(text)}{kept}")
        ids = self.tokenizer.encode(sentence)
        if self.tokenizer.unk_id in ids:
            print(
                f"attnlab: warning: {shown(sentence)} has characters never seen in training; "
                "they are read as <unk>",
                file=sys.stderr,
            )
        if len(ids) > self.config.max_tokens:
            print(
                f"attnlab: warning: {len(ids)} tokens; this model reads only the first "
                f"{self.config.max_tokens}",
                file=sys.stderr,
            )
            ids = ids[: self.config.max_tokens]
        return torch.tensor([ids])

    @torch.no_grad()
    def translate(self, model: nn.Module, texts: list[str], beam: int = 1) -> list[dict[str, Any]]:
        """Translate each text (greedy with ``beam=1``, else beam search); see
        :meth:`translations`."""
        return list(self.translations(model, texts, beam))

    def translations(
        self, model: nn.Module, texts: list[str], beam: int = 1
    ) -> Iterator[dict[str, Any]]:
        """Each text's translation as soon as it is made (``attnlab translate --file`` prints
        it then). Every text is read first, so a bad one (empty, or a beam wider than the
        vocabulary) is an InputError before any translation is made."""
        if beam > len(self.tokenizer):
            raise InputError(
                f"--beam must be at most the vocabulary size {len(self.tokenizer):,}; got {beam}"
            )
        device = model_device(model)
        sources = [self.encode_source(text).to(device) for text in texts]  # (1, S) each
        limit = self.config.max_tokens + 1
        return (
            self._translation(model, text, src, beam, limit)
            for text, src in zip(texts, sources, strict=True)
        )

    def _translation(
        self, model: nn.Module, text: str, src: Tensor, beam: int, limit: int
    ) -> dict[str, Any]:
        """One text's translation of its source ids ``src (1, S)``, at most ``limit`` tokens."""
        if beam == 1:
            ids = greedy_search(model, src, max_new_tokens=limit)
        else:
            ids = beam_search(model, src, beam, self.config.length_penalty, limit)
        return {
            "source": text.strip(),
            "translation": self._texts(ids)[0],
            "direction": self.config.direction,
            "beam": beam,
        }

    def predictions(self, model: nn.Module, texts: list[str]) -> Iterator[dict[str, Any]]:
        """Greedy translations of ``texts``, each as soon as it is made (see
        :meth:`translations`)."""
        return self.translations(model, texts, beam=1)

    def format_prediction(self, prediction: dict[str, Any]) -> str:
        """``source -> translation``."""
        return f"{prediction['source']}  ->  {prediction['translation']}"

    @torch.no_grad()
    def attention_views(self, model: nn.Module, text: str) -> list[AttentionView]:
        """Encoder self-attention, decoder self-attention and cross-attention of one sentence.

        The decoder reads its own greedy translation. Each decoder row is labelled with the
        token that position produces (its input is the token before it).
        """
        seq2seq = cast(Seq2SeqTransformer, model)  # the class build_model builds
        if seq2seq.config.decoder_layer:
            raise InputError(
                "this run trained your own decoder layer, which returns no attention maps"
            )
        device = model_device(model)
        src = self.encode_source(text).to(device)  # (1, S)
        output = greedy_search(model, src, max_new_tokens=self.config.max_tokens + 1)  # (1, T)
        tgt_in = seq2seq.shift_right(output)  # (1, T): <s> y1 .. y_{T-1}
        memory, src_mask, encoder_maps = seq2seq.encode(src, return_attention=True)
        _, self_maps, cross_maps = seq2seq.decode(tgt_in, memory, src_mask, return_attention=True)
        source = self.tokenizer.tokens(src[0].tolist())
        produced = self.tokenizer.tokens(output[0].tolist())
        inputs = self.tokenizer.tokens(tgt_in[0].tolist())
        sentence = text.strip()
        return [
            AttentionView(
                [m[0] for m in encoder_maps], source, source, f"encoder self-attention: {sentence}"
            ),
            AttentionView(
                [m[0] for m in self_maps],
                produced,
                inputs,
                "decoder self-attention (rows: the token produced)",
            ),
            AttentionView(
                [m[0] for m in cross_maps],
                produced,
                source,
                "cross-attention (rows: the token produced, columns: source)",
            ),
        ]

    def attention(self, model: nn.Module, text: str) -> AttentionView:
        """Cross-attention: which source tokens each target token looked at."""
        return self.attention_views(model, text)[2]

    @torch.no_grad()
    def samples(self, model: nn.Module, dataset: Dataset, n: int) -> list[dict[str, Any]]:
        """``n`` pairs spread over ``dataset``, with their greedy translations and references."""
        assert isinstance(dataset, PairDataset)  # the splits hold PairDatasets
        picks = spread(n, len(dataset))
        out = []
        for i in picks:
            source, reference = dataset.pairs[i]
            prediction = self.translate(model, [source])[0]
            out.append({**prediction, "reference": reference})
        return out


@register
class TranslateSmallTask(_TranslateBase):
    """Translate short "i am / he is / ..." sentences (the classic tutorial's subset)."""

    card = CARDS["translate-small"]

    def read(self, path: Path) -> list[tuple[str, str]]:
        """The tutorial's short "i am / he is / ..." pairs of the file, normalised, duplicates
        dropped."""
        return tutorial_subset(read_pairs(path))

    def normalize(self, text: str) -> str:
        """The tutorial's normalisation (:func:`~attnlab.data.eng_fra.normalize_tutorial`): ASCII,
        lower case, ``!?`` split off."""
        return normalize_tutorial(text)


@register
class TranslateTask(_TranslateBase):
    """Translate English <-> French sentences (all 135,842 pairs up to --max-tokens)."""

    card = CARDS["translate"]

    def read(self, path: Path) -> list[tuple[str, str]]:
        """Every distinct pair of the file, NFC-normalised, in file order."""
        return list(dict.fromkeys(read_pairs(path)))

    def normalize(self, text: str) -> str:
        """The sentence without surrounding spaces, NFC-normalised as the training data."""
        return unicodedata.normalize("NFC", text.strip())
