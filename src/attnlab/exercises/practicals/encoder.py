"""The names practical: its parts, their inputs, and the catalogue of mistakes.

The sizes are all different (``B=3, T=7, d_model=12, H=2, d_k=6, d_ff=20``) and the padding
mask hides the last 2, 1 and 4 positions of the three sequences, so that a transposed axis or
an ignored, inverted or late mask changes the numbers. Dropout is 0.1 and every object is in
eval mode: dropout that still acts makes two calls differ. The whole layer also runs on a
batch of one sequence and on sequences of one token, where ``squeeze()`` and sizes written
as numbers break. A dropout left out of the layer is a mistake seen in train mode only: the
student's layer and the variant without it run from the same random state.
"""

from __future__ import annotations

from types import ModuleType

import torch
from torch import Tensor

from attnlab.exercises.core import (
    Mistake,
    Part,
    Practical,
    case,
    given,
    instantiate,
    randn,
    substitute,
    unpack,
)
from attnlab.exercises.solutions import encoder as solution

B, T, D_MODEL, H, D_FF, DROPOUT = 3, 7, 12, 2, 20, 0.1
D_K = D_MODEL // H
LENGTHS = (5, 6, 3)


def _mask() -> Tensor:
    """Bool ``(B, 1, 1, T)``: ``True`` for the real tokens (the first ``LENGTHS[b]``)."""
    return given((torch.arange(T) < torch.tensor(LENGTHS).unsqueeze(1)).view(B, 1, 1, T))


def _layer(impl: ModuleType, seed: int):
    return instantiate(impl, solution, "TransformerEncoderLayer", seed, D_MODEL, H, D_FF, DROPOUT)


def _encoder(impl: ModuleType, seed: int):
    return instantiate(impl, solution, "TransformerEncoder", seed, D_MODEL, H, D_FF, 2, DROPOUT, 50)


def positional_encoding(impl: ModuleType, seed: int) -> Tensor:
    pe = instantiate(impl, solution, "PositionalEncoding", seed, D_MODEL, 50)
    return pe(randn(seed, B, T, D_MODEL))


def predicting_qkv(impl: ModuleType, seed: int) -> tuple[Tensor, ...]:
    qkv = _layer(impl, seed).predicting_qkv(randn(seed, B, T, D_MODEL))
    return unpack(qkv, ("q", "k", "v"), "predicting_qkv(x)")


def self_attention(impl: ModuleType, seed: int) -> tuple[Tensor, Tensor]:
    """Once with the padding mask, once without (a NaN-free view of the softmax axis)."""
    layer = _layer(impl, seed)
    q, k, v = (randn(seed + i, B, H, T, D_K) for i in range(3))
    return layer.self_attention(q, k, v, D_K, _mask()), layer.self_attention(q, k, v, D_K, None)


def norm(impl: ModuleType, seed: int) -> tuple[Tensor, Tensor]:
    """Rows of scale 3, then rows of scale 0.003, whose variance (about 1e-5) is as small as
    eps: there eps outside the square root, or none, changes the numbers."""
    layer = _layer(impl, seed)
    return layer.norm(3 * randn(seed, B, T, D_MODEL) + 1), layer.norm(
        0.003 * randn(seed + 1, B, T, D_MODEL)
    )


def feed_forward(impl: ModuleType, seed: int) -> Tensor:
    return _layer(impl, seed).feed_forward(randn(seed, B, T, D_MODEL))


def layer_forward(impl: ModuleType, seed: int) -> tuple[Tensor, ...]:
    """With the mask and without (a wrong softmax axis gives NaN with a mask and -inf), then
    the edge cases: a batch of one sequence, and sequences of one token."""
    layer, x = _layer(impl, seed), randn(seed, B, T, D_MODEL)
    outputs = layer(x, _mask()), layer(x)
    with case("with a batch of 1"):
        one_sequence = layer(x[:1], _mask()[:1])
    with case("with a sequence of length 1"):
        one_token = layer(x[:, :1])
    return (*outputs, one_sequence, one_token)


def concat_cls(impl: ModuleType, seed: int) -> Tensor:
    return _encoder(impl, seed).concat_cls(randn(seed, B, T, D_MODEL))


def add_positional_encoding(impl: ModuleType, seed: int) -> Tensor:
    return _encoder(impl, seed).add_positional_encoding(randn(seed, B, T, D_MODEL))


