"""Tasks: data + model + loss + metrics, one module each, registered by name.

Importing this package is cheap: a task's module (and torch, and the libraries it needs) is
imported the first time the task is asked for, by :func:`get_task` or through ``TASKS``.
``Task``, ``Splits`` and ``AttentionView`` are imported on first use too.
"""

from __future__ import annotations

import importlib
from typing import Any

from attnlab.tasks.registry import get_task, register, registered, task_names

__all__ = ["TASKS", "AttentionView", "Splits", "Task", "get_task", "register", "task_names"]

_LAZY = {
    "Task": "attnlab.tasks.base",
    "Splits": "attnlab.tasks.base",
    "AttentionView": "attnlab.viz.views",
}


def __getattr__(name: str) -> Any:
    if name == "TASKS":
        return registered()
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'attnlab.tasks' has no attribute {name!r}")
