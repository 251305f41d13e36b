"""attnlab: the Transformer of "Attention Is All You Need", from scratch in PyTorch.

``import attnlab`` is light: the blocks are in :mod:`attnlab.nn`, and :func:`train`,
:func:`load` and :func:`load_run` import the rest of attnlab (tasks, training) when first used.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "train": "attnlab.experiments.launch",
    "load": "attnlab.runs",
    "load_run": "attnlab.runs",
}

__all__ = ["__version__", "load", "load_run", "train"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'attnlab' has no attribute {name!r}")
