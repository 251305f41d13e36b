"""The Llama practical: its solution against attnlab.nn's blocks and Hugging Face's Llama
(the same weights give the same outputs), and its catalogue of mistakes, each planted into a
copy of the solution and recognised alone."""

import math
from pathlib import Path

import pytest
import torch

from attnlab.exercises.practicals import llama as practical_module
from attnlab.exercises.registry import practical
from attnlab.exercises.solutions import llama as solution
from attnlab.nn import BlockSpec, EncoderLayer, FeedForward, MultiHeadAttention, RMSNorm
from attnlab.nn.attention import repeat_kv
from attnlab.nn.rotary import RotaryEmbedding

from ..conftest import fp32_atol
from ..hugging_face import transformers_or_skip
from .helpers import assert_only_hint, check_here, plant

LLAMA = practical("llama")
HINTS = {m.name: m.hint for m in LLAMA.mistakes}
B, T, D, H, H_KV, D_FF, EPS, THETA = 3, 7, 32, 4, 2, 40, 1e-5, 500.0


def spec() -> BlockSpec:
    """attnlab's Llama block, as :class:`attnlab.models.LlamaConfig` builds it."""
    return BlockSpec(
        d_model=D, num_heads=H, d_ff=D_FF, dropout=0.0, activation="swiglu", norm_first=True,
        layer_norm_eps=EPS, bias=False, norm="rmsnorm", num_kv_heads=H_KV,
        positions="rotary", rope_theta=THETA,
    )  # fmt: skip


def random_block() -> solution.LlamaBlock:
    torch.manual_seed(0)
    block = solution.LlamaBlock(D, H, H_KV, D_FF, EPS, THETA).eval()
    with torch.no_grad():
        for p in block.parameters():
            p.normal_(std=0.3)  # the RMSNorm gains too, so that a wrong mapping shows
    return block


def attnlab_attention_state(attn: solution.GroupedQueryAttention) -> dict[str, torch.Tensor]:
    """attnlab stacks W_Q, W_K and W_V (rows: the Q heads, the K heads, the V heads)."""
    qkv = torch.cat([attn.w_q.weight, attn.w_k.weight, attn.w_v.weight])
    return {"qkv_proj.weight": qkv, "out_proj.weight": attn.w_o.weight}


def attnlab_feed_forward_state(ffn: solution.SwiGLU) -> dict[str, torch.Tensor]:
    """attnlab stacks W1 and W3 in linear1 (rows: W1, then W3); linear2 is W2."""
    return {
        "linear1.weight": torch.cat([ffn.w1.weight, ffn.w3.weight]),
        "linear2.weight": ffn.w2.weight,
    }


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_rms_norm_equals_attnlabs(dtype):
    ours = solution.RMSNorm(D, eps=0.1)
    with torch.no_grad():
        ours.weight.normal_()
    reference = RMSNorm(D, eps=0.1)
    reference.load_state_dict(ours.state_dict())
    x = (3 * torch.randn(B, T, D) + 1).to(dtype)
    got = ours.to(dtype)(x)
    assert got.dtype == dtype
    torch.testing.assert_close(got, reference.to(dtype)(x))


def test_rotary_tables_and_rotation_equal_attnlabs_rotary_embedding():
    reference = RotaryEmbedding(8, base=THETA)
    x = torch.randn(B, H, T, 8)
    for start in (0, 5):
        cos, sin = solution.rotary_cos_sin(T, 8, THETA, start)
        want = reference(x, torch.arange(start, start + T))
        torch.testing.assert_close(solution.apply_rotary(x, cos, sin), want)


def test_rotary_turns_pair_i_and_i_plus_half_by_position_times_theta_i():
    x, position = torch.randn(1, 1, 1, 8), 3
    cos, sin = solution.rotary_cos_sin(1, 8, 10000.0, start=position)
    got = solution.apply_rotary(x, cos, sin)[0, 0, 0]
    for i in range(4):  # by hand: the 2-D rotation of (x[i], x[i + 4]) by 3 * 10000^(-2i/8)
        angle = position * 10000.0 ** (-2 * i / 8)
        a, b = x[0, 0, 0, i].item(), x[0, 0, 0, i + 4].item()
        want = [
            a * math.cos(angle) - b * math.sin(angle),
            b * math.cos(angle) + a * math.sin(angle),
        ]
        torch.testing.assert_close(got[[i, i + 4]], torch.tensor(want))