def encoder_forward(impl: ModuleType, seed: int) -> tuple[Tensor, Tensor]:
    encoder, x = _encoder(impl, seed), randn(seed, B, T, D_MODEL)
    return encoder(x, _mask()), encoder(x)


_LAYER = "TransformerEncoderLayer"
_LAYER_METHODS = tuple(
    f"{_LAYER}.{m}" for m in ("predicting_qkv", "self_attention", "norm", "feed_forward", "forward")
)
_ENCODER_METHODS = tuple(
    f"TransformerEncoder.{m}" for m in ("concat_cls", "add_positional_encoding", "forward")
)

_MASKED = ("with the mask", "without a mask")

PARTS = [
    Part("PositionalEncoding.forward", positional_encoding, summary="sinusoidal positions"),
    Part(
        f"{_LAYER}.predicting_qkv",
        predicting_qkv,
        summary="q, k, v split into heads",
        outputs=("q", "k", "v"),
    ),
    Part(
        f"{_LAYER}.self_attention",
        self_attention,
        summary="scaled dot-product attention",
        outputs=_MASKED,
    ),
    Part(
        f"{_LAYER}.norm",
        norm,
        summary="layer normalisation",
        outputs=("rows of scale 3", "rows of scale 0.003, variance about eps"),
    ),
    Part(f"{_LAYER}.feed_forward", feed_forward, summary="position-wise feed-forward"),
    Part(
        f"{_LAYER}.forward",
        layer_forward,
        uses=(_LAYER, *_LAYER_METHODS),
        summary="the whole layer",
        outputs=(*_MASKED, "with a batch of 1", "with a sequence of length 1"),
    ),
    Part("TransformerEncoder.concat_cls", concat_cls, summary="the CLS token in front"),
    Part(
        "TransformerEncoder.add_positional_encoding",
        add_positional_encoding,
        uses=(
            "TransformerEncoder",
            "TransformerEncoder.add_positional_encoding",
            "PositionalEncoding.forward",
        ),
        summary="positions added",
    ),
    Part(
        "TransformerEncoder.forward",
        encoder_forward,
        uses=(
            "TransformerEncoder",
            *_ENCODER_METHODS,
            "PositionalEncoding.forward",
            _LAYER,
            *_LAYER_METHODS,
        ),
        summary="the whole encoder",
        outputs=_MASKED,
    ),
]


def _mistake(
    name: str, part: str, hint: str, changes: dict[str, str], train: bool = False
) -> Mistake:
    return Mistake(name, part, hint, substitute("encoder", changes), train=train)


_SCALE = "scores = q @ k.transpose(-2, -1) / math.sqrt(d_k)"
_MASK = 'scores = scores.masked_fill(~mask, float("-inf"))'
_SOFTMAX = "weights = torch.softmax(scores, dim=-1)"
_ATTENTION = f"{_LAYER}.self_attention"
_MERGE = "merged = heads.transpose(1, 2).reshape(B, T, self.d_model)"
_FFN_SUM = "self.norm(x + self.dropout(self.feed_forward(x)))"
_FORWARD = """        attended = self.dropout(self.w_o(merged))
        x = self.gamma1 * self.norm(x + attended) + self.beta1
        x = self.gamma2 * self.norm(x + self.dropout(self.feed_forward(x))) + self.beta2
"""
_PRE_LN_FORWARD = """        attended = self.dropout(self.w_o(merged))
        x = x + attended
        x = x + self.dropout(self.feed_forward(self.gamma2 * self.norm(x) + self.beta2))
"""
_NORM_INSIDE_FORWARD = """        attended = self.dropout(self.w_o(merged))
        x = x + self.gamma1 * self.norm(attended) + self.beta1
        x = x + self.gamma2 * self.norm(self.dropout(self.feed_forward(x))) + self.beta2
"""

DROPOUT_HINT = (
    "the dropout on {}'s output is missing: in train mode each sublayer's output goes "
    "through dropout before the residual sum, LayerNorm(x + Dropout(Sublayer(x))) "
    "(section 5.4)"
)

NORM_INSIDE_ONE_HINT = (
    "the {0} sublayer adds its input after the LayerNorm, x + LayerNorm({1}(x)): normalise "
    "the residual sum, LayerNorm(x + {1}(x)), as the {2} sublayer does (section 3.1)"
)

