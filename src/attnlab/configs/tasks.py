"""Every task's config, and the card that names each task (imports no torch).

A task's config holds its data and model hyperparameters; each field becomes a ``--flag`` of
``attnlab train TASK``. The five numbers that size a Transformer are one
:class:`ModelSize`, embedded in every task config with the task's own defaults. A
:class:`TaskCard` says where the task's code lives, so ``attnlab train TASK --help`` can be
answered from this module alone, without importing torch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from attnlab.configs.layer import (
    DECODER_LAYER_HELP,
    LLAMA_LAYER_HELP,
    checked_layer_spec,
    layer_option,
)
from attnlab.errors import ConfigError
from attnlab.options import MAX_SEED, check_fields, nested, option

DIRECTIONS = ("en-fr", "fr-en")
IMAGE_SIZE = 8  # the side of scikit-learn's digits images


@dataclass
class ModelSize:
    """The size of a Transformer: ``N`` layers of width ``d_model`` with ``h`` heads and a
    feed-forward hidden width ``d_ff``, and the dropout rate ``P_drop`` (paper section 3,
    Table 3). The bounds keep a typo from asking for a model no machine can hold."""

    layers: int = option(2, "layers (blocks) of the model", low=1, high=1024)
    d_model: int = option(64, "model width d_model", low=1, high=65_536)
    heads: int = option(4, "attention heads h (must divide d_model)", low=1, high=4096)
    d_ff: int = option(256, "hidden width d_ff of the feed-forward networks", low=1, high=262_144)
    dropout: float = option(0.1, "dropout rate P_drop", low=0, below=1)

    def __post_init__(self) -> None:
        check_fields(self)
        if self.d_model % self.heads:
            raise ConfigError(
                f"heads must divide d_model; got heads={self.heads}, d_model={self.d_model}"
            )


def size(**defaults: Any) -> Any:
    """A :class:`ModelSize` field with a task's own defaults."""
    return nested(lambda: ModelSize(**defaults), "model size")


def _data_dir(what: str) -> Any:
    return option("", f"folder holding {what}", metavar="DIR")


@dataclass
class ReverseConfig:
    """Data and model hyperparameters of the reverse task (defaults: the classic tutorial)."""

    num_categories: int = option(10, "digits 0..N-1", low=2, high=10_000)
    seq_len: int = option(16, "maximum (and padded) sequence length", low=1, high=100_000)
    min_len: int = option(
        1,
        "minimum sequence length (set it to --seq-len for the tutorial's fixed length)",
        low=1,
        high=100_000,
    )
    train_size: int = option(50_000, "training sequences", low=1, high=10**8)
    val_size: int = option(1_000, "validation sequences", low=1, high=10**8)
    test_size: int = option(10_000, "test sequences", low=1, high=10**8)
    data_seed: int = option(
        42, "seed of the generated data (val and test use +1 and +2)", low=0, high=MAX_SEED - 2
    )
    size: ModelSize = size(layers=1, d_model=32, heads=1, d_ff=64, dropout=0.0)
    layer: str = layer_option()

    def __post_init__(self) -> None:
        check_fields(self)
        if not self.min_len <= self.seq_len:
            raise ConfigError(f"need 1 <= min_len <= seq_len; got {self.min_len}, {self.seq_len}")
        if self.layer:
            self.layer = checked_layer_spec(self.layer)


@dataclass
class NamesConfig:
    """Data and model hyperparameters of the names task."""

    data_dir: str = _data_dir("<Language>.txt (default: $ATTNLAB_DATA_DIR/names, else download)")
    split_seed: int = option(0, "seed of the stratified train/val/test split", low=0, high=MAX_SEED)
    max_len: int = option(
        20, "longest name in characters; longer names are cut, with a warning", low=1, high=10_000
    )
    tokenizer: str = option(
        "char", "char (one token per character) or bpe (subword pieces)", choices=("char", "bpe")
    )
    bpe_vocab: int = option(500, "vocabulary size of the bpe tokenizer", low=50, high=100_000)
    model: str = option(
        "transformer",
        "transformer (attnlab's SequenceClassifier) or gru (baseline; --d-model is its hidden "
        "size per direction)",
        choices=("transformer", "gru"),
    )
    backend: str = option(
        "attnlab",
        "transformer layers: attnlab or torch (nn.TransformerEncoderLayer)",
        choices=("attnlab", "torch"),
    )
    size: ModelSize = size(layers=3, d_model=128, heads=4, d_ff=256, dropout=0.1)
    positional: str = option("learned", "position encoding", choices=("learned", "sinusoidal"))
    norm_first: bool = option(True, "pre-LN layers (more stable for small data) instead of post-LN")
    window: int = option(
        1,
        "characters attend only to characters this close (the CLS token to all); 0: no window",
        low=0,
        high=10_000,
    )
    label_smoothing: float = option(0.1, "label smoothing of the training loss", low=0, below=1)
    class_weight_power: float = option(
        0.3, "loss weight of a language: (1/frequency)^power (0: none)", low=0, high=10
    )
    layer: str = layer_option()

    def __post_init__(self) -> None:
        check_fields(self)
        if self.layer:
            self.layer = checked_layer_spec(self.layer)
            if self.model != "transformer" or self.backend != "attnlab":
                raise ConfigError(
                    "--layer replaces attnlab's transformer layer: drop --model gru and "
                    "--backend torch"
                )
            if self.window:
                raise ConfigError(
                    "--layer gets a padding mask (B, 1, 1, T) only: set --window 0 "
                    "(the default with --layer)"
                )


