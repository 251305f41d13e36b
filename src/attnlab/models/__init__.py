"""Whole networks assembled from :mod:`attnlab.nn`.

Every model takes one config dataclass; ``MODELS`` maps a model's class name to its class,
so that a saved ``config.json`` can name the model to rebuild.
"""

from attnlab.models.classifier import SequenceClassifier, SequenceClassifierConfig
from attnlab.models.predictor import TokenPredictor, TokenPredictorConfig
from attnlab.models.rnn import GRUClassifier, GRUClassifierConfig
from attnlab.models.vit import ViT, ViTConfig

MODELS = {cls.__name__: cls for cls in (TokenPredictor, SequenceClassifier, GRUClassifier, ViT)}

__all__ = [
    "MODELS",
    "GRUClassifier",
    "GRUClassifierConfig",
    "SequenceClassifier",
    "SequenceClassifierConfig",
    "TokenPredictor",
    "TokenPredictorConfig",
    "ViT",
    "ViTConfig",
]