MISTAKES = [
    _mistake(
        "sin-cos-swapped",
        "PositionalEncoding.forward",
        "sine and cosine are swapped: the even features (0, 2, 4, ...) take the sine",
        {
            "pe[:, 0::2] = torch.sin(angle)": "pe[:, 0::2] = torch.cos(angle)",
            "pe[:, 1::2] = torch.cos(angle)": "pe[:, 1::2] = torch.sin(angle)",
        },
    ),
    _mistake(
        "frequency-exponent",
        "PositionalEncoding.forward",
        "the frequencies are wrong: the exponent is 2i / d_model, where 2i is the even "
        "feature index (0, 2, 4, ...), not i",
        {
            "two_i = torch.arange(0, self.d_model, 2, device=x.device)": (
                "two_i = torch.arange(0, self.d_model // 2, device=x.device)"
            ),
        },
    ),
    _mistake(
        "positions-on-batch-axis",
        "PositionalEncoding.forward",
        "the positions run along the batch axis: x is batch first (B, T, d_model), so the "
        "position is axis 1 (code written for (T, B, d_model) inputs does this)",
        {
            "T = x.size(1)": "T = x.size(0)",
            "pe.unsqueeze(0).to(x.dtype)": "pe.unsqueeze(1).to(x.dtype)",
        },
    ),
    _mistake(
        "sin-cos-concatenated",
        "PositionalEncoding.forward",
        "the sines and cosines are concatenated (all sines, then all cosines): the paper "
        "interleaves them, the sine at each even feature 2i and the cosine at 2i + 1",
        {
            "pe[:, 0::2] = torch.sin(angle)": "pe[:, : self.d_model // 2] = torch.sin(angle)",
            "pe[:, 1::2] = torch.cos(angle)": "pe[:, self.d_model // 2 :] = torch.cos(angle)",
        },
    ),
    _mistake(
        "frequencies-inverted",
        "PositionalEncoding.forward",
        "the positions are multiplied by 10000^(2i / d_model): the paper divides, "
        "pos / 10000^(2i / d_model), so that the frequencies fall from 1 to 1/10000 along "
        "the features (section 3.5)",
        {
            "angle = position / 10000 ** (two_i / self.d_model)": (
                "angle = position * 10000 ** (two_i / self.d_model)"
            ),
        },
    ),
    _mistake(
        "positions-from-one",
        "PositionalEncoding.forward",
        "the positions start at 1: the first token is at position 0, where the encoding is "
        "sin(0) = 0 and cos(0) = 1",
        {"torch.arange(T, device=x.device)": "torch.arange(1, T + 1, device=x.device)"},
    ),
    _mistake(
        "heads-split-wrong",
        f"{_LAYER}.predicting_qkv",
        "the heads are split along the wrong dimension: view the projection as "
        "(B, T, H, d_k) and then swap axes 1 and 2, rather than viewing it as (B, H, T, d_k)",
        {
            "t.view(B, T, self.num_heads, self.d_k).transpose(1, 2)": (
                "t.view(B, self.num_heads, T, self.d_k)"
            ),
        },
    ),
    _mistake(
        "one-projection-for-qkv",
        f"{_LAYER}.predicting_qkv",
        "the keys and values are made with W_q too: each has its own projection, "
        "Q = x W_q, K = x W_k, V = x W_v (section 3.2.2)",
        {
            "split_heads(self.w_k(x)), split_heads(self.w_v(x))": (
                "split_heads(self.w_q(x)), split_heads(self.w_q(x))"
            ),
        },
    ),
    _mistake(
        "queries-keys-swapped",
        _ATTENTION,
        "the scores are k q^T, the transpose of q k^T: row i must hold query i's scores "
        "against every key, q @ k.transpose(-2, -1)",
        {_SCALE: "scores = k @ q.transpose(-2, -1) / math.sqrt(d_k)"},
    ),
    _mistake(
        "no-scaling",
        _ATTENTION,
        "the scores are not scaled: divide q k^T by sqrt(d_k) (section 3.2.1)",
        {_SCALE: "scores = q @ k.transpose(-2, -1)"},
    ),
    _mistake(
        "scaled-by-d_k",
        _ATTENTION,
        "the scores are divided by d_k: the paper divides by sqrt(d_k)",
        {_SCALE: "scores = q @ k.transpose(-2, -1) / d_k"},
    ),
    _mistake(
        "scaled-by-sqrt-d_model",
        _ATTENTION,
        "the scores are divided by sqrt(d_model): divide by sqrt(d_k), the width of one head "
        "(d_model / H)",
        {_SCALE: "scores = q @ k.transpose(-2, -1) / math.sqrt(self.d_model)"},
    ),
    _mistake(
        "scaled-by-d_model",
        _ATTENTION,
        "the scores are divided by d_model: the paper divides by sqrt(d_k), the square root "
        "of one head's width",
        {_SCALE: "scores = q @ k.transpose(-2, -1) / self.d_model"},
    ),
    _mistake(
        "scores-multiplied",
        _ATTENTION,
        "the scores are multiplied by sqrt(d_k): divide q k^T by sqrt(d_k) (section 3.2.1)",
        {_SCALE: "scores = q @ k.transpose(-2, -1) * math.sqrt(d_k)"},
    ),
    _mistake(
        "softmax-wrong-axis",
        _ATTENTION,
        "the softmax runs over the wrong axis: each query's weights over the keys (the last "
        "axis) must sum to 1",
        {_SOFTMAX: "weights = torch.softmax(scores, dim=-2)"},
    ),
    _mistake(
        "softmax-over-heads",
        _ATTENTION,
        "the softmax runs over the heads (dim=1): each query's weights over the keys (the "
        "last axis, dim=-1) must sum to 1",
        {_SOFTMAX: "weights = torch.softmax(scores, dim=1)"},
    ),
    _mistake(
        "mask-inverted",
        _ATTENTION,
        "the mask is inverted: True means 'may attend', so hide the positions where it is False",
        {_MASK: 'scores = scores.masked_fill(mask, float("-inf"))'},
    ),
    _mistake(
        "mask-ignored",
        _ATTENTION,
        "the mask is ignored: padded keys (mask False) must get no attention",
        {_MASK: "pass"},
    ),
    _mistake(
        "mask-after-softmax",
        _ATTENTION,
        "the mask is applied after the softmax: mask the scores (with -inf) before it, so "
        "that each row still sums to 1",
        {
            _MASK: "pass",
            _SOFTMAX: f"{_SOFTMAX}\n        if mask is not None:\n"
            "            weights = weights.masked_fill(~mask, 0.0)",
        },
    ),
    _mistake(
        "mask-filled-with-zero",
        _ATTENTION,
        "the hidden scores are set to 0, not -inf: after the softmax a score of 0 still gets "
        "weight; fill with float('-inf') (or a very negative number such as -1e9)",
        {_MASK: "scores = scores.masked_fill(~mask, 0.0)"},
    ),
    _mistake(
        "dropout-in-eval",
        _ATTENTION,
        "dropout is active in eval mode (two calls give different results): use self.dropout, "
        "or pass training=self.training to F.dropout, whose default is training=True",
        {
            "weights = self.dropout(weights)": (
                "weights = torch.nn.functional.dropout(weights, self.dropout.p)"
            ),
        },
    ),
    _mistake(
        "variance-unbiased",
        f"{_LAYER}.norm",
        "the variance is the unbiased one (divided by d_model - 1): LayerNorm uses the biased "
        "variance, e.g. x.var(dim=-1, unbiased=False); torch.var and torch.std are unbiased "
        "by default",
        {"var = x.var(dim=-1, keepdim=True, unbiased=False)": "var = x.var(dim=-1, keepdim=True)"},
    ),
    _mistake(
        "norm-wrong-axis",
        f"{_LAYER}.norm",
        "the normalisation runs over the wrong axis: normalise each position's d_model "
        "features (the last axis), not the sequence",
        {
            "mean = x.mean(dim=-1, keepdim=True)": "mean = x.mean(dim=1, keepdim=True)",
            "var = x.var(dim=-1, keepdim=True, unbiased=False)": (
                "var = x.var(dim=1, keepdim=True, unbiased=False)"
            ),
        },
    ),
    _mistake(
        "divided-by-variance",
        f"{_LAYER}.norm",
        "the features are divided by the variance: divide by the standard deviation, "
        "sqrt(var + eps)",
        {"return (x - mean) / torch.sqrt(var + 1e-5)": "return (x - mean) / (var + 1e-5)"},
    ),
    _mistake(
        "norm-eps-outside-sqrt",
        f"{_LAYER}.norm",
        "eps is added outside the square root: LayerNorm divides by sqrt(var + eps), not by "
        "sqrt(var) + eps (or std + eps); the two differ where a position's variance is small",
        {"return (x - mean) / torch.sqrt(var + 1e-5)": "return (x - mean) / (var.sqrt() + 1e-5)"},
    ),
    _mistake(
        "norm-no-eps",
        f"{_LAYER}.norm",
        "eps is missing: divide by sqrt(var + eps) with eps = 1e-5, which keeps positions of "
        "small (or zero) variance from being blown up",
        {"return (x - mean) / torch.sqrt(var + 1e-5)": "return (x - mean) / torch.sqrt(var)"},
    ),
    _mistake(
        "no-relu",
        f"{_LAYER}.feed_forward",
        "the ReLU between the two linear layers is missing (section 3.3: max(0, x W1 + b1))",
        {
            "self.linear2(self.dropout(torch.relu(self.linear1(x))))": (
                "self.linear2(self.dropout(self.linear1(x)))"
            ),
        },
    ),
    _mistake(
        "gelu-not-relu",
        f"{_LAYER}.feed_forward",
        "the feed-forward uses GELU: the paper's is ReLU, max(0, x W1 + b1) (section 3.3)",
        {
            "torch.relu(self.linear1(x))": "torch.nn.functional.gelu(self.linear1(x))",
        },
    ),
    _mistake(
        "heads-merged-wrong",
        f"{_LAYER}.forward",
        "the heads are merged in the wrong order: bring each position's heads together, "
        "(B, H, T, d_k) -> (B, T, H, d_k), before reshaping to (B, T, d_model)",
        {_MERGE: "merged = heads.reshape(B, T, self.d_model)"},
    ),
    _mistake(
        "no-output-projection",
        f"{_LAYER}.forward",
        "the output projection W^O (w_o) is missing: the merged heads go through it, "
        "MultiHead(Q, K, V) = Concat(head_1, ..., head_H) W^O (section 3.2.2)",
        {"self.dropout(self.w_o(merged))": "self.dropout(merged)"},
    ),
    _mistake(
        "no-residual",
        f"{_LAYER}.forward",
        "the residual connection around the self-attention is missing: its output is added "
        "to its input before the norm, LayerNorm(x + MultiHead(x))",
        {"self.norm(x + attended)": "self.norm(attended)"},
    ),
    _mistake(
        "no-residual-feed-forward",
        f"{_LAYER}.forward",
        "the residual connection around the feed-forward is missing: its output is added to "
        "its input before the norm, LayerNorm(x + FFN(x))",
        {_FFN_SUM: "self.norm(self.dropout(self.feed_forward(x)))"},
    ),
    _mistake(
        "residual-from-layer-input",
        f"{_LAYER}.forward",
        "the feed-forward's residual adds the layer's input: add the feed-forward's own "
        "input, the output of the attention sublayer, LayerNorm(x + FFN(x)) with that x",
        {
            "x = self.gamma1 * self.norm(x + attended) + self.beta1": (
                "h = self.gamma1 * self.norm(x + attended) + self.beta1"
            ),
            f"{_FFN_SUM} + self.beta2": _FFN_SUM.replace("feed_forward(x)", "feed_forward(h)")
            + " + self.beta2",
        },
    ),
    _mistake(
        "no-dropout-attention-output",
        f"{_LAYER}.forward",
        DROPOUT_HINT.format("the self-attention"),
        {"attended = self.dropout(self.w_o(merged))": "attended = self.w_o(merged)"},
        train=True,
    ),
    _mistake(
        "no-dropout-feed-forward-output",
        f"{_LAYER}.forward",
        DROPOUT_HINT.format("the feed-forward"),
        {_FFN_SUM: "self.norm(x + self.feed_forward(x))"},
        train=True,
    ),
    _mistake(
        "pre-ln",
        f"{_LAYER}.forward",
        "the LayerNorm comes before the sublayers (pre-LN): the paper normalises after the "
        "residual sum, LayerNorm(x + Sublayer(x))",
        {
            "q, k, v = self.predicting_qkv(x)": (
                "q, k, v = self.predicting_qkv(self.gamma1 * self.norm(x) + self.beta1)"
            ),
            _FORWARD: _PRE_LN_FORWARD,
        },
    ),
    _mistake(
        "norm-inside-residual",
        f"{_LAYER}.forward",
        "the LayerNorm is applied to the sublayer's output and the input added afterwards, "
        "x + LayerNorm(Sublayer(x)): the paper normalises the residual sum, "
        "LayerNorm(x + Sublayer(x)) (section 3.1)",
        {_FORWARD: _NORM_INSIDE_FORWARD},
    ),
    _mistake(
        "norm-inside-residual-attention",
        f"{_LAYER}.forward",
        NORM_INSIDE_ONE_HINT.format("self-attention", "MultiHead", "feed-forward"),
        {
            "x = self.gamma1 * self.norm(x + attended) + self.beta1": (
                "x = x + self.gamma1 * self.norm(attended) + self.beta1"
            ),
        },
    ),
    _mistake(
        "norm-inside-residual-feed-forward",
        f"{_LAYER}.forward",
        NORM_INSIDE_ONE_HINT.format("feed-forward", "FFN", "self-attention"),
        {
            f"x = self.gamma2 * {_FFN_SUM} + self.beta2": (
                "x = x + self.gamma2 * self.norm(self.dropout(self.feed_forward(x))) + self.beta2"
            ),
        },
    ),
    _mistake(
        "no-gain-bias",
        f"{_LAYER}.forward",
        "the LayerNorms' gain and bias are missing: each norm is scaled and shifted, "
        "gamma * norm(...) + beta (gamma1, beta1 after the attention, gamma2, beta2 after the "
        "feed-forward)",
        {
            "x = self.gamma1 * self.norm(x + attended) + self.beta1": (
                "x = self.norm(x + attended)"
            ),
            f"x = self.gamma2 * {_FFN_SUM} + self.beta2": f"x = {_FFN_SUM}",
        },
    ),
    _mistake(
        "gain-bias-reused",
        f"{_LAYER}.forward",
        "the second LayerNorm reuses the first one's gain and bias: after the feed-forward "
        "it is gamma2 * norm(...) + beta2",
        {
            f"x = self.gamma2 * {_FFN_SUM} + self.beta2": (
                f"x = self.gamma1 * {_FFN_SUM} + self.beta1"
            ),
        },
    ),
    _mistake(
        "cls-appended",
        "TransformerEncoder.concat_cls",
        "the CLS token is appended at the end: it goes in front, at position 0",
        {"torch.cat([cls, x], dim=1)": "torch.cat([x, cls], dim=1)"},
    ),
    _mistake(
        "positions-before-cls",
        "TransformerEncoder.forward",
        "the positions are added before the CLS token is prepended: prepend it first, so "
        "that it sits at position 0 and the tokens at 1, 2, ...",
        {
            "self.add_positional_encoding(self.concat_cls(x))": (
                "self.concat_cls(self.add_positional_encoding(x))"
            ),
        },
    ),
    _mistake(
        "cls-masked",
        "TransformerEncoder.forward",
        "the CLS token is masked out: its new mask column must be True (may attend)",
        {"torch.ones_like(mask[..., :1])": "torch.zeros_like(mask[..., :1])"},
    ),
    _mistake(
        "cls-column-appended",
        "TransformerEncoder.forward",
        "the mask's new column for the CLS token is appended at the end: the CLS token is at "
        "position 0, so its column goes in front",
        {"torch.cat([cls_column, mask], dim=-1)": "torch.cat([mask, cls_column], dim=-1)"},
    ),
    _mistake(
        "no-positional-encoding",
        "TransformerEncoder.forward",
        "the positional encoding is not added: without it the layers cannot tell the "
        "positions apart (section 3.5)",
        {
            "self.add_positional_encoding(self.concat_cls(x))": "self.concat_cls(x)",
        },
    ),
    _mistake(
        "layers-not-chained",
        "TransformerEncoder.forward",
        "every layer gets the encoder's input: feed each layer's output to the next one, "
        "x = layer(x, mask)",
        {"x = layer(x, mask)\n        return x": "out = layer(x, mask)\n        return out"},
    ),
]

PRACTICAL = Practical(
    name="encoder",
    title="the names practical: a Transformer encoder with a CLS token",
    template="encoder",
    solution="encoder",
    parts=PARTS,
    mistakes=MISTAKES,
)
