"""The translation practical: its parts, their inputs, and the catalogue of mistakes.

The sizes are all different (``B=3, T=5, S=7, d_model=12, H=4, d_ff=20``). The target mask
is the causal one, built here (so that a wrong ``causal_mask`` fails its own part only); the
source padding mask hides the last 0, 2 and 1 of 5 memory positions. Cross-attention is also
run over a memory of 7 positions without a mask, where keys taken from the decoder give other
shapes of scores. Dropout is 0.1 and every object is in eval mode. The layer also runs on a
target of one position (the first step of decoding), and the causal mask is also asked for
one position.

Greedy decoding runs on :class:`CopyModel`, a tiny deterministic model whose answer is known:
it copies each source sequence and then says eos. Its sequences end at different steps, and
after an eos it would go on with other tokens, so that decoding that does not stop, or lets a
finished sequence go on, shows.
"""

from __future__ import annotations

from types import ModuleType

import torch
import torch.nn.functional as F
from torch import Tensor

from attnlab.exercises.core import (
    Mistake,
    Part,
    Practical,
    ReturnError,
    case,
    given,
    instantiate,
    randn,
    substitute,
)
from attnlab.exercises.solutions import decoder as solution

B, T, S, D_MODEL, H, D_FF, DROPOUT = 3, 5, 7, 12, 4, 20, 0.1
MEMORY_LENGTHS = (5, 3, 4)  # real positions of each sequence's memory of T positions
VOCAB, BOS, EOS = 10, 1, 2  # tokens 3 .. 9 are words
SOURCE_LENGTHS = (6, 3, 4)
MAX_LEN = 10  # bos + the longest source + eos = 8 tokens: decoding stops before MAX_LEN


def _padding_mask(lengths: tuple[int, ...], width: int) -> Tensor:
    """Bool ``(B, 1, 1, width)``: ``True`` at the first ``lengths[b]`` positions."""
    mask = torch.arange(width) < torch.tensor(lengths)[:, None]  # (B, width)
    return given(mask.view(len(lengths), 1, 1, width))


def _layer(impl: ModuleType, seed: int):
    return instantiate(impl, solution, "DecoderLayer", seed, D_MODEL, H, D_FF, DROPOUT)


def causal_mask(impl: ModuleType, seed: int) -> tuple[Tensor, Tensor, Tensor]:
    """The mask for 6 positions, attention under it (a float mask would add, not hide), and
    the mask for 1 position (the first step of decoding)."""
    mask = impl.causal_mask(6)
    if isinstance(mask, Tensor) and not (mask.dtype == torch.bool or mask.is_floating_point()):
        raise ReturnError(f"causal_mask(6) returned a {mask.dtype} tensor, expected torch.bool")
    q, k, v = (randn(seed + i, 2, 3, 6, 4) for i in range(3))
    with case("the mask for 6 positions"):
        attended = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    with case("with T = 1"):
        return mask, attended, impl.causal_mask(1)


def self_attention_block(impl: ModuleType, seed: int) -> Tensor:
    tgt_mask = given(torch.ones(T, T, dtype=torch.bool).tril())  # (T, T)
    return _layer(impl, seed).self_attention_block(randn(seed, B, T, D_MODEL), tgt_mask)


def cross_attention_block(impl: ModuleType, seed: int) -> tuple[Tensor, Tensor]:
    """Over a memory of ``S`` positions without a mask, then over a padded one of ``T``."""
    layer = _layer(impl, seed)
    x = randn(seed, B, T, D_MODEL)
    memory, padded = randn(seed + 1, B, S, D_MODEL), randn(seed + 2, B, T, D_MODEL)
    padding = _padding_mask(MEMORY_LENGTHS, T)
    return layer.cross_attention_block(x, memory), layer.cross_attention_block(x, padded, padding)


def feed_forward_block(impl: ModuleType, seed: int) -> Tensor:
    return _layer(impl, seed).feed_forward_block(randn(seed, B, T, D_MODEL))


