"""Tasks registered by name."""

from __future__ import annotations

from attnlab.errors import AttnlabError
from attnlab.tasks.base import Task

TASKS: dict[str, type[Task]] = {}


def register(cls: type[Task]) -> type[Task]:
    """Class decorator: make a task available as ``attnlab train <cls.name>``."""
    if cls.name in TASKS:
        raise ValueError(f"a task named {cls.name!r} is already registered")
    TASKS[cls.name] = cls
    return cls


def get_task(name: str) -> type[Task]:
    """The task class called ``name``; an unknown name is an AttnlabError listing the known ones."""
    if name not in TASKS:
        raise AttnlabError(f"unknown task {name!r}; known tasks: {', '.join(sorted(TASKS))}")
    return TASKS[name]
