import pytest
import torch
import torch.nn.functional as F

from attnlab.nn import (
    DecoderLayer,
    EncoderLayer,
    FeedForward,
    LearnedPositionalEncoding,
    RMSNorm,
    RotaryEmbedding,
    SinusoidalPositionalEncoding,
    Transformer,
    TransformerDecoder,
    TransformerEncoder,
    padding_mask,
)
from attnlab.nn.layers import residual
from attnlab.nn.spec import MAX_LAYERS


@pytest.mark.parametrize(
    "activation, fn",
    [("relu", F.relu), ("gelu", F.gelu), ("gelu_tanh", lambda h: F.gelu(h, approximate="tanh"))],
)
def test_feed_forward_formula(activation, fn):
    ff = FeedForward(8, 32, activation=activation)
    with torch.no_grad():  # biases of zero (their initial value) would hide a misused one
        for p in ff.parameters():
            p.normal_()
    x = torch.randn(2, 3, 8)
    expected = fn(x @ ff.linear1.weight.T + ff.linear1.bias) @ ff.linear2.weight.T + ff.linear2.bias
    torch.testing.assert_close(ff(x), expected)
    with torch.no_grad():  # the in-place activation of the no-grad path gives the same numbers
        torch.testing.assert_close(ff(x), expected)


@pytest.mark.parametrize("norm_first", [False, True])
def test_inference_residuals_in_place_give_the_training_path_numbers(norm_first):
    # Without autograd the residual sums are written into the sublayer outputs (residual()):
    # same numbers as the autograd path, and the caller's input is left untouched.
    layer = EncoderLayer(16, 2, 32, dropout=0.0, activation="gelu", norm_first=norm_first).eval()
    decoder_layer = DecoderLayer(16, 2, 32, dropout=0.0, norm_first=norm_first).eval()
    x, memory = torch.randn(2, 4, 16), torch.randn(2, 3, 16)
    x_before = x.clone()
    with_grad = layer(x), decoder_layer(x, memory, is_causal=True)
    assert with_grad[0].requires_grad
    with torch.no_grad():
        without_grad = layer(x), decoder_layer(x, memory, is_causal=True)
    for a, b in zip(with_grad, without_grad, strict=True):
        assert torch.equal(a, b)
    assert torch.equal(x, x_before)


def test_residual_stays_out_of_place_when_dtypes_differ():
    x = torch.randn(2, 3)
    out = torch.randn(2, 3, dtype=torch.bfloat16)
    with torch.no_grad():
        total = residual(x, out)
    assert total.dtype == torch.float32 and total.data_ptr() != out.data_ptr()
    torch.testing.assert_close(total, x + out.float())


def test_encoder_returns_every_layers_attention():
    enc = TransformerEncoder(3, 16, 4, 32, dropout=0.0).eval()
    x = torch.randn(2, 5, 16)
    mask = padding_mask(torch.tensor([5, 2]))
    out, maps = enc(x, mask=mask, return_attention=True)
    assert len(maps) == 3 and all(m.shape == (2, 4, 5, 5) for m in maps)
    torch.testing.assert_close(out, enc(x, mask=mask))
    assert (maps[0][1, :, :, 2:] == 0).all()


def test_final_norm_is_optional():
    # Pre-LN layers: their output is not normalised (a post-LN stack ends in its last layer's
    # norm2, so a final norm that was never applied would go unnoticed there).
    assert TransformerEncoder(1, 8, 2, norm_first=True).norm is None
    enc = TransformerEncoder(1, 8, 2, 16, dropout=0.0, norm_first=True, final_norm=True).eval()
    with torch.no_grad():  # a gain and a shift that the comparison below can see
        enc.norm.weight.normal_()
        enc.norm.bias.normal_()
    x = torch.randn(3, 4, 8)
    stack_output = enc.layers[0](x)
    assert stack_output.mean(-1).abs().max() > 0.01  # the layer alone does not normalise
    expected = F.layer_norm(stack_output, (8,), enc.norm.weight, enc.norm.bias, eps=1e-5)
    torch.testing.assert_close(enc(x), expected)


def test_layers_reject_bad_input():
    layer = EncoderLayer(16, 4, 32)
    with pytest.raises(ValueError, match=r"\(B, T, d_model\); got \(5, 16\)"):
        layer(torch.randn(5, 16))
    with pytest.raises(ValueError, match="activation"):
        FeedForward(8, 16, activation="tanh")


@pytest.mark.parametrize(
    "module, call",
    [
        (EncoderLayer(8, 2, 16), lambda m, x: m(x)),
        (DecoderLayer(8, 2, 16), lambda m, x: m(x, torch.zeros(1, 3, 8))),
        (TransformerEncoder(2, 8, 2, 16), lambda m, x: m(x)),
        (TransformerDecoder(2, 8, 2, 16), lambda m, x: m(x, torch.zeros(1, 3, 8))),
        (RMSNorm(8), lambda m, x: m(x)),
        (SinusoidalPositionalEncoding(8), lambda m, x: m(x)),
        (LearnedPositionalEncoding(8, 10), lambda m, x: m(x)),
    ],
)
def test_a_list_given_to_a_layer_is_named(module, call):
    # each gave AttributeError: 'list' object has no attribute 'dim' (or 'size')
    with pytest.raises(TypeError, match=r"^x must be a tensor \(.*\); got list \(make one with"):
        call(module, [[[0.0] * 8] * 3])


def test_rotary_positions_given_as_a_list_are_named():
    rotary = RotaryEmbedding(4)
    with pytest.raises(TypeError, match=r"^x must be a tensor \(B, H, T, d_head\); got list"):
        rotary([[[[0.0] * 4]]], torch.arange(1))
    with pytest.raises(TypeError, match=r"^positions must be a tensor \(T,\) or \(B, T\); got"):
        rotary(torch.zeros(1, 1, 3, 4), [0, 1, 2])  # was "'list' object has no attribute 'shape'"


def test_a_layer_count_too_large_for_any_machine_is_refused_before_building():
    # built layer after layer until the memory ran out (MemoryError, or the OOM killer)
    message = f"must be at most {MAX_LAYERS:,} layers; got 1,000,000,000,000"
    with pytest.raises(ValueError, match=f"num_layers {message}"):
        TransformerEncoder(10**12, 8, 2, 16)
    with pytest.raises(ValueError, match=f"num_layers {message}"):
        TransformerDecoder(10**12, 8, 2, 16)
    with pytest.raises(ValueError, match=f"num_encoder_layers {message}"):
        Transformer(8, 2, num_encoder_layers=10**12, num_decoder_layers=1, d_ff=16)
    assert len(TransformerEncoder(0, 8, 2, 16).layers) == 0  # the lower bound is fine


@pytest.mark.parametrize("num_layers", [-1, 2.0, True])
def test_a_layer_count_that_is_not_a_whole_number_is_refused(num_layers):
    # -1 built an empty stack (silently the identity), 2.0 failed inside range()
    with pytest.raises(
        ValueError, match=f"num_layers must be a whole number >= 0; got {num_layers}"
    ):
        TransformerEncoder(num_layers, 8, 2, 16)
    with pytest.raises(
        ValueError, match=f"num_layers must be a whole number >= 0; got {num_layers}"
    ):
        TransformerDecoder(num_layers, 8, 2, 16)
    with pytest.raises(ValueError, match="num_decoder_layers must be a whole number >= 0; got"):
        Transformer(8, 2, num_encoder_layers=1, num_decoder_layers=num_layers, d_ff=16)
