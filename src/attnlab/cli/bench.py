"""``attnlab bench [SUITE ...]``: time attnlab against its reference implementations in one
process and print one table with the ratios, plus TFLOP/s and model FLOPs utilisation (MFU)
where known. Suites: encoder, gpt, bert, decode, generate. With --load N, each suite runs
idle and then beside N competing PyTorch training processes, both in the same table."""

from __future__ import annotations

import argparse
import json
import os
import signal
from typing import TYPE_CHECKING

from attnlab.cli.common import Parser, add_device_option, flag, given_text
from attnlab.configs.train import PRECISIONS
from attnlab.errors import InputError, Interrupted

if TYPE_CHECKING:  # the bench package imports torch: only when the command runs
    from attnlab.bench import BenchReport

LIMITS = {"repeats": 10**6, "threads": 4096, "peak_tflops": 10**7}
MAX_LOAD = 64  # competing processes of --load


def parse(prog: str, argv: list[str]) -> argparse.Namespace:
    parser = Parser(prog=prog, description=__doc__)
    parser.add_argument("suites", nargs="*", metavar="SUITE", help="suites to run (default: all)")
    add_device_option(parser, ", mps")
    parser.add_argument("--precision", default="fp32", choices=PRECISIONS, help="autocast format")
    parser.add_argument("--compile", action="store_true", help="torch.compile both sides")
    parser.add_argument("--quick", action="store_true", help="small sizes, few repetitions")
    parser.add_argument(
        "--size", default="default", help="a suite's model size, e.g. gpt2-small for gpt"
    )
    parser.add_argument("--repeats", type=int, default=None, metavar="N", help="timed calls")
    parser.add_argument("--threads", type=int, default=None, metavar="N", help="CPU threads")
    parser.add_argument(
        "--peak-tflops",
        type=float,
        default=None,
        metavar="X",
        help="the device's peak TFLOP/s for MFU (default: known for H100, H200, A100)",
    )
    parser.add_argument(
        "--data-dir",
        default=None,  # not "": argparse would pass a text default through given_text
        type=given_text,
        metavar="DIR",
        help="folder holding tiny Shakespeare's input.txt, for the gpt suite's training case; "
        "checked before any suite runs (default: $ATTNLAB_DATA_DIR/tinyshakespeare, else the "
        "download cache, else that case is skipped)",
    )
    parser.add_argument(
        "--load",
        type=int,
        default=0,
        metavar="N",
        help="also run each suite beside N competing PyTorch training processes (a busy "
        "machine), after running it idle",
    )
    parser.add_argument("--json", action="store_true", help="print JSON")
    return parser.parse_intermixed_args(argv)


def run(args: argparse.Namespace) -> int:
    import torch

    from attnlab.bench import BenchReport, run_bench
    from attnlab.bench.common import BenchOptions
    from attnlab.training.devices import check_precision, resolve_device

    for name, limit in LIMITS.items():
        value = getattr(args, name)
        if value is not None and not 0 < value <= limit:
            raise InputError(f"{flag(name)} must be positive and at most {limit:g}; got {value}")
    cpus = os.cpu_count() or 1
    if args.threads is not None and args.threads > cpus:  # thousands of idle OpenMP threads
        raise InputError(
            f"--threads must be at most the {cpus} CPUs of this machine; got {args.threads}"
        )
    if not 0 <= args.load <= MAX_LOAD:
        raise InputError(f"--load must be between 0 and {MAX_LOAD} processes; got {args.load}")
    device = resolve_device(args.device)
    check_precision(device, args.precision)
    if args.data_dir:  # a folder the user named must hold usable data, before minutes of suites
        from attnlab.tasks.shakespeare import ShakespeareConfig, ShakespeareTask

        ShakespeareTask(ShakespeareConfig(data_dir=args.data_dir))
    if args.threads:
        torch.set_num_threads(args.threads)
    options = BenchOptions(
        device=str(device),
        precision=args.precision,
        compile=args.compile,
        quick=args.quick,
        size=args.size,
        repeats=args.repeats,
        peak_tflops=args.peak_tflops,
        data_dir=args.data_dir or "",
        load=args.load,
    )
    report = BenchReport(options)
    try:
        run_bench(args.suites, options, report)
    except KeyboardInterrupt as e:  # Ctrl-C, SIGTERM, SIGHUP: keep the suites that finished
        _print(report, args.json)
        raise Interrupted(getattr(e, "signum", signal.SIGINT), _stopped(report)) from None
    _print(report, args.json)
    return 0


def _print(report: BenchReport, as_json: bool) -> None:
    print(json.dumps(report.as_json(), indent=2) if as_json else report.table(), flush=True)


def _stopped(report: BenchReport) -> str:
    """What a stop signal left, in words: the suites whose results are shown."""
    finished = list(dict.fromkeys(r.suite for r in report.results))
    if not finished:
        return "no suite had finished"
    return f"the results above are those of the suites that finished ({', '.join(finished)})"
