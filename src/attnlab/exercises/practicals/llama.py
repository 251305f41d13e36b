"""The Llama practical: its parts, their inputs, and the catalogue of mistakes.

The sizes are all different (``B=3, T=5, d_model=24, H=4, H_kv=2, d_head=6, d_ff=28``), so
that a head axis or a group taken for another shows. RMSNorm's ``eps`` is 0.1 and its inputs
have rows of small and of large scale, so that ``eps`` outside the square root changes the
numbers. The rotary tables are asked for positions 3 .. 8 (a cache of 3 positions before) with
the default base, and for positions 0 .. 5 with base 500; ``apply_rotary`` gets the
reference's tables (built here, so that a wrong ``rotary_cos_sin`` fails its own part only).
``repeat_kv`` runs with 2 key/value heads for 4 query heads (groups of 2), with 1 (multi-query)
and with 4 (no grouping). Llama has no dropout; every object is in eval mode.
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
)
from attnlab.exercises.solutions import llama as solution

B, T, D_MODEL, H, H_KV, D_FF, EPS = 3, 5, 24, 4, 2, 28, 0.1
D_HEAD = D_MODEL // H
T_ROTARY, D_ROTARY, START, BASE = 6, 8, 3, 500.0  # the rotary tables' sizes and arguments


def rms_norm(impl: ModuleType, seed: int) -> Tensor:
    """Over rows of scale 0.1 to 3: where the mean square is small, ``eps`` matters."""
    norm = instantiate(impl, solution, "RMSNorm", seed, D_MODEL, EPS)
    scale = torch.linspace(0.1, 3.0, T)[None, :, None]  # (1, T, 1)
    x = torch.randn(B, T, D_MODEL, generator=torch.Generator().manual_seed(seed))
    return norm(given(x * scale))


def rotary_cos_sin(impl: ModuleType, seed: int) -> tuple[Tensor, ...]:
    """``(cos, sin)`` after a cache of ``START`` positions, then ``(cos, sin)`` with base 500."""
    with case(f"with start={START}"):
        after_cache = impl.rotary_cos_sin(T_ROTARY, D_ROTARY, start=START)
    with case(f"with base={BASE:g}"):
        other_base = impl.rotary_cos_sin(T_ROTARY, D_ROTARY, base=BASE)
    return (*after_cache, *other_base)


def apply_rotary(impl: ModuleType, seed: int) -> Tensor:
    """Queries ``(B, H, T, d_head)`` rotated by the reference's angles of positions 2 .. 7."""
    cos, sin = (given(t) for t in solution.rotary_cos_sin(T_ROTARY, D_ROTARY, start=2))
    return impl.apply_rotary(randn(seed, B, H, T_ROTARY, D_ROTARY), cos, sin)


def swiglu(impl: ModuleType, seed: int) -> Tensor:
    ffn = instantiate(impl, solution, "SwiGLU", seed, D_MODEL, D_FF)
    return ffn(randn(seed, B, T, D_MODEL))


def repeat_kv(impl: ModuleType, seed: int) -> tuple[Tensor, Tensor, Tensor]:
    """Groups of 2, then one key/value head for all (multi-query), then no grouping."""
    x = randn(seed, B, H_KV, T, D_HEAD)  # (B, H_kv, T, d_head)
    with case("with 1 key/value head"):
        one = impl.repeat_kv(randn(seed + 1, B, 1, T, D_HEAD), H)
    with case(f"with {H} key/value heads for {H} heads"):
        same = impl.repeat_kv(randn(seed + 2, B, H, T, D_HEAD), H)
    return impl.repeat_kv(x, H), one, same


def attention(impl: ModuleType, seed: int) -> tuple[Tensor, Tensor]:
    """Over ``T`` positions, then over one position of a batch of 1."""
    attn = instantiate(impl, solution, "GroupedQueryAttention", seed, D_MODEL, H, H_KV)
    x = randn(seed, B, T, D_MODEL)
    full = attn(x)
    with case("with a batch of 1 and T = 1"):
        return full, attn(x[:1, :1])


def block(impl: ModuleType, seed: int) -> Tensor:
    layer = instantiate(impl, solution, "LlamaBlock", seed, D_MODEL, H, H_KV, D_FF, EPS)
    return layer(randn(seed, B, T, D_MODEL))


