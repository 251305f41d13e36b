import datetime
import os
import stat

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


@pytest.fixture
def umask_027():
    """A umask that tells the cases apart (0o600, 0o640, 0o644), restored afterwards."""
    previous = os.umask(0o027)
    yield
    os.umask(previous)


def test_a_new_file_gets_the_permissions_of_open_and_a_replaced_one_keeps_its_own(
    tmp_path, umask_027
):
    """tempfile.mkstemp made every file attnlab wrote 0o600, whatever the umask: a grades
    CSV or an attention page meant for others could be read by no one else."""
    with open(tmp_path / "by-open", "w"):
        pass  # the reference: what writing in place gives
    atomic_write(tmp_path / "new.csv", lambda tmp: tmp.write_text("a,b\n"))
    assert stat.S_IMODE((tmp_path / "new.csv").stat().st_mode) == stat.S_IMODE(
        (tmp_path / "by-open").stat().st_mode
    )
    (tmp_path / "shared.csv").write_text("old\n")
    os.chmod(tmp_path / "shared.csv", 0o604)
    atomic_write(tmp_path / "shared.csv", lambda tmp: tmp.write_text("new\n"))
    assert stat.S_IMODE((tmp_path / "shared.csv").stat().st_mode) == 0o604
    os.chmod(tmp_path / "shared.csv", 0o444)  # read-only for its owner too: still replaced
    atomic_write(tmp_path / "shared.csv", lambda tmp: tmp.write_text("newer\n"))
    assert (tmp_path / "shared.csv").read_text() == "newer\n"
    assert stat.S_IMODE((tmp_path / "shared.csv").stat().st_mode) == 0o444


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
