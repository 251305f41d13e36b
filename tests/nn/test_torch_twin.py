"""TorchTransformerEncoder: PyTorch's encoder behind attnlab's mask convention and interface."""

import dataclasses

import pytest
import torch

import attnlab.interop
import attnlab.nn.attention as attention_module
from attnlab.interop import from_torch
from attnlab.nn import BlockSpec, combine_masks, local_mask, padding_mask
from attnlab.nn.torch_twin import TorchTransformerEncoder

from ..conftest import fp32_atol

D, H, T = 16, 4, 7


def masks() -> dict:
    pad = padding_mask(torch.tensor([7, 5, 2]))  # (B, 1, 1, T), True = real token
    return {
        "none": None,
        "padding": pad,
        "padding and window": combine_masks(local_mask(T, 2), pad),  # (B, 1, T, T)
    }


@pytest.mark.parametrize(
    "mask_kind",
    [
        "none",
        "padding",
        pytest.param(
            "padding and window",  # queries past a row's end may attend to no key
            marks=pytest.mark.skipif(
                not attention_module._FUSED_ZEROES_EMPTY_ROWS,
                reason="torch < 2.5's layers give NaN for a query that may attend to no key",
            ),
        ),
    ],
)
@pytest.mark.parametrize("norm_first", [False, True])
def test_outputs_and_attention_maps_equal_attnlabs_encoder_with_the_same_weights(
    mask_kind, norm_first, device
):
    spec = BlockSpec(D, H, 32, dropout=0.0, activation="gelu", norm_first=norm_first)
    torch_backend = TorchTransformerEncoder(2, spec=spec, final_norm=norm_first).eval()
    ours = from_torch(torch_backend.encoder).eval().to(device)  # attnlab's TransformerEncoder
    torch_backend.to(device)
    x, mask = torch.randn(3, T, D, device=device), masks()[mask_kind]
    mask = None if mask is None else mask.to(device)
    atol = fp32_atol(device, 1e-5)  # CUDA: 1e-4
    out, maps = torch_backend(x, mask=mask, return_attention=True)
    expected_out, expected_maps = ours(x, mask=mask, return_attention=True)
    torch.testing.assert_close(torch_backend(x, mask=mask), expected_out, atol=atol, rtol=0)
    torch.testing.assert_close(out, expected_out, atol=atol, rtol=0)
    assert len(maps) == 2
    for weights, expected in zip(maps, expected_maps, strict=True):
        assert weights.shape == (3, H, T, T)
        torch.testing.assert_close(weights, expected, atol=atol, rtol=0)


def test_a_query_that_may_attend_to_nothing_gets_zero_weights_not_nan():
    encoder = TorchTransformerEncoder(1, D, H, 32, dropout=0.0).eval()
    mask = torch.ones(1, 1, T, T, dtype=torch.bool)
    mask[0, 0, 3] = False  # query 3 may attend to no key
    _, (weights,) = encoder(torch.randn(1, T, D), mask=mask, return_attention=True)
    assert not weights.isnan().any()
    assert (weights[0, :, 3] == 0).all()
    torch.testing.assert_close(weights[0, :, 4].sum(-1), torch.ones(H))


def test_keyword_and_spec_constructors_build_the_same_torch_layers():
    keyword = TorchTransformerEncoder(2, D, H, 32, 0.2, "gelu", True, 1e-6, final_norm=True)
    spec = BlockSpec(D, H, 32, 0.2, activation="gelu", norm_first=True, layer_norm_eps=1e-6)
    from_spec = TorchTransformerEncoder(2, spec=spec, final_norm=True)
    assert str(keyword) == str(from_spec)
    assert keyword.state_dict().keys() == from_spec.state_dict().keys()


@pytest.mark.parametrize(
    "spec, message",
    [
        (BlockSpec(D, H, 32, attention_dropout=0.3), "one dropout rate"),
        (BlockSpec(D, H, 32, ffn_dropout=0.0), "one dropout rate"),
        (BlockSpec(D, H, 32, activation="gelu_tanh"), "relu and gelu; got 'gelu_tanh'"),
    ],
)
def test_what_torch_cannot_express_is_refused(spec, message):
    with pytest.raises(ValueError, match=message):
        TorchTransformerEncoder(1, spec=spec)


def test_a_block_option_added_later_is_refused_unless_left_at_its_default():
    @dataclasses.dataclass(frozen=True)
    class RotarySpec(BlockSpec):  # a variant BlockSpec might gain, unknown to torch
        rotary: bool = False

    TorchTransformerEncoder(1, spec=RotarySpec(D, H, 32))
    with pytest.raises(ValueError, match=r"no counterpart of \['rotary'\]"):
        TorchTransformerEncoder(1, spec=RotarySpec(D, H, 32, rotary=True))


def test_interop_still_exports_the_torch_twin_and_its_mask_converters():
    from attnlab.nn import torch_twin

    for name in ("TorchTransformerEncoder", "torch_attn_mask", "torch_key_padding_mask"):
        assert getattr(attnlab.interop, name) is getattr(torch_twin, name)
    assert attnlab.interop.torch_per_head_mask is torch_twin.torch_per_head_mask


@pytest.mark.parametrize(
    ("convert", "mask"),
    [
        (attnlab.interop.torch_key_padding_mask, torch.ones(2, 1, 1, 3)),
        (attnlab.interop.torch_attn_mask, torch.ones(3, 3)),
        (lambda m: attnlab.interop.torch_per_head_mask(m, 2), torch.ones(2, 1, 3, 3)),
    ],
)
def test_a_float_mask_is_refused_before_it_is_inverted(convert, mask):
    with pytest.raises(ValueError, match="mask must be a bool tensor .*got dtype torch.float32"):
        convert(mask)
