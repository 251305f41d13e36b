"""``attnlab train TASK``: train a model; prints the run directory, the test report and the
files of the run."""

from __future__ import annotations

import argparse
import signal
import sys

from attnlab.cli.common import given_path, typed_options
from attnlab.cli.tasks import parse_task
from attnlab.configs import CARDS, TrainConfig


def _run_options(parser: argparse.ArgumentParser) -> None:
    run = parser.add_argument_group("run directory")
    run.add_argument(
        "--out",
        type=given_path,
        default=None,
        help="run directory; default: runs/<task>/<timestamp>/",
    )
    run.add_argument(
        "--resume",
        type=given_path,
        default=None,
        metavar="RUN_DIR",
        help="continue RUN_DIR from its last checkpoint",
    )
    run.add_argument(
        "--report-on-stop",
        action="store_true",
        help="when Ctrl-C, SIGTERM or SIGHUP stops training early, validate that step and "
        "write the test report (by default a stopped run saves its checkpoint only and exits "
        "with 128 + the signal number)",
    )
    run.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="show a progress bar",
    )


def parse(prog: str, argv: list[str]) -> argparse.Namespace:
    return parse_task(prog, argv, _run_options)


def run(args: argparse.Namespace) -> int:
    from attnlab.experiments.launch import train
    from attnlab.training.checkpoint import METRICS

    options = typed_options(args, CARDS[args.task].config, TrainConfig)
    result = train(
        args.task,
        out=args.out,
        resume=args.resume,
        progress=args.progress,
        report_on_stop=args.report_on_stop,
        **options,
    )
    if result is None:  # a torchrun process other than rank 0
        return 0
    if result.run is not None and result.report is not None:
        print(result.run.task.format_report(result.report))
    print(f"\nrun directory: {result.run_dir}")
    files = f"checkpoint.pt (resume with --resume {result.run_dir}), config.json, {METRICS}"
    if result.run is None or result.curves is None:
        print(f"  {files} (stopped before its first validation: no best model yet)")
    else:
        curves = result.curves.relative_to(result.run_dir)
        print(f"  model.safetensors (best by val {result.run.task.monitor}), {files}, {curves}")
    print(f"  TensorBoard: tensorboard --logdir {result.run_dir / 'tensorboard'}")
    if result.stopped_by is None:
        return 0
    print(
        f"attnlab: stopped by {result.stopped_by} after step {result.step}; the checkpoint is "
        f"saved: continue with --resume {result.run_dir}",
        file=sys.stderr,
    )
    return 128 + getattr(signal, result.stopped_by, signal.SIGINT)
