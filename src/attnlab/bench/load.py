"""Competing CPU load for ``attnlab bench --load N``: N other PyTorch processes, busy.

A user's machine is rarely idle: a notebook kernel beside a training job, a laptop with a
browser, a CI runner shared with other jobs. To measure attnlab and its reference under the
same load, :func:`competing_load` starts ``N`` child processes, each training a small
Transformer (4 pre-LN layers of width 128, batches of 12 x 64 tokens: the size of the baby
GPT of ``attnlab train shakespeare``) in a loop with PyTorch's default thread count, as a
training job beside the user's would; it waits until each has started its loop, and stops
them when the measurement ends. The child is plain PyTorch, so the load does not depend on
the attnlab under test.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager

# Each child prints "ready" once its first training step is done, then loops until killed, or
# until its parent is gone (a parent killed by a signal runs no cleanup: no orphan keeps busy).
# It ignores Ctrl-C, which a terminal sends to the whole foreground process group: attnlab
# stops it on its way out, and its KeyboardInterrupt would print a traceback on the terminal.
# (It stays in attnlab's process group, so that Ctrl-Z suspends it with attnlab.)
_BUSY_LOOP = """
import signal
signal.signal(signal.SIGINT, signal.SIG_IGN)
import os
import torch
parent = os.getppid()
torch.manual_seed(0)
layer = torch.nn.TransformerEncoderLayer(128, 4, 512, batch_first=True, norm_first=True)
model = torch.nn.TransformerEncoder(layer, num_layers=4, enable_nested_tensor=False)
optimizer = torch.optim.AdamW(model.parameters())
x = torch.randn(12, 64, 128)
mask = torch.nn.Transformer.generate_square_subsequent_mask(64)
def step():
    optimizer.zero_grad()
    model(x, mask=mask, is_causal=True).square().mean().backward()
    optimizer.step()
step()
print("ready", flush=True)
while os.getppid() == parent:
    step()
"""


@contextmanager
def competing_load(processes: int) -> Iterator[list[subprocess.Popen]]:
    """Run ``processes`` busy PyTorch training loops while the ``with`` body runs.

    Enters once every child has printed that its loop started (an event, not a sleep), and
    gives the list of children; they are killed on exit, also when the body raises.
    """
    children: list[subprocess.Popen] = []
    try:
        for _ in range(processes):
            children.append(
                subprocess.Popen(
                    [sys.executable, "-c", _BUSY_LOOP],
                    stdout=subprocess.PIPE,
                    stdin=subprocess.DEVNULL,
                    text=True,
                )
            )
        for child in children:
            assert child.stdout is not None  # stdout=PIPE
            if child.stdout.readline().strip() != "ready":
                raise RuntimeError(f"a load process exited early (status {child.wait()})")
        yield children
    finally:
        for child in children:
            child.kill()
        for child in children:
            child.wait()
            if child.stdout is not None:  # always: stdout=PIPE
                child.stdout.close()
