"""The reverse task's generated data: its size is known, and checked, before it is made."""

import pytest

from attnlab import machine
from attnlab.configs.tasks import ReverseConfig
from attnlab.errors import ConfigError
from attnlab.tasks.reverse import KEPT_BYTES_PER_TOKEN, ReverseTask, reverse_data_bytes

from ..cli_helpers import assert_one_line_error, run_cli


def test_the_estimate_covers_what_the_splits_hold():
    config = ReverseConfig(train_size=300, val_size=20, test_size=50, seq_len=12)
    splits = ReverseTask(config).splits()
    held = sum(t.nbytes for s in (splits.train, splits.val, splits.test) for t in s.tensors)
    assert held == (300 + 20 + 50) * 12 * KEPT_BYTES_PER_TOKEN  # measured: what is kept
    assert reverse_data_bytes(config) > held  # and the estimate adds the making of a split


def test_data_larger_than_the_memory_is_refused_before_it_is_made(monkeypatch):
    config = ReverseConfig(train_size=1000, val_size=10, test_size=10, seq_len=100)
    monkeypatch.setattr(machine, "available_memory", lambda: reverse_data_bytes(config) - 1)
    with pytest.raises(ConfigError, match=r"the generated data \(1,020 sequences of 100 tokens"):
        ReverseTask(config).splits()
    monkeypatch.setattr(machine, "available_memory", lambda: reverse_data_bytes(config))
    assert len(ReverseTask(config).splits().train) == 1000


def test_a_data_set_no_machine_holds_is_one_line_and_leaves_no_run(capsys, tmp_path):
    """10^8 sequences of 10^5 tokens: 145 TB, refused before the run directory is made."""
    out = tmp_path / "run"
    argv = ["train", "reverse", "--train-size", "100000000", "--seq-len", "100000"]
    code, _, err = run_cli(capsys, *argv, "--out", str(out))
    assert_one_line_error(code, err, "the generated data (100,011,000 sequences of 100,000 tok")
    assert "choose a smaller --train-size" in err
    assert not out.exists()
