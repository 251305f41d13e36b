"""``attnlab predict RUN_DIR INPUT ...``: a run's predictions for raw inputs."""

from __future__ import annotations

import argparse

from attnlab.cli.common import Parser, add_file_option, given_path, inputs, print_predictions, text


def parse(prog: str, argv: list[str]) -> argparse.Namespace:
    parser = Parser(prog=prog, description=__doc__)
    parser.add_argument("run_dir", type=given_path, metavar="RUN_DIR", help="a run directory")
    parser.add_argument("inputs", nargs="*", type=text, metavar="INPUT", help='e.g. "3 1 4 1 5"')
    add_file_option(parser, "inputs")
    parser.add_argument("--json", action="store_true", help="print JSON")
    return parser.parse_intermixed_args(argv)


def run(args: argparse.Namespace) -> int:
    from attnlab.runs import load_run

    items = inputs(args, "inputs")
    loaded = load_run(args.run_dir)
    print_predictions(loaded.task, loaded.task.predictions(loaded.model, items), args.json)
    return 0
