"""What every benchmark suite of ``attnlab bench`` takes and returns.

A suite is a module ``attnlab.bench.<name>`` with a function
``run(options: BenchOptions) -> list[BenchResult]``: each result is one case measured on
attnlab and on its reference (torch.nn, Hugging Face, ...) in the same process, so the ratio
is taken under the same machine load. A suite whose reference is not installed raises
:class:`BenchSkipped` with the reason.
"""

from __future__ import annotations

import importlib.util
import statistics
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TypeVar

import torch


class BenchSkipped(Exception):  # noqa: N818 -- a signal ("skip this suite"), not an error
    """A suite cannot run here (e.g. its optional reference library is missing)."""


def transformers_problem() -> str | None:
    """Why Hugging Face ``transformers`` cannot be a reference here, or ``None`` when it can:
    it is not installed, or it does not support this torch (transformers 5 needs torch 2.6,
    and with an older one it imports but disables every model)."""
    if importlib.util.find_spec("transformers") is None:
        return "transformers is not installed"
    from transformers import __version__
    from transformers.utils import is_torch_available

    if not is_torch_available():
        return f"transformers {__version__} does not support torch {torch.__version__}"
    return None


@dataclass
class BenchOptions:
    """Settings shared by every suite.

    device: "cpu", "cuda", "cuda:N" or "mps". precision: "fp32", "bf16" or "fp16".
    compile: wrap both sides in torch.compile. quick: few repetitions, small sizes (smoke runs).
    size: a suite-specific model size name ("default" = the suite's own default).
    repeats: timed calls per side and case (None: the suite's own number).
    peak_tflops: the device's peak TFLOP/s for MFU, overriding the table of
    :func:`attnlab.bench.flops.peak_flops` (``attnlab bench`` also applies it to every result
    that reports "TFLOP/s", so a suite need not read it).
    data_dir: the tiny Shakespeare folder of the gpt suite's training case ("": the default
    search, ``$ATTNLAB_DATA_DIR`` then the download cache, and the case is skipped if that
    finds no data; a folder given that does not hold it is a DataError).
    load: competing PyTorch training processes to run each suite beside, after running it
    idle (0: idle only; see :mod:`attnlab.bench.load`).
    """

    device: str = "cpu"
    precision: str = "fp32"
    compile: bool = False
    quick: bool = False
    size: str = "default"
    repeats: int | None = None
    peak_tflops: float | None = None
    data_dir: str = ""
    load: int = 0


@dataclass
class BenchResult:
    """One case measured on both sides, e.g. tokens/s of GPT generation with a KV cache.

    ``higher_is_better`` says whether the unit is a rate (tokens/s) or a cost (ms); ``ratio``
    is always "how many times better attnlab is" (> 1 means attnlab wins).
    ``extra`` holds further figures, e.g. ``{"TFLOP/s": 312.0, "MFU": 0.41}``.
    """

    suite: str
    case: str
    unit: str
    attnlab: float
    reference: float | None
    reference_name: str
    higher_is_better: bool = True
    extra: dict[str, float] = field(default_factory=dict)

    @property
    def ratio(self) -> float | None:
        if self.reference is None or self.reference == 0 or self.attnlab == 0:
            return None
        if self.higher_is_better:
            return self.attnlab / self.reference
        return self.reference / self.attnlab


SideT = TypeVar("SideT")  # how the caller names its sides (a string, a tuple of them)


def interleaved_medians(
    sides: Mapping[SideT, Callable[[], object]], device: torch.device, repeats: int
) -> dict[SideT, float]:
    """Median seconds per call of each side, the sides alternating call by call.

    Alternating means that drift in the machine's load hits every side alike; on CUDA each
    call is timed between two synchronisations, so the time is the kernels' and not only
    their launch.
    """
    seconds: dict[SideT, list[float]] = {side: [] for side in sides}
    for _ in range(repeats):
        for side, call in sides.items():
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            start = time.perf_counter()
            call()
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            seconds[side].append(time.perf_counter() - start)
    return {side: statistics.median(s) for side, s in seconds.items()}
