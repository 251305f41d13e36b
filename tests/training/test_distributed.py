"""Data-parallel training through torchrun: the same model as one process, one run directory."""

import json
import os
import socket
import subprocess
import sys

import pytest
import torch
import torch.distributed as dist
from torch import nn

from attnlab.cli import main
from attnlab.training import distributed
from attnlab.training.checkpoint import load_checkpoint
from attnlab.training.distributed import EpochBatchSampler

# 400 fixed-length sequences (every example has the same number of tokens, so a mean over
# tokens is a mean over examples), global batches of 40: 10 steps per epoch.
TINY = ["--train-size", "400", "--val-size", "40", "--test-size", "40", "--min-len", "16",
        "--batch-size", "40", "--epochs", "2", "--val-every", "4", "--no-progress"]  # fmt: skip
# Plain SGD for comparisons across summation orders: Adam divides by the root of the squared
# gradients, so a parameter whose true gradient is zero (the key bias: softmax ignores a
# constant added to all scores) moves by +-lr on float rounding noise, which differs when the
# same gradient is summed in another order.
SGD = ["--optimizer", "sgd", "--lr", "0.5"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun(nproc: int, cwd, *args: str) -> subprocess.CompletedProcess:
    """``torchrun --nproc_per_node=nproc -m attnlab train reverse ARGS`` on CPU (gloo)."""
    launcher = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc}",
                f"--master_port={free_port()}"]  # fmt: skip
    command = [*launcher, "-m", "attnlab", "train", "reverse", *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    # The timeout guards against a deadlock between the processes; it measures nothing.
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def test_two_processes_train_the_same_model_as_one_with_the_same_global_batch(tmp_path):
    # 2 processes x 2 accumulation steps: micro-batches of 10, gradients averaged by DDP;
    # dropout is 0 (one process cannot draw the same masks as two).
    steps = ["--max-steps", "6", *SGD]
    result = torchrun(2, tmp_path, *TINY, *steps, "--grad-accum", "2")
    assert main(["train", "reverse", "--out", str(tmp_path / "single"), *TINY, *steps]) == 0

    runs = list((tmp_path / "runs" / "reverse").iterdir())
    assert len(runs) == 1  # rank 0 named the run directory and told rank 1
    assert result.stdout.count("run directory:") == 2  # rank 0 alone printed (start and end)
    assert len(list((runs[0] / "tensorboard").iterdir())) == 1  # one event file

    ddp, single = (
        load_checkpoint(runs[0] / "checkpoint.pt"),
        load_checkpoint(tmp_path / "single" / "checkpoint.pt"),
    )
    assert ddp["step"] == single["step"] == 6
    assert ddp["model"].keys() == single["model"].keys()  # no "module." prefixes
    for name, value in single["model"].items():
        torch.testing.assert_close(ddp["model"][name], value, rtol=0, atol=1e-6, msg=name)
    assert len(ddp["rng_ranks"]) == 2  # each process's dropout random state, for resuming


@pytest.mark.slow
def test_resume_under_torchrun_is_bit_exact(tmp_path):
    # dropout on: each process's random state must be restored; interrupted mid-epoch
    options = [*TINY, "--dropout", "0.1"]
    torchrun(2, tmp_path, *options, "--max-steps", "14", "--out", "straight")
    torchrun(2, tmp_path, *options, "--max-steps", "7", "--out", "split")
    torchrun(2, tmp_path, "--resume", "split", "--max-steps", "14", "--no-progress")
    straight = load_checkpoint(tmp_path / "straight" / "checkpoint.pt")
    split = load_checkpoint(tmp_path / "split" / "checkpoint.pt")
    assert straight["step"] == split["step"] == 14
    for name, value in straight["model"].items():
        assert torch.equal(split["model"][name], value), name


# Training in two torchrun processes, where only rank 0 receives SIGTERM, during step 6.
SIGNAL_TO_RANK_0 = """
import os, signal, sys
from attnlab.cli import main
from attnlab.tasks.reverse import ReverseTask
from attnlab.training import distributed

real_loss, steps = ReverseTask.loss, []


def loss(self, model, batch):
    if batch[0].device.type != "meta":  # not the memory count before training
        steps.append(1)
        if len(steps) == 6 and distributed.rank() == 0:
            os.kill(os.getpid(), signal.SIGTERM)
    return real_loss(self, model, batch)


ReverseTask.loss = loss
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.slow
def test_a_signal_to_one_process_stops_all_and_the_resumed_run_ends_as_a_straight_one(tmp_path):
    """The processes agree at every step whether any was asked to stop, so all stop after
    step 6 and rank 0 writes its checkpoint; resumed under torchrun, the run writes the same
    history, best model and test report as one never stopped."""
    options = [*TINY, "--dropout", "0.1"]
    torchrun(2, tmp_path, *options, "--out", "straight")
    stopped = torchrun_script(
        tmp_path, SIGNAL_TO_RANK_0, "train", "reverse", *options, "--out", str(tmp_path / "split"),
        expect_failure=True,
    )  # fmt: skip
    assert "stopped by SIGTERM after step 6; the checkpoint is saved" in stopped.stderr
    assert load_checkpoint(tmp_path / "split" / "checkpoint.pt")["step"] == 6
    torchrun(2, tmp_path, "--resume", "split", "--no-progress")
    for name in ("metrics.json", "model.safetensors"):
        assert (tmp_path / "split" / name).read_bytes() == (
            tmp_path / "straight" / name
        ).read_bytes()


@pytest.mark.parametrize(("world", "accum"), [(1, 1), (2, 1), (2, 3), (3, 2), (2, 4)])
def test_the_processes_micro_batches_make_up_the_global_batches(world, accum):
    # 103 examples, global batches of 24: 4 full batches and a last one of 7, which is kept
    # when it still gives every micro-batch an example (7 >= world * accum), dropped otherwise.
    def batches(sampler, start_step=0):
        """The examples of each step that ``sampler``'s process sees (its micro-batches joined)."""
        sampler.set_epoch(2, start_step)
        micro, n = list(sampler), sampler.grad_accum
        return [sum(micro[s * n : (s + 1) * n], []) for s in range(len(micro) // n)]

    single = batches(EpochBatchSampler(103, 24, seed=5))
    samplers = [EpochBatchSampler(103, 24, 5, r, world, accum) for r in range(world)]
    per_rank = [batches(s) for s in samplers]
    steps = samplers[0].steps_per_epoch
    assert steps == (5 if world * accum <= 7 else 4)
    for step in range(steps):
        union = sorted(i for rank_batches in per_rank for i in rank_batches[step])
        assert union == sorted(single[step])
        assert len(union) == samplers[0].examples_in_step(step)
    # a resumed epoch starts at a step boundary and sees the same batches
    assert batches(samplers[-1], start_step=2) == per_rank[-1][2:]


def test_no_sync_skips_the_gradient_all_reduce_until_the_last_micro_step(monkeypatch):
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", str(free_port()))
    dist.init_process_group("gloo", rank=0, world_size=1)
    try:
        ddp = nn.parallel.DistributedDataParallel(nn.Linear(4, 2))
        all_reduces = []

        def count(state, bucket):
            all_reduces.append(1)
            future = torch.futures.Future()
            future.set_result(bucket.buffer())
            return future

        ddp.register_comm_hook(None, count)
        for micro_step in range(3):
            last = micro_step == 2
            with distributed.no_sync(ddp, skip=not last):
                ddp(torch.randn(5, 4)).sum().backward()
            assert len(all_reduces) == (1 if last else 0)
    finally:
        dist.destroy_process_group()


# What the test below runs in each of two torchrun processes: training's end (the group's
# block ends while the trainer still holds its DDP wrapper, right after an all_gather_object),
# then the wrapper's garbage collection and the interpreter's exit.
GROUP_THEN_EXIT = """
import gc
import torch
import torch.distributed as dist
from torch import nn
from attnlab.training import distributed

with distributed.process_group("cpu") as device:
    ddp = distributed.wrap(nn.Linear(4, 2), device)
    ddp(torch.randn(5, 4, device=device)).sum().backward()
    gathered = distributed.all_gather_object({"rank": distributed.rank()})
assert gathered == [{"rank": 0}, {"rank": 1}] and not dist.is_initialized()
del ddp
gc.collect()
print("exited the group")
"""


def torchrun_script(
    tmp_path, script: str, *args: str, expect_failure: bool = False
) -> subprocess.CompletedProcess:
    """``script`` run by two torchrun processes (gloo); its stdout and stderr. torchrun
    exits 0 unless ``expect_failure`` (a process that exits non-zero fails torchrun)."""
    path = tmp_path / "script.py"
    path.write_text(script)
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
               f"--master_port={free_port()}", str(path), *args]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    # The timeout guards against a deadlock between the processes; it measures nothing.
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert (result.returncode != 0) == expect_failure, result.stderr[-3000:]
    return result


def test_the_group_ends_with_its_block_and_the_processes_exit_cleanly(tmp_path):
    """The process group is destroyed when process_group's block ends, not later by the
    garbage collection of a DDP wrapper (its reducer owns the group): that later destruction
    held the GIL while joining gloo's threads, which may need it (a deadlock at the end of a
    torchrun run), or happened at interpreter exit (SIGABRT, "terminate called without an
    active exception"). The threads need the GIL when they are the last owners of a
    collective's tensors: Python keeps those (``distributed._held``; with torch's own
    all_gather_object, torch 2.3 deadlocked here, at random)."""
    result = torchrun_script(tmp_path, GROUP_THEN_EXIT)
    # Each process's line arrives whole, but torchrun's shared pipe may put the other's
    # between its text and its newline (Python writes them apart when unbuffered).
    assert result.stdout.count("exited the group") == 2, result.stdout
    assert "terminate called" not in result.stderr


# What the test below runs in each of two torchrun processes: every collective of
# attnlab.training.distributed, with objects of unequal sizes; each writes what it received.
COLLECTIVES = """
import json, sys, torch
from attnlab.errors import DataError
from attnlab.training import distributed

def refuse():
    raise DataError("only rank 0 ran this")

with distributed.process_group("cpu"):
    rank = distributed.rank()
    gathered = distributed.all_gather_object({"rank": rank, "pad": "x" * (1000 * rank)})
    told = distributed.broadcast_object(["sent by", rank])
    sums = distributed.sum_over_processes([rank + 1.5, torch.tensor(2.0)], torch.device("cpu"))
    made = distributed.on_main(lambda: f"made by {distributed.rank()}")
    try:
        distributed.on_main(refuse)
    except DataError as e:
        refused = str(e)
result = {"gathered": [[g["rank"], len(g["pad"])] for g in gathered], "told": told,
          "sums": sums, "made": made, "refused": refused}
open(f"{sys.argv[1]}/rank{rank}.json", "w").write(json.dumps(result))
"""


def test_the_collectives_give_every_process_the_same_objects(tmp_path):
    """attnlab writes its object collectives out (so that Python keeps their tensors, see
    ``distributed._held``): objects of unequal sizes arrive whole, in rank order; rank 0's
    object and its attnlab error reach every process."""
    torchrun_script(tmp_path, COLLECTIVES, str(tmp_path))
    for rank in (0, 1):
        received = json.loads((tmp_path / f"rank{rank}.json").read_text())
        assert received == {
            "gathered": [[0, 0], [1, 1000]],
            "told": ["sent by", 0],
            "sums": [1.5 + 2.5, 4.0],
            "made": "made by 0",
            "refused": "only rank 0 ran this",
        }