@dataclass
class DigitsConfig:
    """Data and model hyperparameters of the digits task."""

    patch_size: int = option(
        4, "side of the square patches (must divide the image size 8)", low=1, high=IMAGE_SIZE
    )
    size: ModelSize = size(layers=2, d_model=128, heads=4, d_ff=256, dropout=0.1)
    rotation: float = option(
        10.0, "augmentation: rotate training images by up to X degrees", low=0, high=180
    )
    scale: float = option(
        0.1, "augmentation: zoom training images by a factor in 1 -/+ X", low=0, below=1
    )
    shift: float = option(
        1.0, "augmentation: move training images by up to X pixels", low=0, high=IMAGE_SIZE
    )
    label_smoothing: float = option(
        0.1, "label smoothing of the training loss (paper 5.4)", low=0, below=1
    )
    val_fraction: float = option(
        0.1, "share of the images held out for validation", low=0.01, high=0.5
    )
    test_fraction: float = option(
        0.2, "share of the images held out for the test", low=0.01, high=0.5
    )
    data_seed: int = option(0, "seed of the train / val / test split", low=0, high=MAX_SEED)

    def __post_init__(self) -> None:
        check_fields(self)
        if IMAGE_SIZE % self.patch_size:
            raise ConfigError(
                f"patch_size must divide the image size {IMAGE_SIZE}; got {self.patch_size}"
            )


@dataclass
class ShakespeareConfig:
    """Data and model hyperparameters of the shakespeare task (defaults: the baby GPT)."""

    data_dir: str = _data_dir(
        "input.txt (default: $ATTNLAB_DATA_DIR/tinyshakespeare, else download)"
    )
    block_size: int = option(64, "context window in characters", low=1, high=100_000)
    train_blocks: int = option(
        24_000,
        "random training blocks per epoch (24,000 / batch 12 = 2,000 steps)",
        low=1,
        high=10**9,
    )
    val_blocks: int = option(240, "random held-out blocks of each validation", low=1, high=10**7)
    data_seed: int = option(
        1337, "seed of the random block offsets (val uses +1)", low=0, high=MAX_SEED - 1
    )
    size: ModelSize = size(layers=4, d_model=128, heads=4, d_ff=512, dropout=0.0)
    activation: str = option(
        "gelu",
        "gelu (exact, as nanoGPT), gelu_tanh (as GPT-2) or relu",
        choices=("gelu", "gelu_tanh", "relu"),
    )
    bias: bool = option(False, "biases in the linear layers and LayerNorms (nanoGPT: none)")
    arch: str = option(
        "gpt",
        "gpt (GPT-2: learned positions, LayerNorm, GELU) or llama (rotary positions, RMSNorm, "
        "SwiGLU, grouped-query attention, no biases)",
        choices=("gpt", "llama"),
    )
    kv_heads: int = option(
        2,
        "key/value heads of --arch llama (grouped-query attention; must divide heads)",
        low=1,
        high=4096,
    )
    layer: str = layer_option(LLAMA_LAYER_HELP)

    def __post_init__(self) -> None:
        check_fields(self)
        if self.arch == "llama" and self.size.heads % self.kv_heads:
            raise ConfigError(
                f"kv_heads must divide heads; got kv_heads={self.kv_heads}, heads={self.size.heads}"
            )
        if self.layer:
            self.layer = checked_layer_spec(self.layer)
            if self.arch != "llama":
                raise ConfigError(
                    "--layer takes a Llama block of your own (such as the LlamaBlock of "
                    "the llama.py that attnlab exercise start writes): add --arch llama"
                )
            if self.size.dropout:
                raise ConfigError(
                    f"--layer: a Llama block of your own has no dropout; drop --dropout "
                    f"{self.size.dropout:g} (shakespeare's default is 0)"
                )


# The most --max-tokens: the longest pair, in subword tokens a side, that translation keeps.
# max_tokens is also the model's max_len - 2 and the most tokens decoded (max_tokens + 1) for
# each test sentence that a model never ends. eng-fra's longest sentence has 360 characters,
# so no pair is longer even at bpe_vocab=100 (about a token a character): a larger value
# keeps no more data, it only lets an unfinished model decode longer.
MAX_TOKENS = 1024


