import pytest
import torch
import torch.nn.functional as F

from attnlab.nn import EncoderLayer, FeedForward, TransformerEncoder, padding_mask


@pytest.mark.parametrize("activation, fn", [("relu", F.relu), ("gelu", F.gelu)])
def test_feed_forward_formula(activation, fn):
    ff = FeedForward(8, 32, activation=activation)
    x = torch.randn(2, 3, 8)
    expected = fn(x @ ff.linear1.weight.T + ff.linear1.bias) @ ff.linear2.weight.T + ff.linear2.bias
    torch.testing.assert_close(ff(x), expected)
    with torch.no_grad():  # the in-place ReLU of the no-grad path gives the same numbers
        torch.testing.assert_close(ff(x), expected)


def test_post_ln_and_pre_ln_formulas():
    x = torch.randn(2, 4, 16)
    for norm_first in (False, True):
        layer = EncoderLayer(16, 2, 32, dropout=0.0, norm_first=norm_first).eval()
        attn, ff, n1, n2 = layer.self_attn, layer.feed_forward, layer.norm1, layer.norm2
        if norm_first:
            h = x + attn(n1(x))
            expected = h + ff(n2(h))
        else:
            h = n1(x + attn(x))
            expected = n2(h + ff(h))
        torch.testing.assert_close(layer(x), expected)


def test_encoder_returns_every_layers_attention():
    enc = TransformerEncoder(3, 16, 4, 32, dropout=0.0).eval()
    x = torch.randn(2, 5, 16)
    mask = padding_mask(torch.tensor([5, 2]))
    out, maps = enc(x, mask=mask, return_attention=True)
    assert len(maps) == 3 and all(m.shape == (2, 4, 5, 5) for m in maps)
    torch.testing.assert_close(out, enc(x, mask=mask))
    assert (maps[0][1, :, :, 2:] == 0).all()


def test_final_norm_is_optional():
    assert TransformerEncoder(1, 8, 2).norm is None
    enc = TransformerEncoder(1, 8, 2, final_norm=True).eval()
    out = enc(torch.randn(3, 4, 8))
    torch.testing.assert_close(out.mean(-1), torch.zeros(3, 4), atol=1e-5, rtol=0)


def test_layers_reject_bad_input():
    layer = EncoderLayer(16, 4, 32)
    with pytest.raises(ValueError, match=r"\(B, T, d_model\); got \(5, 16\)"):
        layer(torch.randn(5, 16))
    with pytest.raises(ValueError, match="activation"):
        FeedForward(8, 16, activation="tanh")
