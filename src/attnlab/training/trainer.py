"""The training loop: written out, no framework.

One step: forward -> loss -> backward -> clip the gradient norm -> optimizer step ->
learning-rate schedule step. Every ``val_every`` steps (or once per epoch) the model is
validated, the best weights are kept by the task's ``monitor`` metric, and a resumable
checkpoint is written atomically. The trainer knows the task only through
:class:`attnlab.tasks.Task`.
"""

from __future__ import annotations

import math
import signal
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Sampler
from tqdm.auto import tqdm

from attnlab.errors import AttnlabError, TrainingError
from attnlab.tasks.base import Task
from attnlab.training.checkpoint import (
    CHECKPOINT,
    METRICS,
    MODEL,
    load_checkpoint,
    save_checkpoint,
    save_weights,
    write_json,
)
from attnlab.training.config import TrainConfig
from attnlab.training.schedules import build_scheduler


def resolve_device(name: str) -> torch.device:
    """``"auto"`` -> CUDA if available, else CPU; otherwise the named device."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as e:
        raise AttnlabError(f"unknown device {name!r}: use auto, cpu, cuda or cuda:N") from e
    if device.type == "cuda" and not torch.cuda.is_available():
        raise AttnlabError(f"--device {name} was asked for, but this PyTorch sees no CUDA GPU")
    return device


def to_device(batch: Any, device: torch.device) -> Any:
    """Move every tensor in a (nested) tuple / list / dict batch to ``device``."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {k: to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, list | tuple):
        return type(batch)(to_device(v, device) for v in batch)
    return batch


def batches_on(loader: Iterable[Any], device: torch.device) -> Iterator[Any]:
    """The batches of ``loader``, moved to ``device``."""
    for batch in loader:
        yield to_device(batch, device)


def loader(dataset: Any, task: Task, **kwargs: Any) -> DataLoader:
    """A DataLoader with the task's collate function and a private generator.

    Each new DataLoader iterator draws a seed from its generator; with the default (the
    global one) that draw would shift the dropout random numbers, and a resumed run would
    no longer repeat an uninterrupted one.
    """
    return DataLoader(dataset, collate_fn=task.collate, generator=torch.Generator(), **kwargs)


class EpochBatchSampler(Sampler[list[int]]):
    """Shuffled mini-batches whose order depends only on ``(seed, epoch)``.

    Because the order is a pure function of the epoch, a resumed run can start in the middle
    of an epoch (``start_batch``) and see exactly the batches an uninterrupted run would.
    """

    def __init__(self, num_examples: int, batch_size: int, seed: int):
        self.num_examples = num_examples
        self.batch_size = batch_size
        self.seed = seed
        self.epoch = 0
        self.start_batch = 0

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        self.epoch, self.start_batch = epoch, start_batch

    def __len__(self) -> int:
        return math.ceil(self.num_examples / self.batch_size)

    def __iter__(self) -> Iterator[list[int]]:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        order = torch.randperm(self.num_examples, generator=g)
        for b in range(self.start_batch, len(self)):
            yield order[b * self.batch_size : (b + 1) * self.batch_size].tolist()


