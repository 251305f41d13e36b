"""The ``attnlab`` command.

    attnlab train TASK [options]          train a model; prints the run directory
    attnlab eval RUN_DIR [--json]         test-set report of a run's best model
    attnlab predict RUN_DIR INPUT ...     predictions for raw inputs (--file F, - for stdin)
    attnlab attention RUN_DIR INPUT       attention heatmaps (--out attn.png)

A user mistake prints one line to stderr and exits with status 2, without a traceback.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path
from typing import Any, NoReturn

from attnlab import __version__
from attnlab.errors import AttnlabError, InputError

# Flags that may change when resuming: they do not change what the saved run means.
RESUMABLE_OVERRIDES = {"epochs", "max_steps", "patience", "device"}


class _Parser(argparse.ArgumentParser):
    """argparse, with errors on one line."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


class _Formatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Show each option's default, except where there is none."""

    def _get_help_string(self, action: argparse.Action) -> str:
        if action.default is None:
            return action.help or ""
        return super()._get_help_string(action)


_METAVARS = {int: "N", float: "X", str: "NAME"}


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _add_dataclass_options(
    parser: argparse.ArgumentParser, cls: type, defaults: dict[str, Any], title: str
) -> None:
    """One ``--flag`` per field of the dataclass ``cls`` (defaults shown in --help)."""
    group = parser.add_argument_group(title)
    for field in dataclasses.fields(cls):
        default = defaults.get(field.name, field.default)
        help_text = field.metadata.get("help", " ")
        if isinstance(default, bool):
            group.add_argument(
                _flag(field.name),
                action=argparse.BooleanOptionalAction,
                default=default,
                help=help_text,
            )
        else:
            value_type = type(default) if default is not None else str
            group.add_argument(
                _flag(field.name),
                type=value_type,
                default=default,
                metavar=_METAVARS.get(value_type, "VALUE"),
                help=help_text,
            )


def _add_task_parser(
    subparsers: argparse._SubParsersAction, task_cls: type, help_text: str
) -> argparse.ArgumentParser:
    """A parser for one task with a flag for each field of its Config and of TrainConfig."""
    from attnlab.training.config import TrainConfig

    parser = subparsers.add_parser(
        task_cls.name,
        help=help_text,
        description=sys.modules[task_cls.__module__].__doc__,
        formatter_class=_Formatter,
    )
    _add_dataclass_options(parser, task_cls.Config, {}, f"{task_cls.name} data and model")
    _add_dataclass_options(parser, TrainConfig, task_cls.train_defaults, "training")
    return parser


def _explicit_flags(argv: list[str]) -> set[str]:
    """Names of the ``--flags`` the user actually typed."""
    return {a[2:].split("=")[0].replace("-", "_") for a in argv if a.startswith("--")}


