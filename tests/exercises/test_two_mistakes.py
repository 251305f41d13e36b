"""Two mistakes at once: a part whose outputs match no single mistake of the catalogue is
compared with pairs of them, and its verdict names both.

Each pair is planted into a copy of the solution, as a student would write it. A part that
uses the code of both mistakes must name the pair (both hints); a part that uses one of them
names that one or passes; a part that uses neither passes.
"""

import itertools

import pytest

from attnlab.exercises.core import Mistake, made_together
from attnlab.exercises.registry import practical

from .helpers import check_here, plant


def uses(part, mistake: Mistake) -> bool:
    return mistake.part in (part.name, *part.needed_names())


def assert_pair_named(name: str, first: str, second: str, tmp_path) -> None:
    exercise = practical(name)
    a, b = (next(m for m in exercise.mistakes if m.name == n) for n in (first, second))
    pair = made_together(a, b)
    assert pair is not None
    path = plant(tmp_path / f"{name}.py", name, dict(pair.broken.changes))
    problems, verdicts = check_here(name, path)
    assert problems == []
    for part in exercise.parts:
        verdict = verdicts[part.name]
        if uses(part, a) and uses(part, b):
            assert verdict["mistake"] == f"{first}+{second}", (part.name, verdict)
            assert verdict["message"] == f"two mistakes: {a.hint}; and {b.hint}"
        elif uses(part, a) or uses(part, b):
            one = first if uses(part, a) else second
            assert verdict["status"] == "pass" or verdict["mistake"] == one, (part.name, verdict)
        else:
            assert verdict["status"] == "pass", (part.name, verdict)
    named = {n for v in verdicts.values() if v["mistake"] for n in v["mistake"].split("+")}
    assert named == {first, second}, verdicts


ATTENTION = practical("attention")
# Every pair of these ten, one per kind of mistake (the catalogue's later entries are more of
# the same kinds: pairing all of them would be a hundred more checks).
PAIRED = (
    "no-scaling",
    "softmax-wrong-axis",
    "mask-inverted",
    "heads-split-wrong",
    "qkv-interleaved",
    "heads-merged-wrong",
    "no-residual",
    "pre-ln",
    "no-warmup",
    "cosine-wrong-period",
)
# Pairs that rewrite the same line of the solution cannot be made together.
SAME_CODE = {
    ("heads-split-wrong", "qkv-interleaved"),
    ("no-residual", "pre-ln"),
    ("mask-inverted", "mask-filled-with-zero"),
    ("softmax-wrong-axis", "mask-after-softmax"),
}
ATTENTION_PAIRS = [
    *itertools.combinations(PAIRED, 2),
    ("softmax-over-heads", "no-output-projection"),
    ("mask-filled-with-zero", "gelu-not-relu"),
    ("mask-after-softmax", "no-residual-feed-forward"),
    ("no-scaling", "block-mask-unused"),
]
ATTENTION_PAIRS = [pair for pair in ATTENTION_PAIRS if pair not in SAME_CODE]


def test_mistakes_that_rewrite_the_same_code_are_not_paired():
    by_name = {m.name: m for m in ATTENTION.mistakes}
    assert set(PAIRED) <= set(by_name)
    for first, second in SAME_CODE:
        assert made_together(by_name[first], by_name[second]) is None
    assert len(ATTENTION_PAIRS) == 47  # 45 pairs of ten, less two, and four more


@pytest.mark.parametrize("pair", ATTENTION_PAIRS, ids="+".join)
def test_every_pair_of_the_attention_practicals_mistakes_is_named(tmp_path, pair):
    assert_pair_named("attention", *pair, tmp_path)


@pytest.mark.parametrize(
    "pair",
    [
        ("no-scaling", "no-residual"),  # in the attention and in the layer: the layer names both
        ("mask-inverted", "no-relu"),
        ("variance-unbiased", "cls-appended"),  # no part but the whole encoder uses both
        ("sin-cos-swapped", "pre-ln"),
    ],
    ids="+".join,
)
def test_pairs_of_the_encoder_practicals_mistakes_are_named(tmp_path, pair):
    assert_pair_named("encoder", *pair, tmp_path)


@pytest.mark.parametrize(
    "pair",
    [
        ("target-mask-unused", "memory-mask-unused"),
        ("causal-one-future", "cross-attention-on-decoder"),
    ],
    ids="+".join,
)
def test_pairs_of_the_decoder_practicals_mistakes_are_named(tmp_path, pair):
    assert_pair_named("decoder", *pair, tmp_path)


@pytest.mark.parametrize(
    "pair",
    [
        ("rmsnorm-eps-outside-sqrt", "swiglu-gelu"),  # no part but the block uses both
        ("gqa-heads-tiled", "no-scaling"),  # the attention and the block name both
        ("rotary-base-1000", "no-residual-feed-forward"),
    ],
    ids="+".join,
)
def test_pairs_of_the_llama_practicals_mistakes_are_named(tmp_path, pair):
    assert_pair_named("llama", *pair, tmp_path)
