"""The training hyperparameters shared by every task (imports no torch)."""

from __future__ import annotations

from dataclasses import dataclass

from attnlab.errors import ConfigError
from attnlab.options import MAX_SEED, check_fields, option

OPTIMIZERS = ("adamw", "adam", "sgd")
SCHEDULES = ("cosine", "noam", "constant")
PRECISIONS = ("fp32", "bf16", "fp16")
MAX_STEPS = 10**9  # no schedule or counter needs more; a bigger number is a typo


@dataclass
class TrainConfig:
    """How to train (the task's own hyperparameters live in its Config).

    ``val_every=0`` validates once per epoch; ``patience=0`` disables early stopping;
    ``max_steps=0`` means no limit beyond ``epochs``. The learning-rate schedule always spans
    ``epochs`` full epochs, so stopping early with ``max_steps`` and resuming later follows the
    same schedule as an uninterrupted run. Steps are optimizer steps, each on one global batch
    of ``batch_size`` examples, whatever ``grad_accum`` and the number of torchrun processes.
    Fields marked resumable may change on ``--resume``; the others are the run's meaning.
    """

    epochs: int = option(10, "passes over the training set", low=1, high=10**6, resumable=True)
    batch_size: int = option(
        64,
        "examples per optimizer step in all (the global batch): split over the torchrun "
        "processes and the --grad-accum micro-batches, so it must be a multiple of their product",
        low=1,
        high=10**7,
    )
    lr: float = option(
        1e-3,
        "peak learning rate (with --schedule noam: the factor in front of the schedule)",
        low=0,
    )
    optimizer: str = option("adamw", "the optimizer", choices=OPTIMIZERS)
    weight_decay: float = option(
        0.01, "decoupled weight decay on weight matrices (adamw), L2 otherwise", low=0, high=1e3
    )
    momentum: float = option(0.9, "momentum of sgd", low=0, below=1)
    schedule: str = option(
        "cosine",
        "learning-rate schedule: cosine (warmup + cosine decay), noam (the paper's), constant",
        choices=SCHEDULES,
    )
    warmup: int = option(100, "warmup steps of the schedule", low=0, high=MAX_STEPS)
    min_lr: float = option(0.0, "learning rate at the end of the cosine schedule", low=0)
    grad_clip: float = option(
        1.0, "clip the gradient norm to this value (0: no clipping)", low=0, high=1e9
    )
    val_every: int = option(0, "validate every N steps (0: once per epoch)", low=0, high=MAX_STEPS)
    patience: int = option(
        0,
        "stop after N validations without improvement (0: never)",
        low=0,
        high=MAX_STEPS,
        resumable=True,
    )
    max_steps: int = option(
        0,
        "stop after N steps in all, keeping the schedule of --epochs (0: no limit)",
        low=0,
        high=MAX_STEPS,
        resumable=True,
    )
    seed: int = option(
        0, "random seed of initialisation, shuffling and dropout", low=0, high=MAX_SEED
    )
    device: str = option(
        "auto",
        "auto (cuda if available, else mps, else cpu), cpu, cuda, cuda:N or mps; under "
        "torchrun, cuda means one GPU per process (cuda:LOCAL_RANK)",
        resumable=True,
    )
    grad_accum: int = option(
        1,
        "gradient accumulation: each optimizer step adds the gradients of N micro-batches of "
        "batch-size / N examples (less memory, the same update)",
        low=1,
        high=10**6,
        resumable=True,  # --batch-size stays the global batch, so the updates stay the same
    )
    precision: str = option(
        "fp32",
        "fp32, bf16 (autocast; CPU, MPS and recent GPUs) or fp16 (autocast with loss scaling; "
        "CUDA only)",
        choices=PRECISIONS,
        resumable=True,
    )
    compile: bool = option(
        False, "run the training forward pass through torch.compile", resumable=True
    )

    @property
    def micro_batch_size(self) -> int:
        """The examples of one forward pass in a single process: ``batch_size / grad_accum``
        (a size known to fit, since training ran it, so evaluation batches take it too)."""
        return self.batch_size // self.grad_accum

    def __post_init__(self) -> None:
        check_fields(self)
        if not self.lr > 0:
            raise ConfigError(f"lr must be positive; got {self.lr}")
        if not self.min_lr <= self.lr:
            raise ConfigError(f"min_lr must be between 0 and lr ({self.lr}); got {self.min_lr}")
        if self.batch_size % self.grad_accum:
            raise ConfigError(
                f"batch_size {self.batch_size} must be a multiple of grad_accum "
                f"{self.grad_accum}: it is the examples of one step, split into its micro-batches"
            )
