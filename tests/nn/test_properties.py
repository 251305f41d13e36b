"""Properties of the encoder that hold for any input (checked with hypothesis)."""

import pytest
import torch

# A test extra, absent where only the test suite's CUDA cases run (benchmarks/gpu_check.py).
pytest.importorskip("hypothesis")
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from attnlab.nn import (  # noqa: E402
    EncoderLayer,
    TransformerEncoder,
    causal_mask,
    padding_mask,
    scaled_dot_product_attention,
)

D = 16
settings.register_profile("attnlab", max_examples=25, deadline=None)
settings.load_profile("attnlab")


def encoder(norm_first: bool) -> TransformerEncoder:
    torch.manual_seed(0)
    return TransformerEncoder(2, D, 4, 32, dropout=0.0, norm_first=norm_first).eval()


@given(seed=st.integers(0, 10_000), T=st.integers(2, 10), norm_first=st.booleans())
def test_encoder_without_positions_is_permutation_equivariant(seed, T, norm_first):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(2, T, D, generator=g)
    perm = torch.randperm(T, generator=g)
    model = encoder(norm_first)
    torch.testing.assert_close(model(x[:, perm]), model(x)[:, perm], atol=1e-5, rtol=0)


@given(seed=st.integers(0, 10_000), T=st.integers(1, 8), extra=st.integers(1, 6))
def test_appending_masked_padding_never_changes_real_positions(seed, T, extra):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(1, T, D, generator=g)
    garbage = 100 * torch.randn(1, extra, D, generator=g)
    padded = torch.cat([x, garbage], dim=1)
    mask = padding_mask(torch.tensor([T]), max_len=T + extra)
    model = encoder(norm_first=False)
    torch.testing.assert_close(model(padded, mask=mask)[:, :T], model(x), atol=1e-5, rtol=0)


@given(seed=st.integers(0, 10_000), T=st.integers(2, 10), data=st.data())
def test_causal_mask_hides_the_future(seed, T, data):
    t = data.draw(st.integers(0, T - 2))  # change a token after position t
    changed = data.draw(st.integers(t + 1, T - 1))
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(2, T, D, generator=g)
    y = x.clone()
    y[:, changed] = torch.randn(2, D, generator=g)
    model = encoder(norm_first=True)
    mask = causal_mask(T)
    before, after = model(x, mask=mask), model(y, mask=mask)
    torch.testing.assert_close(before[:, : t + 1], after[:, : t + 1], atol=1e-5, rtol=0)
    assert not torch.allclose(before[:, changed], after[:, changed])


@given(seed=st.integers(0, 10_000), T_q=st.integers(1, 6), T_k=st.integers(1, 8))
def test_weights_sum_to_one_over_allowed_keys(seed, T_q, T_k):
    g = torch.Generator().manual_seed(seed)
    q, k, v = (torch.randn(2, 3, n, 4, generator=g) for n in (T_q, T_k, T_k))
    mask = torch.rand(2, 1, T_q, T_k, generator=g) > 0.5
    _, weights = scaled_dot_product_attention(q, k, v, mask)
    allowed_rows = mask.any(-1).expand(2, 3, T_q)
    sums = weights.sum(-1)
    torch.testing.assert_close(sums[allowed_rows], torch.ones_like(sums[allowed_rows]))
    assert (sums[~allowed_rows] == 0).all()
    assert (weights[~mask.expand_as(weights)] == 0).all()


def test_layer_with_mask_but_no_padding_equals_unmasked():
    layer = EncoderLayer(D, 4, 32, dropout=0.0).eval()
    x = torch.randn(2, 5, D)
    torch.testing.assert_close(layer(x, mask=padding_mask(torch.tensor([5, 5]))), layer(x))
