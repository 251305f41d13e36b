"""Run directories: create one for a new training run, reload one later.

``config.json`` records the task and its hyperparameters, the training hyperparameters, the
model's class and config, and the attnlab version; with ``model.safetensors`` beside it,
:func:`load` rebuilds the model with no pickle involved.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import torch
from torch import nn

from attnlab import __version__
from attnlab.configs import TrainConfig
from attnlab.errors import ConfigError, InputError, RunDirError
from attnlab.files import missing, printable
from attnlab.models import MODELS
from attnlab.options import check_annotated, check_depth, from_json, shown_value
from attnlab.tasks import Task, get_task, task_names
from attnlab.training.checkpoint import (
    CHECKPOINT,
    CONFIG,
    METRICS,
    MODEL,
    load_weights,
    read_json,
    refuse_non_file,
    write_json,
)
from attnlab.training.lock import LEFTOVERS, LOCK, RunLock
from attnlab.training.memory import check_fits


@dataclass
class Run:
    """A reloaded run: its directory, task, model (eval mode) and raw config."""

    dir: Path
    task: Task
    model: nn.Module
    config: dict[str, Any]
    train_config: TrainConfig


def _holds_nothing(path: Path) -> bool:
    """Whether a run directory holds nothing but (maybe) its lock file and the temporary
    files of a writer killed before it wrote anything (a run that never started)."""
    return all(p.name == LOCK or p.match(LEFTOVERS) for p in path.iterdir())


def remove_unused_run_dir(path: Path, lock: RunLock) -> None:
    """Remove a run directory of ours that a refused start left holding nothing but its
    lock (e.g. a step too large for the memory): a refused ``attnlab train`` leaves no
    empty timestamped directory behind. One that holds anything else is kept."""
    if path.is_dir() and _holds_nothing(path):
        for leftover in path.iterdir():
            leftover.unlink(missing_ok=True)
        lock.release()
        path.rmdir()


def run_dir_path(value: Any, name: str = "run_dir") -> Path:
    """``value`` as a :class:`~pathlib.Path`, refused with an :class:`InputError` naming the
    argument ``name`` unless it is a non-empty ``str`` or ``os.PathLike`` (``Path(None)`` is
    a bare ``TypeError``, and ``Path("")`` the current folder)."""
    if not isinstance(value, (str, os.PathLike)) or not os.fspath(value):
        raise InputError(f"{name} must be the path of a run directory; got {value!r}")
    return Path(value)


def new_run_dir(task_name: str, out: str | Path | None = None, resumable: bool = True) -> Path:
    """``out`` if given (created if needed; it must be empty), else ``runs/<task>/<timestamp>/``.

    A directory that is not empty because a run is training into it is reported as in use,
    with that run's PID; one that holds a finished run is refused with a hint to ``--resume``
    it when the command can (``resumable``).
    """
    if out is not None:
        path = Path(out)
    else:
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        path = Path("runs") / task_name / stamp
        suffix = 1
        while path.exists():
            suffix += 1
            path = Path("runs") / task_name / f"{stamp}-{suffix}"
    check_new_run_dir(path, resumable)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise RunDirError(f"cannot create the run directory {path}: {e.strerror or e}") from e
    if not os.access(path, os.W_OK | os.X_OK):
        raise RunDirError(f"cannot write into the run directory {path}: permission denied")
    return path


def check_new_run_dir(path: Path, resumable: bool = True) -> None:
    """Refuse ``path`` as a new run directory (creating nothing): not UTF-8, not a directory,
    in use by a run, or not empty (with a hint to ``--resume`` it when ``resumable``)."""
    _check_utf8(path)
    if path.exists() and not path.is_dir():
        raise RunDirError(f"{path} exists and is not a directory: choose another --out")
    if path.exists() and not _holds_nothing(path):
        if (path / LOCK).exists():
            RunLock(path).acquire().release()  # raises while a run holds it
        hint = f", or pass --resume {path} to continue that run" if resumable else ""
        raise RunDirError(f"{path} already exists and is not empty: choose another --out{hint}")


def _check_utf8(path: Path) -> None:
    """Refuse a run directory whose path is not UTF-8: TensorBoard cannot write there."""
    try:
        str(path.absolute()).encode("utf-8")
    except UnicodeEncodeError as e:
        raise RunDirError(
            f"the run directory {printable(str(path))} is not a UTF-8 path, where TensorBoard "
            "cannot write: choose another --out"
        ) from e


def claim_new_run_dir(task_name: str, out: str | Path | None = None) -> tuple[Path, RunLock]:
    """:func:`new_run_dir`, locked: of two processes started on the same ``out`` at once,
    exactly one gets it; the other is told the directory is in use, with the holder's PID."""
    path = new_run_dir(task_name, out)
    lock = RunLock(path).acquire()
    if not _holds_nothing(path):  # another run took it and finished between check and lock
        lock.release()
        new_run_dir(task_name, path)  # raises "already exists and is not empty"
    return path, lock