def build_parser() -> argparse.ArgumentParser:
    from attnlab.tasks import TASKS

    parser = _Parser(prog="attnlab", description=__doc__, formatter_class=_Formatter)
    parser.add_argument("--version", action="version", version=f"attnlab {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    train = commands.add_parser(
        "train",
        help="train a model on a task",
        formatter_class=_Formatter,
        description="Train a model on a task. Each task has its own options: "
        "attnlab train TASK --help.",
    )
    tasks = train.add_subparsers(dest="task", required=True, metavar="TASK")
    for _, task_cls in sorted(TASKS.items()):
        sub = _add_task_parser(tasks, task_cls, (task_cls.__doc__ or "").strip().splitlines()[0])
        run = sub.add_argument_group("run directory")
        run.add_argument(
            "--out",
            type=Path,
            default=None,
            help="run directory; default: runs/<task>/<timestamp>/",
        )
        run.add_argument(
            "--resume",
            type=Path,
            default=None,
            metavar="RUN_DIR",
            help="continue RUN_DIR from its last checkpoint",
        )
        run.add_argument(
            "--progress",
            action=argparse.BooleanOptionalAction,
            default=True,
            help="show a progress bar",
        )
        sub.set_defaults(func=cmd_train)

    compare = commands.add_parser(
        "compare",
        help="train a task's variants with the same time budget, side by side",
        formatter_class=_Formatter,
        description="Train every variant of a task (e.g. names: attnlab encoder, torch encoder "
        "layers, GRU) on the same split, each for as many epochs as fit in --budget seconds, "
        "and print one table.",
    )
    compare_tasks = compare.add_subparsers(dest="task", required=True, metavar="TASK")
    for _, task_cls in sorted(TASKS.items()):
        if not task_cls.variants:
            continue
        sub = _add_task_parser(compare_tasks, task_cls, f"variants: {', '.join(task_cls.variants)}")
        sub.add_argument("--budget", type=float, default=120.0, help="seconds per variant")
        sub.add_argument(
            "--out",
            type=Path,
            default=None,
            help="folder for the runs; default: runs/compare-<task>/<timestamp>/",
        )
        sub.add_argument("--json", action="store_true", help="print JSON")
        sub.set_defaults(func=cmd_compare)

    evaluate = commands.add_parser(
        "eval", help="test-set report of a run", formatter_class=_Formatter
    )
    evaluate.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="a run directory")
    evaluate.add_argument("--json", action="store_true", help="print JSON")
    evaluate.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    evaluate.set_defaults(func=cmd_eval)

    predict = commands.add_parser(
        "predict", help="predict for raw inputs", formatter_class=_Formatter
    )
    predict.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="a run directory")
    predict.add_argument("inputs", nargs="*", metavar="INPUT", help='e.g. "3 1 4 1 5"')
    predict.add_argument(
        "--file", default=None, metavar="F", help="read inputs from F, one per line ('-' for stdin)"
    )
    predict.add_argument("--json", action="store_true", help="print JSON")
    predict.set_defaults(func=cmd_predict)

    attention = commands.add_parser(
        "attention", help="plot a run's attention for one input", formatter_class=_Formatter
    )
    attention.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="a run directory")
    attention.add_argument("input", metavar="INPUT", help='one input, e.g. "3 1 4 1 5"')
    attention.add_argument(
        "--out",
        type=Path,
        default=Path("attention.png"),
        help="output image (.png): a layer x head grid of heatmaps",
    )
    attention.set_defaults(func=cmd_attention)
    return parser


