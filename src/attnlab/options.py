"""A dataclass field with a help text: config dataclasses double as command-line options."""

from __future__ import annotations

from dataclasses import field
from typing import Any


def option(default: Any, help: str) -> Any:  # noqa: A002  (argparse's own word)
    """``dataclasses.field(default=default)`` carrying ``help`` for ``attnlab ... --help``."""
    return field(default=default, metadata={"help": help})
