import math
import re

import pytest
import torch
import torch.nn.functional as F

from attnlab.nn import (
    BlockSpec,
    KVCache,
    MultiHeadAttention,
    causal_mask,
    combine_masks,
    fused_scaled_dot_product_attention,
    padding_mask,
    scaled_dot_product_attention,
)

from ..conftest import fp32_atol


def qkv(B=2, H=3, T_q=5, T_k=7, d=8):
    return torch.randn(B, H, T_q, d), torch.randn(B, H, T_k, d), torch.randn(B, H, T_k, d)


def test_explicit_attention_matches_hand_computation():
    q, k, v = qkv(B=1, H=1, T_q=2, T_k=3, d=4)
    scores = torch.einsum("bhqd,bhkd->bhqk", q, k) / math.sqrt(4)
    expected = torch.exp(scores) / torch.exp(scores).sum(-1, keepdim=True)
    out, weights = scaled_dot_product_attention(q, k, v)
    torch.testing.assert_close(weights, expected)
    torch.testing.assert_close(out, expected @ v)


@pytest.mark.parametrize("mask_kind", ["none", "padding", "causal", "both", "per-head"])
def test_explicit_and_fused_paths_agree(mask_kind, device):
    q, k, v = (t.to(device) for t in qkv(T_q=6, T_k=6))
    masks = {
        "none": None,
        "padding": padding_mask(torch.tensor([6, 3])),
        "causal": causal_mask(6),
        "both": combine_masks(causal_mask(6), padding_mask(torch.tensor([4, 6]))),
        "per-head": torch.rand(2, 3, 6, 6) > 0.3,
    }
    mask = masks[mask_kind]
    mask = None if mask is None else mask.to(device)
    explicit, _ = scaled_dot_product_attention(q, k, v, mask)
    fused = fused_scaled_dot_product_attention(q, k, v, mask)
    assert (explicit - fused).abs().max() <= fp32_atol(device, 1e-5)  # CUDA: 1e-4


@pytest.mark.parametrize("shape", [(5, 1), (1, 1, 5, 1), (2, 1, 5, 1)])
def test_a_mask_broadcast_along_the_keys_gives_the_explicit_result(shape, device):
    # One entry per query, the same for every key: torch 2.3's CPU kernel read such a mask
    # out of bounds, giving values that changed from call to call.
    q, k, v = (t.to(device) for t in qkv(T_q=5, T_k=7))
    mask = (torch.rand(shape) > 0.4).to(device)  # False: a query that may see no key
    explicit, _ = scaled_dot_product_attention(q, k, v, mask)
    for _ in range(5):
        fused = fused_scaled_dot_product_attention(q, k, v, mask)
        assert (explicit - fused).abs().max() <= fp32_atol(device, 1e-5)  # CUDA: 1e-4


def test_fused_is_causal_equals_explicit_causal_mask():
    q, k, v = qkv(T_q=6, T_k=6)
    explicit, _ = scaled_dot_product_attention(q, k, v, causal_mask(6))
    fused = fused_scaled_dot_product_attention(q, k, v, is_causal=True)
    assert (explicit - fused).abs().max() <= 1e-5


def test_query_with_no_allowed_key_gives_zeros_not_nan_on_both_paths():
    q, k, v = qkv(B=1, H=1, T_q=3, T_k=4)
    mask = torch.ones(3, 4, dtype=torch.bool)
    mask[1] = False
    q.requires_grad_(True)
    out, weights = scaled_dot_product_attention(q, k, v, mask)
    assert torch.equal(weights[0, 0, 1], torch.zeros(4))
    assert torch.equal(out[0, 0, 1], torch.zeros(8))
    out.sum().backward()
    assert torch.isfinite(q.grad).all()
    fused = fused_scaled_dot_product_attention(q.detach(), k, v, mask)
    assert torch.equal(fused[0, 0, 1], torch.zeros(8))
    assert torch.isfinite(fused).all()


def test_attention_weights_sum_to_one_over_allowed_keys():
    q, k, v = qkv()
    mask = torch.rand(2, 1, 5, 7) > 0.4
    mask[..., 0] = True  # every query keeps at least one key
    _, weights = scaled_dot_product_attention(q, k, v, mask)
    torch.testing.assert_close(weights.sum(-1), torch.ones(2, 3, 5))
    assert (weights[~mask.expand_as(weights)] == 0).all()


def test_mha_shapes_self_and_cross():
    mha = MultiHeadAttention(d_model=16, num_heads=4)
    x, memory = torch.randn(2, 5, 16), torch.randn(2, 9, 16)
    assert mha(x).shape == (2, 5, 16)
    out, weights = mha(x, memory, need_weights=True)
    assert out.shape == (2, 5, 16) and weights.shape == (2, 4, 5, 9)


