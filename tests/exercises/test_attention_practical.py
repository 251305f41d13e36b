"""The attention (reversal) practical: its solution against attnlab.nn and torch, and its
catalogue of mistakes, each planted into a copy of the solution and recognised alone."""

import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from attnlab import nn as anl
from attnlab.exercises.practicals import attention as practical_module
from attnlab.exercises.registry import practical
from attnlab.exercises.solutions import attention as solution

from ..cli_helpers import run_cli
from .helpers import assert_only_hint, check_here, plant

ATTENTION = practical("attention")
HINTS = {m.name: m.hint for m in ATTENTION.mistakes}
B, T, H, D_K = 2, 5, 3, 4
D = H * D_K


def mask() -> torch.Tensor:
    """Bool ``(B, 1, T, T)``, True = may attend, every row with an allowed key."""
    m = torch.rand(B, 1, T, T, generator=torch.Generator().manual_seed(3)) > 0.4
    m[..., 0] = True
    return m


def test_scaled_dot_product_equals_attnlab_and_torch():
    q, k, v = torch.randn(3, B, H, T, D_K).unbind(0)
    values, attention = solution.scaled_dot_product(q, k, v, mask())
    ours, weights = anl.scaled_dot_product_attention(q, k, v, mask())
    torch.testing.assert_close(values, ours)
    torch.testing.assert_close(attention, weights)
    torch.testing.assert_close(values, F.scaled_dot_product_attention(q, k, v, attn_mask=mask()))
    torch.testing.assert_close(attention.sum(-1), torch.ones(B, H, T))


def stacked_mha() -> solution.MultiheadAttention:
    torch.manual_seed(0)
    mha = solution.MultiheadAttention(D, H).eval()
    nn.init.normal_(mha.qkv_proj.bias)  # biases too, so that a wrong mapping shows
    nn.init.normal_(mha.o_proj.bias)
    return mha


def test_multihead_attention_equals_attnlabs_with_the_stacked_weights():
    mha, x = stacked_mha(), torch.randn(B, T, D)
    ref = anl.MultiHeadAttention(D, H, dropout=0.0).eval()
    ref.qkv_proj.load_state_dict(mha.qkv_proj.state_dict())  # same layout: Q, K, V rows
    ref.out_proj.load_state_dict(mha.o_proj.state_dict())
    out, attention = mha(x, mask=mask(), return_attention=True)
    want, weights = ref(x, mask=mask(), need_weights=True)
    torch.testing.assert_close(out, want)
    torch.testing.assert_close(attention, weights)
    torch.testing.assert_close(mha(x), ref(x))


def test_multihead_attention_equals_torchs():
    mha, x = stacked_mha(), torch.randn(B, T, D)
    twin = nn.MultiheadAttention(D, H, batch_first=True).eval()
    with torch.no_grad():
        twin.in_proj_weight.copy_(mha.qkv_proj.weight)
        twin.in_proj_bias.copy_(mha.qkv_proj.bias)
    twin.out_proj.load_state_dict(mha.o_proj.state_dict())
    hidden = (~mask()).expand(B, H, T, T).reshape(B * H, T, T)  # torch: True = may NOT attend
    want, weights = twin(x, x, x, attn_mask=hidden, average_attn_weights=False)
    out, attention = mha(x, mask=mask(), return_attention=True)
    torch.testing.assert_close(out, want)
    torch.testing.assert_close(attention, weights)


def test_encoder_block_equals_attnlabs_and_torchs_post_ln_layer():
    torch.manual_seed(1)
    block = solution.EncoderBlock(D, H, 20, dropout=0.1).eval()
    for p in block.parameters():
        nn.init.normal_(p, std=0.3)
    x = torch.randn(B, T, D)
    ref = anl.EncoderLayer(D, H, 20, dropout=0.1).eval()
    renamed = {"o_proj": "out_proj", "linear_net.0": "feed_forward.linear1"}
    renamed["linear_net.3"] = "feed_forward.linear2"
    state = {}
    for key, value in block.state_dict().items():
        for old, new in renamed.items():
            key = key.replace(old, new)
        state[key] = value
    ref.load_state_dict(state)
    torch.testing.assert_close(block(x, mask=mask()), ref(x, mask=mask()))

    twin = nn.TransformerEncoderLayer(D, H, 20, dropout=0.1, batch_first=True).eval()
    with torch.no_grad():
        twin.self_attn.in_proj_weight.copy_(block.self_attn.qkv_proj.weight)
        twin.self_attn.in_proj_bias.copy_(block.self_attn.qkv_proj.bias)
    twin.self_attn.out_proj.load_state_dict(block.self_attn.o_proj.state_dict())
    for name in ("linear1", "linear2", "norm1", "norm2"):
        source = {"linear1": block.linear_net[0], "linear2": block.linear_net[3]}.get(name)
        getattr(twin, name).load_state_dict((source or getattr(block, name)).state_dict())
    hidden = (~mask()).expand(B, H, T, T).reshape(B * H, T, T)
    torch.testing.assert_close(block(x, mask=mask()), twin(x, src_mask=hidden))


