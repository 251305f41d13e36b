"""Whole networks assembled from :mod:`attnlab.nn`.

Every model takes one config dataclass; ``MODELS`` maps a model's class name to its class,
so that a saved ``config.json`` can name the model to rebuild.
"""

from attnlab.models.classifier import SequenceClassifier, SequenceClassifierConfig
from attnlab.models.predictor import TokenPredictor, TokenPredictorConfig

MODELS = {cls.__name__: cls for cls in (TokenPredictor, SequenceClassifier)}

__all__ = [
    "MODELS",
    "SequenceClassifier",
    "SequenceClassifierConfig",
    "TokenPredictor",
    "TokenPredictorConfig",
]
