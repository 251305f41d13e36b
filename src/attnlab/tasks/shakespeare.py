"""Tiny Shakespeare: a character-level GPT that writes Shakespeare-like text.

``--arch llama`` trains a Llama-style model of the same depth, width and heads instead
(rotary positions, RMSNorm, SwiGLU, grouped-query attention), with the same data and
schedule, so that ``attnlab compare shakespeare`` sets the two side by side. ``--arch llama
--layer FILE.py:ClassName`` builds that Llama from a block class of your own (such as the
``LlamaBlock`` of the ``llama.py`` that ``attnlab exercise start`` writes; see --layer below),
and ``attnlab compare shakespeare --arch llama --layer ...`` sets it beside attnlab's Llama
block.

The defaults are nanoGPT's "baby GPT" for a CPU (``shakespeare_char`` with ``--block_size=64
--batch_size=12 --n_layer=4 --n_head=4 --n_embd=128 --max_iters=2000 --dropout=0.0``): 4
layers, 4 heads, 128 dimensions, a 64-character context, batches of 12, 2,000 steps at a peak
learning rate of 1e-3 with 100 warmup steps and a cosine decay. Two optimizer details differ
from nanoGPT's: no weight decay (nanoGPT: 0.1) and a cosine floor of 2e-4 (nanoGPT: 1e-4).
2,000 steps read each character of the training 90% about 1.5 times (24,000 blocks of 64),
so the model is still underfitting at the end; less shrinkage and a higher final rate let it
learn more (val loss 1.885-1.896 over three seeds, against 1.899-1.900 with nanoGPT's two
values).

Data (:mod:`attnlab.data.shakespeare`): ``input.txt`` from ``--data-dir``,
``$ATTNLAB_DATA_DIR/tinyshakespeare`` or the verified download; one token per character; the
first 90% of the text for training, the last 10% held out, as nanoGPT splits it.

* train: ``--train-blocks`` blocks at random offsets of the training part, spread evenly over
  it (:meth:`~attnlab.data.shakespeare.BlockDataset.random`), drawn once with ``--data-seed``
  and visited in a shuffled order. One epoch of 24,000 blocks in batches of 12 is the baby
  GPT's 2,000 steps; for longer training raise ``--train-blocks`` (fresh blocks) rather than
  ``--epochs`` (the same blocks again).
* val: ``--val-blocks`` random blocks of the held-out part, spread the same way (240 =
  nanoGPT's 20 evaluation batches of 12), the same ones at every validation (every 250 steps).
* test: there is no third split, as in nanoGPT: ``attnlab eval`` reads the *whole* held-out
  part once, in consecutive blocks, so its loss is the val loss measured on all of it.

The best checkpoint is chosen by next-character accuracy (ties by the lower loss).
``attnlab generate RUN --prompt "ROMEO:"`` writes text; ``predict`` continues prompts with
200 sampled characters; ``attention`` shows the causal self-attention over a prompt.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator, Sized
from pathlib import Path
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import Dataset

from attnlab.configs.tasks import CARDS, ShakespeareConfig
from attnlab.data.shakespeare import (
    BYTES_PER_RANDOM_BLOCK,
    BlockDataset,
    CharTokenizer,
    check_length,
    read_text,
    shakespeare_path,
    split_by_position,
)
from attnlab.errors import DataError, InputError
from attnlab.machine import check_memory
from attnlab.models import GPT, GPTConfig, Llama, LlamaConfig
from attnlab.tasks.base import AttentionView, Splits, Task
from attnlab.tasks.common import CrossEntropyTally, model_device, spread
from attnlab.tasks.registry import register
from attnlab.tasks.user_layer import user_llama_block_fields

# How predict and the report's sample continue a prompt: readable, and the same every time.
SAMPLE_CHARS = 200
SAMPLE_TEMPERATURE = 0.8
SAMPLE_SEED = 0


@register
class ShakespeareTask(Task):
    """Character-level language model on tiny Shakespeare (GPT, or Llama with ``--arch llama``)."""

    card = CARDS["shakespeare"]

    def __init__(self, config: ShakespeareConfig, tokenizer: CharTokenizer | None = None):
        """Without ``tokenizer``, it is built from the text (read now, so a missing data set
        is reported before a run directory is made)."""
        super().__init__(config)
        self._ids: Tensor | None = None
        if tokenizer is None:
            tokenizer = CharTokenizer(self._text())
        self.tokenizer = tokenizer

    def state(self) -> dict[str, Any]:
        """The character vocabulary, for config.json."""
        return {"vocab": self.tokenizer.state()}

    @classmethod
    def from_state(cls, config: ShakespeareConfig, state: dict[str, Any]) -> ShakespeareTask:
        """Rebuild with the run's character vocabulary."""
        return cls(config, CharTokenizer.from_state(state["vocab"]))

    # -- data ---------------------------------------------------------------------------
    def _text(self) -> str:
        """The whole text, refused if it is too short for ``block_size``."""
        path = shakespeare_path(self.config.data_dir or None)
        text = read_text(path)
        check_length(path, text, self.config.block_size)
        self.check_same_data(path, text)
        return text

    def token_ids(self) -> Tensor:
        """The whole text as token ids ``(N,)``."""
        if self._ids is None:
            text = self._text()
            unknown = self.tokenizer.unknown(text)
            if unknown:
                raise DataError(
                    f"the text has {len(unknown)} characters this run's vocabulary lacks "
                    f"(e.g. {unknown[0]!r}): is --data-dir the text the run was trained on?"
                )
            self._ids = self.tokenizer.encode_tensor(text)  # (N,)
        return self._ids

    def check_data_fits(self) -> None:
        """Refuse, with a ConfigError, more random blocks than this machine's memory holds."""
        c = self.config
        check_memory(
            (c.train_blocks + c.val_blocks) * BYTES_PER_RANDOM_BLOCK,
            f"drawing {c.train_blocks + c.val_blocks:,} random blocks",
            "choose a smaller --train-blocks or --val-blocks",
        )

    def splits(self) -> Splits:
        """Random ``block_size`` blocks of the first 90% of the text (train) and of the last 10%
        (val); the test set reads the last 10% in consecutive blocks."""
        c = self.config
        self.check_data_fits()
        train, held_out = split_by_position(self.token_ids())
        return Splits(
            train=BlockDataset.random(train, c.train_blocks, c.block_size, c.data_seed),
            val=BlockDataset.random(held_out, c.val_blocks, c.block_size, c.data_seed + 1),
            test=BlockDataset.consecutive(held_out, c.block_size),
        )

    def tokens_of(self, batch: Any) -> int:
        """Every position of every block is a predicted character: no padding."""
        return batch[0].numel()

    # -- model, loss, metrics -----------------------------------------------------------
    def build_model(self) -> nn.Module:
        """The baby GPT, or with ``--arch llama`` a :class:`~attnlab.models.Llama` of the same
        depth, width and heads (see :func:`llama_config`), with ``--layer`` the user's block
        class in it (checked first)."""
        c = self.config
        if c.arch == "llama":
            config = llama_config(c, vocab_size=len(self.tokenizer))
            if c.layer:
                config = dataclasses.replace(config, **user_llama_block_fields(c.layer, config))
            return Llama(config)
        return GPT(
            GPTConfig(
                vocab_size=len(self.tokenizer),
                block_size=c.block_size,
                num_layers=c.size.layers,
                num_heads=c.size.heads,
                d_model=c.size.d_model,
                d_ff=c.size.d_ff,
                dropout=c.size.dropout,
                activation=c.activation,
                bias=c.bias,
            )
        )

    def loss(self, model: nn.Module, batch: Any) -> Tensor:
        """Cross-entropy of the next character at every position of the blocks."""
        x, y = batch  # (B, T) each
        logits = model(x)  # (B, T, vocab)
        return F.cross_entropy(logits.flatten(0, 1), y.flatten())  # (B*T, vocab), (B*T,)

    @torch.no_grad()
    def evaluate(self, model: nn.Module, batches: Any) -> dict[str, float]:
        """Mean cross-entropy per character, its perplexity, and next-character accuracy."""
        tally = CrossEntropyTally()
        for x, y in batches:
            tally.add(model(x).flatten(0, 1), y.flatten())  # logits (B * T, vocab)
        return {
            "loss": tally.loss,
            "perplexity": math.exp(tally.loss),
            "accuracy": tally.accuracy,
        }

    # -- users' inputs ------------------------------------------------------------------
    def encode_prompt(self, text: str) -> Tensor:
        """A prompt -> ids ``(1, T)``; empty prompts and unknown characters are InputErrors."""
        if not text:
            raise InputError('empty prompt: give at least one character, e.g. "ROMEO:"')
        unknown = self.tokenizer.unknown(text)
        if unknown:
            shown = ", ".join(repr(ch) for ch in unknown[:5])
            raise InputError(
                f"the prompt has characters outside this model's vocabulary of "
                f"{len(self.tokenizer)}: {shown}"
            )
        return torch.tensor([self.tokenizer.encode(text)])

    def decode(self, ids: list[int]) -> str:
        """Token ids -> text."""
        return self.tokenizer.decode(ids)

    def continue_text(self, model: nn.Module, prompt: str, seed: int = SAMPLE_SEED) -> str:
        """:data:`SAMPLE_CHARS` characters sampled after ``prompt`` (temperature 0.8)."""
        return self._continuation(model, self.encode_prompt(prompt), seed)

    def _continuation(self, model: nn.Module, ids: Tensor, seed: int = SAMPLE_SEED) -> str:
        """:data:`SAMPLE_CHARS` characters sampled after the prompt ``ids (1, T)``."""
        from attnlab.generation import generate

        ids = ids.to(model_device(model))  # (1, T)
        out = generate(
            model, ids, SAMPLE_CHARS, temperature=SAMPLE_TEMPERATURE, seed=seed
        )  # (1, T + SAMPLE_CHARS)
        return self.decode(out[0, ids.size(1) :].tolist())

    def predictions(self, model: nn.Module, texts: list[str]) -> Iterator[dict[str, Any]]:
        """For each prompt: :data:`SAMPLE_CHARS` characters sampled after it (temperature 0.8)."""
        prompts = [(text, self.encode_prompt(text)) for text in texts]  # (1, T): all read first
        return (
            {"prompt": text, "continuation": self._continuation(model, ids)}
            for text, ids in prompts
        )

    def format_prediction(self, prediction: dict[str, Any]) -> str:
        """The prompt followed by its continuation."""
        return prediction["prompt"] + prediction["continuation"]

    @torch.no_grad()
    def attention(self, model: nn.Module, text: str) -> AttentionView:
        """Each layer's causal self-attention ``(H, T, T)`` over the characters of one prompt."""
        if self.config.layer:
            raise InputError(
                "this run trained your own Llama block, which returns no attention maps"
            )
        ids = self.encode_prompt(text)  # (1, T)
        if ids.size(1) > self.config.block_size:
            raise InputError(
                f"the prompt has {ids.size(1)} characters; the model sees at most "
                f"{self.config.block_size} at a time (block_size)"
            )
        T, size = ids.size(1), self.config.size
        check_memory(  # a long-context model (trained on a GPU) inspected on a laptop
            size.layers * size.heads * T * T * 4,
            f"the attention maps of {T:,} characters ({size.layers} layers x {size.heads} "
            f"heads x {T:,} x {T:,} weights)",
            "give a shorter text",
        )
        device = model_device(model)
        _, maps = model(ids.to(device), return_attention=True)  # each (1, H, T, T)
        labels = [_visible(ch) for ch in text]
        return AttentionView(
            maps=[m[0].cpu() for m in maps],  # each (H, T, T)
            query_labels=labels,
            key_labels=labels,
            title=f"causal self-attention over {text!r}",
        )

    @torch.no_grad()
    def samples(self, model: nn.Module, dataset: Dataset, n: int) -> list[dict[str, Any]]:
        """``n`` continuations of prompts from evenly spread blocks: each block's first whole
        line (a speaker's name, often), else its first 16 characters."""
        out = []
        for seed, i in enumerate(spread(n, len(cast(Sized, dataset)))):  # Dataset declares no len
            x, _ = dataset[i]
            text = self.decode(x.tolist())
            lines = text.splitlines(keepends=True)[1:-1]  # whole lines: the first may be cut
            prompt = next((line for line in lines if line.strip()), text[:16])
            out.append({"prompt": prompt, "continuation": self.continue_text(model, prompt, seed)})
        return out

    def report(
        self, model: nn.Module, dataset: Dataset, batches: Any, plots_dir: Path | None
    ) -> dict[str, Any]:
        """Loss, perplexity and accuracy over the whole held-out part, and one sample."""
        return {
            "metrics": self.evaluate(model, batches),
            "samples": self.samples(model, dataset, 1),
        }

    def format_report(self, report: dict[str, Any]) -> str:
        """The held-out metrics and the sample continuation, for the terminal."""
        lines = [
            "held-out text (the last 10%, read in full): " + self.format_metrics(report["metrics"]),
            "",
            "sample:",
        ]
        lines += [self.format_prediction(sample) for sample in report["samples"]]
        return "\n".join(lines)


