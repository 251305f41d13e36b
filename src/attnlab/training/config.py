"""The training hyperparameters shared by every task."""

from __future__ import annotations

from dataclasses import dataclass

from attnlab.options import option
from attnlab.training.schedules import SCHEDULES

OPTIMIZERS = ("adamw", "adam", "sgd")


@dataclass
class TrainConfig:
    """How to train (the task's own hyperparameters live in its Config).

    ``val_every=0`` validates once per epoch; ``patience=0`` disables early stopping;
    ``max_steps=0`` means no limit beyond ``epochs``. The learning-rate schedule always spans
    ``epochs`` full epochs, so stopping early with ``max_steps`` and resuming later follows the
    same schedule as an uninterrupted run.
    """

    epochs: int = option(10, "passes over the training set")
    batch_size: int = option(64, "examples per optimizer step")
    lr: float = option(
        1e-3, "peak learning rate (with --schedule noam: the factor in front of the schedule)"
    )
    optimizer: str = option("adamw", "adamw, adam or sgd")
    weight_decay: float = option(
        0.01, "decoupled weight decay on weight matrices (adamw), L2 otherwise"
    )
    momentum: float = option(0.9, "momentum of sgd")
    schedule: str = option(
        "cosine",
        "learning-rate schedule: cosine (warmup + cosine decay), noam (the paper's), constant",
    )
    warmup: int = option(100, "warmup steps of the schedule")
    grad_clip: float = option(1.0, "clip the gradient norm to this value (0: no clipping)")
    val_every: int = option(0, "validate every N steps (0: once per epoch)")
    patience: int = option(0, "stop after N validations without improvement (0: never)")
    max_steps: int = option(
        0, "stop after N steps in all, keeping the schedule of --epochs (0: no limit)"
    )
    seed: int = option(0, "random seed of initialisation, shuffling and dropout")
    device: str = option("auto", "auto (cuda if available), cpu, cuda, cuda:1, ...")

    def __post_init__(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(
                f"optimizer must be one of {', '.join(OPTIMIZERS)}; got {self.optimizer!r}"
            )
        if self.schedule not in SCHEDULES:
            raise ValueError(
                f"schedule must be one of {', '.join(SCHEDULES)}; got {self.schedule!r}"
            )
        for name in ("epochs", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1; got {getattr(self, name)}")
        for name in ("warmup", "val_every", "patience", "max_steps", "grad_clip", "weight_decay"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative; got {getattr(self, name)}")
        if not self.lr > 0:
            raise ValueError(f"lr must be positive; got {self.lr}")
