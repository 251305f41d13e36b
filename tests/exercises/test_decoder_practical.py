"""The decoder (translation) practical: its solution against attnlab.nn, torch and attnlab's
greedy search, and its catalogue of mistakes, each planted into a copy of the solution and
recognised alone."""

import inspect
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from attnlab import nn as anl
from attnlab.exercises.practicals import decoder as practical_module
from attnlab.exercises.registry import practical
from attnlab.exercises.solutions import decoder as solution
from attnlab.generation import greedy_search
from attnlab.models.seq2seq import Seq2SeqConfig, Seq2SeqTransformer

from .helpers import assert_only_hint, check_here, plant

DECODER = practical("decoder")
HINTS = {m.name: m.hint for m in DECODER.mistakes}
B, T, S, D, H, D_FF = 3, 5, 7, 12, 4, 20


def test_causal_mask_equals_attnlabs():
    for length in (1, 4, 7):
        mask = solution.causal_mask(length)
        assert mask.dtype == torch.bool
        assert torch.equal(mask, anl.causal_mask(length))
    assert solution.causal_mask(3).tolist() == [
        [True, False, False],
        [True, True, False],
        [True, True, True],
    ]


def random_layer() -> solution.DecoderLayer:
    torch.manual_seed(0)
    layer = solution.DecoderLayer(D, H, D_FF, dropout=0.1).eval()
    for p in layer.parameters():
        nn.init.normal_(p, std=0.3)  # biases and norm gains too, so that a wrong mapping shows
    return layer


def inputs() -> tuple[torch.Tensor, ...]:
    x, memory = torch.randn(B, T, D), torch.randn(B, S, D)
    memory_mask = anl.padding_mask(torch.tensor([7, 3, 5]))  # (B, 1, 1, S)
    return x, memory, solution.causal_mask(T), memory_mask


def test_decoder_layer_equals_attnlabs_with_the_same_state_dict():
    layer, (x, memory, tgt_mask, memory_mask) = random_layer(), inputs()
    ref = anl.DecoderLayer(D, H, D_FF, dropout=0.1).eval()
    ref.load_state_dict(layer.state_dict())  # same names: qkv_proj, out_proj, linear1, ...
    want = ref(x, memory, self_mask=tgt_mask, memory_mask=memory_mask)
    torch.testing.assert_close(layer(x, memory, tgt_mask, memory_mask), want)


def test_decoder_layer_equals_torchs_post_ln_layer():
    layer, (x, memory, tgt_mask, memory_mask) = random_layer(), inputs()
    twin = nn.TransformerDecoderLayer(D, H, D_FF, dropout=0.1, batch_first=True).eval()
    with torch.no_grad():
        for ours, theirs in (
            (layer.self_attn, twin.self_attn),
            (layer.cross_attn, twin.multihead_attn),
        ):
            theirs.in_proj_weight.copy_(ours.qkv_proj.weight)
            theirs.in_proj_bias.copy_(ours.qkv_proj.bias)
            theirs.out_proj.load_state_dict(ours.out_proj.state_dict())
    twin.linear1.load_state_dict(layer.feed_forward.linear1.state_dict())
    twin.linear2.load_state_dict(layer.feed_forward.linear2.state_dict())
    for name in ("norm1", "norm2", "norm3"):
        getattr(twin, name).load_state_dict(getattr(layer, name).state_dict())
    want = twin(  # torch's masks: True = may NOT attend
        x, memory, tgt_mask=~tgt_mask, memory_key_padding_mask=~memory_mask.view(B, S)
    )
    torch.testing.assert_close(layer(x, memory, tgt_mask, memory_mask), want)


def test_the_template_gives_the_solutions_attention_and_feed_forward():
    template = DECODER.template_module()
    for name in ("MultiHeadAttention", "FeedForward"):
        theirs = getattr(template, name)
        assert inspect.getsource(theirs) == inspect.getsource(getattr(solution, name))


def copy_answer(src: torch.Tensor, lengths: list[int], max_len: int) -> torch.Tensor:
    """By hand: bos, the source, eos, then eos until the longest is done; cut at max_len."""
    width = min(max(lengths) + 2, max_len)
    rows = [[1, *src[b, :n].tolist(), *[2] * (width - n - 1)] for b, n in enumerate(lengths)]
    return torch.tensor([row[:width] for row in rows])


def test_greedy_decode_copies_with_the_copy_model():
    src = torch.tensor([[3, 4, 5, 6, 7, 8], [9, 8, 7, 0, 0, 0], [5, 5, 3, 4, 0, 0]])
    src_mask = anl.padding_mask(src, 0)
    model = practical_module.CopyModel(seed=0)
    for max_len in (10, 8, 5, 1):
        got = solution.greedy_decode(model, src, src_mask, max_len, 1, 2)
        assert torch.equal(got, copy_answer(src, [6, 3, 4], max_len)), max_len


