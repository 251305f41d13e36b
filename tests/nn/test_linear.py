"""attnlab.nn.linear: the one-row CPU path equals torch.nn.functional.linear."""

import pytest
import torch
import torch.nn.functional as F

import attnlab.nn.linear
from attnlab.nn import Linear
from attnlab.nn.linear import linear


@pytest.fixture
def two_threads(monkeypatch):
    before = torch.get_num_threads()
    torch.set_num_threads(2)  # the batched path needs at least two blocks
    monkeypatch.setattr(attnlab.nn.linear, "BATCHED_MIN_ELEMENTS", 1)  # and small test weights
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize("shape", [(64,), (1, 64), (1, 1, 64)])
@pytest.mark.parametrize("with_bias", [True, False])
def test_one_row_equals_f_linear(two_threads, shape, with_bias):
    torch.manual_seed(0)
    weight, bias = torch.randn(96, 64), torch.randn(96) if with_bias else None
    x = torch.randn(shape)
    with torch.no_grad():
        out = linear(x, weight, bias)
    expected = F.linear(x, weight, bias)
    assert out.shape == expected.shape == (*shape[:-1], 96)
    torch.testing.assert_close(out, expected)  # float32 rounding: rtol 1.3e-6, atol 1e-5


def test_one_row_takes_the_batched_path(two_threads, monkeypatch):
    calls = []
    monkeypatch.setattr(torch, "bmm", lambda *a: calls.append(a) or torch.matmul(*a))
    with torch.no_grad():
        linear(torch.randn(1, 8), torch.randn(6, 8))  # one row, 6 outputs in 2 blocks
        linear(torch.randn(2, 8), torch.randn(6, 8))  # two rows: F.linear
        linear(torch.randn(1, 8), torch.randn(5, 8))  # 5 outputs do not split in 2
        linear(torch.randn(1, 8, dtype=torch.float64), torch.randn(6, 8, dtype=torch.float64))
        monkeypatch.setattr(attnlab.nn.linear, "BATCHED_MIN_ELEMENTS", 49)
        linear(torch.randn(1, 8), torch.randn(6, 8))  # 48 elements: below the threshold
    assert len(calls) == 1 and calls[0][0].shape == (2, 3, 8)


def test_autograd_uses_f_linear_and_gets_its_gradients(two_threads):
    layer = Linear(8, 6)
    x = torch.randn(1, 8, requires_grad=True)
    layer(x).sum().backward()
    reference = torch.nn.Linear(8, 6)
    reference.load_state_dict(layer.state_dict())
    x_ref = x.detach().clone().requires_grad_(True)
    reference(x_ref).sum().backward()
    torch.testing.assert_close(x.grad, x_ref.grad)
    torch.testing.assert_close(layer.weight.grad, reference.weight.grad)


def test_linear_module_is_a_drop_in_for_nn_linear():
    layer = Linear(8, 6, bias=False)
    assert isinstance(layer, torch.nn.Linear)
    assert set(layer.state_dict()) == {"weight"}