def test_cosine_warmup_scheduler_by_hand():
    weight = nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.Adam([weight], lr=0.5)
    scheduler = solution.CosineWarmupScheduler(optimizer, warmup=6, max_iters=40)
    assert isinstance(scheduler, torch.optim.lr_scheduler.LRScheduler)
    rates = [optimizer.param_groups[0]["lr"]]
    for _ in range(40):
        optimizer.step()
        scheduler.step()
        rates.append(optimizer.param_groups[0]["lr"])
    assert rates[0] == 0.0  # warmup starts at 0
    # step 3: 0.5 * 0.5 * (1 + cos(3 pi / 40)) * 3/6, cos(3 pi / 40) = 0.9723699...
    assert rates[3] == pytest.approx(0.125 * 1.9723699203976766)
    assert rates[6] == pytest.approx(0.25 * (1 + math.cos(6 * math.pi / 40)))  # warmup ends
    assert rates[20] == pytest.approx(0.25)  # halfway through the cosine: half the peak
    assert rates[40] == pytest.approx(0.0, abs=1e-12)
    assert rates[7] > rates[8] > rates[30]  # decays after warmup


def test_the_catalogue_has_distinct_hints_on_known_parts():
    assert len(ATTENTION.mistakes) >= 8
    assert len(set(HINTS.values())) == len(HINTS)
    assert {m.part for m in ATTENTION.mistakes} == {p.name for p in ATTENTION.parts}


def test_the_solution_passes_and_the_template_is_all_todo(tmp_path):
    problems, verdicts = check_here("attention", plant(tmp_path / "attention.py", "attention", {}))
    assert problems == []
    assert [v["status"] for v in verdicts.values()] == ["pass"] * len(ATTENTION.parts)
    template = tmp_path / "template" / "attention.py"
    template.parent.mkdir()
    template.write_text(Path(ATTENTION.template_module().__file__).read_text())
    problems, verdicts = check_here("attention", template)
    assert problems == []
    assert [v["status"] for v in verdicts.values()] == ["todo"] * len(ATTENTION.parts)


@pytest.mark.parametrize("mistake", practical_module.CATALOGUE)
def test_a_planted_catalogue_mistake_gets_its_own_hint(tmp_path, mistake):
    changes = practical_module.CATALOGUE[mistake][2]
    problems, verdicts = check_here(
        "attention", plant(tmp_path / "attention.py", "attention", changes)
    )
    assert problems == []
    assert_only_hint("attention", verdicts, mistake)


