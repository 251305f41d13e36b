import pytest
import torch

from attnlab.nn.dropout import Dropout, dropout


@pytest.mark.parametrize("p", [0.1, 0.3, 0.5, 0.9])
def test_drop_rate_and_expectation(p):
    x = torch.ones(1_000_003)  # odd size: the last int64 draw is only partly used
    y = dropout(x, p)
    dropped = (y == 0).float().mean().item()
    assert dropped == pytest.approx(p, abs=0.003)
    assert y.mean().item() == pytest.approx(1.0, abs=0.01)
    kept = y[y != 0]
    torch.testing.assert_close(kept, torch.full_like(kept, kept[0].item()))


def test_every_lane_of_a_draw_is_used_alike():
    y = dropout(torch.ones(400_000), 0.5).view(-1, 4)
    per_lane = (y == 0).float().mean(0)
    assert (per_lane - 0.5).abs().max() < 0.01


def test_gradient_is_the_same_mask_and_scale():
    x = torch.randn(64, 33, requires_grad=True)
    y = dropout(x, 0.25)
    y.sum().backward()
    scale = y[y != 0] / x.detach()[y != 0]
    torch.testing.assert_close(x.grad[y != 0], scale)
    assert (x.grad[y == 0] == 0).all()


def test_eval_mode_and_edge_probabilities():
    x = torch.randn(10, 10)
    layer = Dropout(0.5).eval()
    assert layer(x) is x
    assert dropout(x, 0.0) is x
    assert torch.equal(dropout(x, 1.0), torch.zeros_like(x))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        Dropout(1.5)


def test_same_seed_same_mask():
    x = torch.ones(1000)
    torch.manual_seed(3)
    a = dropout(x, 0.3)
    torch.manual_seed(3)
    assert torch.equal(a, dropout(x, 0.3))
