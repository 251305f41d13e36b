"""Train several variants of a task on the same split with the same time budget, side by side.

Each variant gets the same wall-clock budget. A budget cannot simply cut training short (the
learning-rate schedule would stop half way), so each variant is first timed on a few
training steps, and then trained for as many whole epochs as fit in the budget, with its
full schedule.
"""

from __future__ import annotations

import dataclasses
import itertools
import signal
import time
from collections.abc import Iterator, Sized
from pathlib import Path
from typing import Any, cast

import torch

from attnlab.configs.train import TrainConfig
from attnlab.errors import ConfigError, Interrupted
from attnlab.runs import load_run, write_run_config
from attnlab.tasks.base import Task
from attnlab.training.devices import autocast
from attnlab.training.memory import check_fits, check_step_fits
from attnlab.training.trainer import Trainer, batches_on, build_optimizer, loader, resolve_device

TIMED_STEPS = 10
VALIDATION_SHARE = 0.1  # part of the budget kept for validation and checkpoints

# With a layer of the user's (``--layer``, in the base config): that layer, attnlab's and
# torch's nn.TransformerEncoderLayer, all three with the same task config otherwise.
LAYER_VARIANTS: dict[str, dict[str, Any]] = {
    "yours": {},
    "attnlab": {"backend": "attnlab", "layer": ""},
    "torch": {"backend": "torch", "layer": ""},
}


# With a Llama block of the user's (``--arch llama --layer``, shakespeare): that block and
# attnlab's, in the same Llama otherwise (torch has no twin of a Llama block).
LLAMA_LAYER_VARIANTS: dict[str, dict[str, Any]] = {
    "yours": {},
    "attnlab": {"layer": ""},
}


# With a decoder layer of the user's (``--decoder-layer``): that layer and attnlab's, in the
# same encoder-decoder otherwise.
DECODER_LAYER_VARIANTS: dict[str, dict[str, Any]] = {
    "yours": {},
    "attnlab": {"decoder_layer": ""},
}


def variants_of(task_cls: type[Task], base_config: Any) -> dict[str, dict[str, Any]]:
    """The variants to compare: :data:`LAYER_VARIANTS` when the base config has a user's
    ``layer`` (:data:`LLAMA_LAYER_VARIANTS` when that is a Llama block, ``arch="llama"``),
    :data:`DECODER_LAYER_VARIANTS` when it has a ``decoder_layer``, else the task's own (none
    for the translation tasks)."""
    if getattr(base_config, "layer", ""):
        if getattr(base_config, "arch", "") == "llama":
            return LLAMA_LAYER_VARIANTS
        return LAYER_VARIANTS
    if getattr(base_config, "decoder_layer", ""):
        return DECODER_LAYER_VARIANTS
    return task_cls.variants


def check_variants(
    task_cls: type[Task],
    base_config: Any,
    variants: dict[str, dict[str, Any]],
    train_config: TrainConfig,
) -> None:
    """Build every variant's task, check its data, and build its model and run one training
    step of a micro-batch on the meta device, so that options one variant refuses
    (``--kv-heads 3`` of a Llama with 4 heads, a ``--block-size`` whose step cannot fit in
    memory) stop the comparison before any variant trains; raises the variant's own
    ConfigError, naming it. Every variant's config is checked before any data is read."""
    device = resolve_device(train_config.device)
    configs = {}
    for name, overrides in variants.items():
        try:
            configs[name] = dataclasses.replace(base_config, **overrides)
        except ConfigError as e:
            raise ConfigError(f"variant {name!r}: {e}") from e
    for name, config in configs.items():
        try:
            task = task_cls(config)
            task.check_data_fits()
            check_fits(task.build_model, "training")
            micro_batch = train_config.micro_batch_size
            batch = next(iter(loader(task.splits().train, task, batch_size=micro_batch)))
            check_step_fits(task, batch, device, train_config.precision)
        except ConfigError as e:
            raise ConfigError(f"variant {name!r}: {e}") from e


