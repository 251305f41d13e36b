"""What this machine has: the memory free for a new allocation, checked before allocating.

A size that no machine can hold (``--d-model 100000``, ``--train-size 100000000``) gets one
sentence instead of minutes of swapping and a kill by the kernel. Imports no torch.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from attnlab.errors import ConfigError

if TYPE_CHECKING:
    import torch

GB = 1024**3
MB = 1024**2


def available_memory() -> int | None:
    """Bytes of memory available to a new allocation (Linux: MemAvailable), or None."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def available_on(device: torch.device) -> int | None:
    """Bytes free for a new allocation on ``device``: the host's for the CPU, the GPU's own
    for CUDA; ``None`` where it is not known (e.g. Apple's MPS)."""
    if device.type == "cuda":
        import torch  # only here: this module imports no torch

        free, _total = torch.cuda.mem_get_info(device)
        return free
    if device.type == "cpu":
        return available_memory()
    return None


def check_memory(needed: int, what: str, advice: str) -> None:
    """Refuse, with a :class:`ConfigError`, to allocate ``needed`` bytes for ``what`` (e.g.
    "the generated data") when this machine has less available; ``advice`` says what to
    choose instead."""
    refuse_if_short(needed, available_memory(), what, advice)


def refuse_if_short(
    needed: int,
    available: int | None,
    what: str,
    advice: str,
    where: str = "this machine",
    bound: str = "about",
) -> None:
    """Refuse, with a :class:`ConfigError`, ``needed`` bytes for ``what`` when ``where`` (a
    machine or a device) has less ``available``; ``None`` (not known) refuses nothing.
    ``bound`` ("about", "at least") says how exact ``needed`` is."""
    if available is not None and needed > available:
        raise ConfigError(
            f"{what} needs {bound} {size_in_words(needed)}, and {where} has "
            f"{size_in_words(available)} available ({advice})"
        )


def size_in_words(n_bytes: int) -> str:
    """``n_bytes`` as GB with one decimal ("30.5 GB"), as MB below 1 GB ("312 MB") and in
    bytes below 1 MB, so a small size never reads "0.0 GB"; GB and MB are binary (2**30 and
    2**20 bytes)."""
    if n_bytes >= GB:
        return f"{n_bytes / GB:,.1f} GB"
    if n_bytes >= MB:
        return f"{n_bytes / MB:,.0f} MB"
    return f"{n_bytes:,} bytes"
