"""``attnlab eval RUN_DIR``: the test-set report of a run's best model."""

from __future__ import annotations

import argparse
import json

from attnlab.cli.common import Parser, add_device_option, given_path, given_text


def parse(prog: str, argv: list[str]) -> argparse.Namespace:
    parser = Parser(prog=prog, description=__doc__)
    parser.add_argument("run_dir", type=given_path, metavar="RUN_DIR", help="a run directory")
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.add_argument(
        "--save",
        action="store_true",
        help="also write the report into the run's metrics.json and its figures into plots/ "
        "(without it, eval writes nothing: a read-only run works)",
    )
    add_device_option(parser)
    parser.add_argument(
        "--data-dir",
        default=None,
        type=given_text,
        metavar="DIR",
        help="the data set's folder, if it is not where the run found it in training",
    )
    return parser.parse_intermixed_args(argv)


def run(args: argparse.Namespace) -> int:
    from attnlab.evaluation import evaluate_run
    from attnlab.runs import load_run
    from attnlab.training.lock import RunLock

    loaded = load_run(args.run_dir, data_dir=args.data_dir)
    if args.save:  # one writer at a time: not while the run trains (it rewrites metrics.json)
        hint = "wait for it to finish, or leave out --save (eval reads the last saved model)"
        with RunLock(args.run_dir, hint):
            report = evaluate_run(loaded, device=args.device, save=True)
    else:
        report = evaluate_run(loaded, device=args.device)
    print(json.dumps(report, indent=2) if args.json else loaded.task.format_report(report))
    return 0