def write_run_config(run_dir: Path, task: Task, train: TrainConfig, model: nn.Module) -> None:
    """Write ``config.json``: everything needed to rebuild the task and the model."""
    model_config: Any = model.config  # every model of MODELS keeps its config dataclass
    write_json(
        run_dir / CONFIG,
        {
            "attnlab_version": __version__,
            "task": task.name,
            "task_config": dataclasses.asdict(task.config),
            "task_state": {**task.state(), **_data_state(task)},
            "train": dataclasses.asdict(train),
            "model": {
                "class": type(model).__name__,
                "config": dataclasses.asdict(model_config),
            },
        },
    )


def read_run_config(run_dir: str | Path, expected_task: str | None = None) -> dict[str, Any]:
    """Read and check ``config.json``; ``expected_task`` rejects a run of another task.

    The file must be a JSON object naming a known task and model class, with the task's and
    the training config as objects; their values are checked when they are built
    (:func:`build_task`, :func:`build_model`, :func:`train_config_of`).
    """
    run_dir = run_dir_path(run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise RunDirError(f"{run_dir} is a file, not a run directory")
    if not run_dir.is_dir():
        raise RunDirError(f"run directory {run_dir} {missing(run_dir)}")
    if not (run_dir / CONFIG).is_file() and (run_dir / LOCK).exists() and _holds_nothing(run_dir):
        raise RunDirError(
            f"{run_dir} holds no run yet (it was stopped before it started): train into it "
            f"again with --out {run_dir}"
        )
    refuse_non_file(run_dir / CONFIG)
    if not (run_dir / CONFIG).is_file():
        raise RunDirError(f"{run_dir} is not an attnlab run directory (it has no {CONFIG})")
    config = read_json(run_dir / CONFIG)
    if not _looks_like_a_run(config):
        raise RunDirError(f"{run_dir / CONFIG} is not the config of an attnlab run")
    if expected_task is not None and config["task"] != expected_task:
        raise RunDirError(f"{run_dir} is a run of task {config['task']!r}, not {expected_task!r}")
    return config


# What a run writes into its directory, and what kind each is.
RUN_PATHS = {CONFIG: "file", MODEL: "file", CHECKPOINT: "file", METRICS: "file",
             "plots": "folder", "tensorboard": "folder"}  # fmt: skip


def check_run_paths(run_dir: Path) -> None:
    """Refuse, before a resumed run trains, a folder where the run writes a file, or a file
    (a FIFO, a device) where it writes a folder: training would stop at the next checkpoint,
    or at the end, and lose the steps it made since the last one."""
    for name, kind in RUN_PATHS.items():
        path = run_dir / name
        if path.exists() and not (path.is_file() if kind == "file" else path.is_dir()):
            raise RunDirError(
                f"{path} is in the way: the run writes a {kind} there; move it away, then resume"
            )


def _looks_like_a_run(config: Any) -> bool:
    objects = ("task_config", "train", "model")
    return (
        isinstance(config, dict)
        and all(isinstance(config.get(key), dict) for key in objects)
        and isinstance(config.get("task"), str)
        and config["task"] in task_names()
        and isinstance(config["model"].get("class"), str)
        and config["model"]["class"] in MODELS
        and isinstance(config["model"].get("config"), dict)
        and isinstance(config.get("task_state", {}), dict)
    )


def build_task(config: dict[str, Any], data_dir: str | Path | None = None) -> Task:
    """The task described by a run's ``config.json``; ``data_dir`` overrides where its data
    set is read from (for a run trained elsewhere)."""
    task_cls = get_task(config["task"])
    try:
        task_config = from_json(task_cls.Config, config["task_config"])
    except ConfigError as e:
        raise RunDirError(f"the task config in config.json is invalid: {e}") from e
    if data_dir is not None:
        if not hasattr(task_config, "data_dir"):
            raise ConfigError(f"task {task_cls.name!r} reads no data set: drop --data-dir")
        task_config = dataclasses.replace(task_config, data_dir=str(data_dir))
    try:
        task = task_cls.from_state(task_config, config.get("task_state", {}))
    except Exception as e:  # a hand-edited state: whatever its tokenizer's parser raises
        raise RunDirError(f"the task state in config.json is invalid ({_reason(e)})") from e
    task.data_sha256 = _data_sha256(config.get("task_state", {}))
    _check_state_fits_model(task, config)
    return task


def _data_state(task: Task) -> dict[str, str]:
    """The sha256 of the data set a run's splits were drawn from, for tasks that read one."""
    return {} if task.data_sha256 is None else {"data_sha256": task.data_sha256}


def _data_sha256(state: dict[str, Any]) -> str | None:
    """The ``data_sha256`` of a run's task state: 64 hexadecimal digits, or ``None`` (a task
    that reads no data set, or a run of an older attnlab)."""
    value = state.get("data_sha256")
    if value is not None and not (
        isinstance(value, str) and len(value) == 64 and set(value) <= set("0123456789abcdef")
    ):
        raise RunDirError(
            f"the task state in config.json is invalid (data_sha256 must be 64 hexadecimal "
            f"digits; got {value!r:.70})"
        )
    return value


def _check_state_fits_model(task: Task, config: dict[str, Any]) -> None:
    """Refuse a run whose saved model config is not the one its task config and state give
    (the task builds its model from them): a hand-edited vocabulary the model's ids do not
    fit, or a model size edited past the task's checked ranges. The task's model is built on
    the meta device, so nothing is allocated."""
    try:
        with torch.device("meta"):
            built = task.build_model()
    except Exception as e:
        raise RunDirError(f"the task state in config.json is invalid ({_reason(e)})") from e
    if type(built).__name__ != config["model"]["class"]:  # e.g. "model": "gru" edited in
        raise RunDirError(
            f"config.json was edited: its task gives a {type(built).__name__}, but the model "
            f"saved is a {config['model']['class']}"
        )
    expected, saved = dataclasses.asdict(built.config), config["model"]["config"]
    for field, value in expected.items():
        if field in saved and saved[field] != value:
            raise RunDirError(
                f"config.json was edited: its task gives a model with {field} = "
                f"{shown_value(value)}, but the model config says {shown_value(saved[field])}"
            )


def _reason(error: Exception) -> str:
    """An exception as a short reason: its message's first line, or what it names."""
    if isinstance(error, KeyError):
        return f"it has no {error.args[0]!r}"
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def train_config_of(config: dict[str, Any]) -> TrainConfig:
    """The training config of a run's ``config.json``."""
    try:
        return from_json(TrainConfig, config["train"])
    except ConfigError as e:
        raise RunDirError(f"the training config in config.json is invalid: {e}") from e


def build_model(config: dict[str, Any], purpose: str = "inference") -> nn.Module:
    """The (untrained) model described by a run's ``config.json``; a model too large for this
    machine's memory (for ``purpose``: "inference" or "training") is refused unallocated."""
    model_cls: Any = MODELS[config["model"]["class"]]  # a class of its own config_class
    try:
        check_annotated(model_cls.config_class, config["model"]["config"])
        check_depth(config["model"]["config"])
        model_config = model_cls.config_class(**config["model"]["config"])
        check_fits(lambda: model_cls(model_config), purpose)
    except (TypeError, ValueError, OverflowError) as e:
        raise RunDirError(f"the model config in config.json is invalid ({e})") from e
    return model_cls(model_config)


def load_run(
    run_dir: str | Path, expected_task: str | None = None, data_dir: str | Path | None = None
) -> Run:
    """Reload a run: its task, and its best model in eval mode (``data_dir``: see
    :func:`build_task`)."""
    run_dir = run_dir_path(run_dir)
    config = read_run_config(run_dir, expected_task)
    model = build_model(config)  # first: its own checks name a mistyped or oversized field
    task = build_task(config, data_dir)
    load_weights(run_dir / MODEL, model)
    return Run(run_dir, task, model.eval(), config, train_config_of(config))


def load(run_dir: str | Path) -> nn.Module:
    """Rebuild the best model of a run from ``config.json`` + ``model.safetensors`` (eval mode).

    Raises :class:`~attnlab.errors.RunDirError` if the directory is missing, is not a run,
    or holds a truncated or foreign weights file, and
    :class:`~attnlab.errors.InputError` if ``run_dir`` is not a path.
    """
    run_dir = run_dir_path(run_dir)
    model = build_model(read_run_config(run_dir))
    load_weights(run_dir / MODEL, model)
    return model.eval()