class StepwiseModel:
    """An attnlab Seq2SeqTransformer behind the practical's encode/decode interface, with
    padding and bos ruled out as attnlab's greedy search rules them out."""

    def __init__(self, model: Seq2SeqTransformer):
        self.model = model

    def encode(self, src: torch.Tensor, src_mask: torch.Tensor) -> torch.Tensor:
        return self.model.encode(src)[0]

    def decode(self, memory, src_mask, tgt):
        logits = self.model.decode(tgt, memory, src_mask).clone()
        logits[..., [0, 1]] = float("-inf")
        return logits


def partly_trained_model() -> Seq2SeqTransformer:
    """A tiny model trained for 40 steps to copy: lively enough that its outputs vary and
    end at different steps (an untrained one repeats one token)."""
    torch.manual_seed(0)
    layers = {"num_encoder_layers": 1, "num_decoder_layers": 1}
    config = Seq2SeqConfig(9, 9, d_model=16, num_heads=2, d_ff=32, dropout=0.0, **layers)
    model = Seq2SeqTransformer(config)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensors: threads only add overhead
    try:
        for _ in range(40):
            train_step(model, optimizer)
    finally:
        torch.set_num_threads(threads)
    return model.eval()


def train_step(model: Seq2SeqTransformer, optimizer: torch.optim.Optimizer) -> None:
    """One step of learning to copy sources of 1 to 5 tokens, then eos."""
    lengths = torch.randint(1, 6, (32,))
    src = torch.randint(3, 9, (32, 5)).masked_fill(torch.arange(5) >= lengths[:, None], 0)
    tgt = torch.cat([src, torch.zeros(32, 1, dtype=torch.long)], dim=1)
    tgt[torch.arange(32), lengths] = 2  # eos after the copy
    logits = model(src, model.shift_right(tgt))
    loss = F.cross_entropy(logits.transpose(1, 2), tgt, ignore_index=0)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()


def test_greedy_decode_equals_attnlabs_greedy_search():
    model = partly_trained_model()
    src = torch.randint(3, 9, (6, 5), generator=torch.Generator().manual_seed(1))
    src[1, 3:] = src[4, 2:] = 0
    want = greedy_search(model, src, max_new_tokens=12, use_cache=False)  # pad after eos
    assert (want == 0).any() and (want != 0).all(dim=0).any(), "rows end at different steps"
    got = solution.greedy_decode(StepwiseModel(model), src, anl.padding_mask(src, 0), 13, 1, 2)
    assert torch.equal(got[:, 0], torch.ones(6, dtype=torch.long))
    is_eos = (got[:, 1:] == 2).long()
    after_eos = is_eos.cumsum(dim=1) - is_eos > 0  # (B, L - 1)
    assert torch.equal(got[:, 1:].masked_fill(after_eos, 0), want)


def test_the_catalogue_has_distinct_hints_on_known_parts():
    assert len(DECODER.mistakes) >= 8
    assert len(set(HINTS.values())) == len(HINTS)
    assert {m.part for m in DECODER.mistakes} <= {p.name for p in DECODER.parts}


def test_the_solution_passes_and_the_template_is_all_todo(tmp_path):
    problems, verdicts = check_here("decoder", plant(tmp_path / "decoder.py", "decoder", {}))
    assert problems == []
    assert [v["status"] for v in verdicts.values()] == ["pass"] * len(DECODER.parts)
    template = tmp_path / "template" / "decoder.py"
    template.parent.mkdir()
    template.write_text(Path(DECODER.template_module().__file__).read_text())
    problems, verdicts = check_here("decoder", template)
    assert problems == []
    assert [v["status"] for v in verdicts.values()] == ["todo"] * len(DECODER.parts)


def assert_named(verdicts: dict, mistake: str) -> None:
    """:func:`assert_only_hint`, but for the LayerNorm inside the residual of all three blocks:
    each block names its own (a student may make it in that block only), the layer all three."""
    if mistake != "norm-inside-residual":
        return assert_only_hint("decoder", verdicts, mistake)
    failing = {part: v["mistake"] for part, v in verdicts.items() if v["status"] != "pass"}
    assert failing == {
        "DecoderLayer.self_attention_block": "norm-inside-residual-self-attention",
        "DecoderLayer.cross_attention_block": "norm-inside-residual-cross-attention",
        "DecoderLayer.feed_forward_block": "norm-inside-residual-feed-forward",
        "DecoderLayer.forward": "norm-inside-residual",
    }


@pytest.mark.parametrize("mistake", practical_module.CATALOGUE)
def test_a_planted_catalogue_mistake_gets_its_own_hint(tmp_path, mistake):
    changes = practical_module.CATALOGUE[mistake][2]
    problems, verdicts = check_here("decoder", plant(tmp_path / "decoder.py", "decoder", changes))
    assert problems == []
    assert_named(verdicts, mistake)


