"""The reversal practical: its parts, their inputs, and the catalogue of mistakes.

The sizes are all different (``B=2, T=5, H=3, d_k=4, embed_dim=12, d_ff=20``). The mask
``(B, 1, T, T)`` hides a third of the pairs, and every query row and every key column holds
both an allowed and a hidden pair, so that an inverted mask or a softmax over the queries
changes the numbers without producing an all-hidden row (NaN). Dropout is 0.1 and every object
is in eval mode. The scheduler runs past its warmup to ``max_iters``, with ``warmup`` and
``max_iters`` such that a missing warmup or a cosine of the wrong period shows.

Mistakes of concepts the encoder practical also has (no scaling, the softmax axis, the mask
polarity and filling, splitting heads, the residual connections, GELU, pre-LN, the LayerNorm
inside the residual) reuse its hints.
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
from attnlab.exercises.practicals import encoder as encoder_practical
from attnlab.exercises.solutions import attention as solution

B, T, H, D_K, D_FF, DROPOUT = 2, 5, 3, 4, 20, 0.1
EMBED_DIM = H * D_K
WARMUP, MAX_ITERS, BASE_LR = 6, 40, 0.5


def _mask() -> Tensor:
    """Bool ``(B, 1, T, T)``, ``True`` = may attend: pair ``(i, j)`` of sequence ``b`` is hidden
    where ``(i + j + b) % 3 == 0``; every row and column has both kinds."""
    i = torch.arange(T)
    b = torch.arange(B)
    return given(((i[:, None] + i[None, :] + b[:, None, None]) % 3 != 0).unsqueeze(1))


def scaled_dot_product(impl: ModuleType, seed: int) -> tuple[Tensor, ...]:
    """``(values, attention)`` with the mask, then without."""
    q, k, v = (randn(seed + i, B, H, T, D_K) for i in range(3))
    pair = ("values", "attention")
    masked = unpack(impl.scaled_dot_product(q, k, v, _mask()), pair, _SDP.format("mask"))
    return (*masked, *unpack(impl.scaled_dot_product(q, k, v), pair, _SDP.format("None")))


def multihead_attention(impl: ModuleType, seed: int) -> tuple[Tensor, ...]:
    """``(output, attention)`` with the mask, then the output without it, then the output
    for a batch of one sequence."""
    mha = instantiate(impl, solution, "MultiheadAttention", seed, EMBED_DIM, H)
    x = randn(seed, B, T, EMBED_DIM)
    call = "MultiheadAttention(x, mask, return_attention=True)"
    masked = unpack(mha(x, mask=_mask(), return_attention=True), ("output", "attention"), call)
    with case("with a batch of 1"):
        one_sequence = mha(x[:1], mask=_mask()[:1])
    return (*masked, mha(x), one_sequence)


def encoder_block(impl: ModuleType, seed: int) -> tuple[Tensor, Tensor]:
    """With the mask, then without (where a softmax over the heads is not all NaN)."""
    block = instantiate(impl, solution, "EncoderBlock", seed, EMBED_DIM, H, D_FF, DROPOUT)
    x = randn(seed, B, T, EMBED_DIM)
    return block(x, mask=_mask()), block(x)


def cosine_warmup(impl: ModuleType, seed: int) -> Tensor:
    """The learning rate at steps ``0 .. MAX_ITERS``, one optimizer step between each."""
    weight = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([weight], lr=BASE_LR)
    scheduler = impl.CosineWarmupScheduler(optimizer, warmup=WARMUP, max_iters=MAX_ITERS)
    rates = [optimizer.param_groups[0]["lr"]]
    for _ in range(MAX_ITERS):
        optimizer.step()
        scheduler.step()
        rates.append(optimizer.param_groups[0]["lr"])
    return torch.tensor(rates, dtype=torch.float64)  # (MAX_ITERS + 1,)


_SDP = "scaled_dot_product(q, k, v, {})"
_MHA = ("MultiheadAttention", "MultiheadAttention.forward", "scaled_dot_product")

PARTS = [
    Part(
        "scaled_dot_product",
        scaled_dot_product,
        summary="softmax(q k^T / sqrt(d_k)) v",
        outputs=(
            "the values, with the mask",
            "the attention weights, with the mask",
            "the values, without a mask",
            "the attention weights, without a mask",
        ),
    ),
    Part(
        "MultiheadAttention.forward",
        multihead_attention,
        uses=_MHA,
        summary="heads from the stacked projection",
        outputs=(
            "the output, with the mask",
            "the attention weights, with the mask",
            "the output, without a mask or return_attention",
            "the output, with a batch of 1",
        ),
    ),
    Part(
        "EncoderBlock.forward",
        encoder_block,
        uses=("EncoderBlock", "EncoderBlock.forward", *_MHA),
        summary="attention and feed-forward, post-LN",
        outputs=("with the mask", "without a mask"),
    ),
    Part(
        "CosineWarmupScheduler.get_lr_factor",
        cosine_warmup,
        summary="linear warmup, cosine decay",
    ),
]


def _hint(name: str) -> str:
    """The encoder practical's hint for the same mistake."""
    return next(m.hint for m in encoder_practical.MISTAKES if m.name == name)


