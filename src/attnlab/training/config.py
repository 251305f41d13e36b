"""The training hyperparameters shared by every task."""

from __future__ import annotations

from dataclasses import dataclass

from attnlab.options import option
from attnlab.training.devices import PRECISIONS
from attnlab.training.schedules import SCHEDULES

OPTIMIZERS = ("adamw", "adam", "sgd")


@dataclass
class TrainConfig:
    """How to train (the task's own hyperparameters live in its Config).

    ``val_every=0`` validates once per epoch; ``patience=0`` disables early stopping;
    ``max_steps=0`` means no limit beyond ``epochs``. The learning-rate schedule always spans
    ``epochs`` full epochs, so stopping early with ``max_steps`` and resuming later follows the
    same schedule as an uninterrupted run. Steps are optimizer steps, each on one global batch
    of ``batch_size`` examples, whatever ``grad_accum`` and the number of torchrun processes.
    """

    epochs: int = option(10, "passes over the training set")
    batch_size: int = option(
        64,
        "examples per optimizer step in all (the global batch): split over the torchrun "
        "processes and the --grad-accum micro-batches, so it must be a multiple of their product",
    )
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
    min_lr: float = option(0.0, "learning rate at the end of the cosine schedule")
    grad_clip: float = option(1.0, "clip the gradient norm to this value (0: no clipping)")
    val_every: int = option(0, "validate every N steps (0: once per epoch)")
    patience: int = option(0, "stop after N validations without improvement (0: never)")
    max_steps: int = option(
        0, "stop after N steps in all, keeping the schedule of --epochs (0: no limit)"
    )
    seed: int = option(0, "random seed of initialisation, shuffling and dropout")
    device: str = option(
        "auto",
        "auto (cuda if available, else mps, else cpu), cpu, cuda, cuda:N or mps; under "
        "torchrun, cuda means one GPU per process (cuda:LOCAL_RANK)",
    )
    grad_accum: int = option(
        1,
        "gradient accumulation: each optimizer step adds the gradients of N micro-batches of "
        "batch-size / N examples (less memory, the same update)",
    )
    precision: str = option(
        "fp32",
        "fp32, bf16 (autocast; CPU, MPS and recent GPUs) or fp16 (autocast with loss scaling; "
        "CUDA only)",
    )
    compile: bool = option(False, "run the training forward pass through torch.compile")

    def __post_init__(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(
                f"optimizer must be one of {', '.join(OPTIMIZERS)}; got {self.optimizer!r}"
            )
        if self.schedule not in SCHEDULES:
            raise ValueError(
                f"schedule must be one of {', '.join(SCHEDULES)}; got {self.schedule!r}"
            )
        if self.precision not in PRECISIONS:
            raise ValueError(
                f"precision must be one of {', '.join(PRECISIONS)}; got {self.precision!r}"
            )
        for name in ("epochs", "batch_size", "grad_accum"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1; got {getattr(self, name)}")
        for name in ("warmup", "val_every", "patience", "max_steps", "grad_clip", "weight_decay"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative; got {getattr(self, name)}")
        if not self.lr > 0:
            raise ValueError(f"lr must be positive; got {self.lr}")
        if not 0 <= self.min_lr <= self.lr:
            raise ValueError(f"min_lr must be between 0 and lr ({self.lr}); got {self.min_lr}")
        if self.batch_size % self.grad_accum:
            raise ValueError(
                f"batch_size {self.batch_size} must be a multiple of grad_accum "
                f"{self.grad_accum}: it is the examples of one step, split into its micro-batches"
            )
