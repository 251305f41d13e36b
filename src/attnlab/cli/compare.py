"""``attnlab compare TASK``: train every variant of a task (e.g. names: attnlab encoder, torch
encoder layers, GRU) on the same split, each for as many epochs as fit in --budget seconds,
and print one table. With ``--layer FILE.py:ClassName`` the rows are your layer, attnlab's
and torch's ``nn.TransformerEncoderLayer`` (on shakespeare, ``--arch llama --layer``: your Llama
block and attnlab's); the translation tasks compare only with ``--decoder-layer
FILE.py:ClassName``: your decoder layer and attnlab's."""

from __future__ import annotations

import argparse
import dataclasses
import json
import signal
import sys
from pathlib import Path
from typing import Any

from attnlab.cli.common import flag, given_path, typed_options
from attnlab.cli.tasks import parse_task
from attnlab.configs import CARDS, TrainConfig
from attnlab.errors import InputError

COMPARABLE = {
    name: card
    for name, card in CARDS.items()
    if card.variants or "decoder_layer" in {f.name for f in dataclasses.fields(card.config)}
}


def _compare_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("comparison")
    group.add_argument("--budget", type=float, default=120.0, help="seconds per variant")
    group.add_argument(
        "--out",
        type=given_path,
        default=None,
        help="folder for the runs; default: runs/compare-<task>/<timestamp>/",
    )
    group.add_argument("--json", action="store_true", help="print JSON")


def parse(prog: str, argv: list[str]) -> argparse.Namespace:
    return parse_task(prog, argv, _compare_options, COMPARABLE)


def run(args: argparse.Namespace) -> int:
    from attnlab.experiments.compare import check_variants, compare, variants_of
    from attnlab.experiments.launch import configs_from
    from attnlab.runs import check_new_run_dir, new_run_dir
    from attnlab.tasks import get_task
    from attnlab.training.devices import check_precision, resolve_device

    if not 0 < args.budget < 10**7:
        raise InputError(f"--budget must be a positive number of seconds; got {args.budget}")
    task_cls = get_task(args.task)
    options = typed_options(args, task_cls.Config, TrainConfig)
    task_config, train_config = configs_from(task_cls, options)
    check_precision(resolve_device(train_config.device), train_config.precision)
    variants = variants_of(task_cls, task_config)
    _refuse_options_the_variants_set(task_cls.name, options, variants, task_cls.variants)
    if not variants:
        raise InputError(
            f"attnlab compare {task_cls.name} compares a decoder layer of your own with "
            "attnlab's: give --decoder-layer FILE.py:ClassName"
        )
    if args.out is not None:  # a full --out is named before any data is read
        check_new_run_dir(Path(args.out), resumable=False)
    # Before any variant trains and before any run directory: a layer of the user's that does
    # not fit is refused here, as its variant's model is built.
    check_variants(task_cls, task_config, variants, train_config)
    out = new_run_dir(f"compare-{task_cls.name}", args.out, resumable=False)
    print(f"comparing {', '.join(variants)} for {args.budget:g} s each in {out}", flush=True)
    rows: list[dict[str, Any]] = []
    try:
        for row in compare(task_cls, task_config, train_config, variants, args.budget, out):
            rows.append(row)
    except KeyboardInterrupt as e:  # Ctrl-C, SIGTERM, SIGHUP (attnlab.errors.Interrupted)
        # The finished variants are worth their minutes: show them, then say what stopped.
        if rows:
            _print_rows(rows, args.json)
        signum = getattr(e, "signum", signal.SIGINT)
        print(f"attnlab: {_stopped(signum, list(variants), rows)}; the runs are in {out}",
              file=sys.stderr)  # fmt: skip
        return 128 + signum
    _print_rows(rows, args.json)
    return 0


def _refuse_options_the_variants_set(
    task: str, options: dict[str, Any], variants: dict[str, dict[str, Any]], own: dict
) -> None:
    """Refuse an option that the task's own variants set (--model of names, --arch of
    shakespeare): each variant replaces it, so it would be ignored without a word."""
    if variants is not own:  # a layer of the user's: its variant keeps the options given
        return
    given = sorted({key for overrides in variants.values() for key in overrides} & set(options))
    if given:
        raise InputError(
            f"{flag(given[0])} cannot be given to attnlab compare {task}: its variants "
            f"({', '.join(variants)}) set it"
        )


def _stopped(signum: int, variants: list[str], rows: list[dict[str, Any]]) -> str:
    """What a stop signal left, in words: the variant it cut short and the finished ones."""
    name = signal.Signals(signum).name
    stopped = "interrupted" if name == "SIGINT" else f"interrupted by {name}"
    if len(rows) < len(variants):
        stopped += f" during variant {variants[len(rows)]!r}"
    if not rows:
        return f"{stopped}: no variant finished"
    finished = ", ".join(variants[: len(rows)])
    return f"{stopped}: the table holds the variants that finished ({finished})"


def _print_rows(rows: list[dict[str, Any]], as_json: bool) -> None:
    from attnlab.experiments.compare import format_table

    print(json.dumps(rows, indent=2) if as_json else format_table(rows))