def build_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """AdamW / Adam / SGD; weight decay only on matrices (not on biases and norms)."""
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]
    groups = [
        {"params": decay, "weight_decay": config.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    if config.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=config.lr)
    if config.optimizer == "adam":
        return torch.optim.Adam(groups, lr=config.lr)
    return torch.optim.SGD(groups, lr=config.lr, momentum=config.momentum)


class Trainer:
    """Train ``model`` on ``task`` into ``run_dir`` (see :mod:`attnlab.training.checkpoint`).

    Args:
        task: the task (data, loss, metrics).
        model: the model, freshly built by ``task.build_model()``.
        config: the training hyperparameters.
        run_dir: where checkpoints, metrics, plots and TensorBoard logs go.
        progress: show a progress bar (loss, learning rate, throughput).
    """

    def __init__(
        self,
        task: Task,
        model: nn.Module,
        config: TrainConfig,
        run_dir: Path,
        progress: bool = True,
    ):
        self.task = task
        self.model = model
        self.config = config
        self.run_dir = Path(run_dir)
        self.progress = progress
        self.device = resolve_device(config.device)
        self._stop_requested = False

    # -- state that a checkpoint carries ------------------------------------------------
    def _state(self) -> dict[str, Any]:
        rng = {"torch": torch.get_rng_state()}
        if torch.cuda.is_available():
            rng["cuda"] = torch.cuda.get_rng_state_all()
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "step": self.step,
            "best": self.best,
            "best_step": self.best_step,
            "bad_validations": self.bad_validations,
            "history": self.history,
            "rng": rng,
        }

    def _restore(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.step = state["step"]
        self.best = state["best"]
        self.best_step = state["best_step"]
        self.bad_validations = state["bad_validations"]
        self.history = state["history"]
        torch.set_rng_state(state["rng"]["torch"])
        if "cuda" in state["rng"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["rng"]["cuda"])

    def _save_checkpoint(self) -> None:
        save_checkpoint(self.run_dir / CHECKPOINT, self._state())
        self.checkpoint_step = self.step
        self._write_metrics()

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
    def fit(self, resume: bool = False) -> dict[str, Any]:
        """Train until ``epochs`` (or ``max_steps``) are done or early stopping fires.

        With ``resume=True`` the state of ``run_dir/checkpoint.pt`` is restored first.
        Returns the validation history entry of the best model.
        """
        from torch.utils.tensorboard import SummaryWriter  # slow import: only when training

        cfg = self.config
        self.model.to(self.device)
        splits = self.task.splits()
        sampler = EpochBatchSampler(len(splits.train), cfg.batch_size, cfg.seed)
        train_loader = loader(splits.train, self.task, batch_sampler=sampler)
        val_loader = loader(splits.val, self.task, batch_size=cfg.batch_size)
        steps_per_epoch = len(sampler)
        total_steps = cfg.epochs * steps_per_epoch
        last_step = min(total_steps, cfg.max_steps) if cfg.max_steps else total_steps
        val_every = cfg.val_every or steps_per_epoch

        self.optimizer = build_optimizer(self.model, cfg)
        d_model = getattr(getattr(self.model, "config", None), "d_model", 512)
        self.scheduler = build_scheduler(
            self.optimizer, cfg.schedule, cfg.warmup, total_steps, d_model
        )
        self.step, self.bad_validations, self.history = 0, 0, []
        self.best: list[float] | None = None  # [monitored metric, -loss] of the best model
        self.best_step: int | None = None
        if resume:
            self._restore(load_checkpoint(self.run_dir / CHECKPOINT))
        self.checkpoint_step = self.step

        writer = SummaryWriter(str(self.run_dir / "tensorboard"), purge_step=self.step or None)
        bar = tqdm(
            total=last_step,
            initial=self.step,
            disable=not self.progress,
            unit="step",
            dynamic_ncols=True,
            desc=f"train {self.task.name}",
        )
        # Ctrl-C finishes the current step and saves a checkpoint (signals: main thread only).
        in_main_thread = threading.current_thread() is threading.main_thread()
        if in_main_thread:
            previous_handler = signal.signal(signal.SIGINT, self._request_stop)
        try:
            self._loop(train_loader, sampler, val_loader, writer, bar, val_every, last_step)
        finally:
            if in_main_thread:
                signal.signal(signal.SIGINT, previous_handler)
            bar.close()
            writer.close()
        return self._best_entry()

    def _request_stop(self, signum: int, frame: Any) -> None:
        if self._stop_requested:  # a second Ctrl-C stops at once
            raise KeyboardInterrupt
        self._stop_requested = True
        tqdm.write(
            "Stopping after this step and saving a checkpoint (Ctrl-C again to abort).",
            file=sys.stderr,
        )

    def _loop(self, train_loader, sampler, val_loader, writer, bar, val_every, last_step):
        cfg = self.config
        steps_per_epoch = len(sampler)
        loss_sum, loss_count, examples, started = 0.0, 0, 0, time.perf_counter()
        while self.step < last_step and not self._stop_requested:
            epoch, start_batch = divmod(self.step, steps_per_epoch)
            sampler.set_epoch(epoch, start_batch)
            for batch in batches_on(train_loader, self.device):
                loss_value, grad_norm, lr = self._train_step(batch)
                loss_sum, loss_count = loss_sum + loss_value, loss_count + 1
                examples += self.task.batch_size_of(batch)
                writer.add_scalar("train/loss", loss_value, self.step)
                writer.add_scalar("train/lr", lr, self.step)
                writer.add_scalar("train/grad_norm", grad_norm, self.step)
                rate = examples / max(time.perf_counter() - started, 1e-9)
                bar.set_postfix(loss=f"{loss_value:.4f}", lr=f"{lr:.2e}", ex_s=f"{rate:,.0f}")
                bar.update()

                done = self.step >= last_step or self._stop_requested
                if self.step % val_every == 0 or self.step % steps_per_epoch == 0 or done:
                    entry = self._validate(val_loader, writer, epoch, lr, loss_sum / loss_count)
                    loss_sum, loss_count = 0.0, 0
                    bar.write(self._describe(entry))
                    if cfg.patience and self.bad_validations >= cfg.patience:
                        bar.write(f"Early stopping: no improvement in {cfg.patience} validations.")
                        return
                if done:
                    return

    def _train_step(self, batch: Any) -> tuple[float, float, float]:
        """One optimizer step; returns the loss, the gradient norm and the learning rate used."""
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        loss = self.task.loss(self.model, batch)
        loss_value = loss.item()
        if not math.isfinite(loss_value):
            raise TrainingError(
                f"the training loss became {loss_value} at step {self.step + 1}, so training "
                f"stopped; the last good checkpoint (step {self.checkpoint_step}) is kept in "
                f"{self.run_dir} — try a lower --lr or a --grad-clip"
            )
        loss.backward()
        max_norm = self.config.grad_clip or float("inf")
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), max_norm).item()
        lr = self.scheduler.get_last_lr()[0]
        self.optimizer.step()
        self.scheduler.step()
        self.step += 1
        return loss_value, grad_norm, lr

    def _validate(self, val_loader, writer, epoch: int, lr: float, train_loss: float) -> dict:
        self.model.eval()
        metrics = self.task.evaluate(self.model, batches_on(val_loader, self.device))
        self.model.train()
        entry = {"step": self.step, "epoch": epoch + 1, "lr": lr, "train_loss": train_loss}
        entry.update({f"val_{k}": v for k, v in metrics.items()})
        self.history.append(entry)
        for k, v in metrics.items():
            writer.add_scalar(f"val/{k}", v, self.step)
        score = [metrics[self.task.monitor], -metrics["loss"]]  # ties go to the lower loss
        if self.best is None or score > self.best:
            self.best, self.best_step, self.bad_validations = score, self.step, 0
            save_weights(self.run_dir / MODEL, self.model, {"step": str(self.step)})
        else:
            self.bad_validations += 1
        self._save_checkpoint()
        return entry

    def _describe(self, entry: dict) -> str:
        metrics = "  ".join(
            f"{k} {v:.4f}" for k, v in entry.items() if k.startswith(("train_", "val_"))
        )
        return f"step {entry['step']:>6}  epoch {entry['epoch']:>3}  {metrics}"
