"""``attnlab.train``: train a task into a run directory, from Python or the command line.

    >>> import attnlab
    >>> result = attnlab.train("reverse", epochs=1, train_size=2000, out="runs/demo")
    >>> result.report["metrics"]["sequence_accuracy"]

Options are the fields of the task's config (e.g. ``d_model``, ``train_size``) and of
:class:`~attnlab.configs.TrainConfig` (e.g. ``epochs``, ``lr``), by name. ``attnlab train
TASK --flags`` calls the same function with the flags the user typed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from attnlab.configs import TrainConfig
from attnlab.configs.layer import LAYER_DEFAULTS, LAYER_FIELDS
from attnlab.errors import AttnlabError, ConfigError, Interrupted
from attnlab.options import build, flat_fields
from attnlab.runs import (
    Run,
    build_model,
    build_task,
    check_new_run_dir,
    check_run_paths,
    claim_new_run_dir,
    load_run,
    read_run_config,
    remove_unused_run_dir,
    run_dir_path,
    train_config_of,
    write_run_config,
)
from attnlab.tasks import Task, get_task
from attnlab.training import distributed
from attnlab.training.checkpoint import CHECKPOINT
from attnlab.training.devices import check_precision
from attnlab.training.lock import RunLock
from attnlab.training.memory import check_fits
from attnlab.training.trainer import Trainer


@dataclass
class TrainResult:
    """A finished (or stopped) run: the reloaded best model, its test report, the history.

    ``stopped_by`` names the signal (``"SIGINT"``, ``"SIGTERM"``, ``"SIGHUP"``) that stopped
    training early, after a checkpoint of ``step`` was saved in ``run_dir``; ``report`` is
    then ``None`` unless the report was asked for anyway. A run stopped before its first
    validation has no best model and no curves yet: ``run`` and ``curves`` are then ``None``.
    """

    run: Run | None
    report: dict[str, Any] | None
    history: list[dict[str, Any]]
    curves: Path | None
    run_dir: Path
    step: int
    stopped_by: str | None = None


def resumable_fields() -> set[str]:
    """The TrainConfig fields that ``--resume`` may change (declared in their metadata)."""
    return {f.name for f in dataclasses.fields(TrainConfig) if f.metadata.get("resumable")}


def split_options(task_cls: type[Task], options: dict[str, Any]) -> tuple[dict, dict]:
    """``options`` -> (task config values, training config values); unknown names refused."""
    task_names = {field.name for field, _ in flat_fields(task_cls.Config)}
    train_names = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(options) - task_names - train_names)
    if unknown:
        raise ConfigError(f"task {task_cls.name!r} has no option {unknown[0]!r}")
    task_values = {k: v for k, v in options.items() if k in task_names}
    return task_values, {k: v for k, v in options.items() if k in train_names}


def _layer_defaults(task_cls: type[Task]) -> dict[str, Any]:
    """The task options that default otherwise with ``--layer`` or ``--decoder-layer``
    (:data:`LAYER_DEFAULTS`)."""
    names = {field.name for field, _ in flat_fields(task_cls.Config)}
    return {name: value for name, value in LAYER_DEFAULTS.items() if name in names}


def configs_from(task_cls: type[Task], options: dict[str, Any]) -> tuple[Any, TrainConfig]:
    """The task config and the training config (with the task's defaults) of ``options``.

    With a ``layer`` or ``decoder_layer`` of the user's, ``window`` and ``norm_first`` default
    to 0 and False (a padding mask only, post-LN: the practicals' layers) unless given.
    """
    task_values, train_values = split_options(task_cls, options)
    if any(task_values.get(name) for name in LAYER_FIELDS):
        task_values = {**_layer_defaults(task_cls), **task_values}
    task_config = build(task_cls.Config, task_values)
    return task_config, build(TrainConfig, {**task_cls.train_defaults, **train_values})


def _new_run(
    task_cls: type[Task], options: dict[str, Any], out: str | Path | None
) -> tuple[Task, TrainConfig]:
    """The task and training config of a new run, each refusal before the next costlier step:
    the options, the device and precision, a full ``out``, then the data and the memory."""
    task_config, train_config = configs_from(task_cls, options)
    check_precision(distributed.process_device(train_config.device), train_config.precision)
    if out is not None and os.environ.get("RANK", "0") == "0":
        check_new_run_dir(Path(out))  # a full --out is named before the data is read
    task_obj = task_cls(task_config)  # finds (or fails to find) the data first
    task_obj.check_data_fits()
    check_fits(task_obj.build_model, "training")
    return task_obj, train_config


def _resumed(task_cls: type[Task], resume: Path, options: dict[str, Any]) -> tuple:
    """The task and training config of a run to continue, with the allowed overrides."""
    config = read_run_config(resume, expected_task=task_cls.name)
    check_run_paths(resume)
    _, train_values = split_options(task_cls, options)
    refused = sorted(set(options) - resumable_fields())
    if refused:
        flags = ", ".join("--" + name.replace("_", "-") for name in refused)
        allowed = ", ".join(sorted("--" + n.replace("_", "-") for n in resumable_fields()))
        raise ConfigError(
            f"{flags} cannot change on --resume: the run keeps its saved config "
            f"(only {allowed} may)"
        )
    saved = train_config_of(config)
    train_config = build(TrainConfig, {**dataclasses.asdict(saved), **train_values})
    build_model(config, "training")  # refuses a model that cannot fit, before anything else
    return build_task(config), train_config


def _claim(task_name: str, out: str | Path | None, resume: Path | None, locks: list) -> Path:
    """The run directory, locked for this process (a new one, or the one to resume)."""
    if resume is None:
        run_dir, lock = claim_new_run_dir(task_name, out)
    else:
        run_dir, lock = resume, RunLock(resume, "wait for it to finish").acquire()
    locks.append(lock)
    return run_dir


def train(
    task: str,
    *,
    out: str | Path | None = None,
    resume: str | Path | None = None,
    progress: bool = False,
    report_on_stop: bool = False,
    **options: Any,
) -> TrainResult | None:
    """Train ``task`` and report on its test split; returns the finished run.

    Args:
        task: a task name (``reverse``, ``names``, ``digits``, ``shakespeare``,
            ``translate-small``, ``translate``).
        out: the run directory (default ``runs/<task>/<timestamp>/``); it must be new or empty.
        resume: continue this run directory from its checkpoint instead; only the resumable
            training options (epochs, max_steps, patience, device, grad_accum, precision,
            compile) may be given then. A run stopped before its first checkpoint starts
            again from step 0 with its saved config.
        progress: show a progress bar.
        report_on_stop: validate the step a signal (Ctrl-C, SIGTERM, SIGHUP) stopped
            training at, and write the test report; by default a stopped run saves its
            checkpoint only, and a resumed run then ends exactly as one never stopped.
        **options: task-config and training-config fields, e.g. ``epochs=3, d_model=64``.

    The run directory is locked while training: a second ``train`` into it is refused.
    Under torchrun every process calls this; all but rank 0 return ``None``.
    Raises :class:`~attnlab.errors.ConfigError` for an unknown or invalid option, and the other
    :class:`~attnlab.errors.AttnlabError` s for missing data or an unusable run directory.
    """
    task_cls = get_task(task)
    resume = None if resume is None else run_dir_path(resume, "resume")
    out = None if out is None else run_dir_path(out, "out")
    if resume is not None and out is not None and Path(out).resolve() != resume.resolve():
        raise ConfigError("give --out or --resume, not both: a resumed run stays in its directory")
    if resume is not None:
        task_obj, train_config = _resumed(task_cls, resume, options)
        check_precision(distributed.process_device(train_config.device), train_config.precision)
    else:
        task_obj, train_config = _new_run(task_cls, options, out)
    locks: list[RunLock] = []  # held until the test report is written into the run too
    try:
        with distributed.process_group(train_config.device):
            distributed.check_batch_split(
                train_config.batch_size, train_config.grad_accum, distributed.world_size()
            )
            run_dir = distributed.on_main(lambda: _claim(task_cls.name, out, resume, locks))
            with _removed_if_refused(run_dir, locks, made_here=out is None and resume is None):
                trainer = _fit(task_obj, train_config, run_dir, resume, progress, report_on_stop)
            if not distributed.is_main():
                return None
        return _finish(run_dir, trainer, train_config, report_on_stop)
    finally:
        for lock in locks:
            lock.release()


@contextlib.contextmanager
def _removed_if_refused(run_dir: Path, locks: list[RunLock], made_here: bool) -> Iterator[None]:
    """A start refused before training writes anything (a step too large for the memory)
    removes the timestamped run directory made for it (``made_here``), on rank 0."""
    try:
        yield
    except AttnlabError:
        if made_here and distributed.is_main():
            remove_unused_run_dir(run_dir, locks[0])
        raise


def _fit(
    task: Task,
    config: TrainConfig,
    run_dir: Path,
    resume: Path | None,
    progress: bool,
    validate_on_stop: bool,
) -> Trainer:
    """Build the model (seeded, as a fresh run) and train it, from the checkpoint if any
    (``validate_on_stop``: see :class:`~attnlab.training.trainer.Trainer`)."""
    from_checkpoint = resume is not None and (run_dir / CHECKPOINT).is_file()
    torch.manual_seed(config.seed)
    model = task.build_model()

    def write_config() -> None:
        if resume is not None and not from_checkpoint:
            print(
                f"note: {run_dir} has no checkpoint yet: training it again from step 0 with "
                "its saved config",
                flush=True,
            )
        write_run_config(run_dir, task, config, model)
        print(f"run directory: {run_dir}", flush=True)

    trainer = Trainer(
        task, model, config, run_dir, progress=progress, validate_on_stop=validate_on_stop
    )
    trainer.fit(resume=from_checkpoint, on_start=write_config)
    return trainer


def _finish(
    run_dir: Path, trainer: Trainer, train_config: TrainConfig, report_on_stop: bool
) -> TrainResult:
    """Plot the curves and, unless a signal stopped training, write the test report; a stop
    signal meanwhile raises :class:`Interrupted`, saying what is kept. A run stopped before
    its first validation has neither curves nor a best model to reload."""
    from attnlab.evaluation import evaluate_run
    from attnlab.viz import plot_training_curves

    if not trainer.history:
        return TrainResult(None, None, [], None, run_dir, trainer.step, trainer.stopped_by)
    try:
        curves = plot_training_curves(
            trainer.history, trainer.task.monitor, run_dir / "plots" / "training_curves.png"
        )
        run = load_run(run_dir)
        report = None
        if trainer.stopped_by is None or report_on_stop:
            report = evaluate_run(run, device=train_config.device, save=True)
    except KeyboardInterrupt as e:  # Ctrl-C, SIGTERM, SIGHUP
        kept = "the trained run" if trainer.stopped_by is None else "its checkpoint"
        raise Interrupted(
            getattr(e, "signum", signal.SIGINT),
            f"the test report was not written; {kept} is saved in {run_dir}, and "
            f"attnlab eval {run_dir} --save writes the report",
        ) from None
    return TrainResult(
        run, report, trainer.history, curves, run_dir, trainer.step, trainer.stopped_by
    )
