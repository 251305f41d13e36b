"""The per-task parsers of ``attnlab train`` and ``attnlab compare``, built from task cards
(no torch): one flag per field of the task's config and of the training config."""

from __future__ import annotations

import argparse
import ast
import importlib.util
from collections.abc import Callable

from attnlab.cli.common import Parser, add_config_options, plain
from attnlab.configs import CARDS, TaskCard, TrainConfig


def description(card: TaskCard) -> str:
    """The docstring of the task's module, read from its source without importing it."""
    spec = importlib.util.find_spec(card.module)
    if spec is None or spec.origin is None:
        return card.summary
    with open(spec.origin, encoding="utf-8") as f:
        return plain(ast.get_docstring(ast.parse(f.read())) or card.summary)


def parse_task(
    prog: str,
    argv: list[str],
    add_options: Callable[[argparse.ArgumentParser], None],
    cards: dict[str, TaskCard] = CARDS,
) -> argparse.Namespace:
    """Parse ``TASK [options]``: the task first, then a parser made for that task.

    ``add_options(parser)`` adds the command's own options (e.g. ``--out``).
    """
    listing = "\n".join(f"  {name:<16} {card.summary}" for name, card in cards.items())
    first = Parser(
        prog=prog,
        usage=f"{prog} TASK [options]",
        description=f"tasks:\n{listing}\n\n{prog} TASK --help shows a task's options.",
    )
    first.add_argument("task", choices=cards, metavar="TASK", help=argparse.SUPPRESS)
    first.add_argument("rest", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    if argv in ([], ["--"]):  # argparse would ask for "TASK, rest", naming its own field
        first.error(f"give a TASK: {', '.join(cards)}")
    chosen = first.parse_args(argv)
    card = cards[chosen.task]
    parser = Parser(prog=f"{prog} {card.name}", description=description(card))
    add_config_options(parser, card.config, {}, f"{card.name} data and model")
    add_config_options(parser, TrainConfig, card.train_defaults, "training")
    add_options(parser)
    args = parser.parse_args(chosen.rest)
    args.task = card.name
    return args
