"""attnlab's blocks equal their torch.nn twins once weights are copied through interop."""

import pytest
import torch
from torch import nn

from attnlab.interop import from_torch, to_torch, torch_attn_mask, torch_key_padding_mask
from attnlab.nn import (
    EncoderLayer,
    MultiHeadAttention,
    TransformerEncoder,
    causal_mask,
    combine_masks,
    padding_mask,
)

TOL = 1e-5
D, H = 32, 4


def randomise(module: nn.Module) -> nn.Module:
    """torch starts attention biases at 0 and LayerNorms at gain 1, bias 0: random values make
    a mapping that swaps or drops them show in the outputs."""
    with torch.no_grad():
        for name, p in module.named_parameters():
            if name.endswith("bias") or "norm" in name:
                p.add_(0.1 * torch.randn_like(p))
    return module


def max_diff(a, b, keep=None):
    if keep is not None:
        a, b = a[keep], b[keep]
    return (a - b).abs().max().item()


@pytest.mark.parametrize("mode", ["eval", "train"])
@pytest.mark.parametrize("masks", ["none", "padding", "causal", "both"])
def test_mha_self_attention_equals_torch(mode, masks):
    reference = nn.MultiheadAttention(D, H, dropout=0.0, batch_first=True)
    with torch.no_grad():
        reference.out_proj.bias.normal_()
        reference.in_proj_bias.normal_()
    ours = from_torch(reference)
    getattr(reference, mode)()
    getattr(ours, mode)()
    x = torch.randn(3, 6, D)
    lengths = torch.tensor([6, 4, 2])
    pad = padding_mask(lengths) if masks in ("padding", "both") else None
    causal = causal_mask(6) if masks in ("causal", "both") else None
    ref_out, ref_w = reference(
        x,
        x,
        x,
        key_padding_mask=None if pad is None else torch_key_padding_mask(pad),
        attn_mask=None if causal is None else torch_attn_mask(causal),
        need_weights=True,
        average_attn_weights=False,
    )
    mask = combine_masks(causal, pad)
    out, weights = ours(x, mask=mask, need_weights=True)
    assert max_diff(out, ref_out) <= TOL
    assert max_diff(weights, ref_w) <= TOL
    assert max_diff(ours(x, mask=mask), ref_out) <= TOL  # the fused path too


@pytest.mark.parametrize("mode", ["eval", "train"])
def test_mha_cross_attention_equals_torch(mode):
    reference = randomise(nn.MultiheadAttention(D, H, batch_first=True))
    ours = from_torch(reference)
    getattr(reference, mode)()
    getattr(ours, mode)()
    x, memory = torch.randn(2, 5, D), torch.randn(2, 8, D)
    pad = padding_mask(torch.tensor([8, 3]))
    ref_out, ref_w = reference(
        x, memory, memory, key_padding_mask=torch_key_padding_mask(pad), average_attn_weights=False
    )
    out, weights = ours(x, memory, mask=pad, need_weights=True)
    assert max_diff(out, ref_out) <= TOL
    assert max_diff(weights, ref_w) <= TOL
    assert max_diff(ours(x, memory, mask=pad), ref_out) <= TOL


@pytest.mark.parametrize("mode", ["eval", "train"])
@pytest.mark.parametrize("norm_first", [False, True])
@pytest.mark.parametrize("activation", ["relu", "gelu"])
def test_encoder_layer_equals_torch(mode, norm_first, activation):
    reference = nn.TransformerEncoderLayer(
        D, H, 64, dropout=0.0, activation=activation, batch_first=True, norm_first=norm_first
    )
    ours = from_torch(randomise(reference))
    assert isinstance(ours, EncoderLayer)
    getattr(reference, mode)()
    getattr(ours, mode)()
    x = torch.randn(3, 7, D)
    pad = padding_mask(torch.tensor([7, 5, 1]))
    keep = pad[:, 0, 0]
    with torch.no_grad():  # in eval mode this takes torch's fused fast path
        ref = reference(x, src_key_padding_mask=torch_key_padding_mask(pad))
        out = ours(x, mask=pad)
        assert max_diff(out, ref, keep) <= TOL
        assert max_diff(ours(x), reference(x)) <= TOL
    causal = causal_mask(7)
    ref = reference(x, src_mask=torch_attn_mask(causal), is_causal=True)
    assert max_diff(ours(x, mask=causal), ref) <= TOL


