import datetime

import pytest
import torch

from attnlab.errors import RunDirError
from attnlab.training.checkpoint import (
    atomic_write,
    load_checkpoint,
    load_weights,
    save_checkpoint,
    save_weights,
)


def test_a_crash_while_writing_leaves_the_old_file(tmp_path):
    path = tmp_path / "file.bin"
    path.write_bytes(b"old")

    def crash(tmp):
        tmp.write_bytes(b"half")
        raise RuntimeError("crash")

    with pytest.raises(RuntimeError):
        atomic_write(path, crash)
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["file.bin"]  # no temporary left behind


def test_weights_round_trip_and_reject_truncated_or_foreign_files(tmp_path):
    model = torch.nn.Linear(3, 2)
    save_weights(tmp_path / "m.safetensors", model)
    other = torch.nn.Linear(3, 2)
    load_weights(tmp_path / "m.safetensors", other)
    assert torch.equal(other.weight, model.weight)

    data = (tmp_path / "m.safetensors").read_bytes()
    (tmp_path / "cut.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(RunDirError, match="not a readable safetensors"):
        load_weights(tmp_path / "cut.safetensors", other)
    with pytest.raises(RunDirError, match="does not hold the weights of this model"):
        load_weights(tmp_path / "m.safetensors", torch.nn.Linear(4, 2))
    with pytest.raises(RunDirError, match="missing"):
        load_weights(tmp_path / "none.safetensors", other)


def test_checkpoint_refuses_pickled_objects(tmp_path):
    save_checkpoint(tmp_path / "ok.pt", {"step": 3, "t": torch.ones(2), "h": [{"a": 1.0}]})
    assert load_checkpoint(tmp_path / "ok.pt")["step"] == 3

    torch.save({"x": datetime.datetime.now()}, tmp_path / "evil.pt")  # needs pickle
    with pytest.raises(RunDirError, match="evil.pt holds objects other than tensors and plain"):
        load_checkpoint(tmp_path / "evil.pt")
    (tmp_path / "bad.pt").write_bytes(b"\x00garbage")
    with pytest.raises(RunDirError, match=r"bad.pt is truncated or corrupt \(.*; the run must"):
        load_checkpoint(tmp_path / "bad.pt")