def layer_forward(impl: ModuleType, seed: int) -> tuple[Tensor, Tensor]:
    """The layer over a target of ``T`` positions, then over its first position only (the
    first step of decoding)."""
    tgt_mask = given(torch.ones(T, T, dtype=torch.bool).tril())  # (T, T)
    x, memory = randn(seed, B, T, D_MODEL), randn(seed + 1, B, T, D_MODEL)
    layer, padding = _layer(impl, seed), _padding_mask(MEMORY_LENGTHS, T)
    full = layer(x, memory, tgt_mask, padding)
    with case("with a target of length 1"):
        return full, layer(x[:, :1], memory, tgt_mask[:1, :1], padding)


class CopyModel:
    """A tiny deterministic encoder-decoder: the answer to each source is the source itself.

    ``encode`` gives the one-hot source ``(B, S, VOCAB)``, zero at padding. ``decode`` gives
    logits ``(B, T, VOCAB)`` whose argmax at target position ``t`` is the source token ``t``
    while ``t`` is within the source, then ``EOS``; after an ``EOS`` in the target, though, it
    is some other word. Small noise from ``seed`` keeps the other logits apart.
    """

    def __init__(self, seed: int):
        self.noise = torch.rand(
            B, MAX_LEN + 1, VOCAB, generator=torch.Generator().manual_seed(seed)
        )

    def encode(self, src: Tensor, src_mask: Tensor) -> Tensor:
        return F.one_hot(src, VOCAB).float() * src_mask.view(src.size(0), -1, 1)  # (B, S, V)

    def decode(self, memory: Tensor, src_mask: Tensor, tgt: Tensor) -> Tensor:
        n, length = tgt.shape
        lengths = src_mask.view(n, -1).sum(dim=-1)  # (B,)
        source = torch.full((n, length), EOS)  # (B, T): the source token at each position
        width = min(length, memory.size(1))
        source[:, :width] = memory[:, :width].argmax(dim=-1)
        positions = torch.arange(length)  # (T,)
        predicted = torch.where(positions < lengths[:, None], source, EOS)  # (B, T)
        other_word = 3 + (positions + torch.arange(n)[:, None]) % (VOCAB - 3)  # (B, T)
        predicted = torch.where(tgt == EOS, other_word, predicted)
        return 5.0 * F.one_hot(predicted, VOCAB) + self.noise[:n, :length]  # (B, T, VOCAB)


def greedy_decode(impl: ModuleType, seed: int) -> tuple[Tensor, Tensor]:
    """Decoding up to ``MAX_LEN`` tokens (all sequences end before), then up to 5 (cut)."""
    generator = torch.Generator().manual_seed(seed)
    src = torch.randint(3, VOCAB, (B, max(SOURCE_LENGTHS)), generator=generator)  # (B, S)
    src_mask = _padding_mask(SOURCE_LENGTHS, src.size(1))
    src = given(src.masked_fill(~src_mask.view_as(src), 0))  # padding id 0
    model = CopyModel(seed)
    return (
        impl.greedy_decode(model, src, src_mask, MAX_LEN, BOS, EOS),
        impl.greedy_decode(model, src, src_mask, 5, BOS, EOS),
    )


_LAYER = "DecoderLayer"
_GIVEN = ("MultiHeadAttention", "FeedForward", _LAYER)
_BLOCKS = tuple(
    f"{_LAYER}.{m}" for m in ("self_attention_block", "cross_attention_block", "feed_forward_block")
)

PARTS = [
    Part(
        "causal_mask",
        causal_mask,
        summary="position i sees j <= i",
        outputs=("the mask for 6 positions", "attention under it", "the mask for 1 position"),
    ),
    *(
        Part(name, run, uses=(*_GIVEN, name), summary=summary, outputs=outputs)
        for name, run, summary, outputs in (
            (_BLOCKS[0], self_attention_block, "masked self-attention, post-LN", ()),
            (
                _BLOCKS[1],
                cross_attention_block,
                "attention over the memory, post-LN",
                (f"over a memory of {S} positions, no mask", f"over a padded memory of {T}"),
            ),
            (_BLOCKS[2], feed_forward_block, "feed-forward, post-LN", ()),
        )
    ),
    Part(
        f"{_LAYER}.forward",
        layer_forward,
        uses=(*_GIVEN, *_BLOCKS, f"{_LAYER}.forward"),
        summary="the whole layer",
        outputs=(f"a target of {T} positions", "a target of 1 position"),
    ),
    Part(
        "greedy_decode",
        greedy_decode,
        summary="argmax, fed back, until eos",
        outputs=(f"with max_len {MAX_LEN}", "with max_len 5"),
    ),
]