_ROTARY = ("rotary_cos_sin", "apply_rotary", "repeat_kv")
_ATTENTION = ("GroupedQueryAttention", "GroupedQueryAttention.forward", *_ROTARY)
_BLOCK = (
    "RMSNorm",
    "RMSNorm.forward",
    "SwiGLU",
    "SwiGLU.forward",
    *_ATTENTION,
    "LlamaBlock",
    "LlamaBlock.forward",
)

PARTS = [
    Part("RMSNorm.forward", rms_norm, summary="x / sqrt(mean(x^2) + eps) * g"),
    Part(
        "rotary_cos_sin",
        rotary_cos_sin,
        summary="the angles m theta_i, theta_i = base^(-2i/d)",
        outputs=(
            f"cos, with start={START}",
            f"sin, with start={START}",
            f"cos, with base={BASE:g}",
            f"sin, with base={BASE:g}",
        ),
    ),
    Part("apply_rotary", apply_rotary, summary="x cos + rotate_half(x) sin"),
    Part("SwiGLU.forward", swiglu, summary="w2(silu(w1 x) * w3 x)"),
    Part(
        "repeat_kv",
        repeat_kv,
        summary="each key/value head for its group of query heads",
        outputs=(
            f"{H_KV} key/value heads for {H} heads",
            f"1 key/value head for {H} heads",
            f"{H} key/value heads for {H} heads",
        ),
    ),
    Part(
        "GroupedQueryAttention.forward",
        attention,
        uses=_ATTENTION,
        summary="rotary, grouped heads, causal",
        outputs=(f"over {T} positions", "over 1 position of a batch of 1"),
    ),
    Part("LlamaBlock.forward", block, uses=_BLOCK, summary="pre-norm attention and SwiGLU"),
]

_MEAN_SQUARE = "x32.pow(2).mean(dim=-1, keepdim=True)"
_THETA = "theta = base ** (-even / d_head)"
_EVEN = "even = torch.arange(0, d_head, 2, device=device).float()"
_HALVES = "angles = torch.cat((angles, angles), dim=-1)"
_ROTATE_HALF = """    x1, x2 = x.chunk(2, dim=-1)  # each (B, H, T, d_head / 2)
    rotated_half = torch.cat((-x2, x1), dim=-1)  # (B, H, T, d_head)
"""
_ROTATE = "return x * cos + rotated_half * sin"
_GATE = "hidden = F.silu(self.w1(x)) * self.w3(x)"
_ROTARY_CALL = "q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)"
_SCALE = "scores = q @ k.transpose(-2, -1) / math.sqrt(d_head)"
_TABLES = "cos, sin = rotary_cos_sin(T, d_head, self.rope_theta, device=x.device)"
_CAUSAL = "causal = torch.ones(T, T, dtype=torch.bool, device=x.device).tril()"
_ATTEND = "h = x + self.self_attn(self.norm1(x))"
_FEED = "return h + self.feed_forward(self.norm2(h))"


def _swiglu_hint(what: str) -> str:
    return (
        f"the gate uses {what}: SwiGLU's gate is SiLU(z) = z sigmoid(z), F.silu "
        "(Shazeer 2020, section 2, FFN_SwiGLU)"
    )


