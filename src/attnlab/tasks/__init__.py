"""Tasks: data + model + loss + metrics, one module each, registered by name."""

from attnlab.tasks import (  # noqa: F401  (registers the tasks)
    digits,
    names,
    reverse,
    shakespeare,
    translate,
)
from attnlab.tasks.base import AttentionView, Splits, Task
from attnlab.tasks.registry import TASKS, get_task, register

__all__ = ["TASKS", "AttentionView", "Splits", "Task", "get_task", "register"]