def test_swiglu_equals_attnlabs_feed_forward():
    torch.manual_seed(1)
    ours = solution.SwiGLU(D, D_FF)
    reference = FeedForward(D, D_FF, activation="swiglu", bias=False).eval()
    reference.load_state_dict(attnlab_feed_forward_state(ours))
    x = torch.randn(B, T, D)
    torch.testing.assert_close(ours(x), reference(x))


def test_repeat_kv_equals_attnlabs_and_gives_each_group_its_head():
    x = torch.randn(B, H_KV, T, 6)
    got = solution.repeat_kv(x, H)
    torch.testing.assert_close(got, repeat_kv(x, H))
    for h in range(H):  # query heads 0, 1 read key/value head 0; heads 2, 3 head 1
        assert torch.equal(got[:, h], x[:, h // (H // H_KV)])


def test_grouped_query_attention_equals_attnlabs():
    attn = random_block().self_attn
    reference = MultiHeadAttention(spec=spec()).eval()
    reference.load_state_dict(attnlab_attention_state(attn))
    x = torch.randn(B, T, D)
    torch.testing.assert_close(attn(x), reference(x, is_causal=True))


def test_llama_block_equals_attnlabs_encoder_layer_with_the_llama_spec(device):
    """On every device: the solution builds its rotary tables and mask where x is."""
    block = random_block()
    reference = EncoderLayer(spec=spec()).eval()
    attention = attnlab_attention_state(block.self_attn)
    feed_forward = attnlab_feed_forward_state(block.feed_forward)
    state = {
        "norm1.weight": block.norm1.weight,
        "norm2.weight": block.norm2.weight,
        **{f"self_attn.{k}": v for k, v in attention.items()},
        **{f"feed_forward.{k}": v for k, v in feed_forward.items()},
    }
    reference.load_state_dict(state)
    block, reference = block.to(device), reference.to(device)
    x = torch.randn(B, T, D, device=device)
    atol = fp32_atol(device, 1e-5)
    torch.testing.assert_close(block(x), reference(x, is_causal=True), atol=atol, rtol=1.3e-6)


def test_llama_block_equals_hugging_faces_decoder_layer():
    transformers = transformers_or_skip()
    from transformers.models.llama import modeling_llama as llama

    config = transformers.LlamaConfig(
        hidden_size=D, intermediate_size=D_FF, num_attention_heads=H, num_key_value_heads=H_KV,
        rms_norm_eps=EPS, rope_theta=THETA, attention_bias=False, mlp_bias=False,
    )  # fmt: skip
    config._attn_implementation = "eager"
    theirs = llama.LlamaDecoderLayer(config, layer_idx=0).eval()
    block = random_block()
    attn, ffn = block.self_attn, block.feed_forward
    theirs.load_state_dict({
        "input_layernorm.weight": block.norm1.weight,
        "post_attention_layernorm.weight": block.norm2.weight,
        "self_attn.q_proj.weight": attn.w_q.weight, "self_attn.k_proj.weight": attn.w_k.weight,
        "self_attn.v_proj.weight": attn.w_v.weight, "self_attn.o_proj.weight": attn.w_o.weight,
        "mlp.gate_proj.weight": ffn.w1.weight, "mlp.up_proj.weight": ffn.w3.weight,
        "mlp.down_proj.weight": ffn.w2.weight,
    })  # fmt: skip
    x = torch.randn(B, T, D)
    positions = torch.arange(T)[None]  # (1, T)
    cos_sin = llama.LlamaRotaryEmbedding(config=config)(x, positions)
    future = torch.ones(T, T, dtype=torch.bool).triu(diagonal=1)  # (T, T)
    additive = torch.zeros(1, 1, T, T).masked_fill(future, torch.finfo(x.dtype).min)
    with torch.no_grad():
        want = theirs(
            x, attention_mask=additive, position_ids=positions, position_embeddings=cos_sin
        )
        want = want[0] if isinstance(want, tuple) else want  # transformers 4 returns a tuple
        torch.testing.assert_close(block(x), want)


def test_the_catalogue_has_distinct_hints_on_known_parts():
    assert len(LLAMA.mistakes) >= 12
    assert len(set(HINTS.values())) == len(HINTS)
    assert {m.part for m in LLAMA.mistakes} <= {p.name for p in LLAMA.parts}
    assert {p.name for p in LLAMA.parts} <= {m.part for m in LLAMA.mistakes}


def test_the_template_keeps_the_solutions_init_methods():
    template = LLAMA.template_module()
    for name in ("RMSNorm", "SwiGLU", "GroupedQueryAttention", "LlamaBlock"):
        theirs = getattr(template, name).__init__
        assert theirs.__code__.co_code == getattr(solution, name).__init__.__code__.co_code


def test_the_solution_passes_and_the_template_is_all_todo(tmp_path):
    problems, verdicts = check_here("llama", plant(tmp_path / "llama.py", "llama", {}))
    assert problems == []
    assert [v["status"] for v in verdicts.values()] == ["pass"] * len(LLAMA.parts)
    template = tmp_path / "template" / "llama.py"
    template.parent.mkdir()
    template.write_text(Path(LLAMA.template_module().__file__).read_text())
    problems, verdicts = check_here("llama", template)
    assert problems == []
    assert [v["status"] for v in verdicts.values()] == ["todo"] * len(LLAMA.parts)


@pytest.mark.parametrize(
    "mistake", [m for m in practical_module.CATALOGUE if m not in practical_module.OWN_PART_ONLY]
)
def test_a_planted_catalogue_mistake_gets_its_own_hint(tmp_path, mistake):
    changes = practical_module.CATALOGUE[mistake][2]
    problems, verdicts = check_here("llama", plant(tmp_path / "llama.py", "llama", changes))
    assert problems == []
    assert_only_hint("llama", verdicts, mistake)


def test_rotate_half_turned_the_wrong_way_is_named_in_apply_rotary(tmp_path):
    """Written as students slice it; in attention it gives the scores of cos and sin swapped,
    whose hint names both."""
    changes = {
        "    x1, x2 = x.chunk(2, dim=-1)  # each (B, H, T, d_head / 2)\n"
        "    rotated_half = torch.cat((-x2, x1), dim=-1)  # (B, H, T, d_head)\n": (
            "    half = x.shape[-1] // 2\n"
            "    rotated_half = torch.cat((x[..., half:], -x[..., :half]), dim=-1)\n"
        )
    }
    problems, verdicts = check_here("llama", plant(tmp_path / "llama.py", "llama", changes))
    assert problems == []
    failing = {part: v["mistake"] for part, v in verdicts.items() if v["status"] != "pass"}
    assert failing == {
        "apply_rotary": "rotate-half-reversed",
        "GroupedQueryAttention.forward": "rotary-cos-sin-swapped",
        "LlamaBlock.forward": "rotary-cos-sin-swapped",
    }
    assert verdicts["apply_rotary"]["message"] == HINTS["rotate-half-reversed"]
    assert "rotate_half turns the wrong way" in HINTS["rotary-cos-sin-swapped"]


_NORM = """        x32 = x.float()  # (..., d_model), normalised in float32
        mean_square = x32.pow(2).mean(dim=-1, keepdim=True)  # (..., 1)
        normalized = x32 * torch.rsqrt(mean_square + self.eps)  # (..., d_model)
        return self.weight * normalized.to(x.dtype)  # (..., d_model)
"""
_GATE = "hidden = F.silu(self.w1(x)) * self.w3(x)"
_REPEAT = "return x.repeat_interleave(groups, dim=1)"
_ATTEND = "h = x + self.self_attn(self.norm1(x))"
_FEED = "return h + self.feed_forward(self.norm2(h))"
STUDENT_STYLE = {
    "rmsnorm-mean-subtracted": {  # LayerNorm without its bias, as torch writes it
        _NORM: "        return F.layer_norm(x, x.shape[-1:], self.weight, None, self.eps)\n"
    },
    "rmsnorm-eps-outside-sqrt": {
        _NORM: "        rms = torch.sqrt(torch.mean(x * x, dim=-1, keepdim=True))\n"
        "        return self.weight * x / (rms + self.eps)\n"
    },
    "rmsnorm-norm-not-rms": {
        _NORM: "        norm = x.norm(dim=-1, keepdim=True)\n"
        "        return self.weight * x / torch.sqrt(norm**2 + self.eps)\n"
    },
    "swiglu-silu-on-w3": {_GATE: "hidden = self.w3(x).sigmoid() * self.w3(x) * self.w1(x)"},
    "swiglu-gelu": {_GATE: "hidden = torch.nn.GELU()(self.w1(x)) * self.w3(x)"},
    "gqa-heads-tiled": {
        _REPEAT: "return torch.cat([x] * groups, dim=1)",
    },
    "post-norm": {
        _ATTEND: "x = self.norm1(self.self_attn(x) + x)\n        h = x",
        _FEED: "return self.norm2(self.feed_forward(h) + h)",
    },
    "no-scaling": {
        "scores = q @ k.transpose(-2, -1) / math.sqrt(d_head)": (
            "scores = torch.einsum('bhqd,bhkd->bhqk', q, k)"
        )
    },
    "rotary-tables-of-d_model": {
        "rotary_cos_sin(T, d_head, self.rope_theta, device=x.device)": (
            "rotary_cos_sin(T, x.size(-1), self.rope_theta, device=x.device)"
        )
    },
    "causal-diagonal-excluded": {
        "causal = torch.ones(T, T, dtype=torch.bool, device=x.device).tril()": (
            "causal = torch.tril(torch.ones(T, T, device=x.device), diagonal=-1).bool()"
        )
    },
    "heads-split-wrong": {
        f"self.{w}(x).view(B, T, {h}, d_head).transpose(1, 2)": (
            f"self.{w}(x).reshape(B, {h}, T, -1)"
        )
        for w, h in (("w_q", "H"), ("w_k", "H_kv"), ("w_v", "H_kv"))
    },
}


@pytest.mark.parametrize("mistake", STUDENT_STYLE)
def test_a_mistake_written_another_way_is_recognised(tmp_path, mistake):
    path = plant(tmp_path / "llama.py", "llama", STUDENT_STYLE[mistake])
    problems, verdicts = check_here("llama", path)
    assert problems == []
    assert_only_hint("llama", verdicts, mistake)


def test_correct_variants_written_another_way_pass(tmp_path):
    """RMSNorm in the input's dtype, repeat_kv by expand, F.scaled_dot_product_attention."""
    changes = {
        _NORM: "        rms = x.pow(2).mean(-1, keepdim=True).add(self.eps).sqrt()\n"
        "        return x / rms * self.weight\n",
        _REPEAT: "B, H_kv, T, d = x.shape\n"
        "    return x[:, :, None].expand(B, H_kv, groups, T, d).reshape(B, H_kv * groups, T, d)",
        "        scores = q @ k.transpose(-2, -1) / math.sqrt(d_head)  # (B, H, T, T)\n"
        "        causal = torch.ones(T, T, dtype=torch.bool, device=x.device).tril()"
        "  # (T, T): j <= i\n"
        '        scores = scores.masked_fill(~causal, float("-inf"))\n'
        "        heads = scores.softmax(dim=-1) @ v  # (B, H, T, d_head)\n": (
            "        heads = F.scaled_dot_product_attention(q, k, v, is_causal=True)\n"
        ),
    }
    problems, verdicts = check_here("llama", plant(tmp_path / "llama.py", "llama", changes))
    assert problems == []
    assert {v["status"] for v in verdicts.values()} == {"pass"}