_CAUSAL = "return torch.ones(T, T, dtype=torch.bool).tril()"
_LOOP = """    while tgt.size(1) < max_len and not finished.all():
        logits = model.decode(memory, src_mask, tgt)  # (B, T, vocab)
        next_id = logits[:, -1].argmax(dim=-1)  # (B,)
        next_id = next_id.masked_fill(finished, eos_id)  # finished sequences repeat eos
        tgt = torch.cat([tgt, next_id[:, None]], dim=1)  # (B, T + 1)
        finished |= next_id == eos_id
"""
STUDENT_STYLE = {
    "causal-diagonal-excluded": {_CAUSAL: "return torch.triu(torch.ones(T, T), diagonal=0) == 0"},
    "causal-one-future": {_CAUSAL: "return torch.triu(torch.ones(T, T), diagonal=2) == 0"},
    "causal-inverted": {_CAUSAL: "return torch.triu(torch.ones(T, T), diagonal=1).bool()"},
    "causal-float": {_CAUSAL: "return torch.tril(torch.ones(T, T))"},
    "no-eos-stop": {  # the loop of a well-known annotated implementation
        _LOOP: """    for _ in range(max_len - 1):
        out = model.decode(memory, src_mask, tgt)
        _, next_word = torch.max(out[:, -1], dim=1)
        tgt = torch.cat([tgt, next_word.unsqueeze(1)], dim=1)
"""
    },
    "argmax-not-fed-back": {"logits[:, -1].argmax(dim=-1)": "logits[:, 0].argmax(dim=-1)"},
    "causal-reversed": {_CAUSAL: "return torch.triu(torch.ones(T, T)).bool()"},
    "causal-additive-float": {_CAUSAL: "return nn.Transformer.generate_square_subsequent_mask(T)"},
    "target-mask-inverted": {
        "self.self_attn(x, mask=tgt_mask)": "self.self_attn(x, mask=tgt_mask.logical_not())"
    },
    "cross-queries-from-memory": {
        "self.cross_attn(x, memory, mask=memory_mask)": (
            "self.cross_attn(memory, memory=x, mask=memory_mask)"
        )
    },
    "sublayers-out-of-order": {
        "x = self.self_attention_block(x, tgt_mask)\n"
        "        x = self.cross_attention_block(x, memory, memory_mask)\n"
        "        return self.feed_forward_block(x)": (
            "h = self.cross_attention_block(x, memory, memory_mask)\n"
            "        h = self.self_attention_block(h, tgt_mask)\n"
            "        return self.feed_forward_block(h)"
        )
    },
    "stops-at-first-eos": {
        "while tgt.size(1) < max_len and not finished.all():": (
            "while tgt.size(1) < max_len:\n        if finished.any():\n            break"
        )
    },
    "norm1-in-cross-attention": {
        "return self.norm2(x + self.dropout2(attended))": (
            "return self.norm1(self.dropout2(attended) + x)"
        )
    },
    "norm2-in-feed-forward": {
        "return self.norm3(x + self.dropout3(self.feed_forward(x)))": (
            "return self.norm2(x + self.dropout2(self.feed_forward(x)))"
        )
    },
    "norm-inside-residual": {
        "return self.norm1(x + self.dropout1(self.self_attn(x, mask=tgt_mask)))": (
            "h = self.self_attn(x, mask=tgt_mask)\n        return x + self.norm1(self.dropout1(h))"
        ),
        "return self.norm2(x + self.dropout2(attended))": (
            "return self.norm2(self.dropout2(attended)) + x"
        ),
        "return self.norm3(x + self.dropout3(self.feed_forward(x)))": (
            "return x + self.norm3(self.dropout3(self.feed_forward(x)))"
        ),
    },
    "max-len-ignored": {
        "while tgt.size(1) < max_len and not finished.all():": "while True:",
        "        finished |= next_id == eos_id\n": (
            "        finished |= next_id == eos_id\n        if finished.all():\n            break\n"
        ),
    },
}


@pytest.mark.parametrize("mistake", STUDENT_STYLE)
def test_a_mistake_written_another_way_is_recognised(tmp_path, mistake):
    path = plant(tmp_path / "decoder.py", "decoder", STUDENT_STYLE[mistake])
    problems, verdicts = check_here("decoder", path)
    assert problems == []
    assert_named(verdicts, mistake)


def test_correct_variants_written_another_way_pass(tmp_path):
    """The mask as ``triu(...) == 0``, a per-row loop that breaks at eos, one sublayer inline."""
    changes = {
        _CAUSAL: "return torch.triu(torch.ones(T, T), diagonal=1) == 0",
        _LOOP: """    for _ in range(max_len - 1):
        logits = model.decode(memory, src_mask, tgt)[:, -1]  # (B, vocab)
        next_id = torch.where(finished, eos_id, logits.max(dim=-1).indices)
        tgt = torch.cat([tgt, next_id.unsqueeze(-1)], dim=-1)
        finished = finished | (next_id == eos_id)
        if bool(finished.all()):
            break
""",
        "x = self.self_attention_block(x, tgt_mask)": (
            "x = self.norm1(x + self.dropout1(self.self_attn(x, None, tgt_mask)))"
        ),
    }
    problems, verdicts = check_here("decoder", plant(tmp_path / "decoder.py", "decoder", changes))
    assert problems == []
    assert {v["status"] for v in verdicts.values()} == {"pass"}
