"""BlockSpec: everything that defines one Transformer block, in one frozen dataclass.

A model builds one :class:`BlockSpec` from its config and hands the object down whole:
``Transformer -> TransformerEncoder / TransformerDecoder -> EncoderLayer / DecoderLayer ->
MultiHeadAttention / FeedForward``. Each module reads the fields it implements, so a new
variant is a new field here plus the one module that implements it; nothing in between
re-threads keyword arguments. Four later variants are options beside the paper's defaults:
rotary positions (``positions="rotary"``), grouped-query attention (``num_kv_heads``),
RMSNorm (``norm="rmsnorm"``) and the SwiGLU feed-forward network (``activation="swiglu"``).

The torch.nn-style keyword constructors of the layers (``EncoderLayer(d_model, num_heads,
d_ff, dropout, ...)``) still work: they build a spec from their arguments.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import Field, dataclass, field, fields
from typing import Any, Literal

import torch

Activation = Literal["relu", "gelu", "gelu_tanh", "swiglu"]
ACTIVATIONS: tuple[str, ...] = ("relu", "gelu", "gelu_tanh", "swiglu")
Positions = Literal["absolute", "rotary"]
POSITIONS: tuple[str, ...] = ("absolute", "rotary")
Norm = Literal["layernorm", "rmsnorm"]
NORMS: tuple[str, ...] = ("layernorm", "rmsnorm")

# The widest block a spec describes. Beyond them a size is a typo (d_model=2**40 is a matrix
# of 2**80 numbers); the widest published models have d_model 18,432 and d_ff 73,728 (PaLM).
# The same bounds as the task configs' ModelSize (attnlab.configs).
MAX_D_MODEL = 65_536
MAX_D_FF = 262_144
# The most layers a stack may hold. Each is a Python object, so a typo such as 10**12 would
# build layers for hours, until the memory ran out. The models' configs share the bound.
MAX_LAYERS = 10_000
# The most entries of a vocabulary (or classes of a head): the largest published vocabularies
# hold about 262,000 tokens; 10**12 is a typo, a table of terabytes.
MAX_ENTRIES = 2**24
# The most positions a sequence may hold: a position table's rows, a mask's side. Beyond it a
# length is a typo: 2^20 positions of width 1024 are 4 GiB of float32, and attention over
# them needs a (2^20)^2 matrix of scores per head. Rotary positions need no table.
MAX_POSITIONS = 2**20


def check_whole_number(name: str, value: object, low: int = 0) -> None:
    """Raise ``ValueError`` unless ``value`` is a whole number (not a bool) ``>= low``: a size,
    a length or a layer count (a symbolic one under ``torch.compile`` with dynamic shapes
    included). ``range`` would build nothing for a negative count, and fail on a float."""
    if isinstance(value, bool) or not isinstance(value, (int, torch.SymInt)) or value < low:
        raise ValueError(f"{name} must be a whole number >= {low}; got {value!r}")


def check_layer_count(name: str, value: object) -> None:
    """Raise ``ValueError`` unless ``value`` is a whole number of layers in
    ``[0, MAX_LAYERS]``, naming the argument ``name``."""
    check_whole_number(name, value)
    if isinstance(value, int) and value > MAX_LAYERS:
        raise ValueError(f"{name} must be at most {MAX_LAYERS:,} layers; got {value:,}")


def not_a_tensor(name: str, value: object, shape: str) -> TypeError:
    """The ``TypeError`` for ``value`` given as argument ``name`` where a tensor of ``shape``
    goes (a list or a NumPy array otherwise failed deep inside, with "'list' object has no
    attribute 'dim'"). Callers test ``isinstance(value, Tensor)`` themselves and raise this:
    on a forward pass the message is then never formatted."""
    return TypeError(
        f"{name} must be a tensor {shape}; got {type(value).__name__} (make one with torch.tensor)"
    )


def check_length(name: str, value: object) -> None:
    """Raise ``ValueError`` unless ``value`` is a whole number of positions in
    ``[0, MAX_POSITIONS]``, naming the argument ``name`` (checked before a mask is allocated:
    ``causal_mask(10**12)`` otherwise failed in the allocator)."""
    check_whole_number(name, value)
    if isinstance(value, int) and value > MAX_POSITIONS:
        raise ValueError(f"{name} must be at most {MAX_POSITIONS:,} positions; got {value:,}")


def check_width(name: str, value: object, most: int = MAX_D_MODEL) -> None:
    """Raise ``ValueError`` unless ``value`` is a whole number in ``[1, most]``: a width or a
    number of entries of a weight matrix (by default at most :data:`MAX_D_MODEL`), checked
    before the matrix is allocated, naming the argument ``name``."""
    check_whole_number(name, value, 1)
    if isinstance(value, int) and value > most:
        raise ValueError(f"{name} must be at most {most:,}; got {value:,}")


def _spec_field(
    default: Any,
    help: str,
    *,
    choices: tuple[str, ...] | None = None,
    low: float | None = None,
    high: float | None = None,
    below: float | None = None,
    kind: type | None = None,
) -> Any:
    """A field whose metadata says what it allows (the keys of :func:`attnlab.options.option`,
    which ``attnlab.nn`` may not import). ``low`` and ``high`` are inclusive, ``below``
    exclusive. ``kind`` is the type of an optional field (default ``None``); other fields
    have their default's."""
    metadata = {"help": help, "choices": choices, "low": low, "high": high, "below": below}
    return field(default=default, metadata={**metadata, "kind": kind or type(default)})


_KINDS = {bool: "true or false", int: "a whole number", float: "a number", str: "a string"}


def _allowed(meta: Mapping[str, Any]) -> str:
    """What a field's metadata allows, in words: ``one of a, b``, ``in [0, 1)``, ``at least 1``."""
    choices, low, below = meta.get("choices"), meta.get("low"), meta.get("below")
    if choices is not None:
        return "one of " + ", ".join(choices)
    if low is not None and below is not None:
        return f"in [{low:g}, {below:g})"
    return f"at least {low:g}" if low is not None else f"below {below:g}"


def _check(spec_field: Field, value: Any) -> None:
    """Raise ``ValueError`` unless ``value`` has the field's type and an allowed value."""
    meta, name, default = spec_field.metadata, spec_field.name, spec_field.default
    if value is None and default is None:
        return  # an optional field left to fall back on another (see BlockSpec)
    kind = meta.get("kind", type(default))
    if isinstance(value, bool) != (kind is bool) or not isinstance(
        value, (int, float) if kind is float else kind
    ):
        raise ValueError(f"{name} must be {_KINDS[kind]}; got {value!r}")
    choices, low, below = meta.get("choices"), meta.get("low"), meta.get("below")
    in_range = (
        (choices is None or value in choices)
        and (low is None or value >= low)
        and (below is None or value < below)
    )
    if not in_range:
        raise ValueError(f"{name} must be {_allowed(meta)}; got {value!r}")
    if meta.get("high") is not None and value > meta["high"]:  # a typo, before allocating
        raise ValueError(f"{name} must be at most {meta['high']:,}; got {value:,}")
    if kind is float and not math.isfinite(value):  # beyond a range's reach: inf, or no range
        raise ValueError(f"{name} must be a finite number; got {value!r}")


@dataclass(frozen=True)
class BlockSpec:
    """The hyperparameters of one Transformer block; the defaults are the paper's base model.

    * ``d_model`` (512), ``num_heads`` (8): model width and number of attention heads ``h``,
      each head of width ``d_model / h`` (section 3.2.2, Table 3).
    * ``d_ff`` (2048): hidden width of the position-wise feed-forward network (section 3.3).
    * ``dropout`` (0.1): "Residual Dropout", on each sublayer's output before it is added to
      the residual (section 5.4, ``P_drop``).
    * ``attention_dropout``: dropout on the attention weights (not in the paper's text; its
      reference code and ``nn.MultiheadAttention`` have it). ``None``: same as ``dropout``.
    * ``ffn_dropout``: dropout on the feed-forward network's hidden activations (as in
      ``nn.TransformerEncoderLayer``). ``None``: same as ``dropout``. BERT has none there.
    * ``activation`` ("relu"): the feed-forward non-linearity; ReLU in section 3.3, "gelu"
      (exact, BERT) and "gelu_tanh" (its tanh approximation, GPT-2) are options. "swiglu"
      makes the network gated, ``W2 (SiLU(x W1) * x W3)`` (Shazeer 2020; Llama), with a
      third matrix ``W3`` and hidden width ``d_ff``.
    * ``norm_first`` (False): post-LN ``LayerNorm(x + Sublayer(x))`` as in section 3.1;
      ``True`` is pre-LN ``x + Sublayer(LayerNorm(x))`` (GPT-2, ViT, Llama).
    * ``norm`` ("layernorm"): the normalisation at those places: LayerNorm (section 3.1) or
      RMSNorm (Zhang & Sennrich 2019; Llama), which rescales by the root mean square alone.
    * ``layer_norm_eps`` (1e-5): the norm's epsilon (section 3.1; BERT uses 1e-12, Llama's
      RMSNorm 1e-6).
    * ``bias`` (True): biases in every linear layer and LayerNorm (``False`` as in nanoGPT
      and Llama; RMSNorm has none either way).
    * ``num_kv_heads`` (``None`` = ``num_heads``): the number of key/value heads. Fewer than
      ``num_heads`` is grouped-query attention (Ainslie et al. 2023): each key/value head
      serves ``num_heads / num_kv_heads`` query heads; 1 is multi-query attention (Shazeer
      2019). The paper's multi-head attention has as many as query heads.
    * ``positions`` ("absolute"): where word order enters. "absolute": the model adds position
      encodings to the input embeddings (section 3.5) and the block sees none. "rotary": the
      block's self-attention rotates each query and key by an angle proportional to its
      position (Su et al. 2021, RoFormer), so that scores depend on relative offsets.
    * ``rope_theta`` (10000.0): the base of the rotary frequencies ``theta^(-2i / d_head)``
      (RoFormer section 3.2.2, the same base as the paper's sinusoids in section 3.5).

    :attr:`attention_dropout_rate`, :attr:`ffn_dropout_rate` and :attr:`kv_heads` are the
    values in use, with ``None`` resolved. Each field's metadata holds its help text and
    allowed values; a value outside them raises ``ValueError`` when the spec is made, before
    any module allocates (``d_model`` at most :data:`MAX_D_MODEL`, ``d_ff`` at most
    :data:`MAX_D_FF`: beyond them a size is a typo).
    """

    d_model: int = _spec_field(512, "model width, a multiple of num_heads", low=1, high=MAX_D_MODEL)
    num_heads: int = _spec_field(8, "number of attention heads h", low=1)
    d_ff: int = _spec_field(2048, "hidden width of the feed-forward network", low=1, high=MAX_D_FF)
    dropout: float = _spec_field(
        0.1, "residual dropout on each sublayer's output", low=0.0, below=1.0
    )
    attention_dropout: float | None = _spec_field(
        None, "dropout on the attention weights (None: dropout)", low=0.0, below=1.0, kind=float
    )
    ffn_dropout: float | None = _spec_field(
        None,
        "dropout inside the feed-forward network (None: dropout)",
        low=0.0,
        below=1.0,
        kind=float,
    )
    activation: Activation = _spec_field("relu", "the feed-forward activation", choices=ACTIVATIONS)
    norm_first: bool = _spec_field(False, "pre-LN (True) or the paper's post-LN (False)")
    layer_norm_eps: float = _spec_field(1e-5, "epsilon of the LayerNorm or RMSNorm, positive")
    bias: bool = _spec_field(True, "biases in the linear layers and LayerNorms")
    norm: Norm = _spec_field("layernorm", "the normalisation layer", choices=NORMS)
    num_kv_heads: int | None = _spec_field(
        None, "key/value heads, dividing num_heads (None: num_heads)", low=1, kind=int
    )
    positions: Positions = _spec_field(
        "absolute", "absolute (added to the input) or rotary positions", choices=POSITIONS
    )
    rope_theta: float = _spec_field(10000.0, "base of the rotary frequencies", low=1.0)

    def __post_init__(self) -> None:
        for spec_field in fields(self):
            _check(spec_field, getattr(self, spec_field.name))
        if not self.layer_norm_eps > 0:
            raise ValueError(f"layer_norm_eps must be positive; got {self.layer_norm_eps!r}")
        if self.d_model % self.num_heads != 0:
            raise ValueError(
                f"d_model must be divisible by num_heads; got d_model={self.d_model}, "
                f"num_heads={self.num_heads} (d_model % num_heads = "
                f"{self.d_model % self.num_heads})"
            )
        if self.num_heads % self.kv_heads != 0:
            raise ValueError(
                f"num_heads must be divisible by num_kv_heads; got num_heads={self.num_heads}, "
                f"num_kv_heads={self.kv_heads}"
            )
        if self.positions == "rotary" and self.d_head % 2 != 0:
            raise ValueError(
                f"rotary positions rotate pairs of dimensions, so d_head = d_model / num_heads "
                f"must be even; got d_head={self.d_head}"
            )

    @property
    def d_head(self) -> int:
        """Width of one attention head, ``d_k = d_v = d_model / h`` (section 3.2.2)."""
        return self.d_model // self.num_heads

    @property
    def kv_heads(self) -> int:
        """The number of key/value heads: ``num_kv_heads``, else ``num_heads``."""
        return self.num_heads if self.num_kv_heads is None else self.num_kv_heads

    @property
    def attention_dropout_rate(self) -> float:
        """The dropout rate on the attention weights: ``attention_dropout``, else ``dropout``."""
        return self.dropout if self.attention_dropout is None else self.attention_dropout

    @property
    def ffn_dropout_rate(self) -> float:
        """The dropout rate inside the feed-forward network: ``ffn_dropout``, else ``dropout``."""
        return self.dropout if self.ffn_dropout is None else self.ffn_dropout


_DEFAULTS = {f.name: f.default for f in fields(BlockSpec)}


def spec_or_keywords(
    spec: BlockSpec | None,
    owner: str,
    keyword_defaults: dict[str, Any] | None = None,
    **keywords: Any,
) -> BlockSpec:
    """The spec a block module is built from: ``spec``, or the one its keyword arguments give.

    ``keywords`` are the arguments of the module's torch.nn-style constructor, renamed to
    :class:`BlockSpec`'s fields. Without ``spec`` each must be given (``None`` = missing, a
    ``TypeError``). With ``spec`` none may be: a keyword other than ``None`` and its default
    (``keyword_defaults``, else the spec's) would be ignored, so it raises ``TypeError``.
    ``owner`` names the module in the messages.
    """
    if spec is None:
        missing = [name for name, value in keywords.items() if value is None]
        if missing:
            raise TypeError(f"{owner} needs {' and '.join(missing)}, or spec=BlockSpec(...)")
        return BlockSpec(**keywords)
    defaults = {**_DEFAULTS, **(keyword_defaults or {})}
    given = [
        name for name, value in keywords.items() if value is not None and value != defaults[name]
    ]
    if given:
        raise TypeError(
            f"{owner} takes either spec or keyword arguments, not both; got spec and {given}"
        )
    return spec
