"""The training loop: written out, no framework.

One step: forward -> loss -> backward -> clip the gradient norm -> optimizer step ->
learning-rate schedule step. Every ``val_every`` steps (or once per epoch) the model is
validated, the best weights are kept by the task's ``monitor`` metric, and a resumable
checkpoint is written atomically. A stop signal (Ctrl-C, SIGTERM) writes a checkpoint after
the step it strikes in, without a validation that no uninterrupted run would make, so that a
resumed run validates, keeps and stops exactly as one that was never stopped. The trainer
knows the task only through :class:`attnlab.tasks.Task`.

Scaling out changes only a few lines of the step (the helpers explain why):

* ``--grad-accum N``: one step runs N forward/backward passes on micro-batches and adds
  their gradients before the optimizer step.
* torchrun: every process runs this same loop on its own slice of each batch, and
  DistributedDataParallel averages the gradients (:mod:`attnlab.training.distributed`).
* ``--precision bf16|fp16`` runs the forward pass under autocast, ``--compile`` through
  torch.compile (:mod:`attnlab.training.devices`).

A step is one optimizer step on one global batch of ``--batch-size`` examples, however
many processes and micro-batches it is split into; ``--max-steps``, ``--val-every``,
``--warmup`` and the step counts in logs are all optimizer steps.
"""

from __future__ import annotations

import contextlib
import math
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sized
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, cast

import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from attnlab.configs.train import TrainConfig
from attnlab.errors import (
    InputError,
    OutputError,
    RunDirError,
    Stopped,
    TrainingError,
    is_out_of_memory,
    out_of_memory_sentence,
)
from attnlab.tasks.base import Task
from attnlab.training import distributed
from attnlab.training.checkpoint import (
    CHECKPOINT,
    METRICS,
    MODEL,
    check_checkpoint,
    check_run_configs,
    load_checkpoint,
    load_weights,
    run_configs,
    save_checkpoint,
    save_weights,
    write_json,
)
from attnlab.training.devices import (
    autocast,
    check_precision,
    grad_scaler,
    resolve_device,
    to_device,
)
from attnlab.training.distributed import EpochBatchSampler, check_batch_split
from attnlab.training.memory import check_step_fits
from attnlab.training.schedules import build_scheduler
from attnlab.training.stop_watch import watch_stop_signals

__all__ = [
    "EpochBatchSampler",
    "Trainer",
    "batches_on",
    "build_optimizer",
    "loader",
    "resolve_device",
    "to_device",
]


def batches_on(loader: Iterable[Any], device: torch.device) -> Iterator[Any]:
    """The batches of ``loader``, moved to ``device``."""
    for batch in loader:
        yield to_device(batch, device)


def counted_on_bar(batches: Iterable[Any], total: int, bar: tqdm) -> Iterator[Any]:
    """``batches``, counted on ``bar``'s postfix as they go (``validating 3/40``): a long
    validation would otherwise look like a hung step. Drawn at the first batch, then at
    tqdm's own pace (``bar.mininterval``); the bar's postfix is put back at the end."""
    if bar.disable:
        yield from batches
        return
    postfix, drawn = bar.postfix, -math.inf
    for i, batch in enumerate(batches, 1):
        if time.monotonic() - drawn >= bar.mininterval:
            bar.set_postfix_str(f"validating {i}/{total}")
            drawn = time.monotonic()
        yield batch
    bar.set_postfix_str(postfix or "", refresh=False)


def loader(dataset: Any, task: Task, **kwargs: Any) -> DataLoader:
    """A DataLoader with the task's collate function and a private generator.

    Each new DataLoader iterator draws a seed from its generator; with the default (the
    global one) that draw would shift the dropout random numbers, and a resumed run would
    no longer repeat an uninterrupted one.
    """
    return DataLoader(dataset, collate_fn=task.collate, generator=torch.Generator(), **kwargs)


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

# Fused Adam/AdamW kernels exist for CUDA, and for the CPU since torch 2.4.
_FUSED_ADAM = tuple(int(v) for v in torch.__version__.split(".")[:2]) >= (2, 4)