@dataclass
class TranslateConfig:
    """Data and model hyperparameters of the translation tasks. ``size.layers`` is N, the
    depth of both the encoder and the decoder stack (section 3.1)."""

    data_dir: str = _data_dir("eng-fra.txt (default: $ATTNLAB_DATA_DIR/eng-fra, else download)")
    direction: str = option("en-fr", "English -> French or French -> English", choices=DIRECTIONS)
    split_seed: int = option(
        0, "seed of the train/val/test split (grouped by source sentence)", low=0, high=MAX_SEED
    )
    bpe_vocab: int = option(
        8000, "size of the shared BPE vocabulary of both languages", low=100, high=1_000_000
    )
    max_tokens: int = option(
        48, "drop pairs longer than this many subword tokens a side", low=2, high=MAX_TOKENS
    )
    size: ModelSize = size(layers=3, d_model=256, heads=8, d_ff=1024, dropout=0.1)
    norm_first: bool = option(False, "pre-LN layers instead of the paper's post-LN")
    label_smoothing: float = option(
        0.1, "label smoothing of the training loss (epsilon_ls)", low=0, below=1
    )
    beam: int = option(4, "beam size of the test report's beam-search BLEU", low=1, high=1000)
    length_penalty: float = option(0.6, "length penalty alpha of beam search", low=0, high=10)
    decoder_layer: str = layer_option(DECODER_LAYER_HELP)

    def __post_init__(self) -> None:
        check_fields(self)
        if self.decoder_layer:
            self.decoder_layer = checked_layer_spec(self.decoder_layer, "--decoder-layer")


@dataclass
class TranslateSmallConfig(TranslateConfig):
    """The same options, with defaults sized for the tutorial's 11,439 short pairs."""

    bpe_vocab: int = option(
        2000, "size of the shared BPE vocabulary of both languages", low=100, high=1_000_000
    )
    max_tokens: int = option(
        32, "drop pairs longer than this many subword tokens a side", low=2, high=MAX_TOKENS
    )
    size: ModelSize = size(layers=3, d_model=256, heads=4, d_ff=512, dropout=0.1)
    norm_first: bool = option(
        True, "pre-LN layers (trains faster at this size) instead of the paper's post-LN"
    )


@dataclass(frozen=True)
class TaskCard:
    """What is known of a task before its code is imported.

    ``module`` holds the :class:`~attnlab.tasks.Task` subclass; ``train_defaults`` override
    :class:`~attnlab.configs.TrainConfig` defaults; ``monitor`` is the validation metric
    (higher is better) that picks the best checkpoint; ``variants`` are named task-config
    overrides that ``attnlab compare TASK`` trains side by side.
    """

    name: str
    module: str
    config: type
    summary: str
    train_defaults: dict[str, Any] = field(default_factory=dict)
    monitor: str = "accuracy"
    variants: dict[str, dict[str, Any]] = field(default_factory=dict)


_TRANSLATE_DEFAULTS = {"epochs": 20, "batch_size": 64, "lr": 1e-3, "warmup": 400}

CARDS: dict[str, TaskCard] = {
    card.name: card
    for card in (
        TaskCard(
            "reverse",
            "attnlab.tasks.reverse",
            ReverseConfig,
            "Reverse a sequence of digits.",
            {"epochs": 5, "batch_size": 128, "lr": 2e-3, "warmup": 50},
            monitor="sequence_accuracy",
        ),
        TaskCard(
            "names",
            "attnlab.tasks.names",
            NamesConfig,
            "Classify a surname into its language of origin (18 classes).",
            {"epochs": 30, "batch_size": 128, "lr": 2e-3, "warmup": 200},
            variants={
                "attnlab": {"model": "transformer", "backend": "attnlab"},
                "torch": {"model": "transformer", "backend": "torch"},
                "gru": {"model": "gru"},
            },
        ),
        TaskCard(
            "digits",
            "attnlab.tasks.digits",
            DigitsConfig,
            "Classify 8x8 handwritten digits with a Vision Transformer.",
            {"epochs": 150, "batch_size": 32, "lr": 2e-3, "warmup": 50, "weight_decay": 0.05},
        ),
        TaskCard(
            "shakespeare",
            "attnlab.tasks.shakespeare",
            ShakespeareConfig,
            "Character-level language model on tiny Shakespeare (GPT-2 or Llama blocks).",
            {
                "epochs": 1,
                "batch_size": 12,
                "lr": 1e-3,
                "min_lr": 2e-4,  # nanoGPT: lr / 10 (see the task's docstring)
                "warmup": 100,
                "weight_decay": 0.0,  # nanoGPT: 0.1
                "val_every": 250,
            },
            variants={"gpt": {"arch": "gpt"}, "llama": {"arch": "llama"}},
        ),
        TaskCard(
            "translate-small",
            "attnlab.tasks.translate",
            TranslateSmallConfig,
            'Translate short "i am / he is / ..." sentences (the classic tutorial\'s subset).',
            # Pre-LN tolerates twice the learning rate: 12 epochs reach what post-LN at 1e-3
            # needs about 20 for (measured: test BLEU 62.8 after 20 post-LN epochs, fr-en).
            {**_TRANSLATE_DEFAULTS, "epochs": 12, "lr": 2e-3, "warmup": 200},
            monitor="bleu",
        ),
        TaskCard(
            "translate",
            "attnlab.tasks.translate",
            TranslateConfig,
            "Translate English <-> French sentences (all 135,842 pairs up to --max-tokens).",
            _TRANSLATE_DEFAULTS,
            monitor="bleu",
        ),
    )
}
