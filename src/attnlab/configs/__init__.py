"""Configs as plain dataclasses, importable without torch: training, model size, tasks.

Each field declares its help text, range or choices (see :mod:`attnlab.options`), and every
config checks itself when it is built.
"""

from attnlab.configs.tasks import (
    CARDS,
    DigitsConfig,
    ModelSize,
    NamesConfig,
    ReverseConfig,
    ShakespeareConfig,
    TaskCard,
    TranslateConfig,
    TranslateSmallConfig,
)
from attnlab.configs.train import TrainConfig

__all__ = [
    "CARDS",
    "DigitsConfig",
    "ModelSize",
    "NamesConfig",
    "ReverseConfig",
    "ShakespeareConfig",
    "TaskCard",
    "TrainConfig",
    "TranslateConfig",
    "TranslateSmallConfig",
]