def test_mha_need_weights_path_equals_fused_path():
    mha = MultiHeadAttention(d_model=16, num_heads=4).eval()
    x, memory = torch.randn(2, 5, 16), torch.randn(2, 9, 16)
    mask = padding_mask(torch.tensor([9, 4]))
    fused = mha(x, memory, mask=mask)
    explicit, _ = mha(x, memory, mask=mask, need_weights=True)
    assert (fused - explicit).abs().max() <= 1e-5
    causal_fused = mha(x, is_causal=True)
    causal_explicit, weights = mha(x, is_causal=True, need_weights=True)
    assert (causal_fused - causal_explicit).abs().max() <= 1e-5
    assert (weights[..., causal_mask(5).logical_not()] == 0).all()


def test_mha_init_is_xavier_uniform_with_zero_bias():
    mha = MultiHeadAttention(d_model=64, num_heads=8)
    bound = math.sqrt(6 / (64 + 3 * 64))
    assert mha.qkv_proj.weight.abs().max() <= bound
    assert mha.qkv_proj.weight.abs().max() > 0.9 * bound
    assert torch.count_nonzero(mha.qkv_proj.bias) == 0
    assert torch.count_nonzero(mha.out_proj.bias) == 0


def test_mha_attention_dropout_only_in_training():
    mha = MultiHeadAttention(d_model=16, num_heads=2, dropout=0.5)
    x = torch.randn(2, 5, 16)
    _, dropped = mha(x, need_weights=True)
    mha.eval()
    _, weights = mha(x, need_weights=True)
    torch.testing.assert_close(weights.sum(-1), torch.ones(2, 2, 5))
    # some weights dropped, the survivors scaled by 1 / (1 - p) = 2
    kept = dropped != 0
    assert 0.3 < kept.float().mean() < 0.7
    torch.testing.assert_close(dropped[kept], 2 * weights[kept])


@pytest.mark.parametrize("need_weights", [False, True])
def test_mha_attention_dropout_keeps_the_expected_output_on_both_paths(need_weights):
    # Inverted dropout on the weights: each row of the batch draws its own mask, and the mean
    # output over many rows is the eval output (the output is linear in the weights). The
    # fused path (need_weights=False) hands dropout to torch's kernel: it must be passed.
    torch.manual_seed(0)
    mha = MultiHeadAttention(d_model=16, num_heads=2, dropout=0.5)
    with torch.no_grad():
        mha.out_proj.bias.zero_()
    x = torch.randn(1, 5, 16).expand(4000, 5, 16)
    with torch.no_grad():
        trained = mha(x, need_weights=need_weights)
        trained = trained[0] if need_weights else trained
        expected = mha.eval()(x[:1])
    assert trained.std(0).min() > 0.05  # the rows differ: dropout was applied
    torch.testing.assert_close(trained.mean(0, keepdim=True), expected, atol=0.04, rtol=0)


def test_mha_rejects_bad_shapes_naming_them():
    with pytest.raises(ValueError, match="d_model=10.*num_heads=3"):
        MultiHeadAttention(10, 3)
    mha = MultiHeadAttention(16, 4)
    with pytest.raises(ValueError, match=r"\(B, T, d_model=16\); got \(5, 16\)"):
        mha(torch.randn(5, 16))
    with pytest.raises(ValueError, match=r"got \(2, 5, 8\)"):
        mha(torch.randn(2, 5, 8))
    with pytest.raises(ValueError, match=r"mask of shape \(2, 5\)"):
        mha(torch.randn(2, 5, 16), mask=torch.ones(2, 5, dtype=torch.bool))
    with pytest.raises(ValueError, match="bool"):
        mha(torch.randn(2, 5, 16), mask=torch.zeros(5, 5))
    with pytest.raises(ValueError, match="batch size"):
        mha(torch.randn(2, 5, 16), torch.randn(3, 5, 16))


def test_explicit_path_matches_torch_functional_reference(device):
    q, k, v = (t.to(device) for t in qkv())
    mask = padding_mask(torch.tensor([7, 2])).to(device)
    reference = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    out, _ = scaled_dot_product_attention(q, k, v, mask)
    assert (out - reference).abs().max() <= fp32_atol(device, 1e-5)  # CUDA: 1e-4


@pytest.mark.parametrize(
    "attention", [scaled_dot_product_attention, fused_scaled_dot_product_attention]
)
@pytest.mark.parametrize("dtype", [torch.float32, torch.int64])
def test_a_mask_that_is_not_bool_is_refused_on_both_paths(attention, dtype):
    # torch adds a float mask to the scores: a 0/1 float mask would have masked nothing.
    q, k, v = qkv(T_q=4, T_k=4)
    with pytest.raises(ValueError, match=f"mask must be a bool tensor .*got dtype {dtype}"):
        attention(q, k, v, causal_mask(4).to(dtype))


@pytest.mark.parametrize(
    "attention", [scaled_dot_product_attention, fused_scaled_dot_product_attention]
)
@pytest.mark.parametrize(
    "mask_shape",
    [
        (2, 1, 5, 6),  # one key too few: torch's "size of tensor a (6) must match ... (7)"
        (5, 7, 1),  # T_q where T_k belongs, read by broadcasting as (5, 7, 1) -> wrong layout
        (4, 3, 5, 7),  # a batch of 4 masks for 2 queries
        (1, 2, 3, 5, 7),  # a fifth dimension would have grown the output
    ],
)
def test_a_mask_that_does_not_broadcast_to_the_scores_is_named(attention, mask_shape):
    q, k, v = qkv()  # scores (2, 3, 5, 7)
    mask = torch.ones(mask_shape, dtype=torch.bool)
    shape = re.escape(str(mask_shape))
    with pytest.raises(
        ValueError,
        match=rf"mask of shape {shape} does not broadcast to the "
        r"attention scores \(\.\.\., T_q, T_k\) = \(2, 3, 5, 7\)",
    ):
        attention(q, k, v, mask)


