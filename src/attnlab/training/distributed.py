"""Data-parallel training with PyTorch's own engine: torchrun + DistributedDataParallel.

``torchrun --nproc_per_node=N -m attnlab train TASK ...`` starts N copies of the same
command and tells each one who it is through environment variables (``RANK``: 0..N-1 over
all machines, ``LOCAL_RANK``: its index on this machine, ``WORLD_SIZE``: N in all, and
``MASTER_ADDR``/``MASTER_PORT``: where to meet). Each process:

1. joins the process group (NCCL between GPUs, gloo between CPU processes) and, on CUDA,
   takes the GPU ``cuda:LOCAL_RANK``;
2. builds the same model from the same seed; ``DistributedDataParallel`` also copies rank 0's
   weights to the others, so all start equal;
3. trains on its own slice of every global batch (:class:`EpochBatchSampler`); during
   ``backward`` DDP averages the gradients over the processes, so every process takes the same
   optimizer step and the weights stay equal without ever being sent again.

Only rank 0 writes the run directory, prints and logs. Everything that decides what happens
next (the loss, a NaN, early stopping, Ctrl-C) is shared by a collective operation, so every
process takes the same decision at the same step — a process that went its own way would
wait forever in the next all-reduce.

Without torchrun (no ``WORLD_SIZE`` in the environment) every function here is the
single-process case: rank 0 of 1, and no communication.
"""

from __future__ import annotations

import os
import pickle
import weakref
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from datetime import timedelta
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import Sampler

from attnlab.errors import AttnlabError
from attnlab.training.devices import resolve_device

T = TypeVar("T")


def launched_by_torchrun() -> bool:
    """True in a process started by torchrun (it sets ``WORLD_SIZE`` and ``RANK``)."""
    return "WORLD_SIZE" in os.environ and "RANK" in os.environ


def rank() -> int:
    """This process's index among all processes (0 without torchrun)."""
    return dist.get_rank() if dist.is_initialized() else 0


def world_size() -> int:
    """The number of processes training together (1 without torchrun)."""
    return dist.get_world_size() if dist.is_initialized() else 1


def is_main() -> bool:
    """True on the one process that writes files and prints (rank 0)."""
    return rank() == 0


def process_device(name: str) -> torch.device:
    """The device this process trains on: ``--device`` resolved, and under torchrun on CUDA
    the GPU of this process (``cuda:LOCAL_RANK``), so that N processes use N GPUs."""
    device = resolve_device(name)
    if device.type != "cuda" or not launched_by_torchrun():
        return device
    if device.index is not None and int(os.environ["WORLD_SIZE"]) > 1:
        raise AttnlabError(
            f"--device {name} names one GPU, but torchrun started several processes: "
            "pass --device cuda (each process then uses cuda:LOCAL_RANK)"
        )
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    if local_rank >= torch.cuda.device_count():
        raise AttnlabError(
            f"torchrun started process LOCAL_RANK={local_rank}, but this machine has only "
            f"{torch.cuda.device_count()} CUDA GPU(s): lower --nproc_per_node"
        )
    return torch.device("cuda", local_rank)


@contextmanager
def process_group(device_name: str) -> Iterator[torch.device]:
    """Join torchrun's process group for the enclosed block; yields this process's device.

    Without torchrun this only resolves the device. NCCL (the GPU collective library) when
    training on CUDA, gloo on CPU. The group is destroyed on the way out, error or not.
    """
    device = process_device(device_name)
    if not launched_by_torchrun():
        yield device
        return
    if device.type == "cuda":
        torch.cuda.set_device(device)  # NCCL and the object collectives use the current GPU
    # A process waits in a collective while rank 0 validates and writes checkpoints; the
    # timeout only has to catch a process that died, so it is generous.
    backend = "nccl" if device.type == "cuda" else "gloo"
    dist.init_process_group(backend=backend, timeout=timedelta(minutes=30))
    try:
        yield device
    finally:
        _release_wrappers()
        dist.destroy_process_group()
        _held.clear()  # the group's threads are gone: Python frees these tensors itself


# The tensors of the latest collectives, kept by Python until the group is destroyed. A gloo
# worker thread lets go of a collective's tensors a moment after handing back its result. Were
# it their last owner, it would need the GIL to free their Python objects; and older torch
# (2.3) destroys the group while holding the GIL, waiting for that thread to end: a deadlock at
# the end of a torchrun run (2 runs in 9 on a busy CPU). So Python owns every tensor attnlab
# hands to a collective, the latest ones for as long as the group lives (torch's object collectives,
# whose tensors are out of reach, are written out below for that reason).
_held: deque[tuple[torch.Tensor, ...]] = deque(maxlen=16)