def build_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """AdamW / Adam / SGD; weight decay only on matrices (not on biases and norms)."""
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]
    groups = [
        {"params": decay, "weight_decay": config.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    # The fused kernels update every parameter in one pass instead of a loop of small ops
    # (the same arithmetic; about 3 ms less per step for the baby GPT on a CPU).
    fused = _FUSED_ADAM and all(p.device.type in ("cpu", "cuda") for p in params)
    if config.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=config.lr, fused=fused or None)
    if config.optimizer == "adam":
        return torch.optim.Adam(groups, lr=config.lr, fused=fused or None)
    return torch.optim.SGD(groups, lr=config.lr, momentum=config.momentum)


@dataclass
class SinceValidation:
    """The training steps since the last validation, whose mean loss (and tokens per step)
    the next history entry gives. A checkpoint written between two validations (a stop
    signal) carries them, so that a resumed run's next entry is an uninterrupted run's."""

    loss_sum: float = 0.0
    steps: int = 0
    tokens: int = 0

    @classmethod
    def from_state(cls, state: Any) -> SinceValidation:
        """Read back from a checkpoint (zeros for one written at a validation by an older
        attnlab); a ValueError unless it holds a finite loss sum and two counts >= 0."""
        if not isinstance(state, dict) or set(state) - {"loss_sum", "steps", "tokens"}:
            raise ValueError(f"since_validation is not a record of steps: {state!r}")
        since = cls(**state)
        counts = (since.steps, since.tokens)
        if not all(type(n) is int and n >= 0 for n in counts) or not (
            isinstance(since.loss_sum, float) and math.isfinite(since.loss_sum)
        ):
            raise ValueError(f"since_validation holds other than two counts and a loss: {state}")
        return since


class Trainer:
    """Train ``model`` on ``task`` into ``run_dir`` (see :mod:`attnlab.training.checkpoint`).

    Under torchrun, every process builds its own Trainer with the same arguments; only rank 0
    writes to ``run_dir`` and prints.

    Args:
        task: the task (data, loss, metrics).
        model: the model, freshly built by ``task.build_model()``.
        config: the training hyperparameters.
        run_dir: where checkpoints, metrics, plots and TensorBoard logs go.
        progress: show a progress bar (loss, learning rate, throughput).
        validate_on_stop: validate the step a stop signal ends at even when no validation
            is due there (for a test report of the latest weights); the history and the
            best model then differ from those of a run that was never stopped.
    """

    # Set when training starts (_start), or restored from a checkpoint.
    best: list[float] | None  # [monitored metric, -loss] of the best model
    best_step: int | None
    checkpoint_step: int | None  # the step of the last checkpoint saved

    def __init__(
        self,
        task: Task,
        model: nn.Module,
        config: TrainConfig,
        run_dir: Path,
        progress: bool = True,
        validate_on_stop: bool = False,
    ):
        self.task = task
        self.model = model
        self.config = config
        self.run_dir = Path(run_dir)
        self.progress = progress
        self.validate_on_stop = validate_on_stop
        self.device = distributed.process_device(config.device)
        check_precision(self.device, config.precision)
        self._stop_requested = False  # a stop signal reached this process
        self._files_open = False  # the run's files are being written: a stop waits for them
        self._stop_after_files: int | None = None  # the signal that waits for the files
        self._stopping = False  # some process was asked to stop: all stop after this step
        self._validating = False  # the model is being validated (not trained)
        self._acknowledged = threading.Lock()  # held once the first stop signal is answered
        self._second_taken = threading.Event()  # the main thread took a second stop signal
        self._files_lock = threading.RLock()  # held while the run's files are written
        self.stopped_by: str | None = None  # the signal that stopped training early

    # -- state that a checkpoint carries ------------------------------------------------
    def _state(self, rng_states: list[dict[str, Any]]) -> dict[str, Any]:
        state = {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "step": self.step,
            "best": self.best,
            "best_step": self.best_step,
            "bad_validations": self.bad_validations,
            "history": self.history,
            "since_validation": asdict(self.since_validation),
            "rng": rng_states[0],
            "task": self.task.name,
            "model_class": type(self.model).__name__,
            "configs": run_configs(self.task.config, self.config),
        }
        if len(rng_states) > 1:  # under torchrun each process draws its own dropout masks
            state["rng_ranks"] = rng_states
        return state

    def _restore(self, state: dict[str, Any]) -> None:
        path = self.run_dir / CHECKPOINT
        check_checkpoint(path, state, self.model, self.optimizer, self.task.name)
        check_run_configs(path, state, run_configs(self.task.config, self.config))
        if state["best_step"] is not None:
            self._check_best_model(state["best_step"])
        try:
            self._load_state(state)
        except (KeyError, TypeError, ValueError, RuntimeError, IndexError) as e:
            raise RunDirError(f"{path} cannot be restored ({type(e).__name__}: {e})") from e

    def _check_best_model(self, best_step: Any) -> None:
        """Refuse to resume a run whose best model, which its checkpoint counts on, is missing
        or does not load: the test report after training reads it, so the run would stop only
        once training is done (unless a later validation happened to write a better one). It
        is loaded into the model, whose weights the checkpoint's then replace."""
        path = self.run_dir / MODEL
        what = (
            f"the best model so far (step {best_step}), which the test report after training "
            "reads: restore it, or train a new run"
        )
        if not path.exists():
            raise RunDirError(f"{path} is missing; it is {what}")
        try:
            load_weights(path, self.model)
        except RunDirError as e:
            raise RunDirError(f"{e}; it is {what}") from e

    def _load_state(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if self.scaler.is_enabled() and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        self.step = state["step"]
        self.best = state["best"]
        self.best_step = state["best_step"]
        self.bad_validations = state["bad_validations"]
        self.history = state["history"]
        self.since_validation = SinceValidation.from_state(state.get("since_validation", {}))
        rng_states = state.get("rng_ranks", [state["rng"]])
        if len(rng_states) == distributed.world_size():
            _set_rng_state(rng_states[distributed.rank()])
        else:
            self._print(
                f"note: the checkpoint was written by {len(rng_states)} process(es) and this run "
                f"has {distributed.world_size()}: dropout will draw other random numbers than "
                "an uninterrupted run"
            )

    def _save_checkpoint(self) -> None:
        rng_states = distributed.all_gather_object(_rng_state())  # every process calls this
        if distributed.is_main():
            with self._writing():
                save_checkpoint(self.run_dir / CHECKPOINT, self._state(rng_states))
                self._write_metrics()
        self.checkpoint_step = self.step

    @contextlib.contextmanager
    def _files_kept_together(self) -> Iterator[None]:
        """A second stop signal while a validation's files are written (the best weights,
        the checkpoint, the metrics) stops training once they are all written, so that
        ``model.safetensors`` is never newer than ``checkpoint.pt`` and ``metrics.json``."""
        with self._files_lock:
            self._files_open = True
            try:
                yield
            finally:
                self._files_open = False
        if self._stop_after_files is not None:
            raise Stopped(self._stop_after_files)

    @contextlib.contextmanager
    def _writing(self) -> Iterator[None]:
        """A file of the run cannot be written (disk full, read-only, no permission): stop
        with one sentence naming the cause and the last good checkpoint. The file being
        written is left as it was, and its temporary file is removed (atomic_write)."""
        try:
            with self._files_lock:
                yield
        except OutputError as e:
            stop = f"training stopped at step {self.step}"
            raise TrainingError(f"{e}: {stop}; {self._last_good()}") from e

    def _last_good(self) -> str:
        """Where the last good checkpoint is, in words (there may be none yet)."""
        if self.checkpoint_step is None:
            return f"no checkpoint was saved yet in {self.run_dir}"
        return f"the last good checkpoint (step {self.checkpoint_step}) is kept in {self.run_dir}"

    def _best_entry(self) -> dict[str, Any]:
        return next((h for h in self.history if h["step"] == self.best_step), {})

    def _write_metrics(self) -> None:
        write_json(
            self.run_dir / METRICS,
            {
                "task": self.task.name,
                "monitor": self.task.monitor,
                "best": self._best_entry(),
                "history": self.history,
            },
        )

    # -- the loop -----------------------------------------------------------------------
    def fit(
        self, resume: bool = False, on_start: Callable[[], None] | None = None
    ) -> dict[str, Any]:
        """Train until ``epochs`` (or ``max_steps``) are done or early stopping fires.

        With ``resume=True`` the state of ``run_dir/checkpoint.pt`` is checked and restored
        first. ``on_start`` is called (on rank 0) once that state is in place and before the
        first step: the caller writes its own files there, so that a checkpoint that is
        refused leaves the run directory as it was. Returns the validation history entry of
        the best model.
        """
        from torch.utils.tensorboard import SummaryWriter  # slow import: only when training

        cfg = self.config
        self.model.to(self.device)
        train_loader, sampler, val_loader = self._loaders()
        assert val_loader.batch_size is not None  # _loaders gives it one
        self._check_step_fits(train_loader.dataset, val_loader.batch_size)
        steps_per_epoch = sampler.steps_per_epoch
        total_steps = cfg.epochs * steps_per_epoch
        last_step = min(total_steps, cfg.max_steps) if cfg.max_steps else total_steps
        val_every = cfg.val_every or steps_per_epoch
        self._start(total_steps, resume)
        self._check_unvalidated_steps(last_step)
        self._wrap_for_training()
        if on_start is not None and distributed.is_main():
            on_start()

        main = distributed.is_main()
        self.writer = (
            SummaryWriter(str(self.run_dir / "tensorboard"), purge_step=self.step or None)
            if main
            else None
        )
        self.bar = bar = tqdm(
            total=last_step,
            initial=self.step,
            disable=not (self.progress and main),
            unit="step",
            dynamic_ncols=True,
            desc=f"train {self.task.name}",
        )
        stopped_at_once = False
        try:
            with self._ctrl_c_finishes_the_step(), self._out_of_memory_stops():
                self._loop(train_loader, sampler, val_loader, bar, val_every, last_step)
        except Stopped:
            # A second signal raises wherever the main thread is, perhaps inside TensorBoard's
            # writer queue or the progress bar with a lock held: closing them could then wait
            # forever. Leave them (their threads are daemons); the checkpoint is whole.
            stopped_at_once = True
            raise
        finally:
            if not stopped_at_once:
                bar.close()
                if self.writer is not None:
                    self.writer.close()
        return self._best_entry()

    def _loaders(self) -> tuple[DataLoader, EpochBatchSampler, DataLoader]:
        """The training loader with its sampler (this process's micro-batches of each global
        batch, epoch by epoch) and the validation loader."""
        cfg = self.config
        splits = self.task.splits()
        processes = distributed.world_size()
        check_batch_split(cfg.batch_size, cfg.grad_accum, processes)
        sampler = EpochBatchSampler(
            len(cast(Sized, splits.train)), cfg.batch_size, cfg.seed, distributed.rank(), processes,
            cfg.grad_accum,
        )  # fmt: skip
        train_loader = loader(splits.train, self.task, batch_sampler=sampler)
        # Validation batches as large as a training micro-batch, which is known to fit.
        micro_batch = cfg.batch_size // (processes * cfg.grad_accum)
        val_loader = loader(splits.val, self.task, batch_size=micro_batch)
        return train_loader, sampler, val_loader

    def _check_step_fits(self, train_set: Any, micro_batch: int) -> None:
        """Refuse a micro-batch whose training step cannot fit in the device's free memory,
        before the first step fills it (see :func:`attnlab.training.memory.check_step_fits`);
        measured on the first ``micro_batch`` training examples."""
        first = next(iter(loader(train_set, self.task, batch_size=micro_batch)))
        check_step_fits(self.task, first, self.device, self.config.precision)

    def _start(self, total_steps: int, resume: bool) -> None:
        """Build the optimizer, LR schedule and gradient scaler and start the bookkeeping at
        step 0, or with ``resume`` where ``run_dir/checkpoint.pt`` left off."""
        cfg = self.config
        self.optimizer = build_optimizer(self.model, cfg)
        d_model = getattr(getattr(self.model, "config", None), "d_model", 512)
        self.scheduler = build_scheduler(
            self.optimizer, cfg.schedule, cfg.warmup, total_steps, d_model, cfg.min_lr / cfg.lr
        )
        self.scaler = grad_scaler(self.device, cfg.precision)
        self.step, self.bad_validations, self.history = 0, 0, []
        self.since_validation = SinceValidation()
        self.best = None  # [monitored metric, -loss] of the best model
        self.best_step = None
        if distributed.world_size() > 1:
            # Every process used the same seed to build the same initial weights; from here on
            # each draws its own dropout masks (the same masks on every slice of a batch would
            # be one mask, not independent noise).
            torch.manual_seed(cfg.seed * 1_000_003 + distributed.rank() + 1)
        self.checkpoint_step = None  # the step of the last checkpoint saved
        if resume:
            self._restore(load_checkpoint(self.run_dir / CHECKPOINT))
            self.checkpoint_step = self.step

    def _check_unvalidated_steps(self, last_step: int) -> None:
        """Refuse to resume a checkpoint written by a stop signal after steps that were never
        validated into a run that ends at or before it: they would never be."""
        if self.step >= last_step and self.since_validation.steps:
            raise InputError(
                f"the checkpoint is at step {self.step}, {self.since_validation.steps} step(s) "
                f"after its last validation, and this run ends at step {last_step}: give a "
                f"--max-steps above {self.step} (or 0) to train on and validate them"
            )

    def _wrap_for_training(self) -> None:
        """Set ``train_model``, the module that runs the training forward pass.

        The training forward goes through DDP (which averages gradients over processes) and
        torch.compile (fused kernels). self.model stays the plain module: checkpoints save its
        weights (no "module." or "_orig_mod." in the names) and validation runs it. All of
        them share one set of parameters. DDP is wrapped first, then compiled, as PyTorch's
        DDP notes advise, so that the compiler can split its graph at DDP's gradient buckets.
        """
        self.ddp_model = distributed.wrap(self.model, self.device)
        self.train_model = (  # torch.compile returns an OptimizedModule, typed as a callable
            cast(nn.Module, torch.compile(self.ddp_model))
            if self.config.compile
            else self.ddp_model
        )

    @contextlib.contextmanager
    def _ctrl_c_finishes_the_step(self) -> Iterator[None]:
        """While inside, Ctrl-C (SIGINT), SIGTERM (what schedulers such as SLURM, Kubernetes
        and systemd send) and SIGHUP finish the current step and save a checkpoint (see
        :meth:`_request_stop`). A signal this process ignores stays ignored: ``nohup attnlab
        train ...`` keeps training when the terminal closes (SIGHUP), and so does a run started
        in the background by a script (``&``: SIGINT ignored) when Ctrl-C is pressed. Signal
        handlers can only be set in the main thread; in any other thread this does nothing."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = {
            sig: signal.signal(sig, self._request_stop)
            for sig in STOP_SIGNALS
            if signal.getsignal(sig) is not signal.SIG_IGN
        }
        try:
            with watch_stop_signals(
                set(previous), self._acknowledge, self._second_taken, self._stop_now
            ):
                yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    @contextlib.contextmanager
    def _out_of_memory_stops(self) -> Iterator[None]:
        """An allocation that fails in a step or a validation (a CUDA out-of-memory error, a
        CPU allocation past ``ulimit -v``) stops training with one sentence naming the step
        and the last good checkpoint."""
        try:
            yield
        except (RuntimeError, MemoryError) as e:
            if not is_out_of_memory(e):
                raise
            where = (
                f"in the validation at step {self.step}"
                if self._validating
                else f"at step {self.step + 1}"
            )
            raise TrainingError(
                f"{out_of_memory_sentence(e)} {where}, so training stopped "
                f"(choose a smaller --batch-size, a larger --grad-accum, shorter sequences or "
                f"a smaller model); {self._last_good()}"
            ) from e

    def _request_stop(self, signum: int, frame: Any) -> None:
        if self._stop_requested:  # a second signal stops at once (the files stay whole)
            self._second_taken.set()
            if self._files_open:
                self._stop_after_files = signum  # as soon as the files agree
                return
            raise Stopped(signum)
        self._stop_requested = True
        self.stopped_by = signal.Signals(signum).name
        self._acknowledge(signum)

    def _acknowledge(self, signum: int) -> None:
        """Say once (from the handler, or at once from the watching thread while the main
        thread is inside a long operation) that the first stop signal was heard."""
        if self._acknowledged.acquire(blocking=False):
            name = signal.Signals(signum).name
            self._print(
                f"{name}: stopping after this step and saving a checkpoint ({name} again "
                "to stop at once)."
            )

    def _stop_now(self, signum: int) -> None:
        """A second stop signal that the main thread cannot take (it is inside one long
        operation): end the process from the watching thread, once any run file being
        written is whole. The step in progress is lost; the last checkpoint is kept."""
        with self._files_lock:
            name = signal.Signals(signum).name
            sys.stderr.write(
                f"attnlab: stopped at once by {name} during step {self.step + 1}, which is "
                f"lost; {self._last_good()}\n"
            )
            sys.stderr.flush()
            os._exit(128 + signum)

    def _print(self, message: str) -> None:
        """Print on rank 0 only (without breaking the progress bar)."""
        if distributed.is_main():
            tqdm.write(message, file=sys.stderr)

    def _log(self, scalars: dict[str, float]) -> None:
        """Write scalars to TensorBoard at the current step (rank 0 only)."""
        if self.writer is not None:
            for name, value in scalars.items():
                self.writer.add_scalar(name, value, self.step)

    def _loop(
        self,
        train_loader: DataLoader,
        sampler: EpochBatchSampler,
        val_loader: DataLoader,
        bar: tqdm,
        val_every: int,
        last_step: int,
    ) -> None:
        """Train until ``last_step``, a stop signal or early stopping: one optimizer step per
        ``grad_accum`` micro-batches, validating every ``val_every`` steps and at each epoch's
        end."""
        cfg = self.config
        steps_per_epoch = sampler.steps_per_epoch
        examples, tokens, started = 0, 0, time.perf_counter()  # tokens: for tasks counting them
        while self.step < last_step and not self._stopping:
            epoch, start_step = divmod(self.step, steps_per_epoch)
            sampler.set_epoch(epoch, start_step)
            micro_batches = []
            for batch in batches_on(train_loader, self.device):
                micro_batches.append(batch)  # the inputs of one global batch (small)
                if len(micro_batches) < cfg.grad_accum:
                    continue
                step_examples = sampler.examples_in_step(self.step % steps_per_epoch)
                loss_value, grad_norm, lr, step_tokens = self._train_step(
                    micro_batches, step_examples
                )
                micro_batches = []
                since = self.since_validation
                since.loss_sum, since.steps = since.loss_sum + loss_value, since.steps + 1
                since.tokens += step_tokens
                examples += step_examples
                tokens += step_tokens
                scalars = {"train/loss": loss_value, "train/lr": lr, "train/grad_norm": grad_norm}
                if step_tokens:
                    scalars["train/tokens_per_step"] = step_tokens
                self._log(scalars)
                elapsed = max(time.perf_counter() - started, 1e-9)
                rates = {"ex_s": f"{examples / elapsed:,.0f}"}
                if tokens:
                    rates["tok_s"] = f"{tokens / elapsed:,.0f}"
                bar.set_postfix(loss=f"{loss_value:.4f}", lr=f"{lr:.2e}", **rates, refresh=False)
                bar.update()

                last = self.step >= last_step
                due = self.step % val_every == 0 or self.step % steps_per_epoch == 0 or last
                if self._end_of_step(val_loader, epoch, lr, due) or last:
                    return

    def _end_of_step(self, val_loader: DataLoader, epoch: int, lr: float, due: bool) -> bool:
        """Validate when a validation is ``due`` after this step (or a stop signal asks for
        one, with ``validate_on_stop``); else, after a stop signal, write a checkpoint only.
        True when training ends here: early stopping or a stop signal."""
        if due or (self._stopping and self.validate_on_stop):
            since = self.since_validation
            train_stats = {"train_loss": since.loss_sum / since.steps}
            if since.tokens:
                train_stats["train_tokens_per_step"] = since.tokens / since.steps
            self.since_validation = SinceValidation()  # before the checkpoint that carries it
            self._print(self._describe(self._validate(val_loader, epoch, lr, train_stats)))
            patience = self.config.patience
            if patience and self.bad_validations >= patience:
                self._print(f"Early stopping: no improvement in {patience} validations.")
                return True
        elif self._stopping:
            with self._files_kept_together():
                self._save_checkpoint()
        return self._stopping

    def _train_step(
        self, micro_batches: list[Any], step_examples: int
    ) -> tuple[float, float, float, int]:
        """One optimizer step on one global batch of ``step_examples`` examples, of which this
        process holds ``micro_batches``; returns the loss, the gradient norm, the learning
        rate used and the real tokens of the global batch (0 for tasks that do not count
        them) — the same on every process."""
        cfg = self.config
        self.train_model.train()
        self.optimizer.zero_grad(set_to_none=True)
        step_loss = torch.zeros((), device=self.device)
        local_tokens = sum(self.task.tokens_of(batch) or 0 for batch in micro_batches)
        for i, batch in enumerate(micro_batches):
            # The mean loss of the global batch is the sum over micro-batches of
            # part * (mean loss of the micro-batch), so backward of each such term adds up to its
            # gradient (with equal micro-batches, part = 1 / grad_accum). DDP *averages* the
            # gradients over the processes; multiplying by their number undoes that division.
            part = self.task.batch_size_of(batch) / step_examples
            last = i == len(micro_batches) - 1
            # Only the last backward of the step needs DDP's gradient all-reduce: the others
            # would send partial sums that the last one sends again.
            with distributed.no_sync(self.ddp_model, skip=not last):
                with autocast(self.device, cfg.precision):
                    loss = self.task.loss(self.train_model, batch)
                self.scaler.scale(loss * (part * distributed.world_size())).backward()
            step_loss += loss.detach().float() * part
        # One all-reduce tells every process the global batch's loss and whether any of them
        # was asked to stop, so that all take the same decisions (NaN, Ctrl-C) at this step.
        loss_value, stop_requests, step_tokens = distributed.sum_over_processes(
            [step_loss, float(self._stop_requested), float(local_tokens)], self.device
        )
        self._stopping = stop_requests > 0
        if self._stopping and self.stopped_by is None:
            self.stopped_by = "a signal to another process"
        if not math.isfinite(loss_value):
            raise TrainingError(
                f"the training loss became {loss_value} at step {self.step + 1}, so training "
                f"stopped; {self._last_good()} — try a lower --lr or a --grad-clip"
            )
        self.scaler.unscale_(self.optimizer)  # fp16: clip the true gradients, not scaled ones
        max_norm = cfg.grad_clip or float("inf")
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), max_norm).item()
        lr = float(self.scheduler.get_last_lr()[0])  # a float (typed float | Tensor)
        self.scaler.step(self.optimizer)  # fp16: skipped if the gradients overflowed
        self.scaler.update()
        self.scheduler.step()
        self.step += 1
        return loss_value, grad_norm, lr, int(step_tokens)

    def _validate(self, val_loader: DataLoader, epoch: int, lr: float, train_stats: dict) -> dict:
        """Validate on rank 0 (the others wait), keep the best weights, write a checkpoint.

        The validation metrics are computed by rank 0 alone on the whole validation set, so
        they are exactly the metrics of a single-process run; rank 0's bookkeeping (history,
        best score, early-stopping count) is then sent to every process.
        """
        if distributed.is_main():
            self.model.eval()
            self._validating = True  # an allocation that fails here names the validation
            batches = counted_on_bar(batches_on(val_loader, self.device), len(val_loader), self.bar)
            with autocast(self.device, self.config.precision):
                metrics = self.task.evaluate(self.model, batches)
            self._validating = False
            self.model.train()
        with self._files_kept_together():
            if distributed.is_main():
                entry = {"step": self.step, "epoch": epoch + 1, "lr": lr, **train_stats}
                self._record(entry, metrics)
            self.history, self.best, self.best_step, self.bad_validations = (
                distributed.broadcast_object(
                    (self.history, self.best, self.best_step, self.bad_validations)
                )
            )
            val_loss = self.history[-1]["val_loss"]
            if not math.isfinite(val_loss):
                raise TrainingError(
                    f"the validation loss became {val_loss} at step {self.step}, so training "
                    f"stopped; {self._last_good()} — try a lower --lr or a --grad-clip"
                )
            self._save_checkpoint()
        return self.history[-1]

    def _record(self, entry: dict[str, Any], metrics: dict[str, float]) -> None:
        """Add a validation's ``metrics`` to the history (after ``entry``: step, epoch,
        training statistics) and TensorBoard, and save the weights if they are the best so
        far (rank 0)."""
        self.history.append({**entry, **{f"val_{k}": v for k, v in metrics.items()}})
        self._log({f"val/{k}": v for k, v in metrics.items()})
        score = [metrics[self.task.monitor], -metrics["loss"]]  # ties go to the lower loss
        if not math.isfinite(metrics["loss"]):
            self.bad_validations += 1  # never the best: training stops in _validate, unsaved
        elif self.best is None or score > self.best:
            self.best, self.best_step, self.bad_validations = score, self.step, 0
            with self._writing():
                save_weights(self.run_dir / MODEL, self.model, {"step": str(self.step)})
        else:
            self.bad_validations += 1

    def _describe(self, entry: dict) -> str:
        metrics = "  ".join(
            f"{k} {v:.0f}" if k.endswith("tokens_per_step") else f"{k} {v:.4f}"
            for k, v in entry.items()
            if k.startswith(("train_", "val_"))
        )
        return f"step {entry['step']:>6}  epoch {entry['epoch']:>3}  {metrics}"


def _rng_state() -> dict[str, Any]:
    """This process's random-number state (CPU, and every visible GPU)."""
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
