"""The task interface: what the trainer, the evaluator and the CLI know about a task.

A task bundles its data sets, its model factory, its loss and metrics, and how to read a
user's input and show a prediction. The trainer knows tasks only through this interface, so
adding a task never edits the trainer: write a subclass and decorate it with
:func:`attnlab.tasks.register`.
"""

from __future__ import annotations

import hashlib
import json
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Protocol, runtime_checkable

from torch import Tensor, nn
from torch.utils.data import Dataset, default_collate

from attnlab.configs.tasks import TaskCard
from attnlab.errors import DataError
from attnlab.viz.views import AttentionView


@dataclass
class Splits:
    """The three data sets of a task."""

    train: Dataset
    val: Dataset
    test: Dataset


class Task(ABC):
    """Base class of every task.

    A subclass sets ``card``, a :class:`~attnlab.configs.TaskCard`, from which it gets its
    class attributes (or, for a task of your own, sets them directly):

        name: the name used on the command line (``attnlab train NAME``).
        Config: a dataclass of the task's data and model hyperparameters; every field becomes
            a ``--flag`` of ``attnlab train NAME``.
        train_defaults: overrides of :class:`~attnlab.training.TrainConfig` defaults.
        monitor: the validation metric (higher is better) that picks the best checkpoint.
        variants: named task-config overrides that ``attnlab compare TASK`` trains side by side.
    """

    card: ClassVar[TaskCard | None] = None
    name: ClassVar[str]
    Config: ClassVar[type]
    train_defaults: ClassVar[dict[str, Any]] = {}
    monitor: ClassVar[str] = "accuracy"
    variants: ClassVar[dict[str, dict[str, Any]]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        card = cls.__dict__.get("card")
        if card is not None:
            cls.name, cls.Config = card.name, card.config
            cls.train_defaults, cls.monitor, cls.variants = (
                card.train_defaults,
                card.monitor,
                card.variants,
            )

    def __init__(self, config: Any):
        self.config = config
        # The sha256 of the data the splits are drawn from (tasks that read a data set): set
        # when a new run reads it, or from a trained run's config.json (see check_same_data).
        self.data_sha256: str | None = None

    def check_same_data(self, where: Path, data: Any) -> None:
        """Record the sha256 of ``data`` (what the splits are drawn from: texts or pairs, as
        JSON), read from ``where``; for a trained run, refuse other data with a DataError:
        its seeded split would differ, and the test set would hold examples it trained on."""
        text = json.dumps(data)  # ASCII: non-ASCII characters escaped
        found = hashlib.sha256(text.encode("ascii")).hexdigest()
        if self.data_sha256 is None:
            self.data_sha256 = found
        elif found != self.data_sha256:
            raise DataError(
                f"{where} is not the data this run was trained on (its contents differ): its "
                "test set would not be the run's, and could hold examples the run trained "
                "on; give the run's data with --data-dir"
            )

    # -- data ---------------------------------------------------------------------------
    @abstractmethod
    def splits(self) -> Splits:
        """Build (or load) the train / val / test data sets."""

    def check_data_fits(self) -> None:
        """Refuse, with a ConfigError, data this machine's memory cannot hold, before any of it
        is made (a task that generates its data checks its sizes; the others have nothing
        to check)."""
        return None

    def collate(self, samples: list[Any]) -> Any:
        """Turn a list of samples into a batch (tensors on the CPU)."""
        return default_collate(samples)

    def batch_size_of(self, batch: Any) -> int:
        """Number of examples in a batch (for the progress bar's throughput)."""
        return len(batch[0])

    def tokens_of(self, batch: Any) -> int | None:
        """Real (non-padding) tokens in a batch, for tokens/s and tokens per step in the
        training log; ``None`` (the default) for tasks that do not count tokens."""
        return None

    # -- model, loss, metrics -----------------------------------------------------------
    @abstractmethod
    def build_model(self) -> nn.Module:
        """A freshly initialised model (seed the global RNG first for reproducibility)."""

    @abstractmethod
    def loss(self, model: nn.Module, batch: Any) -> Tensor:
        """The scalar training loss of one batch."""

    @abstractmethod
    def evaluate(self, model: nn.Module, batches: Any) -> dict[str, float]:
        """``loss`` and the task's metrics over an iterable of batches (model in eval mode)."""

    # -- users' inputs ------------------------------------------------------------------
    def predict(self, model: nn.Module, texts: list[str]) -> list[dict[str, Any]]:
        """Predictions for raw user inputs, as JSON-ready dicts (raises InputError on bad input)."""
        return list(self.predictions(model, texts))

    @abstractmethod
    def predictions(self, model: nn.Module, texts: list[str]) -> Iterator[dict[str, Any]]:
        """As :meth:`predict`, yielding each prediction as soon as it is made (``attnlab
        predict`` prints it then). Every input is read first, so a bad one is an InputError
        raised by this call, before any prediction is made."""

    @abstractmethod
    def format_prediction(self, prediction: dict[str, Any]) -> str:
        """One human-readable line (or a few) for a prediction."""

    @abstractmethod
    def attention(self, model: nn.Module, text: str) -> AttentionView:
        """The model's attention maps for one raw input."""

    def attention_views(self, model: nn.Module, text: str) -> list[AttentionView]:
        """Every kind of attention the model computes for one raw input (for the explorer).

        One view for an encoder-only or decoder-only model; an encoder-decoder task returns
        encoder self-attention, decoder self-attention and cross-attention.
        """
        return [self.attention(model, text)]

    def plot_attention(self, model: nn.Module, text: str, path: Path) -> Path:
        """Save a figure of the model's attention for one raw input; returns the path.

        The default draws each of :meth:`attention_views` as a layer x head grid of heatmaps;
        a task whose inputs are not token sequences (images) overrides it.
        """
        from attnlab.viz.heatmaps import plot_attention_views

        return plot_attention_views(self.attention_views(model, text), path)

    @abstractmethod
    def samples(self, model: nn.Module, dataset: Dataset, n: int) -> list[dict[str, Any]]:
        """A few examples of ``dataset`` with the model's predicted distributions."""

    def format_metrics(self, metrics: dict[str, float]) -> str:
        """The metrics of an evaluation as one line."""
        return "  ".join(f"{k} {v:.4f}" for k, v in metrics.items())

    def report(
        self, model: nn.Module, dataset: Dataset, batches: Any, plots_dir: Path | None
    ) -> dict[str, Any]:
        """The test-set report: ``{"metrics": ..., "samples": ...}`` and any task extras.

        ``batches`` iterates over ``dataset`` on the model's device; figures go to
        ``plots_dir``, and none are drawn when it is ``None`` (a read-only report).
        Everything returned must be JSON-ready (it lands in metrics.json).
        """
        return {
            "metrics": self.evaluate(model, batches),
            "samples": self.samples(model, dataset, 3),
        }

    def format_report(self, report: dict[str, Any]) -> str:
        """The report of :meth:`report` for the terminal."""
        lines = ["test set: " + self.format_metrics(report["metrics"]), "samples:"]
        lines += ["  " + self.format_prediction(sample) for sample in report["samples"]]
        return "\n".join(lines)

    def state(self) -> dict[str, Any]:
        """Anything beyond the config needed to rebuild the task (e.g. a vocabulary)."""
        return {}

    @classmethod
    def from_state(cls, config: Any, state: dict[str, Any]) -> Task:
        """Rebuild the task from its config and what :meth:`state` returned."""
        return cls(config)


@runtime_checkable
class Translator(Protocol):
    """A task whose model translates sentences (``attnlab translate``)."""

    def translate(
        self, model: nn.Module, sentences: list[str], beam: int = 1
    ) -> list[dict[str, Any]]:
        """One translation per sentence, as JSON-ready dicts (greedy with ``beam=1``, else beam
        search of that width)."""

    def translations(
        self, model: nn.Module, sentences: list[str], beam: int = 1
    ) -> Iterator[dict[str, Any]]:
        """As :meth:`translate`, yielding each translation as soon as it is made."""

    def format_prediction(self, prediction: dict[str, Any]) -> str:
        """One human-readable line for a translation (:meth:`Task.format_prediction`)."""


@runtime_checkable
class TextGenerator(Protocol):
    """A task whose model continues text (``attnlab generate``)."""

    def encode_prompt(self, text: str) -> Tensor:
        """A prompt -> token ids ``(1, T)`` (raises InputError on bad input)."""

    def decode(self, ids: list[int]) -> str:
        """Token ids -> text."""