def _device_of_collectives() -> torch.device:
    """Where the object collectives' byte tensors live: NCCL only moves GPU memory."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def _encoded(obj: Any, device: torch.device) -> torch.Tensor:
    """``obj`` pickled into its own byte tensor on ``device``: ``(n,)`` uint8."""
    return torch.frombuffer(bytearray(pickle.dumps(obj)), dtype=torch.uint8).to(device, copy=True)


def _decoded(payload: torch.Tensor, size: int) -> Any:
    """The object pickled in the first ``size`` bytes of ``payload``."""
    return pickle.loads(payload[:size].cpu().numpy().tobytes())


def on_main(fn: Callable[[], T]) -> T:
    """Call ``fn`` on rank 0 only and return its result on every process.

    Used for what must happen once, such as creating the run directory. If ``fn`` raises an
    attnlab error, every process raises it, so all of them stop with the same message instead
    of the others waiting for a result that never comes.
    """
    if world_size() == 1:
        return fn()
    result: tuple[str, Any] = ("ok", None)
    if is_main():
        try:
            result = ("ok", fn())
        except AttnlabError as e:
            result = ("error", e)
    status, value = broadcast_object(result)
    if status == "error":
        raise value
    return value


def broadcast_object(obj: T) -> T:
    """Rank 0's ``obj`` on every process (``obj`` itself without torchrun)."""
    if world_size() == 1:
        return obj
    device = _device_of_collectives()
    payload = _encoded(obj, device) if is_main() else torch.empty(0, dtype=torch.uint8)
    size = torch.tensor([payload.numel()], device=device)  # (1,)
    dist.broadcast(size, src=0)
    if not is_main():
        payload = torch.empty(int(size.item()), dtype=torch.uint8, device=device)
    dist.broadcast(payload, src=0)
    _held.append((size, payload))
    return obj if is_main() else _decoded(payload, payload.numel())


def all_gather_object(obj: T) -> list[T]:
    """Every process's ``obj``, in rank order (``[obj]`` without torchrun)."""
    if world_size() == 1:
        return [obj]
    device = _device_of_collectives()
    payload = _encoded(obj, device)  # (n,)
    size = torch.tensor([payload.numel()], device=device)  # (1,)
    sizes = [torch.empty_like(size) for _ in range(world_size())]
    dist.all_gather(sizes, size)
    longest = max(int(n.item()) for n in sizes)
    padded = torch.zeros(longest, dtype=torch.uint8, device=device)  # (longest,)
    padded[: payload.numel()] = payload
    gathered = [torch.empty_like(padded) for _ in range(world_size())]
    dist.all_gather(gathered, padded)
    _held.append((size, *sizes, padded, *gathered))
    return [_decoded(t, int(n.item())) for t, n in zip(gathered, sizes, strict=True)]


def sum_over_processes(values: list[torch.Tensor | float], device: torch.device) -> list[float]:
    """The sums over all processes of a few scalars, in one all-reduce."""
    packed = torch.stack([torch.as_tensor(v, dtype=torch.float64, device=device) for v in values])
    if world_size() > 1:
        dist.all_reduce(packed, op=dist.ReduceOp.SUM)
        _held.append((packed,))
    return packed.tolist()


def wrap(model: nn.Module, device: torch.device) -> nn.Module:
    """``model`` in DistributedDataParallel under torchrun, else ``model`` itself."""
    if world_size() == 1:
        return model
    ddp = DistributedDataParallel(
        model, device_ids=[device.index] if device.type == "cuda" else None
    )
    _wrappers.add(ddp)
    return ddp


# The DDP wrappers made by wrap(), which must let go of the process group before it ends.
_wrappers: weakref.WeakSet[DistributedDataParallel] = weakref.WeakSet()