_SCALE = "scores = q @ k.transpose(-2, -1) / math.sqrt(d_k)"
_MASK = 'scores = scores.masked_fill(~mask, float("-inf"))'
_SOFTMAX = "attention = scores.softmax(dim=-1)"
_SPLIT = """        qkv = qkv.reshape(B, T, 3, self.num_heads, self.head_dim)  # (B, T, 3, H, d_k)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)  # each (B, H, T, d_k)
"""
_MERGE = "values = values.transpose(1, 2).reshape(B, T, self.embed_dim)"
_ATTEND = "x = self.norm1(x + self.dropout(self.self_attn(x, mask=mask)))"
_FEED = "return self.norm2(x + self.dropout(self.linear_net(x)))"
_COSINE = "factor = 0.5 * (1 + math.cos(math.pi * epoch / self.max_num_iters))"
_WARMUP = """        if epoch <= self.warmup:
            factor *= epoch / self.warmup
"""

# The planted mistakes: name -> (part, hint, {old: new} in the solution's source).
CATALOGUE: dict[str, tuple[str, str, dict[str, str]]] = {
    "no-scaling": (
        "scaled_dot_product",
        _hint("no-scaling"),
        {_SCALE: "scores = q @ k.transpose(-2, -1)"},
    ),
    "scores-multiplied": (
        "scaled_dot_product",
        _hint("scores-multiplied"),
        {_SCALE: "scores = q @ k.transpose(-2, -1) * math.sqrt(d_k)"},
    ),
    "scaled-by-heads": (
        "scaled_dot_product",
        "the scores are divided by the square root of q.size(1), the number of heads: q is "
        "(B, H, T, d_k), so d_k is its last axis, q.size(-1)",
        {_SCALE: "scores = q @ k.transpose(-2, -1) / math.sqrt(q.size(1))"},
    ),
    "queries-keys-swapped": (
        "scaled_dot_product",
        _hint("queries-keys-swapped"),
        {_SCALE: "scores = k @ q.transpose(-2, -1) / math.sqrt(d_k)"},
    ),
    "softmax-wrong-axis": (
        "scaled_dot_product",
        _hint("softmax-wrong-axis"),
        {_SOFTMAX: "attention = scores.softmax(dim=-2)"},
    ),
    "mask-inverted": (
        "scaled_dot_product",
        _hint("mask-inverted"),
        {_MASK: 'scores = scores.masked_fill(mask, float("-inf"))'},
    ),
    "softmax-over-heads": (
        "scaled_dot_product",
        _hint("softmax-over-heads"),
        {_SOFTMAX: "attention = scores.softmax(dim=1)"},
    ),
    "mask-filled-with-zero": (
        "scaled_dot_product",
        _hint("mask-filled-with-zero"),
        {_MASK: "scores = scores.masked_fill(~mask, 0.0)"},
    ),
    "mask-after-softmax": (
        "scaled_dot_product",
        _hint("mask-after-softmax"),
        {
            _MASK: "pass",
            _SOFTMAX: f"{_SOFTMAX}\n    if mask is not None:\n"
            "        attention = attention.masked_fill(~mask, 0.0)",
        },
    ),
    "heads-split-wrong": (
        "MultiheadAttention.forward",
        _hint("heads-split-wrong"),
        {
            _SPLIT: "        q, k, v = (t.reshape(B, self.num_heads, T, self.head_dim) "
            "for t in qkv.chunk(3, dim=-1))\n"
        },
    ),
    **{
        f"heads-split-wrong-{name}": (
            "MultiheadAttention.forward",
            f"{name} alone is split into heads along the wrong dimension (the other two are "
            "right): view its part of the projection as (B, T, H, d_k) and swap axes 1 and 2, "
            "rather than reshaping it to (B, H, T, d_k)",
            {
                _SPLIT: f"{_SPLIT}        {name} = qkv[:, :, {index}].reshape("
                "B, self.num_heads, T, self.head_dim)\n"
            },
        )
        for index, name in enumerate("qkv")
    },
    "qkv-interleaved": (
        "MultiheadAttention.forward",
        "q, k and v are cut from the wrong places of qkv_proj's output: it holds all of Q, "
        "then all of K, then all of V (embed_dim values each), not q, k, v side by side "
        "within each head",
        {
            _SPLIT: "        qkv = qkv.reshape(B, T, self.num_heads, 3, self.head_dim)\n"
            "        q, k, v = qkv.permute(3, 0, 2, 1, 4)\n"
        },
    ),
    "heads-merged-wrong": (
        "MultiheadAttention.forward",
        "the heads are merged in the wrong order: bring each position's heads together, "
        "(B, H, T, d_k) -> (B, T, H, d_k), before reshaping to (B, T, embed_dim)",
        {_MERGE: "values = values.reshape(B, T, self.embed_dim)"},
    ),
    "no-output-projection": (
        "MultiheadAttention.forward",
        "the output projection W^O (o_proj) is missing: the merged heads go through it, "
        "MultiHead(Q, K, V) = Concat(head_1, ..., head_H) W^O (section 3.2.2)",
        {"out = self.o_proj(values)": "out = values"},
    ),
    "block-mask-unused": (
        "EncoderBlock.forward",
        "the mask is not passed to the self-attention: call self_attn(x, mask=mask), or the "
        "hidden positions are attended to",
        {"self.self_attn(x, mask=mask)": "self.self_attn(x)"},
    ),
    "gelu-not-relu": (
        "EncoderBlock.forward",
        _hint("gelu-not-relu"),
        {"nn.ReLU(inplace=True),": "nn.GELU(),"},
    ),
    "no-residual-feed-forward": (
        "EncoderBlock.forward",
        _hint("no-residual-feed-forward"),
        {_FEED: "return self.norm2(self.dropout(self.linear_net(x)))"},
    ),
    "no-residual": (
        "EncoderBlock.forward",
        _hint("no-residual"),
        {_ATTEND: "x = self.norm1(self.dropout(self.self_attn(x, mask=mask)))"},
    ),
    "norm1-reused": (
        "EncoderBlock.forward",
        "the feed-forward's residual sum goes through norm1: each sublayer has a LayerNorm of "
        "its own, norm2 after the feed-forward",
        {_FEED: "return self.norm1(x + self.dropout(self.linear_net(x)))"},
    ),
    "no-dropout-attention-output": (
        "EncoderBlock.forward",
        _hint("no-dropout-attention-output"),
        {_ATTEND: "x = self.norm1(x + self.self_attn(x, mask=mask))"},
    ),
    "no-dropout-feed-forward-output": (
        "EncoderBlock.forward",
        _hint("no-dropout-feed-forward-output"),
        {_FEED: "return self.norm2(x + self.linear_net(x))"},
    ),
    "pre-ln": (
        "EncoderBlock.forward",
        _hint("pre-ln"),
        {
            _ATTEND: "x = x + self.dropout(self.self_attn(self.norm1(x), mask=mask))",
            _FEED: "return x + self.dropout(self.linear_net(self.norm2(x)))",
        },
    ),
    "norm-inside-residual": (
        "EncoderBlock.forward",
        _hint("norm-inside-residual"),
        {
            _ATTEND: "x = x + self.norm1(self.dropout(self.self_attn(x, mask=mask)))",
            _FEED: "return x + self.norm2(self.dropout(self.linear_net(x)))",
        },
    ),
    "norm-inside-residual-attention": (
        "EncoderBlock.forward",
        _hint("norm-inside-residual-attention"),
        {_ATTEND: "x = x + self.norm1(self.dropout(self.self_attn(x, mask=mask)))"},
    ),
    "norm-inside-residual-feed-forward": (
        "EncoderBlock.forward",
        _hint("norm-inside-residual-feed-forward"),
        {_FEED: "return x + self.norm2(self.dropout(self.linear_net(x)))"},
    ),
    "no-warmup": (
        "CosineWarmupScheduler.get_lr_factor",
        "the warmup is missing: for the first `warmup` steps the factor is also multiplied by "
        "epoch / warmup, so the learning rate starts at 0",
        {_WARMUP: ""},
    ),
    "warmup-replaces-cosine": (
        "CosineWarmupScheduler.get_lr_factor",
        "during the warmup the factor is epoch / warmup alone: it multiplies the cosine's "
        "factor, 0.5 * (1 + cos(pi * epoch / max_iters)) * epoch / warmup",
        {"factor *= epoch / self.warmup": "factor = epoch / self.warmup"},
    ),
    "cosine-after-warmup": (
        "CosineWarmupScheduler.get_lr_factor",
        "the cosine starts after the warmup (as in Hugging Face's "
        "get_cosine_schedule_with_warmup): here it runs from step 0 over max_iters steps, "
        "0.5 * (1 + cos(pi * epoch / max_iters)), multiplied by epoch / warmup during the warmup",
        {
            _COSINE: "factor = 0.5 * (1 + math.cos(math.pi * (epoch - self.warmup) "
            "/ (self.max_num_iters - self.warmup)))"
        },
    ),
    "cosine-period-minus-warmup": (
        "CosineWarmupScheduler.get_lr_factor",
        "the cosine falls over max_iters - warmup steps, but it starts at step 0 (not after "
        "the warmup): it must fall from 1 to 0 over all max_iters steps, "
        "0.5 * (1 + cos(pi * epoch / max_iters))",
        {
            _COSINE: "factor = 0.5 * (1 + math.cos(math.pi * epoch "
            "/ (self.max_num_iters - self.warmup)))"
        },
    ),
    "cosine-wrong-period": (
        "CosineWarmupScheduler.get_lr_factor",
        "the cosine has the wrong period: the factor must fall from 1 to 0 over max_iters "
        "steps, 0.5 * (1 + cos(pi * epoch / max_iters))",
        {_COSINE: "factor = 0.5 * (1 + math.cos(epoch / self.max_num_iters))"},
    ),
}

# Mistakes seen in train mode only (see Mistake.train).
TRAIN = {"no-dropout-attention-output", "no-dropout-feed-forward-output"}

MISTAKES = [
    Mistake(name, part, hint, substitute("attention", changes), train=name in TRAIN)
    for name, (part, hint, changes) in CATALOGUE.items()
]

PRACTICAL = Practical(
    name="attention",
    title="the reversal practical: attention, multi-head attention, an encoder block, warmup",
    template="attention",
    solution="attention",
    parts=PARTS,
    mistakes=MISTAKES,
)