_CAUSAL = "return torch.ones(T, T, dtype=torch.bool).tril()"
_SELF = "self.self_attn(x, mask=tgt_mask)"
_CROSS = "attended = self.cross_attn(x, memory, mask=memory_mask)"
_LOOP = "while tgt.size(1) < max_len and not finished.all():"
_FILL = "        next_id = next_id.masked_fill(finished, eos_id)  # finished sequences repeat eos\n"
_DECODE = "logits = model.decode(memory, src_mask, tgt)"
_SELF_CALL = "x = self.self_attention_block(x, tgt_mask)"
_CROSS_CALL = "x = self.cross_attention_block(x, memory, memory_mask)"

_NORM_HINT = (
    "the {}'s residual sum goes through another sublayer's LayerNorm: each sublayer has a "
    "LayerNorm of its own, {} here"
)
_DROPOUT_HINT = (
    "the dropout on the {}'s output is missing: in train mode it goes through dropout "
    "before the residual sum, {} (section 5.4)"
)

_NORM_INSIDE_HINT = (
    "the {} block adds x after its LayerNorm, x + LayerNorm(Sublayer(x)): normalise the "
    "residual sum, {} (section 3.1)"
)
# Each block's residual sum: block -> (the solution's, with the LayerNorm inside, the paper's).
_NORM_INSIDE = {
    "self-attention": (
        f"self.norm1(x + self.dropout1({_SELF}))",
        f"x + self.norm1(self.dropout1({_SELF}))",
        "norm1(x + dropout1(self_attn(x)))",
    ),
    "cross-attention": (
        "self.norm2(x + self.dropout2(attended))",
        "x + self.norm2(self.dropout2(attended))",
        "norm2(x + dropout2(cross_attn(x, memory)))",
    ),
    "feed-forward": (
        "self.norm3(x + self.dropout3(self.feed_forward(x)))",
        "x + self.norm3(self.dropout3(self.feed_forward(x)))",
        "norm3(x + dropout3(feed_forward(x)))",
    ),
}

