"""BlockSpec: everything that defines one Transformer block, in one frozen dataclass.

A model builds one :class:`BlockSpec` from its config and hands the object down whole:
``Transformer -> TransformerEncoder / TransformerDecoder -> EncoderLayer / DecoderLayer ->
MultiHeadAttention / FeedForward``. Each module reads the fields it implements, so a new
variant (rotary positions, grouped-query attention, RMSNorm, SwiGLU) is a new field here plus
the one module that implements it; nothing in between re-threads keyword arguments.

The torch.nn-style keyword constructors of the layers (``EncoderLayer(d_model, num_heads,
d_ff, dropout, ...)``) still work: they build a spec from their arguments.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import Field, dataclass, field, fields
from typing import Any, Literal

Activation = Literal["relu", "gelu", "gelu_tanh"]
ACTIVATIONS: tuple[str, ...] = ("relu", "gelu", "gelu_tanh")


def _spec_field(
    default: Any,
    help: str,
    *,
    choices: tuple[str, ...] | None = None,
    low: float | None = None,
    below: float | None = None,
) -> Any:
    """A field whose metadata says what it allows (the keys of :func:`attnlab.options.option`,
    which ``attnlab.nn`` may not import). ``low`` is inclusive, ``below`` exclusive."""
    metadata = {"help": help, "choices": choices, "low": low, "high": None, "below": below}
    return field(default=default, metadata=metadata)


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
        return  # an optional rate left to fall back on ``dropout``
    kind = float if default is None else type(default)  # the optional fields are rates
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
      (exact, BERT) and "gelu_tanh" (its tanh approximation, GPT-2) are options.
    * ``norm_first`` (False): post-LN ``LayerNorm(x + Sublayer(x))`` as in section 3.1;
      ``True`` is pre-LN ``x + Sublayer(LayerNorm(x))`` (GPT-2, ViT).
    * ``layer_norm_eps`` (1e-5): the LayerNorm epsilon (section 3.1; BERT uses 1e-12).
    * ``bias`` (True): biases in every linear layer and LayerNorm (``False`` as in nanoGPT).

    :attr:`attention_dropout_rate` and :attr:`ffn_dropout_rate` are the rates in use, with
    ``None`` resolved. Each field's metadata holds its help text and allowed values; a value
    outside them raises ``ValueError`` when the spec is made.
    """

    d_model: int = _spec_field(512, "model width, a multiple of num_heads", low=1)
    num_heads: int = _spec_field(8, "number of attention heads h", low=1)
    d_ff: int = _spec_field(2048, "hidden width of the feed-forward network", low=1)
    dropout: float = _spec_field(
        0.1, "residual dropout on each sublayer's output", low=0.0, below=1.0
    )
    attention_dropout: float | None = _spec_field(
        None, "dropout on the attention weights (None: dropout)", low=0.0, below=1.0
    )
    ffn_dropout: float | None = _spec_field(
        None, "dropout inside the feed-forward network (None: dropout)", low=0.0, below=1.0
    )
    activation: Activation = _spec_field("relu", "the feed-forward activation", choices=ACTIVATIONS)
    norm_first: bool = _spec_field(False, "pre-LN (True) or the paper's post-LN (False)")
    layer_norm_eps: float = _spec_field(1e-5, "LayerNorm epsilon, positive")
    bias: bool = _spec_field(True, "biases in the linear layers and LayerNorms")

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

    @property
    def d_head(self) -> int:
        """Width of one attention head, ``d_k = d_v = d_model / h`` (section 3.2.2)."""
        return self.d_model // self.num_heads

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