def seconds_per_step(task: Task, model: torch.nn.Module, config: TrainConfig) -> float:
    """The mean time of a few training steps of a fresh copy of ``model``, after a warm-up step
    (with a training split of a single batch, that one step, warm-up included).

    Each step is the trainer's: ``grad_accum`` micro-batches, their forward pass under the
    run's ``precision``; on CUDA it is timed between two synchronisations, so that the time
    is the kernels' and not only their launch."""
    device = resolve_device(config.device)
    probe = type(model)(model.config).to(device).train()
    optimizer = build_optimizer(probe, config)
    train = loader(task.splits().train, task, batch_size=config.micro_batch_size, shuffle=False)
    batches = batches_on(train, device)
    times = []
    for _ in range(TIMED_STEPS + 1):
        micro_batches = list(itertools.islice(batches, config.grad_accum))
        if not micro_batches:
            break
        _synchronize(device)
        started = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        for batch in micro_batches:
            with autocast(device, config.precision):
                loss = task.loss(probe, batch)
            loss.backward()
        optimizer.step()
        _synchronize(device)
        times.append(time.perf_counter() - started)
    timed = times[1:] or times  # the first step warms up (allocations, kernel choice)
    return sum(timed) / len(timed)


def _synchronize(device: torch.device) -> None:
    """Wait for the device's queued kernels (CUDA runs them after the call returns)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def compare(
    task_cls: type[Task],
    base_config: Any,
    train_config: TrainConfig,
    variants: dict[str, dict[str, Any]],
    budget_s: float,
    out: Path,
    progress: bool = False,
) -> Iterator[dict[str, Any]]:
    """Train every variant (task-config overrides) within ``budget_s`` seconds; yields one row
    each, as soon as its variant is done (``list(compare(...))`` for the table).

    Rows hold the variant, test accuracy and macro-F1 (or the task's metrics), parameters,
    epochs, optimizer steps, training time and steps per second (over the whole training,
    validations included); every run is kept in ``out/<variant>/``.

    A stop signal (Ctrl-C, SIGTERM, SIGHUP) stops the comparison: one that the trainer caught
    (it finished its step and saved a checkpoint) raises :class:`~attnlab.errors.Interrupted`
    here, as one outside training raises KeyboardInterrupt, so that a variant cut short is
    never reported as if it had had its budget, and no later variant starts.
    """
    for name, overrides in variants.items():
        task = task_cls(dataclasses.replace(base_config, **overrides))
        torch.manual_seed(train_config.seed)
        model = task.build_model()
        train_size = len(cast(Sized, task.splits().train))  # torch's Dataset declares no len
        steps_per_epoch = -(-train_size // train_config.batch_size)
        per_step = seconds_per_step(task, model, train_config)
        epochs = max(1, int(budget_s * (1 - VALIDATION_SHARE) / (per_step * steps_per_epoch)))
        config = dataclasses.replace(train_config, epochs=epochs)
        run_dir = out / name
        run_dir.mkdir(parents=True, exist_ok=True)
        write_run_config(run_dir, task, config, model)
        torch.manual_seed(train_config.seed)  # the timing probe drew random numbers
        started = time.perf_counter()
        trainer = Trainer(task, model, config, run_dir, progress=progress)
        trainer.fit()
        if trainer.stopped_by is not None:
            raise Interrupted(getattr(signal, trainer.stopped_by, signal.SIGINT))
        seconds = time.perf_counter() - started
        run = load_run(run_dir)
        device = resolve_device(config.device)
        test = run.task.splits().test
        batches = batches_on(loader(test, run.task, batch_size=config.micro_batch_size), device)
        metrics = run.task.evaluate(run.model.to(device), batches)
        yield {
            "variant": name,
            **{f"test_{k}": v for k, v in metrics.items()},
            "parameters": sum(p.numel() for p in model.parameters()),
            "epochs": epochs,
            "steps": trainer.step,
            "train_seconds": seconds,
            "steps_per_second": trainer.step / seconds,  # validations included
        }


def format_table(rows: list[dict[str, Any]]) -> str:
    """The rows as an aligned text table (no trailing blanks after the last column)."""
    columns = list(rows[0])
    cells = [[_cell(row[c]) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)) for r in cells]
    return "\n".join(line.rstrip() for line in lines)


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}" if value < 10 else f"{value:.1f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)
