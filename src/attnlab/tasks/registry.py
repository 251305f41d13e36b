"""Tasks by name: the built-in ones from their cards, plus any a user registers.

The built-in tasks are known by their :class:`~attnlab.configs.TaskCard` (name, config,
module) without importing their code; :func:`get_task` imports a task's module on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from attnlab.configs.tasks import CARDS
from attnlab.errors import AttnlabError

if TYPE_CHECKING:
    from attnlab.tasks.base import Task

_REGISTERED: dict[str, type[Task]] = {}


def task_names() -> list[str]:
    """The names of every known task, sorted: built-in and registered."""
    return sorted(set(CARDS) | set(_REGISTERED))


def register(cls: type[Task]) -> type[Task]:
    """Class decorator: make a task available as ``attnlab train <cls.name>``."""
    if _REGISTERED.get(cls.name, cls) is not cls:
        raise ValueError(f"a task named {cls.name!r} is already registered")
    _REGISTERED[cls.name] = cls
    return cls


def get_task(name: str) -> type[Task]:
    """The task class called ``name``; an unknown name is an AttnlabError listing the known ones."""
    if name not in _REGISTERED and name in CARDS:
        importlib.import_module(CARDS[name].module)
    if name not in _REGISTERED:
        raise AttnlabError(f"unknown task {name!r}; known tasks: {', '.join(task_names())}")
    return _REGISTERED[name]


def registered() -> dict[str, type[Task]]:
    """Every task by name (imports all the built-in tasks' modules)."""
    return {name: get_task(name) for name in task_names()}
