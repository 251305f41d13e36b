"""Training: the loop, schedules, checkpoints."""

from attnlab.configs.train import TrainConfig
from attnlab.training.trainer import Trainer

__all__ = ["TrainConfig", "Trainer"]