# The planted mistakes: name -> (part, hint, {old: new} in the solution's source).
CATALOGUE: dict[str, tuple[str, str, dict[str, str]]] = {
    "rmsnorm-mean-subtracted": (
        "RMSNorm.forward",
        "the mean is subtracted, which makes it LayerNorm: RMSNorm divides x itself by "
        "sqrt(mean(x^2) + eps), with no re-centring (Zhang & Sennrich 2019, section 4)",
        {"x32 = x.float()": "x32 = x.float() - x.float().mean(dim=-1, keepdim=True)"},
    ),
    "rmsnorm-eps-outside-sqrt": (
        "RMSNorm.forward",
        "eps is added outside the square root: RMSNorm divides by sqrt(mean(x^2) + eps) "
        "(Zhang & Sennrich 2019, equation 4, as Hugging Face's Llama computes it)",
        {"torch.rsqrt(mean_square + self.eps)": "1 / (mean_square.sqrt() + self.eps)"},
    ),
    "rmsnorm-no-weight": (
        "RMSNorm.forward",
        "the learned gain is missing: multiply the normalised x by self.weight (g in "
        "equation 4 of Zhang & Sennrich 2019)",
        {"return self.weight * normalized.to(x.dtype)": "return normalized.to(x.dtype)"},
    ),
    "rmsnorm-norm-not-rms": (
        "RMSNorm.forward",
        "x is divided by its norm sqrt(sum(x^2)): RMSNorm divides by the root mean square "
        "sqrt(mean(x^2) + eps), sqrt(d_model) times smaller (Zhang & Sennrich 2019, section 4)",
        {_MEAN_SQUARE: "x32.pow(2).sum(dim=-1, keepdim=True)"},
    ),
    "rmsnorm-wrong-axis": (
        "RMSNorm.forward",
        "the mean square is taken over the wrong dimension: each vector is normalised over "
        "its own d_model features, the last dimension (dim=-1)",
        {_MEAN_SQUARE: "x32.pow(2).mean(dim=1, keepdim=True)"},
    ),
    "rotary-base-1000": (
        "rotary_cos_sin",
        "the rotary base is 1000: theta_i = base^(-2i / d_head) with the base given, whose "
        "default is 10000 as in RoFormer section 3.2.2 and Llama",
        {_THETA: "theta = 1000.0 ** (-even / d_head)"},
    ),
    "rotary-base-ignored": (
        "rotary_cos_sin",
        "the base argument is ignored: theta_i = base^(-2i / d_head) uses the base it is "
        "given (Llama's rope_theta), not a fixed 10000",
        {_THETA: "theta = 10000.0 ** (-even / d_head)"},
    ),
    "rotary-exponent-i": (
        "rotary_cos_sin",
        "the frequencies' exponent is -i / d_head: it is -2i / d_head for pair i "
        "(RoFormer section 3.2.2), the even numbers torch.arange(0, d_head, 2) over d_head",
        {_EVEN: "even = torch.arange(d_head // 2, device=device).float()"},
    ),
    "rotary-no-offset": (
        "rotary_cos_sin",
        "the positions do not begin at start: the angles are those of positions start .. "
        "start + T - 1, the new tokens after start cached ones",
        {"torch.arange(start, start + T, device=device)": "torch.arange(T, device=device)"},
    ),
    "rotary-interleaved": (
        "apply_rotary",
        "the rotary pairs are neighbours (2i, 2i + 1), the layout of Meta's original Llama "
        "code: attnlab and Hugging Face's Llama pair dimension i with i + d_head / 2 "
        "(rotate_half), in the tables and in the rotation",
        {
            _HALVES: "angles = angles.repeat_interleave(2, dim=-1)",
            _ROTATE_HALF: """    x1, x2 = x[..., 0::2], x[..., 1::2]  # each (B, H, T, d_head / 2)
    rotated_half = torch.stack((-x2, x1), dim=-1).flatten(-2)  # (B, H, T, d_head)
""",
        },
    ),
    "rotary-cos-sin-swapped": (
        "apply_rotary",
        "cos and sin are swapped, or rotate_half turns the wrong way (in attention both give "
        "the same scores): x' = x cos(m theta) + rotate_half(x) sin(m theta) with "
        "rotate_half([x1, x2]) = [-x2, x1] (RoFormer section 3.4.2, equation 34)",
        {_ROTATE: "return x * sin + rotated_half * cos"},
    ),
    "rotate-half-reversed": (
        "apply_rotary",
        "rotate_half turns the wrong way: rotate_half([x1, x2]) = [-x2, x1], the second half "
        "negated and put first, so that the pair (a, b) becomes (a cos - b sin, b cos + a sin) "
        "(RoFormer section 3.4.2, equation 34)",
        {"torch.cat((-x2, x1), dim=-1)": "torch.cat((x2, -x1), dim=-1)"},
    ),
    "swiglu-silu-on-w3": (
        "SwiGLU.forward",
        "the SiLU acts on the wrong branch: the gate is SiLU(x W1), and it multiplies the "
        "linear x W3 (Shazeer 2020, FFN_SwiGLU)",
        {_GATE: "hidden = self.w1(x) * F.silu(self.w3(x))"},
    ),
    "swiglu-gelu": (
        "SwiGLU.forward",
        _swiglu_hint("GELU (that is GEGLU)"),
        {_GATE: "hidden = F.gelu(self.w1(x)) * self.w3(x)"},
    ),
    "swiglu-relu": (
        "SwiGLU.forward",
        _swiglu_hint("ReLU (that is ReGLU)"),
        {_GATE: "hidden = F.relu(self.w1(x)) * self.w3(x)"},
    ),
    "swiglu-sigmoid": (
        "SwiGLU.forward",
        _swiglu_hint("a plain sigmoid (that is GLU)"),
        {_GATE: "hidden = torch.sigmoid(self.w1(x)) * self.w3(x)"},
    ),
    "swiglu-no-gate": (
        "SwiGLU.forward",
        "the linear branch x W3 is missing: SwiGLU multiplies SiLU(x W1) element-wise by "
        "x W3 before W2 (Shazeer 2020, FFN_SwiGLU)",
        {_GATE: "hidden = F.silu(self.w1(x))"},
    ),
    "swiglu-silu-of-product": (
        "SwiGLU.forward",
        "the SiLU acts on the product: only the gate x W1 goes through SiLU, which then "
        "multiplies x W3, SiLU(x W1) * x W3 (Shazeer 2020, FFN_SwiGLU)",
        {_GATE: "hidden = F.silu(self.w1(x) * self.w3(x))"},
    ),
    "gqa-heads-tiled": (
        "repeat_kv",
        "the key/value heads are tiled ([0, 1, 0, 1]): each serves a group of consecutive "
        "query heads ([0, 0, 1, 1]), so repeat_interleave them (Ainslie et al. 2023, "
        "section 2.2)",
        {"x.repeat_interleave(groups, dim=1)": "x.repeat(1, groups, 1, 1)"},
    ),
    "rotary-tables-of-d_model": (
        "GroupedQueryAttention.forward",
        "the rotary tables are built for d_model features: each head is rotated on its own, so "
        "build them for one head's width, rotary_cos_sin(T, d_head, ...)",
        {_TABLES: _TABLES.replace("(T, d_head,", "(T, H * d_head,")},
    ),
    "heads-split-wrong": (
        "GroupedQueryAttention.forward",
        "the heads are split along the wrong dimension: view each projection as "
        "(B, T, heads, d_head) and then swap axes 1 and 2, rather than viewing it as "
        "(B, heads, T, d_head)",
        {
            f"self.{w}(x).view(B, T, {h}, d_head).transpose(1, 2)": (
                f"self.{w}(x).view(B, {h}, T, d_head)"
            )
            for w, h in (("w_q", "H"), ("w_k", "H_kv"), ("w_v", "H_kv"))
        },
    ),
    "causal-diagonal-excluded": (
        "GroupedQueryAttention.forward",
        "the causal mask hides the diagonal too: position i may attend to itself, j <= i "
        "(tril() with no diagonal=-1); the first position, left with no key, gives NaN",
        {_CAUSAL: _CAUSAL.replace(".tril()", ".tril(diagonal=-1)")},
    ),
    "no-causal-mask": (
        "GroupedQueryAttention.forward",
        "the causal mask is missing: position i may attend only to positions j <= i, so the "
        "scores of later keys are -inf before the softmax",
        {'        scores = scores.masked_fill(~causal, float("-inf"))\n': ""},
    ),
    "no-scaling": (
        "GroupedQueryAttention.forward",
        "the scores are not scaled: divide q k^T by sqrt(d_head) (section 3.2.1 of "
        "'Attention Is All You Need')",
        {_SCALE: "scores = q @ k.transpose(-2, -1)"},
    ),
    "scaled-by-d_model": (
        "GroupedQueryAttention.forward",
        "the scores are divided by sqrt(d_model): each head divides by the square root of "
        "its own width, sqrt(d_head) (section 3.2.1 of 'Attention Is All You Need')",
        {_SCALE: "scores = q @ k.transpose(-2, -1) / math.sqrt(x.size(-1))"},
    ),
    "softmax-wrong-axis": (
        "GroupedQueryAttention.forward",
        "the softmax runs over the queries: each query's weights over the keys (the last "
        "axis, dim=-1) must sum to 1",
        {"scores.softmax(dim=-1)": "scores.softmax(dim=-2)"},
    ),
    "rotary-on-values": (
        "GroupedQueryAttention.forward",
        "the values are rotated too: rotary positions turn only the queries and the keys, "
        "whose dot product then depends on the offset m - n (RoFormer section 3.2)",
        {
            _ROTARY_CALL: "q, k, v = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin), "
            "apply_rotary(v, cos, sin)"
        },
    ),
    "rotary-queries-only": (
        "GroupedQueryAttention.forward",
        "the keys are not rotated: rotate the queries and the keys by their positions, so "
        "that q_m . k_n depends on m - n only (RoFormer section 3.2.2)",
        {_ROTARY_CALL: "q = apply_rotary(q, cos, sin)"},
    ),
    "heads-merged-wrong": (
        "GroupedQueryAttention.forward",
        "the heads are merged in the wrong order: (B, H, T, d_head) -> transpose(1, 2) -> "
        "(B, T, H, d_head), then reshape to (B, T, H d_head) for w_o",
        {"heads.transpose(1, 2).reshape(B, T, H * d_head)": "heads.reshape(B, T, H * d_head)"},
    ),
    "post-norm": (
        "LlamaBlock.forward",
        "the RMSNorms come after the residual sums (post-norm, as in 2017): Llama normalises "
        "each sublayer's input, x + Sublayer(RMSNorm(x)) (Llama section 2.2, "
        "pre-normalization)",
        {
            _ATTEND: "h = self.norm1(x + self.self_attn(x))",
            _FEED: "return self.norm2(h + self.feed_forward(h))",
        },
    ),
    "residual-of-normalised": (
        "LlamaBlock.forward",
        "the residual adds the normalised x: only the sublayer's input is normalised, and the "
        "residual stream carries x itself, x + attention(norm1(x)) (Llama section 2.2)",
        {
            _ATTEND: "x = self.norm1(x)\n        h = x + self.self_attn(x)",
            _FEED: "h = self.norm2(h)\n        return h + self.feed_forward(h)",
        },
    ),
    "residual-of-normalised-attention": (
        "LlamaBlock.forward",
        "the attention's residual adds the normalised x: the residual stream carries x "
        "itself, h = x + self_attn(norm1(x)), as the feed-forward's does (Llama section 2.2)",
        {_ATTEND: "x = self.norm1(x)\n        h = x + self.self_attn(x)"},
    ),
    "residual-of-normalised-feed-forward": (
        "LlamaBlock.forward",
        "the feed-forward's residual adds the normalised h: the residual stream carries h "
        "itself, h + feed_forward(norm2(h)), as the attention's does (Llama section 2.2)",
        {_FEED: "h = self.norm2(h)\n        return h + self.feed_forward(h)"},
    ),
    "no-residual-attention": (
        "LlamaBlock.forward",
        "the residual connection around the attention is missing: h = x + self_attn(norm1(x))",
        {_ATTEND: "h = self.self_attn(self.norm1(x))"},
    ),
    "no-residual-feed-forward": (
        "LlamaBlock.forward",
        "the residual connection around the SwiGLU network is missing: h + feed_forward(norm2(h))",
        {_FEED: "return self.feed_forward(self.norm2(h))"},
    ),
    "norm1-in-feed-forward": (
        "LlamaBlock.forward",
        "the feed-forward's input goes through norm1: each sublayer has an RMSNorm of its "
        "own, norm2 here",
        {_FEED: "return h + self.feed_forward(self.norm1(h))"},
    ),
}

# Mistakes made in more parts than their own: name -> the other parts.
ALSO = {"rotary-interleaved": ("rotary_cos_sin",)}
# Mistakes that the parts using theirs cannot tell from another (see Mistake.downstream):
# in attention, rotate_half turned the wrong way is cos and sin swapped, whose hint names both.
OWN_PART_ONLY = {"rotate-half-reversed"}

MISTAKES = [
    Mistake(
        name,
        part,
        hint,
        substitute("llama", changes),
        ALSO.get(name, ()),
        downstream=name not in OWN_PART_ONLY,
    )
    for name, (part, hint, changes) in CATALOGUE.items()
]

PRACTICAL = Practical(
    name="llama",
    title="the Llama practical: RMSNorm, rotary positions, SwiGLU, grouped-query attention, "
    "the pre-norm block",
    template="llama",
    solution="llama",
    parts=PARTS,
    mistakes=MISTAKES,
)
