"""``attnlab translate RUN_DIR SENTENCE ...``: translate sentences in the run's direction
(en-fr or fr-en), greedily or with beam search; both decode with a key/value cache."""

from __future__ import annotations

import argparse

from attnlab.cli.common import Parser, add_file_option, given_path, inputs, print_predictions, text
from attnlab.errors import InputError

MAX_BEAM = 1000


def parse(prog: str, argv: list[str]) -> argparse.Namespace:
    parser = Parser(prog=prog, description=__doc__)
    parser.add_argument("run_dir", type=given_path, metavar="RUN_DIR", help="a translation run")
    parser.add_argument(
        "inputs", nargs="*", type=text, metavar="SENTENCE", help='e.g. "I am cold."'
    )
    add_file_option(parser, "sentences")
    parser.add_argument("--beam", type=int, default=1, help="beam size (1: greedy search)")
    parser.add_argument("--json", action="store_true", help="print JSON")
    return parser.parse_intermixed_args(argv)


def run(args: argparse.Namespace) -> int:
    from attnlab.runs import load_run
    from attnlab.tasks.base import Translator

    if args.beam < 1:
        raise InputError(f"--beam must be at least 1; got {args.beam}")
    if args.beam > MAX_BEAM:
        raise InputError(f"--beam must be at most {MAX_BEAM:,}; got {args.beam}")
    items = inputs(args, "sentences")
    loaded = load_run(args.run_dir)
    if not isinstance(loaded.task, Translator):
        raise InputError(
            f"{args.run_dir} is a {loaded.task.name} run; attnlab translate needs a translate "
            "or translate-small run"
        )
    translations = loaded.task.translations(loaded.model, items, beam=args.beam)
    print_predictions(loaded.task, translations, args.json)
    return 0
