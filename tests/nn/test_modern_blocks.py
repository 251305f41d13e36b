"""The post-2017 blocks, each against an independent reference: rotary positions (a hand
rotation, Hugging Face's Llama rotary), grouped-query attention (torch's multi-head attention,
a hand-written per-head loop), RMSNorm (torch.nn.RMSNorm) and SwiGLU (a hand computation);
and the paper's default blocks keep their parameter names."""

import dataclasses
import math

import pytest
import torch
from torch import nn

import attnlab.nn.attention as attention_module
from attnlab.interop import to_torch, torch_per_head_mask
from attnlab.nn import (
    BlockSpec,
    DecoderLayer,
    DecoderLayerCache,
    EncoderLayer,
    FeedForward,
    KVCache,
    MultiHeadAttention,
    RMSNorm,
    RotaryEmbedding,
    causal_mask,
    combine_masks,
    fused_scaled_dot_product_attention,
    padding_mask,
    scaled_dot_product_attention,
)
from attnlab.nn.torch_twin import TorchTransformerEncoder

from ..hugging_face import transformers_or_skip

# -- rotary positions --------------------------------------------------------------------------


def rotate_by_hand(x: torch.Tensor, position: int, base: float) -> torch.Tensor:
    """RoFormer's rotation of one vector ``x (d,)`` at ``position``, pair by pair, with the
    half-split pairing ``(i, i + d/2)``: each pair times the 2-D rotation matrix of angle
    ``position * base^(-2i/d)``, angles in Python floats."""
    d = x.numel()
    out = torch.empty_like(x)
    for i in range(d // 2):
        angle = position * base ** (-2 * i / d)
        rotation = torch.tensor(
            [[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]]
        )
        out[[i, i + d // 2]] = rotation @ x[[i, i + d // 2]]
    return out


def test_rotary_of_one_pair_is_a_rotation_by_the_position():
    # d_head = 2: a single pair with theta_0 = base^0 = 1, so position m turns it by m radians.
    rotary = RotaryEmbedding(2)
    x = torch.tensor([1.0, 0.0]).expand(1, 1, 4, 2)  # (B, H, T, d_head), four positions
    out = rotary(x, torch.arange(4))
    expected = torch.stack([torch.tensor([math.cos(m), math.sin(m)]) for m in range(4)])
    torch.testing.assert_close(out[0, 0], expected)


@pytest.mark.parametrize("base", [10000.0, 100.0])
def test_rotary_equals_a_hand_rotation_of_every_pair(base):
    rotary = RotaryEmbedding(8, base=base)
    x = torch.randn(2, 3, 5, 8)  # (B, H, T, d_head)
    positions = torch.tensor([[0, 1, 2, 3, 4], [7, 8, 9, 10, 11]])  # (B, T)
    out = rotary(x, positions)
    for b in range(2):
        for h in range(3):
            for t in range(5):
                expected = rotate_by_hand(x[b, h, t], int(positions[b, t]), base)
                torch.testing.assert_close(out[b, h, t], expected, atol=1e-5, rtol=1e-5)


def test_rotary_scores_depend_only_on_the_offset():
    # RoFormer section 3.2.2: <R(m) q, R(n) k> is a function of m - n.
    rotary = RotaryEmbedding(16)
    q, k = torch.randn(1, 1, 1, 16), torch.randn(1, 1, 1, 16)

    def score(m: int, n: int) -> torch.Tensor:
        return (rotary(q, torch.tensor([m])) * rotary(k, torch.tensor([n]))).sum()

    torch.testing.assert_close(score(3, 1), score(10, 8), atol=1e-5, rtol=0)
    torch.testing.assert_close(score(0, 5), score(20, 25), atol=1e-5, rtol=0)
    assert not torch.allclose(score(3, 1), score(3, 2), atol=1e-3)


def test_rotary_equals_hugging_face_llama():
    transformers_or_skip()
    from transformers import LlamaConfig
    from transformers.models.llama import modeling_llama as llama

    config = LlamaConfig(hidden_size=64, num_attention_heads=4, rope_theta=500.0)
    hf_rotary = llama.LlamaRotaryEmbedding(config=config)
    ours = RotaryEmbedding(16, base=500.0)
    q, k = torch.randn(2, 4, 6, 16), torch.randn(2, 2, 6, 16)
    positions = torch.tensor([[0, 1, 2, 3, 4, 5], [0, 0, 0, 1, 2, 3]])  # (B, T)
    cos, sin = hf_rotary(q, positions)
    hf_q, hf_k = llama.apply_rotary_pos_emb(q, k, cos, sin)
    torch.testing.assert_close(ours(q, positions), hf_q, atol=1e-6, rtol=0)
    torch.testing.assert_close(ours(k, positions), hf_k, atol=1e-6, rtol=0)
    shared = torch.arange(6)  # (T,): the same positions for every row
    cos, sin = hf_rotary(q, shared[None])
    torch.testing.assert_close(
        ours(q, shared), llama.apply_rotary_pos_emb(q, k, cos, sin)[0], atol=1e-6, rtol=0
    )


def test_rotary_has_no_state_and_checks_its_inputs():
    attention = MultiHeadAttention(spec=BlockSpec(d_model=16, num_heads=2, positions="rotary"))
    assert set(attention.state_dict()) == {
        "qkv_proj.weight",
        "qkv_proj.bias",
        "out_proj.weight",
        "out_proj.bias",
    }
    with pytest.raises(ValueError, match=r"positions must have shape \(T,\) = \(3,\)"):
        RotaryEmbedding(8)(torch.randn(2, 1, 3, 8), torch.arange(4))
    with pytest.raises(ValueError, match="even d_head; got 7"):
        RotaryEmbedding(7)


# -- attention with rotary positions and grouped key/value heads ---------------------------


def attention_by_hand(mha: MultiHeadAttention, x: torch.Tensor, rotary_base=None) -> torch.Tensor:
    """Causal self-attention of ``x (B, T, D)`` one head at a time, from ``mha``'s weights:
    query head ``h`` uses key/value head ``h // (H / H_kv)`` (Ainslie et al. 2023), queries and
    keys rotated by hand when ``rotary_base`` is given."""
    B, T, D = x.shape
    H, H_kv, d = mha.num_heads, mha.num_kv_heads, mha.d_head
    W = mha.qkv_proj.weight
    b = mha.qkv_proj.bias
    Wq, Wk, Wv = W.split([H * d, H_kv * d, H_kv * d])
    bq, bk, bv = b.split([H * d, H_kv * d, H_kv * d])
    out = torch.zeros(B, T, H * d)
    for batch in range(B):
        for h in range(H):
            g = h // (H // H_kv)
            q = x[batch] @ Wq[h * d : (h + 1) * d].T + bq[h * d : (h + 1) * d]  # (T, d)
            k = x[batch] @ Wk[g * d : (g + 1) * d].T + bk[g * d : (g + 1) * d]
            v = x[batch] @ Wv[g * d : (g + 1) * d].T + bv[g * d : (g + 1) * d]
            if rotary_base is not None:
                q = torch.stack([rotate_by_hand(q[t], t, rotary_base) for t in range(T)])
                k = torch.stack([rotate_by_hand(k[t], t, rotary_base) for t in range(T)])
            scores = q @ k.T / math.sqrt(d)  # (T, T)
            scores = scores.masked_fill(torch.ones(T, T).triu(1).bool(), float("-inf"))
            out[batch, :, h * d : (h + 1) * d] = scores.softmax(-1) @ v
    return mha.out_proj(out)


@pytest.mark.parametrize("num_kv_heads", [4, 2, 1])
@pytest.mark.parametrize("positions", ["absolute", "rotary"])
@pytest.mark.parametrize("need_weights", [False, True])
def test_grouped_query_attention_equals_a_per_head_loop(num_kv_heads, positions, need_weights):
    spec = BlockSpec(d_model=32, num_heads=4, num_kv_heads=num_kv_heads, positions=positions)
    mha = MultiHeadAttention(spec=spec).eval()
    with torch.no_grad():
        mha.qkv_proj.bias.normal_()
    assert mha.qkv_proj.weight.shape == ((4 + 2 * num_kv_heads) * 8, 32)
    x = torch.randn(2, 7, 32)
    out = mha(x, is_causal=True, need_weights=need_weights)
    out = out[0] if need_weights else out
    expected = attention_by_hand(mha, x, 10000.0 if positions == "rotary" else None)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=0)


def test_as_many_key_value_heads_as_heads_is_torch_multi_head_attention():
    spec = BlockSpec(d_model=32, num_heads=4, dropout=0.0)
    grouped = MultiHeadAttention(spec=dataclasses.replace(spec, num_kv_heads=4)).eval()
    paper = MultiHeadAttention(spec=spec).eval()
    paper.load_state_dict(grouped.state_dict())  # the same parameters, names and shapes
    reference = to_torch(paper).eval()  # nn.MultiheadAttention with in_proj_weight = qkv_proj
    x = torch.randn(3, 6, 32)
    mask = combine_masks(causal_mask(6), padding_mask(torch.tensor([6, 4, 2])))
    expected, _ = reference(x, x, x, attn_mask=torch_per_head_mask(mask, 4), need_weights=False)
    torch.testing.assert_close(grouped(x, mask=mask), expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize("mask_kind", ["none", "causal", "padding and causal"])
@pytest.mark.parametrize(
    "fused_gqa",
    [
        pytest.param(
            True,
            marks=pytest.mark.skipif(
                not attention_module._FUSED_HAS_GQA, reason="enable_gqa arrived in torch 2.5"
            ),
        ),
        False,
    ],
)
def test_grouped_explicit_and_fused_paths_agree(mask_kind, fused_gqa, monkeypatch):
    # fused_gqa=False: the torch < 2.5 path, which repeats the key/value heads itself.
    monkeypatch.setattr(attention_module, "_FUSED_HAS_GQA", fused_gqa)
    q, k, v = torch.randn(2, 6, 5, 8), torch.randn(2, 2, 5, 8), torch.randn(2, 2, 5, 8)
    mask = {
        "none": None,
        "causal": causal_mask(5),
        "padding and causal": combine_masks(causal_mask(5), padding_mask(torch.tensor([5, 3]))),
    }[mask_kind]
    explicit, weights = scaled_dot_product_attention(q, k, v, mask)
    assert weights.shape == (2, 6, 5, 5)
    fused = fused_scaled_dot_product_attention(q, k, v, mask)
    torch.testing.assert_close(fused, explicit, atol=1e-5, rtol=0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_angles_handed_to_attention_equal_a_hand_rotation_at_their_positions(dtype):
    # What a model does: compute the angles once (float32) and give them to every layer.
    spec = BlockSpec(d_model=32, num_heads=4, num_kv_heads=2, positions="rotary", dropout=0.0)
    mha = MultiHeadAttention(spec=spec).eval()
    x = torch.randn(2, 7, 32)
    angles = mha.rotary.cos_sin(torch.arange(7), torch.float32)
    torch.testing.assert_close(
        mha(x, is_causal=True, rotary_cos_sin=angles),
        attention_by_hand(mha, x, 10000.0),
        atol=1e-5,
        rtol=0,
    )
    with torch.autocast("cpu", dtype=dtype, enabled=dtype != torch.float32):
        handed = mha(x, is_causal=True, rotary_cos_sin=angles)  # cast to the queries' dtype
        own = mha(x, is_causal=True, positions=torch.arange(7))
    assert handed.dtype == own.dtype and torch.equal(handed, own)


@pytest.mark.parametrize("num_kv_heads", [4, 2, 1])
def test_the_cache_holds_only_key_value_heads_at_their_rotated_positions(num_kv_heads):
    spec = BlockSpec(
        d_model=32, num_heads=4, num_kv_heads=num_kv_heads, positions="rotary", dropout=0.0
    )
    mha = MultiHeadAttention(spec=spec).eval()
    x = torch.randn(2, 11, 32)
    full = mha(x, is_causal=True)
    cache = KVCache()
    steps = [mha(x[:, :4], is_causal=True, cache=cache)]  # the prompt, then one at a time
    steps += [mha(x[:, t : t + 1], is_causal=True, cache=cache) for t in range(4, 11)]
    assert cache.k.shape == cache.v.shape == (2, num_kv_heads, 11, 8)
    torch.testing.assert_close(torch.cat(steps, dim=1), full, atol=1e-5, rtol=0)

    # The new token of a cached step sits at position len(cache) = 10: passing that position
    # explicitly changes nothing, and another one changes the output.
    def step(positions):
        cache = KVCache()
        mha(x[:, :10], is_causal=True, cache=cache)
        return mha(x[:, 10:], is_causal=True, cache=cache, positions=positions)

    torch.testing.assert_close(step(None), full[:, 10:], atol=1e-5, rtol=0)
    torch.testing.assert_close(step(torch.tensor([10])), full[:, 10:], atol=1e-5, rtol=0)
    assert not torch.allclose(step(torch.tensor([3])), full[:, 10:], atol=1e-3)


def test_cross_attention_with_grouped_heads_reuses_its_cache():
    spec = BlockSpec(d_model=32, num_heads=4, num_kv_heads=2, positions="rotary", dropout=0.0)
    layer = DecoderLayer(spec=spec).eval()
    x, memory = torch.randn(2, 6, 32), torch.randn(2, 9, 32)
    full = layer(x, memory, is_causal=True)
    cache = DecoderLayerCache()
    steps = [layer(x[:, :3], memory, is_causal=True, cache=cache)]
    steps += [layer(x[:, t : t + 1], None, is_causal=True, cache=cache) for t in range(3, 6)]
    assert cache.self_attn.k.shape == (2, 2, 6, 8) and cache.cross_attn.k.shape == (2, 2, 9, 8)
    torch.testing.assert_close(torch.cat(steps, dim=1), full, atol=1e-5, rtol=0)


# -- RMSNorm and SwiGLU ------------------------------------------------------------------------


def _random_rms_norm(eps: float) -> RMSNorm:
    ours = RMSNorm(24, eps=eps)
    with torch.no_grad():
        ours.weight.normal_()
    return ours


@pytest.mark.parametrize("eps", [1e-6, 1e-2])
@pytest.mark.skipif(not hasattr(nn, "RMSNorm"), reason="torch.nn.RMSNorm arrived in torch 2.4")
def test_rms_norm_equals_torch(eps):
    ours = _random_rms_norm(eps)
    reference = nn.RMSNorm(24, eps=eps)
    reference.load_state_dict(ours.state_dict())
    x = 3 * torch.randn(2, 5, 24) + 1
    torch.testing.assert_close(ours(x), reference(x))


@pytest.mark.parametrize("eps", [1e-6, 1e-2])
def test_rms_norm_equals_a_hand_computation(eps):
    ours = _random_rms_norm(eps)
    x = 3 * torch.randn(2, 5, 24) + 1
    # x / sqrt(mean(x^2) + eps) * g, no re-centring
    by_hand = x / torch.sqrt((x**2).mean(-1, keepdim=True) + eps) * ours.weight
    torch.testing.assert_close(ours(x), by_hand)


def test_rms_norm_refuses_a_bad_width_or_eps_and_an_input_of_another_width():
    with pytest.raises(ValueError, match="d_model must be a whole number >= 1; got 0"):
        RMSNorm(0)
    with pytest.raises(ValueError, match="d_model must be at most 65,536; got 1,000,000,000,0"):
        RMSNorm(10**12)  # the allocator's RuntimeError (4 TB) before
    with pytest.raises(ValueError, match="eps must be a finite number >= 0; got nan"):
        RMSNorm(8, eps=float("nan"))
    with pytest.raises(
        ValueError, match=r"RMSNorm\(8\) normalises inputs \(..., 8\); got \(2, 3, 5\)"
    ):
        RMSNorm(8)(torch.randn(2, 3, 5))  # torch: "The size of tensor a (8) must match ..."


def test_the_spec_puts_rms_norm_everywhere_and_swiglu_in_the_feed_forward():
    spec = BlockSpec(
        d_model=16, num_heads=4, d_ff=40, norm="rmsnorm", activation="swiglu", bias=False,
        layer_norm_eps=1e-6, norm_first=True,
    )  # fmt: skip
    layer = EncoderLayer(spec=spec)
    assert isinstance(layer.norm1, RMSNorm) and isinstance(layer.norm2, RMSNorm)
    assert layer.norm1.eps == 1e-6
    assert not [name for name, _ in layer.named_parameters() if name.endswith("bias")]
    ff = layer.feed_forward
    # W1 and W3 stacked in linear1, as Q, K and V are in qkv_proj
    assert [tuple(lin.weight.shape) for lin in (ff.linear1, ff.linear2)] == [(80, 16), (16, 40)]


@pytest.mark.parametrize("grad", [True, False])
def test_swiglu_equals_a_hand_computation(grad):
    # Shazeer 2020: FFN_SwiGLU(x) = (Swish_1(x W) * x V) W2, Swish_1(z) = z / (1 + e^-z).
    ff = FeedForward(16, 24, activation="swiglu", bias=False).eval()
    (W1, W3), W2 = ff.linear1.weight.split(24), ff.linear2.weight
    x = torch.randn(3, 4, 16)
    gate = x @ W1.T
    expected = (gate / (1 + torch.exp(-gate)) * (x @ W3.T)) @ W2.T
    with torch.set_grad_enabled(grad):
        out = ff(x)
    torch.testing.assert_close(out, expected, atol=1e-6, rtol=1e-5)


# -- the paper's blocks are unchanged ----------------------------------------------------------


def test_default_blocks_keep_their_parameter_names_and_shapes():
    encoder_layer = EncoderLayer(spec=BlockSpec(d_model=16, num_heads=4, d_ff=32))
    assert {k: tuple(v.shape) for k, v in encoder_layer.state_dict().items()} == {
        "self_attn.qkv_proj.weight": (48, 16),
        "self_attn.qkv_proj.bias": (48,),
        "self_attn.out_proj.weight": (16, 16),
        "self_attn.out_proj.bias": (16,),
        "norm1.weight": (16,),
        "norm1.bias": (16,),
        "feed_forward.linear1.weight": (32, 16),
        "feed_forward.linear1.bias": (32,),
        "feed_forward.linear2.weight": (16, 32),
        "feed_forward.linear2.bias": (16,),
        "norm2.weight": (16,),
        "norm2.bias": (16,),
    }
    decoder_layer = DecoderLayer(spec=BlockSpec(d_model=16, num_heads=4, d_ff=32))
    names = set(decoder_layer.state_dict())
    assert {n for n in names if n.startswith("cross_attn.")} == {
        "cross_attn.qkv_proj.weight",
        "cross_attn.qkv_proj.bias",
        "cross_attn.out_proj.weight",
        "cross_attn.out_proj.bias",
    }
    assert len(names) == 12 + 4 + 2
    assert all(isinstance(m, nn.LayerNorm) for m in (encoder_layer.norm1, decoder_layer.norm3))
    assert encoder_layer.self_attn.rotary is None and not encoder_layer.feed_forward.gated


@pytest.mark.parametrize(
    "variant, message",
    [
        ({"positions": "rotary"}, "nn.MultiheadAttention has no grouped-query attention and no"),
        ({"num_kv_heads": 2}, "nn.MultiheadAttention has no grouped-query attention and no"),
        ({"norm": "rmsnorm"}, "torch.nn's layers have LayerNorm only; got RMSNorm"),
    ],
)
def test_torch_has_no_counterpart_of_the_later_variants(variant, message):
    spec = BlockSpec(d_model=16, num_heads=4, d_ff=32, **variant)
    with pytest.raises(ValueError, match=f"no counterpart of \\['{next(iter(variant))}'\\]"):
        TorchTransformerEncoder(1, spec=spec)
    with pytest.raises(ValueError, match=message):
        to_torch(EncoderLayer(spec=spec))


def test_torch_has_no_swiglu():
    spec = BlockSpec(d_model=16, num_heads=4, d_ff=32, activation="swiglu")
    with pytest.raises(ValueError, match="activations relu and gelu; got 'swiglu'"):
        TorchTransformerEncoder(1, spec=spec)


@pytest.mark.parametrize("base", [0.0, float("nan"), float("inf"), 0.5])
def test_rotary_embedding_refuses_a_base_that_gives_no_frequencies(base):
    # base 0 or nan was accepted, and every rotated query and key came out nan
    with pytest.raises(ValueError, match="base must be a finite number >= 1; got"):
        RotaryEmbedding(8, base=base)


@pytest.mark.parametrize(
    "d_head, message",
    [
        (-2, "d_head must be a whole number >= 1; got -2"),  # built, with no frequencies
        (None, "d_head must be a whole number >= 1; got None"),  # TypeError from % before
        (2 * 10**12, "d_head must be at most 65,536; got 2,000,000,000,000"),  # 4 TB of arange
    ],
)
def test_rotary_embedding_refuses_a_head_width_it_cannot_build(d_head, message):
    with pytest.raises(ValueError, match=message):
        RotaryEmbedding(d_head)