_SCALE = "scores = q @ k.transpose(-2, -1) / math.sqrt(d_k)"
_MASK = 'scores = scores.masked_fill(~mask, float("-inf"))'
_SPLIT = """        qkv = qkv.reshape(B, T, 3, self.num_heads, self.head_dim)  # (B, T, 3, H, d_k)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)  # each (B, H, T, d_k)
"""
STUDENT_STYLE = {
    "scaled-by-heads": {"d_k = q.size(-1)": "d_k = q.shape[1]"},
    "cosine-after-warmup": {
        "factor = 0.5 * (1 + math.cos(math.pi * epoch / self.max_num_iters))": (
            "progress = (epoch - self.warmup) / max(1, self.max_num_iters - self.warmup)\n"
            "        factor = 0.5 * (1.0 + math.cos(math.pi * progress))"
        )
    },
    "no-scaling": {_SCALE: "scores = torch.matmul(q, k.transpose(-1, -2))"},
    "softmax-wrong-axis": {
        _MASK: "scores = scores.masked_fill(mask == 0, -9e15)",
        "scores.softmax(dim=-1)": "F.softmax(scores, dim=2)",
    },
    "mask-inverted": {_MASK: "scores = scores.masked_fill(mask, -1e9)"},
    "heads-split-wrong": {
        _SPLIT: "        q, k, v = qkv.chunk(3, dim=-1)\n"
        "        q, k, v = (t.contiguous().view(B, self.num_heads, T, -1) for t in (q, k, v))\n"
    },
    "heads-split-wrong-q": {  # k and v through view and transpose, q through a plain view
        _SPLIT: "        q, k, v = qkv.chunk(3, dim=-1)\n"
        "        q = q.contiguous().view(B, self.num_heads, T, self.head_dim)\n"
        "        k = k.view(B, T, self.num_heads, self.head_dim).transpose(1, 2)\n"
        "        v = v.view(B, T, self.num_heads, self.head_dim).transpose(1, 2)\n"
    },
    "heads-split-wrong-v": {
        _SPLIT: "        q, k, v = qkv.chunk(3, dim=-1)\n"
        "        q = q.view(B, T, self.num_heads, self.head_dim).transpose(1, 2)\n"
        "        k = k.view(B, T, self.num_heads, self.head_dim).transpose(1, 2)\n"
        "        v = v.reshape(B, self.num_heads, T, self.head_dim)\n"
    },
    "cosine-period-minus-warmup": {
        "factor = 0.5 * (1 + math.cos(math.pi * epoch / self.max_num_iters))": (
            "decay_steps = self.max_num_iters - self.warmup\n"
            "        factor = 0.5 * (1.0 + math.cos(math.pi * epoch / decay_steps))"
        )
    },
    "qkv-interleaved": {  # the layout of a well-known tutorial, not this template's
        _SPLIT: "        qkv = qkv.reshape(B, T, self.num_heads, 3 * self.head_dim)\n"
        "        q, k, v = qkv.permute(0, 2, 1, 3).chunk(3, dim=-1)\n"
    },
    "mask-filled-with-zero": {_MASK: "scores = scores.masked_fill(mask == 0, 0)"},
    "mask-after-softmax": {
        _MASK: "pass",
        "attention = scores.softmax(dim=-1)": (
            "attention = F.softmax(scores, dim=-1)\n"
            "    attention = attention * mask if mask is not None else attention"
        ),
    },
    "no-output-projection": {
        "out = self.o_proj(values)": "out = values  # W^O: TODO later",
    },
    "no-warmup": {
        "        if epoch <= self.warmup:\n            factor *= epoch / self.warmup\n": ""
    },
    "scores-multiplied": {_SCALE: "scores = torch.matmul(q, k.transpose(-1, -2)) * d_k**0.5"},
    "norm1-reused": {
        "return self.norm2(x + self.dropout(self.linear_net(x)))": (
            "return self.norm1(self.dropout(self.linear_net(x)) + x)"
        )
    },
    "warmup-replaces-cosine": {
        "        if epoch <= self.warmup:\n            factor *= epoch / self.warmup\n": (
            "        if epoch <= self.warmup:\n            return epoch / self.warmup\n"
        )
    },
    "norm-inside-residual": {  # x + norm(sublayer(x)), one statement at a time
        "x = self.norm1(x + self.dropout(self.self_attn(x, mask=mask)))": (
            "attended = self.self_attn(x, mask=mask)\n"
            "        x = x + self.norm1(self.dropout(attended))"
        ),
        "return self.norm2(x + self.dropout(self.linear_net(x)))": (
            "out = self.dropout(self.linear_net(x))\n        return x + self.norm2(out)"
        ),
    },
}


@pytest.mark.parametrize("mistake", STUDENT_STYLE)
def test_a_mistake_written_another_way_is_recognised(tmp_path, mistake):
    text_changes = dict(STUDENT_STYLE[mistake])
    if "F." in "".join(text_changes.values()):
        text_changes["import math\n"] = "import math\n\nimport torch.nn.functional as F\n"
    path = plant(tmp_path / "attention.py", "attention", text_changes)
    problems, verdicts = check_here("attention", path)
    assert problems == []
    assert_only_hint("attention", verdicts, mistake)


def test_a_correct_variant_written_another_way_passes(tmp_path):
    """-1e9 instead of -inf, the scores through einsum, the heads through view and transpose."""
    changes = {
        _SCALE: "scores = torch.einsum('bhid,bhjd->bhij', q, k) / d_k**0.5",
        _MASK: "scores = scores.masked_fill(mask == 0, -1e9)",
        _SPLIT: "        q, k, v = (t.view(B, T, self.num_heads, -1).transpose(1, 2) "
        "for t in qkv.split(self.embed_dim, dim=-1))\n",
    }
    problems, verdicts = check_here(
        "attention", plant(tmp_path / "attention.py", "attention", changes)
    )
    assert problems == []
    assert {v["status"] for v in verdicts.values()} == {"pass"}


def test_check_runs_both_practicals_in_child_processes(tmp_path, capsys):
    """End to end through the command: a planted mistake in attention.py, decoder.py solved."""
    plant(tmp_path / "attention.py", "attention", practical_module.CATALOGUE["qkv-interleaved"][2])
    plant(tmp_path / "decoder.py", "decoder", {})
    code, out, _ = run_cli(capsys, "exercise", "check", str(tmp_path), "--json")
    report = json.loads(out)
    assert code == 1 and report["status"] == 1
    files = {f["practical"]: f for f in report["files"]}
    assert {p["status"] for p in files["decoder"]["parts"]} == {"pass"}
    verdicts = {p["part"]: p for p in files["attention"]["parts"]}
    assert verdicts["scaled_dot_product"]["status"] == "pass"
    assert verdicts["CosineWarmupScheduler.get_lr_factor"]["status"] == "pass"
    for part in ("MultiheadAttention.forward", "EncoderBlock.forward"):
        assert verdicts[part]["message"] == HINTS["qkv-interleaved"]