# -- commands ------------------------------------------------------------------------------
def cmd_train(args: argparse.Namespace) -> int:
    import torch

    from attnlab.evaluation import evaluate_run
    from attnlab.runs import (
        build_model,
        build_task,
        load_run,
        new_run_dir,
        read_run_config,
        write_run_config,
    )
    from attnlab.tasks import get_task
    from attnlab.training import TrainConfig, Trainer
    from attnlab.training.checkpoint import METRICS
    from attnlab.training.trainer import resolve_device
    from attnlab.viz import plot_training_curves

    task_cls = get_task(args.task)
    train_fields = {f.name for f in dataclasses.fields(TrainConfig)}
    if args.resume is not None:
        config = read_run_config(args.resume, expected_task=args.task)
        config_fields = train_fields | {f.name for f in dataclasses.fields(task_cls.Config)}
        typed = _explicit_flags(args.argv) & config_fields
        if typed - RESUMABLE_OVERRIDES:
            refused = ", ".join(sorted(map(_flag, typed - RESUMABLE_OVERRIDES)))
            allowed = ", ".join(sorted(map(_flag, RESUMABLE_OVERRIDES)))
            raise AttnlabError(
                f"{refused} cannot change on --resume: the run keeps its saved config "
                f"(only {allowed} may)"
            )
        overrides = {name: getattr(args, name) for name in typed}
        train_config = _make(TrainConfig, {**config["train"], **overrides})
        resolve_device(train_config.device)
        task = build_task(config)
        model = build_model(config)
        run_dir = args.resume
    else:
        task_config = _make(task_cls.Config, _fields_of(args, task_cls.Config))
        train_config = _make(TrainConfig, _fields_of(args, TrainConfig))
        resolve_device(train_config.device)  # refuse a missing GPU before making a run directory
        task = task_cls(task_config)  # finds (or fails to find) the data before the run directory
        run_dir = new_run_dir(task_cls.name, args.out)
        torch.manual_seed(train_config.seed)
        model = task.build_model()
    write_run_config(run_dir, task, train_config, model)
    print(f"run directory: {run_dir}", flush=True)

    trainer = Trainer(task, model, train_config, run_dir, progress=args.progress)
    trainer.fit(resume=args.resume is not None)
    curves = plot_training_curves(
        trainer.history, task.monitor, run_dir / "plots" / "training_curves.png"
    )
    report = evaluate_run(load_run(run_dir), device=train_config.device)
    print(task.format_report(report))
    print(f"\nrun directory: {run_dir}")
    print(
        f"  model.safetensors (best by val {task.monitor}), checkpoint.pt (resume with "
        f"--resume {run_dir}), config.json, {METRICS}, {curves.relative_to(run_dir)}"
    )
    print(f"  TensorBoard: tensorboard --logdir {run_dir / 'tensorboard'}")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from attnlab.runs import new_run_dir
    from attnlab.tasks import get_task
    from attnlab.training import TrainConfig
    from attnlab.training.compare import compare, format_table
    from attnlab.training.trainer import resolve_device

    task_cls = get_task(args.task)
    task_config = _make(task_cls.Config, _fields_of(args, task_cls.Config))
    train_config = _make(TrainConfig, _fields_of(args, TrainConfig))
    resolve_device(train_config.device)
    if not args.budget > 0:
        raise AttnlabError(f"--budget must be a positive number of seconds; got {args.budget}")
    out = new_run_dir(f"compare-{task_cls.name}", args.out)
    print(
        f"comparing {', '.join(task_cls.variants)} for {args.budget:g} s each in {out}", flush=True
    )
    rows = compare(task_cls, task_config, train_config, task_cls.variants, args.budget, out)
    print(json.dumps(rows, indent=2) if args.json else format_table(rows))
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from attnlab.evaluation import evaluate_run
    from attnlab.runs import load_run

    run = load_run(args.run_dir)
    report = evaluate_run(run, device=args.device)
    print(json.dumps(report, indent=2) if args.json else run.task.format_report(report))
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from attnlab.runs import load_run

    inputs = list(args.inputs)
    if args.file is not None:
        inputs += _read_lines(args.file)
    if not inputs:
        raise InputError("no input: give inputs as arguments, or --file F (- for stdin)")
    run = load_run(args.run_dir)
    predictions = run.task.predict(run.model, inputs)
    if args.json:
        print(json.dumps(predictions, indent=2, ensure_ascii=False))
    else:
        for prediction in predictions:
            print(run.task.format_prediction(prediction))
    return 0


def cmd_attention(args: argparse.Namespace) -> int:
    from attnlab.runs import load_run

    if args.out.suffix.lower() != ".png":
        raise InputError(f"--out must be a .png file; got {args.out}")
    run = load_run(args.run_dir)
    path = run.task.plot_attention(run.model, args.input, args.out)
    print(f"attention: {path}")
    return 0


# -- helpers -------------------------------------------------------------------------------
def _fields_of(args: argparse.Namespace, cls: type) -> dict[str, Any]:
    return {f.name: getattr(args, f.name) for f in dataclasses.fields(cls)}


def _make(cls: type, values: dict[str, Any]) -> Any:
    """Build a config dataclass, turning its validation errors into one-line user errors."""
    try:
        return cls(**values)
    except ValueError as e:
        raise AttnlabError(str(e)) from e


def _read_lines(source: str) -> list[str]:
    if source == "-":
        text = sys.stdin.read()
    else:
        try:
            text = Path(source).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise InputError(f"cannot read {source}: {getattr(e, 'strerror', None) or e}") from e
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        raise InputError(f"{'standard input' if source == '-' else source} has no non-empty lines")
    return lines


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv)
    args.argv = argv
    try:
        return args.func(args)
    except AttnlabError as e:
        print(f"attnlab: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