def llama_config(c: ShakespeareConfig, vocab_size: int) -> LlamaConfig:
    """The Llama-style model of ``--arch llama`` beside the baby GPT of the same ``size``.

    Same depth, width, heads and context window, with the later blocks instead of GPT-2's:
    rotary positions instead of a learned table, RMSNorm, grouped-query attention with
    ``kv_heads`` key/value heads, and a SwiGLU feed-forward network without biases. SwiGLU has
    three weight matrices instead of two, so its hidden width is two thirds of ``d_ff``
    (rounded up to a multiple of 8), as in Llama (Touvron et al. 2023, section 2.2): the
    parameter count stays close to the GPT's. The output projection is tied to the token
    embedding, as in the GPT.
    """
    hidden = -(-2 * c.size.d_ff // 3 // 8) * 8
    return LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=c.size.d_model,
        intermediate_size=hidden,
        num_hidden_layers=c.size.layers,
        num_attention_heads=c.size.heads,
        num_key_value_heads=c.kv_heads,
        max_position_embeddings=c.block_size,
        rms_norm_eps=1e-5,
        tie_word_embeddings=True,
        dropout=c.size.dropout,
    )


def _visible(ch: str) -> str:
    """A character as an axis label: newline and space made visible."""
    return {"\n": "\\n", " ": "␣"}.get(ch, ch)
