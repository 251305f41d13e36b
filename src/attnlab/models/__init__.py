"""Whole networks assembled from :mod:`attnlab.nn`.

Every model takes one config dataclass; ``MODELS`` maps a model's class name to its class,
so that a saved ``config.json`` can name the model to rebuild.
"""

from attnlab.models.bert import Bert, BertConfig
from attnlab.models.classifier import SequenceClassifier, SequenceClassifierConfig
from attnlab.models.gpt import GPT, GPTConfig
from attnlab.models.llama import Llama, LlamaConfig
from attnlab.models.predictor import TokenPredictor, TokenPredictorConfig
from attnlab.models.rnn import GRUClassifier, GRUClassifierConfig
from attnlab.models.seq2seq import Seq2SeqConfig, Seq2SeqTransformer
from attnlab.models.vit import ViT, ViTConfig

MODELS = {
    cls.__name__: cls
    for cls in (
        TokenPredictor,
        SequenceClassifier,
        GRUClassifier,
        ViT,
        Seq2SeqTransformer,
        GPT,
        Llama,
    )
}

__all__ = [
    "MODELS",
    "Bert",
    "BertConfig",
    "GPT",
    "GPTConfig",
    "GRUClassifier",
    "GRUClassifierConfig",
    "Llama",
    "LlamaConfig",
    "Seq2SeqConfig",
    "Seq2SeqTransformer",
    "SequenceClassifier",
    "SequenceClassifierConfig",
    "TokenPredictor",
    "TokenPredictorConfig",
    "ViT",
    "ViTConfig",
]
