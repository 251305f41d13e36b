"""Whole experiments: train a task and report on it (:func:`train`), or train its variants
side by side (:func:`compare`). They sit above training, run directories and evaluation, and
below the command line, which calls them."""

from attnlab.experiments.compare import compare, format_table
from attnlab.experiments.launch import TrainResult, configs_from, train

__all__ = ["TrainResult", "compare", "configs_from", "format_table", "train"]
