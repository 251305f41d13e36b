import math

import pytest
import torch

from attnlab.errors import ConfigError
from attnlab.training.schedules import build_scheduler, cosine_warmup, noam


def test_cosine_warmup_ramps_then_decays_to_zero():
    assert cosine_warmup(0, warmup=10, total=110) == pytest.approx(0.1)
    assert cosine_warmup(9, warmup=10, total=110) == pytest.approx(1.0)
    assert cosine_warmup(60, warmup=10, total=110) == pytest.approx(0.5)
    assert cosine_warmup(110, warmup=10, total=110) == pytest.approx(0.0)


def test_noam_matches_the_papers_formula():
    d_model, warmup = 512, 4000
    for step in (0, 99, 3999, 4000, 20000):
        n = step + 1
        expected = d_model**-0.5 * min(n**-0.5, n * warmup**-1.5)
        assert noam(step, warmup, d_model) == pytest.approx(expected)
    peak = max(noam(s, warmup, d_model) for s in range(8000))
    assert peak == pytest.approx(noam(warmup - 1, warmup, d_model))
    assert peak == pytest.approx(512**-0.5 * 4000**-0.5, rel=1e-3)


@pytest.mark.parametrize("name", ["cosine", "noam", "constant"])
def test_scheduler_sets_the_learning_rate_per_step(name):
    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([param], lr=2.0)
    scheduler = build_scheduler(optimizer, name, warmup=4, total=20, d_model=16)
    lrs = []
    for _ in range(20):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    if name == "constant":
        assert lrs == [2.0] * 20
    elif name == "cosine":
        assert lrs[0] == pytest.approx(0.5) and lrs[3] == pytest.approx(2.0)
        assert lrs[-1] < 0.1
    else:
        assert lrs[3] == pytest.approx(2.0 * 16**-0.5 * 4**-0.5)
        assert lrs[10] == pytest.approx(2.0 * 16**-0.5 / math.sqrt(11))


def test_unknown_schedule_is_refused():
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    with pytest.raises(ConfigError, match="unknown schedule"):
        build_scheduler(optimizer, "linear", 1, 10, 8)


def test_cosine_floor_ends_at_min_lr_and_keeps_the_shape():
    # Half-way through the decay the plain cosine is at 0.5; with a floor f it is f + (1-f)/2.
    assert cosine_warmup(10 + 45, warmup=10, total=100, floor=0.1) == pytest.approx(0.55)
    assert cosine_warmup(100, warmup=10, total=100, floor=0.1) == pytest.approx(0.1)
    assert cosine_warmup(4, warmup=10, total=100, floor=0.1) == pytest.approx(0.5)  # warmup


def test_min_lr_above_lr_is_refused():
    from attnlab.training import TrainConfig

    with pytest.raises(ValueError, match="min_lr must be between 0 and lr"):
        TrainConfig(lr=1e-3, min_lr=1e-2)