@pytest.mark.parametrize("mask_shape", [(5, 7), (1, 7), (1, 1, 5, 7), (2, 1, 1, 7), (2, 3, 5, 7)])
def test_every_broadcasting_mask_is_still_taken_and_equals_torch(mask_shape):
    q, k, v = qkv()
    mask = torch.rand(mask_shape, generator=torch.Generator().manual_seed(0)) < 0.7
    mask[..., 0] = True  # every query sees a key: torch's reference gives NaN for none
    reference = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    explicit, _ = scaled_dot_product_attention(q, k, v, mask)
    fused = fused_scaled_dot_product_attention(q, k, v, mask)
    assert (explicit - reference).abs().max() <= 1e-5
    assert (fused - reference).abs().max() <= 1e-5


@pytest.mark.parametrize(
    "attention", [scaled_dot_product_attention, fused_scaled_dot_product_attention]
)
@pytest.mark.parametrize("name", ["q", "k", "v"])
def test_attention_inputs_that_are_not_tensors_are_named(attention, name):
    tensors = dict(zip("qkv", qkv(), strict=True))
    tensors[name] = tensors[name].tolist()  # was "'list' object has no attribute 'size'"
    with pytest.raises(TypeError, match=rf"^{name} must be a tensor \(B, H, T, d\); got list"):
        attention(**tensors)


@pytest.mark.parametrize(
    "attention", [scaled_dot_product_attention, fused_scaled_dot_product_attention]
)
def test_keys_and_values_that_do_not_fit_the_queries_are_named(attention):
    q, k, v = qkv(T_q=4, T_k=6, d=8)
    with pytest.raises(ValueError, match=r"same width d_k .*q \(2, 3, 4, 8\) and k \(2, 3, 6, 5\)"):
        attention(q, k[..., :5], v)
    with pytest.raises(ValueError, match=r"same number of keys T_k .*v \(2, 3, 5, 8\)"):
        attention(q, k, v[:, :, :5])


@pytest.mark.parametrize(
    "attention", [scaled_dot_product_attention, fused_scaled_dot_product_attention]
)
@pytest.mark.parametrize("dropout_p", [-0.1, 1.5, float("nan")])
def test_a_dropout_rate_outside_zero_to_one_is_refused_on_both_paths(attention, dropout_p):
    # The written-out path ignored -0.1 and nan (no dropout); the fused one named flash kernels.
    q, k, v = qkv(T_q=4, T_k=4)
    with pytest.raises(ValueError, match=rf"dropout_p must be in \[0, 1\]; got {dropout_p}"):
        attention(q, k, v, dropout_p=dropout_p)


def test_token_ids_given_to_attention_are_refused_naming_the_embedding():
    mha = MultiHeadAttention(8, 2)
    with pytest.raises(ValueError, match="x must be a float tensor .*got dtype torch.int64"):
        mha(torch.ones(2, 3, 8, dtype=torch.long))


def test_a_kv_cache_reused_for_another_batch_is_refused_and_left_as_it_was():
    mha = MultiHeadAttention(8, 2).eval()
    cache = KVCache()
    mha(torch.randn(2, 3, 8), cache=cache, is_causal=True)
    with pytest.raises(ValueError, match="the cache holds 2 sequences but x has batch size 3"):
        mha(torch.randn(3, 1, 8), cache=cache, is_causal=True)
    assert len(cache) == 3 and cache.batch_size == 2


@pytest.mark.parametrize("shape", [(5,), (4, 3)])
def test_rotary_positions_of_the_wrong_shape_are_named(shape):
    mha = MultiHeadAttention(spec=BlockSpec(d_model=8, num_heads=2, positions="rotary"))
    positions = torch.zeros(shape, dtype=torch.long)
    expected = f"positions must have shape (T,) = (3,) or (B, T) = (2, 3); got {shape}"
    with pytest.raises(ValueError, match=re.escape(expected)):
        mha(torch.randn(2, 3, 8), positions=positions)


def test_multi_head_attention_names_an_input_that_is_not_a_float_tensor():
    # AttributeError for a list, and for ids the message points to the embedding
    mha = MultiHeadAttention(d_model=8, num_heads=2)
    with pytest.raises(TypeError, match="x must be a tensor .*got list"):
        mha([[[0.0] * 8]])
    with pytest.raises(TypeError, match="memory must be a tensor .*got list"):
        mha(torch.zeros(1, 2, 8), [[[0.0] * 8]])
    with pytest.raises(ValueError, match="token ids go through an embedding first"):
        mha(torch.zeros(1, 2, 8, dtype=torch.long))
