"""``attnlab compare``'s timing probe: it times the step the trainer will run, so that the
number of epochs it plans fits the budget."""

import torch

from attnlab.experiments.compare import TIMED_STEPS, seconds_per_step
from attnlab.tasks.reverse import ReverseConfig, ReverseTask
from attnlab.training import TrainConfig


def _probe_calls(config: TrainConfig) -> list[tuple[int, torch.dtype | None]]:
    """(examples, autocast dtype or None) of every loss the probe computes."""
    task = ReverseTask(ReverseConfig(train_size=2_000, val_size=10, test_size=10))
    real_loss, calls = task.loss, []

    def recording_loss(model, batch):
        # What a matmul computes in: autocast's dtype where it is on (on every torch version).
        dtype = (torch.ones(1, 1) @ torch.ones(1, 1)).dtype
        calls.append((len(batch[0]), None if dtype == torch.float32 else dtype))
        return real_loss(model, batch)

    task.loss = recording_loss
    assert seconds_per_step(task, task.build_model(), config) > 0
    return calls


def test_the_probe_runs_the_trainers_micro_batches_and_precision():
    """It ran one float32 forward pass of the whole batch: with --grad-accum the step it timed
    held 4 times the examples at once, and with --precision bf16 not the format trained in."""
    config = TrainConfig(batch_size=64, grad_accum=4, precision="bf16", device="cpu")
    calls = _probe_calls(config)
    assert calls == [(16, torch.bfloat16)] * 4 * (TIMED_STEPS + 1)  # warm-up step included


def test_without_accumulation_a_step_is_one_float32_batch():
    calls = _probe_calls(TrainConfig(batch_size=64, device="cpu"))
    assert calls == [(64, None)] * (TIMED_STEPS + 1)