# The planted mistakes: name -> (part, hint, {old: new} in the solution's source).
CATALOGUE: dict[str, tuple[str, str, dict[str, str]]] = {
    "causal-diagonal-excluded": (
        "causal_mask",
        "the causal mask is off by one: position i may also attend to itself (j <= i, the "
        "diagonal included)",
        {_CAUSAL: "return torch.ones(T, T, dtype=torch.bool).tril(diagonal=-1)"},
    ),
    "causal-one-future": (
        "causal_mask",
        "the causal mask is off by one: position i may attend to the next position too, but "
        "only j <= i is allowed",
        {_CAUSAL: "return torch.ones(T, T, dtype=torch.bool).tril(diagonal=1)"},
    ),
    "causal-inverted": (
        "causal_mask",
        "the causal mask is inverted: True means 'may attend', so it is True where j <= i "
        "(the past and the position itself) and False for the future",
        {_CAUSAL: "return torch.ones(T, T, dtype=torch.bool).triu(diagonal=1)"},
    ),
    "causal-float": (
        "causal_mask",
        "the mask is a float tensor: make it bool (True = may attend), since a float mask is "
        "added to the attention scores instead of hiding keys",
        {_CAUSAL: "return torch.ones(T, T).tril()"},
    ),
    "causal-reversed": (
        "causal_mask",
        "the causal mask is reversed (triu for tril): True must be where j <= i, the position "
        "itself and the past, not where j >= i",
        {_CAUSAL: "return torch.ones(T, T, dtype=torch.bool).triu()"},
    ),
    "causal-additive-float": (
        "causal_mask",
        "the mask is PyTorch's additive float mask (0 where allowed, -inf for the future, as "
        "nn.Transformer.generate_square_subsequent_mask makes it): attnlab's masks are bool, "
        "True = may attend",
        {_CAUSAL: 'return torch.triu(torch.full((T, T), float("-inf")), diagonal=1)'},
    ),
    "target-mask-unused": (
        f"{_LAYER}.self_attention_block",
        "the target mask is not passed to the self-attention: without it each position sees "
        "the tokens after it",
        {_SELF: "self.self_attn(x)"},
    ),
    "target-mask-inverted": (
        f"{_LAYER}.self_attention_block",
        "the target mask is inverted before the self-attention: True already means 'may "
        "attend', so pass tgt_mask as it is (torch.nn.MultiheadAttention's masks are the "
        "other way round)",
        {_SELF: "self.self_attn(x, mask=~tgt_mask)"},
    ),
    "no-residual-self-attention": (
        f"{_LAYER}.self_attention_block",
        "the residual connection around the masked self-attention is missing: "
        "norm1(x + dropout1(self_attn(x)))",
        {"self.norm1(x + self.dropout1(": "self.norm1(self.dropout1("},
    ),
    "cross-attention-on-decoder": (
        f"{_LAYER}.cross_attention_block",
        "the cross-attention takes its keys and values from the decoder: they come from the "
        "encoder output (memory), only the queries come from x (section 3.2.3)",
        {_CROSS: "attended = self.cross_attn(x, x, mask=memory_mask)"},
    ),
    "memory-mask-unused": (
        f"{_LAYER}.cross_attention_block",
        "the memory mask is not passed to the cross-attention: padded source positions must "
        "get no attention",
        {_CROSS: "attended = self.cross_attn(x, memory)"},
    ),
    "cross-queries-from-memory": (
        f"{_LAYER}.cross_attention_block",
        "the cross-attention's queries come from the memory and its keys and values from x: "
        "it is the other way round, cross_attn(x, memory), queries from the decoder "
        "(section 3.2.3)",
        {_CROSS: "attended = self.cross_attn(memory, x, mask=memory_mask)"},
    ),
    "no-residual-cross-attention": (
        f"{_LAYER}.cross_attention_block",
        "the residual connection around the cross-attention is missing: "
        "norm2(x + dropout2(cross_attn(x, memory)))",
        {"self.norm2(x + self.dropout2(attended))": "self.norm2(self.dropout2(attended))"},
    ),
    "no-residual-feed-forward": (
        f"{_LAYER}.feed_forward_block",
        "the residual connection around the feed-forward is missing: "
        "norm3(x + dropout3(feed_forward(x)))",
        {"self.norm3(x + self.dropout3(": "self.norm3(self.dropout3("},
    ),
    "norm1-in-cross-attention": (
        _BLOCKS[1],
        _NORM_HINT.format("cross-attention", "norm2"),
        {"self.norm2(x + self.dropout2(attended))": "self.norm1(x + self.dropout2(attended))"},
    ),
    "norm2-in-feed-forward": (
        _BLOCKS[2],
        _NORM_HINT.format("feed-forward", "norm3"),
        {
            "self.norm3(x + self.dropout3(self.feed_forward(x)))": (
                "self.norm2(x + self.dropout3(self.feed_forward(x)))"
            )
        },
    ),
    "no-dropout-self-attention": (
        _BLOCKS[0],
        _DROPOUT_HINT.format("masked self-attention", "norm1(x + dropout1(self_attn(x)))"),
        {
            "self.norm1(x + self.dropout1(self.self_attn(x, mask=tgt_mask)))": (
                "self.norm1(x + self.self_attn(x, mask=tgt_mask))"
            )
        },
    ),
    "no-dropout-cross-attention": (
        _BLOCKS[1],
        _DROPOUT_HINT.format("cross-attention", "norm2(x + dropout2(cross_attn(x, memory)))"),
        {"self.norm2(x + self.dropout2(attended))": "self.norm2(x + attended)"},
    ),
    "no-dropout-feed-forward": (
        _BLOCKS[2],
        _DROPOUT_HINT.format("feed-forward", "norm3(x + dropout3(feed_forward(x)))"),
        {
            "self.norm3(x + self.dropout3(self.feed_forward(x)))": (
                "self.norm3(x + self.feed_forward(x))"
            )
        },
    ),
    "pre-ln": (
        _BLOCKS[0],
        "the LayerNorm comes before the sublayers (pre-LN): the paper normalises after the "
        "residual sum, LayerNorm(x + Sublayer(x)), in each of the three blocks",
        {
            f"self.norm1(x + self.dropout1({_SELF}))": (
                "x + self.dropout1(self.self_attn(self.norm1(x), mask=tgt_mask))"
            ),
            _CROSS: "attended = self.cross_attn(self.norm2(x), memory, mask=memory_mask)",
            "self.norm2(x + self.dropout2(attended))": "x + self.dropout2(attended)",
            "self.norm3(x + self.dropout3(self.feed_forward(x)))": (
                "x + self.dropout3(self.feed_forward(self.norm3(x)))"
            ),
        },
    ),
    "norm-inside-residual": (
        f"{_LAYER}.forward",
        "the LayerNorm is applied to the sublayer's output and the input added afterwards, "
        "x + LayerNorm(Sublayer(x)): the paper normalises the residual sum, "
        "LayerNorm(x + Sublayer(x)) (section 3.1), in each of the three blocks",
        {old: new for old, new, _ in _NORM_INSIDE.values()},
    ),
    **{  # the same in one block only
        f"norm-inside-residual-{block}": (part, _NORM_INSIDE_HINT.format(block, paper), {old: new})
        for part, (block, (old, new, paper)) in zip(_BLOCKS, _NORM_INSIDE.items(), strict=True)
    },
    "cross-gets-target-mask": (
        f"{_LAYER}.forward",
        "the cross-attention gets the target mask: it takes memory_mask (the source's "
        "padding); tgt_mask is the self-attention's",
        {_CROSS_CALL: "x = self.cross_attention_block(x, memory, tgt_mask)"},
    ),
    "sublayers-out-of-order": (
        f"{_LAYER}.forward",
        "the sublayers are in the wrong order: masked self-attention first, then the "
        "cross-attention over the memory, then the feed-forward (section 3.1)",
        {f"{_SELF_CALL}\n        {_CROSS_CALL}": f"{_CROSS_CALL}\n        {_SELF_CALL}"},
    ),
    "max-len-ignored": (
        "greedy_decode",
        "decoding does not stop at max_len: a target holds at most max_len tokens, bos_id "
        "included, even when no sequence has produced eos_id",
        {_LOOP: "while not finished.all():"},
    ),
    "max-len-off-by-one": (
        "greedy_decode",
        "decoding goes one token past max_len: the targets hold at most max_len tokens, "
        "bos_id included",
        {_LOOP: "while tgt.size(1) <= max_len and not finished.all():"},
    ),
    "stops-at-first-eos": (
        "greedy_decode",
        "decoding stops when the first sequence ends: go on until every sequence has "
        "produced eos_id",
        {_LOOP: "while tgt.size(1) < max_len and not finished.any():"},
    ),
    "no-eos-stop": (
        "greedy_decode",
        "decoding does not stop at eos: a sequence that has produced eos_id is finished, and "
        "decoding ends when every sequence is",
        {_LOOP: "while tgt.size(1) < max_len:", _FILL: ""},
    ),
    "finished-goes-on": (
        "greedy_decode",
        "a finished sequence goes on with other tokens: once it has produced eos_id, append "
        "eos_id to it at every later step",
        {_FILL: ""},
    ),
    "argmax-not-fed-back": (
        "greedy_decode",
        "the prediction is not fed back: each step decodes the whole target so far and "
        "appends the argmax at its last position to it",
        {_DECODE: "logits = model.decode(memory, src_mask, tgt[:, :1])"},
    ),
}

# Mistakes made in more parts than their own: name -> the other parts.
ALSO = {"pre-ln": _BLOCKS[1:]}
# Mistakes seen in train mode only (see Mistake.train).
TRAIN = {"no-dropout-self-attention", "no-dropout-cross-attention", "no-dropout-feed-forward"}

MISTAKES = [
    Mistake(name, part, hint, substitute("decoder", changes), ALSO.get(name, ()), name in TRAIN)
    for name, (part, hint, changes) in CATALOGUE.items()
]

PRACTICAL = Practical(
    name="decoder",
    title="the translation practical: causal mask, decoder layer, greedy decoding",
    template="decoder",
    solution="decoder",
    parts=PARTS,
    mistakes=MISTAKES,
    complete=("MultiHeadAttention", "FeedForward"),
)
