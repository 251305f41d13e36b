"""Training: the loop, schedules, checkpoints."""

from attnlab.training.config import TrainConfig
from attnlab.training.trainer import Trainer

__all__ = ["TrainConfig", "Trainer"]
