"""The training hyperparameters shared by every task."""

from __future__ import annotations

from dataclasses import dataclass

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

    epochs: int = 10
    batch_size: int = 64
    lr: float = 1e-3
    optimizer: str = "adamw"
    weight_decay: float = 0.01
    momentum: float = 0.9
    schedule: str = "cosine"
    warmup: int = 100
    grad_clip: float = 1.0
    val_every: int = 0
    patience: int = 0
    max_steps: int = 0
    seed: int = 0
    device: str = "auto"

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