def _release_wrappers() -> None:
    """Make every DDP wrapper drop its references to the process group (they are unusable
    once the group is gone anyway).

    DDP's C++ reducer (and its logger, which holds the reducer) keep the group alive. Left
    there, the reducer is the group's last owner, and the group is destroyed whenever the
    trainer holding the wrapper is garbage-collected: from a Python deallocation, with the
    GIL held. The gloo group's destructor then joins its worker threads, one of which may
    still be freeing the tensors of the last collective (an ``all_gather_object``) and wait
    for the GIL: a deadlock; or, during interpreter shutdown, that thread dies inside a
    ``noexcept`` destructor: "terminate called without an active exception" (SIGABRT). With
    these references dropped, ``destroy_process_group`` destroys the group itself while the
    process still runs, the tensors of the last collectives still owned by Python (see
    ``_held``). (In torch 2.13 the DDP constructor keeps one more reference in C++, out of
    reach: the group's threads then live on, idle, until the process exits, and no garbage
    collection destroys it.)
    """
    for ddp in list(_wrappers):
        for name in ("logger", "reducer", "process_group"):
            vars(ddp).pop(name, None)
    _wrappers.clear()


def no_sync(model: nn.Module, skip: bool) -> AbstractContextManager:
    """With ``skip=True``, DDP keeps the gradients of this backward local (no all-reduce).

    Gradient accumulation adds several micro-batches' gradients before one optimizer step;
    only the last backward needs to average them over the processes, because the average of
    the sums equals the sum of the averages.
    """
    if skip and isinstance(model, DistributedDataParallel):
        return model.no_sync()
    return nullcontext()


class EpochBatchSampler(Sampler[list[int]]):
    """Shuffled global batches whose order depends only on ``(seed, epoch)``, cut into the
    micro-batches of this process.

    One optimizer step consumes one *global* batch of ``batch_size`` examples (the
    ``--batch-size`` flag), whatever the number of processes and accumulation steps: it is
    split evenly over the ``world_size`` processes, and each process's share into
    ``grad_accum`` micro-batches, which this sampler yields one by one. So 2 processes with
    ``--grad-accum 4`` and ``--batch-size 64`` run micro-batches of 8 and see exactly the
    examples of one process with batches of 64.

    Because the order is a pure function of the epoch, a resumed run can start in the middle
    of an epoch (``start_step``) and see exactly the batches an uninterrupted run would — this
    is why attnlab does not use ``torch.utils.data.DistributedSampler``, which can only start
    at the beginning of an epoch (and repeats examples to even out the processes).

    The last global batch of an epoch may be smaller; it is split as evenly as possible (see
    :meth:`examples_in_step`), and dropped if it has fewer examples than micro-batches.
    """

    def __init__(
        self,
        num_examples: int,
        batch_size: int,
        seed: int,
        rank: int = 0,
        world_size: int = 1,
        grad_accum: int = 1,
    ):
        self.num_examples = num_examples
        self.batch_size = batch_size
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.grad_accum = grad_accum
        self.epoch = 0
        self.start_step = 0

    def set_epoch(self, epoch: int, start_step: int = 0) -> None:
        """Shuffle for ``epoch`` and skip its first ``start_step`` global batches."""
        self.epoch, self.start_step = epoch, start_step

    @property
    def steps_per_epoch(self) -> int:
        """Global batches (optimizer steps) per epoch."""
        full, rest = divmod(self.num_examples, self.batch_size)
        return full + (rest >= self.world_size * self.grad_accum)

    def examples_in_step(self, step_in_epoch: int) -> int:
        """Examples of global batch ``step_in_epoch`` (``batch_size`` except maybe the last)."""
        return min(self.batch_size, self.num_examples - step_in_epoch * self.batch_size)

    def __len__(self) -> int:
        return self.steps_per_epoch * self.grad_accum

    def __iter__(self) -> Iterator[list[int]]:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        order = torch.randperm(self.num_examples, generator=g)
        pieces = self.world_size * self.grad_accum
        for step in range(self.start_step, self.steps_per_epoch):
            batch = order[step * self.batch_size : (step + 1) * self.batch_size]
            # Sizes differ by at most one; process r gets pieces r*A .. r*A + A-1.
            micro_batches = torch.tensor_split(batch, pieces)
            for m in range(self.grad_accum):
                yield micro_batches[self.rank * self.grad_accum + m].tolist()


def check_batch_split(batch_size: int, grad_accum: int, processes: int) -> None:
    """Refuse a global batch that does not split evenly into the micro-batches."""
    pieces = processes * grad_accum
    if batch_size % pieces:
        raise AttnlabError(
            f"--batch-size {batch_size} (the global batch) must split evenly over {processes} "
            f"process(es) x {grad_accum} accumulation step(s): use a multiple of {pieces}"
        )