@pytest.mark.parametrize("mode", ["eval", "train"])
@pytest.mark.parametrize("norm_first", [False, True])
def test_encoder_stack_equals_torch(mode, norm_first):
    layer = nn.TransformerEncoderLayer(
        D, H, 64, dropout=0.0, batch_first=True, norm_first=norm_first
    )
    reference = nn.TransformerEncoder(
        layer,
        num_layers=3,
        norm=nn.LayerNorm(D) if norm_first else None,
        enable_nested_tensor=False,
    )
    ours = from_torch(randomise(reference))  # the layers' copies differ from here on
    assert isinstance(ours, TransformerEncoder) and len(ours.layers) == 3
    getattr(reference, mode)()
    getattr(ours, mode)()
    x = torch.randn(4, 9, D)
    pad = padding_mask(torch.tensor([9, 8, 3, 6]))
    keep = pad[:, 0, 0]
    with torch.no_grad():
        ref = reference(x, src_key_padding_mask=torch_key_padding_mask(pad))
        assert max_diff(ours(x, mask=pad), ref, keep) <= TOL
    ref = reference(x, src_key_padding_mask=torch_key_padding_mask(pad))
    out = ours(x, mask=pad)
    assert max_diff(out, ref, keep) <= TOL
    out.sum().backward()  # gradients flow through the copy like through the original


def test_encoder_with_nested_tensor_fast_path_equals_at_real_positions():
    layer = nn.TransformerEncoderLayer(D, H, 64, dropout=0.1, batch_first=True)
    reference = nn.TransformerEncoder(layer, num_layers=2, enable_nested_tensor=True).eval()
    ours = from_torch(reference)
    x = torch.randn(4, 9, D)
    pad = padding_mask(torch.tensor([9, 2, 5, 7]))
    with torch.no_grad():
        ref = reference(x, src_key_padding_mask=torch_key_padding_mask(pad))
        assert max_diff(ours(x, mask=pad), ref, pad[:, 0, 0]) <= TOL


def test_to_torch_round_trip():
    ours = TransformerEncoder(2, D, H, 64, dropout=0.0, norm_first=True, final_norm=True).eval()
    theirs = to_torch(randomise(ours)).eval()
    x = torch.randn(2, 5, D)
    pad = padding_mask(torch.tensor([5, 3]))
    ref = theirs(x, src_key_padding_mask=torch_key_padding_mask(pad))
    assert max_diff(ours(x, mask=pad), ref, pad[:, 0, 0]) <= TOL
    back = from_torch(theirs)
    assert all(
        torch.equal(a, b)
        for a, b in zip(ours.state_dict().values(), back.state_dict().values(), strict=True)
    )
    mha = MultiHeadAttention(D, H, bias=False)
    torch.testing.assert_close(to_torch(mha).in_proj_weight, mha.qkv_proj.weight)


def test_interop_rejects_what_it_cannot_map():
    with pytest.raises(TypeError, match="Linear"):
        from_torch(nn.Linear(2, 2))
    with pytest.raises(ValueError, match="kdim"):
        from_torch(nn.MultiheadAttention(D, H, kdim=8, vdim=8))
    with pytest.raises(ValueError, match="add_bias_kv"):
        from_torch(nn.MultiheadAttention(D, H, add_bias_kv=True))
    with pytest.raises(ValueError, match="activation"):
        from_torch(nn.TransformerEncoderLayer(D, H, activation=torch.tanh))


def test_to_torch_refuses_a_transformer_with_a_custom_decoder_in_one_sentence():
    # nn.Transformer needs attnlab's own decoder stack to copy; a user's layers (here the
    # decoder exercise's solution) used to fail deep inside with an AttributeError.
    import attnlab.exercises.solutions.decoder as solution
    from attnlab.models.user_layer import UserLayerDecoder
    from attnlab.nn import Transformer

    decoder = UserLayerDecoder(1, solution.DecoderLayer, D, H, 32, 0.0, final_norm=False)
    transformer = Transformer(D, H, 1, 1, 32, custom_decoder=decoder)
    with pytest.raises(ValueError, match="custom_decoder is a UserLayerDecoder"):
        to_torch(transformer)
