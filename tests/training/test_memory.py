"""The memory one training step needs, counted on the meta device before anything is allocated,
and what happens when an allocation fails anyway (a GPU out of memory, a memory limit)."""

import pytest
import torch
from torch import nn

from attnlab.errors import ConfigError, TrainingError, is_out_of_memory, out_of_memory_sentence
from attnlab.evaluation import evaluate_run
from attnlab.machine import refuse_if_short
from attnlab.runs import load_run
from attnlab.tasks import get_task
from attnlab.tasks.reverse import ReverseConfig, ReverseTask
from attnlab.training import memory
from attnlab.training.checkpoint import load_checkpoint
from attnlab.training.memory import SURE_SHARE, activation_bytes, check_step_fits
from attnlab.training.trainer import loader

from ..cli_helpers import assert_one_line_error, run_cli
from ..data_sets import needs_data
from .conftest import SMALL, train, trainer_with_a_struck_step

GB = 1024**3


def _sum_of_squares(model: nn.Module, batch) -> torch.Tensor:
    return model(batch[0]).pow(2).sum()


def test_activation_bytes_counts_every_layer_output_by_hand():
    build = lambda: nn.Sequential(nn.Linear(3, 5), nn.ReLU(), nn.Dropout(0.1), nn.Linear(5, 2))  # noqa: E731
    batch = (torch.randn(4, 3),)
    # 4 x 5 (Linear) + 4 x 5 (ReLU) + 4 x 5 (Dropout) + 4 x 2 (Linear) = 68 values
    assert activation_bytes(build, _sum_of_squares, batch) == 68 * 4
    assert activation_bytes(build, _sum_of_squares, batch, bytes_per_value=2) == 68 * 2


def test_counting_allocates_nothing_and_draws_no_random_numbers():
    """The count runs on the meta device: a model of 8 GB of weights costs nothing, and the
    global random state (which a resumed run must repeat bit for bit) is untouched."""
    build = lambda: nn.Sequential(nn.Linear(32_768, 65_536))  # noqa: E731  8 GiB of float32
    before = torch.get_rng_state()
    assert activation_bytes(build, _sum_of_squares, (torch.zeros(2, 32_768),)) == 2 * 65_536 * 4
    assert torch.equal(torch.get_rng_state(), before)


def _first_batch(task, examples: int):
    return next(iter(loader(task.splits().train, task, batch_size=examples)))


def _saved_for_backward(task, batch) -> int:
    """Bytes autograd keeps for the backward pass of one real training forward (on the CPU):
    every saved tensor's storage once, the parameters left out."""
    model = task.build_model().train()
    parameters = {p.untyped_storage().data_ptr() for p in model.parameters()}
    storages = {}

    def pack(t):
        storages[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        task.loss(model, batch)
    return sum(size for ptr, size in storages.items() if ptr not in parameters)


TASKS = [
    ("reverse", {}, 128),
    ("digits", {}, 32),
    pytest.param("names", {}, 128, marks=needs_data),
    pytest.param("translate-small", {}, 64, marks=needs_data),
    pytest.param("shakespeare", {"block_size": 128}, 16, marks=needs_data),
    pytest.param("shakespeare", {"block_size": 128, "arch": "llama"}, 16, marks=needs_data),
]


@pytest.mark.parametrize("name, fields, micro_batch", TASKS)
def test_the_count_is_near_what_autograd_keeps(name, fields, micro_batch):
    """The reference is autograd itself: the tensors it saves in a real forward pass. The
    count may be above them (a layer output the next layer does not save), but never by more
    than 1 / SURE_SHARE, the margin the refusal leaves; nor far below them."""
    task_cls = get_task(name)
    task = task_cls(task_cls.Config(**fields))
    batch = _first_batch(task, micro_batch)
    counted = activation_bytes(task.build_model, task.loss, batch)
    saved = _saved_for_backward(task, batch)
    assert SURE_SHARE * counted <= saved <= 1.5 * counted, (counted, saved)


def test_a_step_larger_than_the_free_memory_is_refused(monkeypatch):
    task = ReverseTask(ReverseConfig(train_size=256, val_size=8, test_size=8))
    batch = _first_batch(task, 128)
    needed = SURE_SHARE * activation_bytes(task.build_model, task.loss, batch)
    monkeypatch.setattr(memory, "available_on", lambda device: int(needed))  # grads do not fit
    with pytest.raises(ConfigError, match="micro-batch of 128 examples needs at least"):
        check_step_fits(task, batch, torch.device("cpu"), "fp32")
    monkeypatch.setattr(memory, "available_on", lambda device: int(needed) + 10**7)
    check_step_fits(task, batch, torch.device("cpu"), "fp32")  # fits: no error


@pytest.mark.parametrize(
    ("needed", "available", "said"),
    [
        (int(30.5 * 2**30), int(22.8 * 2**30), "needs about 30.5 GB, and this machine has 22.8 GB"),
        (2**30, 300 * 2**20, "needs about 1.0 GB, and this machine has 300 MB available"),
        (5 * 2**20, 4096, "needs about 5 MB, and this machine has 4,096 bytes available"),
    ],
)
def test_a_refusal_states_sizes_in_units_that_do_not_round_to_zero(needed, available, said):
    with pytest.raises(ConfigError, match=said) as refused:
        refuse_if_short(needed, available, "the data", "choose less")
    assert "0.0 GB" not in str(refused.value)
    refuse_if_short(available, available, "the data", "choose less")  # exactly fits: no error


@needs_data
def test_a_long_context_on_a_16_gb_laptop_is_refused_and_the_default_fits(monkeypatch):
    """--block-size 100000 filled 24 GB and the swap of a 2-core machine before this check."""
    monkeypatch.setattr(memory, "available_on", lambda device: 16 * GB)
    cpu = torch.device("cpu")
    task_cls = get_task("shakespeare")
    default = task_cls(task_cls.Config())
    check_step_fits(default, _first_batch(default, 12), cpu, "fp32")
    long = task_cls(task_cls.Config(block_size=100_000))
    batch = _first_batch(long, 12)
    with pytest.raises(ConfigError, match="needs at least 3[0-9].[0-9] GB, and this machine"):
        check_step_fits(long, batch, cpu, "fp32")
    one_block = tuple(t[:1] for t in batch)  # the advice: a smaller --batch-size fits
    check_step_fits(long, one_block, cpu, "fp32")


def test_the_cli_refuses_before_making_a_run_directory(capsys, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(memory, "available_on", lambda device: 1000)
    code, _, err = run_cli(capsys, "train", "reverse", "--no-progress", *SMALL)
    assert_one_line_error(code, err, "one training step on a micro-batch of 50 examples")
    assert list((tmp_path / "runs" / "reverse").iterdir()) == []  # no empty run left behind
    out = tmp_path / "mine"
    code, _, err = run_cli(capsys, "train", "reverse", "--out", str(out), "--no-progress", *SMALL)
    assert_one_line_error(code, err, "choose a smaller --batch-size, a larger --grad-accum")
    monkeypatch.undo()
    assert run_cli(capsys, "train", "reverse", "--out", str(out), "--no-progress", *SMALL)[0] == 0


# -- an allocation that fails anyway ---------------------------------------------------------


def test_a_real_allocation_failure_is_recognised(device):
    with pytest.raises(RuntimeError) as caught:
        torch.empty(2**62, dtype=torch.uint8, device=device)  # 4 EiB: refused at once
    assert is_out_of_memory(caught.value)
    where = "the GPU" if device.type == "cuda" else "the machine"
    assert out_of_memory_sentence(caught.value).startswith(f"{where} ran out of memory (an ")


def _total_memory(device: torch.device) -> int:
    if device.type == "cuda":
        return torch.cuda.get_device_properties(device).total_memory
    with open("/proc/meminfo") as f:
        return int(next(line for line in f if line.startswith("MemTotal:")).split()[1]) * 1024


def test_the_free_memory_is_the_devices_own(device):
    """On CUDA the GPU's free memory, not the host's: at most the device's total."""
    assert 0 < memory.available_on(device) <= _total_memory(device)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_free_memory_shrinks_by_what_is_allocated():
    cuda = torch.device("cuda")
    free = memory.available_on(cuda)
    block = torch.empty(2 * GB, dtype=torch.uint8, device=cuda)
    assert memory.available_on(cuda) <= free - 2 * GB + 64 * 1024**2  # allocator slack
    del block


def test_cuda_and_python_out_of_memory_are_recognised_and_other_errors_are_not():
    cuda = torch.cuda.OutOfMemoryError(
        "CUDA out of memory. Tried to allocate 20.00 GiB. GPU 0 has a total capacity of "
        "139.81 GiB of which 3.12 GiB is free.\nIf reserved but unallocated memory is large..."
    )
    assert is_out_of_memory(cuda)
    assert (
        out_of_memory_sentence(cuda)
        == "the GPU ran out of memory (an allocation of 20.00 GiB failed)"
    )
    assert is_out_of_memory(MemoryError())
    assert not is_out_of_memory(RuntimeError("mat1 and mat2 shapes cannot be multiplied"))
    assert not is_out_of_memory(ValueError("out of memory"))


def _out_of_memory(loss):
    raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB.")


def test_running_out_of_memory_in_a_step_stops_in_one_sentence_keeping_the_checkpoint(tmp_path):
    trainer = trainer_with_a_struck_step(tmp_path, 13, _out_of_memory)
    with pytest.raises(TrainingError) as caught:
        trainer.fit()
    assert str(caught.value) == (
        "the GPU ran out of memory (an allocation of 2.00 GiB failed) at step 13, so training "
        "stopped (choose a smaller --batch-size, a larger --grad-accum, shorter sequences or a "
        f"smaller model); the last good checkpoint (step 10) is kept in {tmp_path}"
    )
    assert load_checkpoint(tmp_path / "checkpoint.pt")["step"] == 10


def test_running_out_of_memory_in_a_validation_names_it(tmp_path):
    trainer = trainer_with_a_struck_step(tmp_path, 0, _out_of_memory)  # no step is struck
    real_evaluate, validations = trainer.task.evaluate, []

    def evaluate_until_out_of_memory(model, batches):
        validations.append(1)
        return _out_of_memory(None) if len(validations) == 2 else real_evaluate(model, batches)

    trainer.task.evaluate = evaluate_until_out_of_memory
    with pytest.raises(TrainingError, match=r"memory \(.*\) in the validation at step 10, so "):
        trainer.fit()
    assert load_checkpoint(tmp_path / "checkpoint.pt")["step"] == 5


def test_an_allocation_failure_outside_training_is_one_line(capsys, monkeypatch, trained_run):
    def allocate_too_much(*args, **kwargs):
        return torch.empty(2**62, dtype=torch.uint8)

    monkeypatch.setattr(ReverseTask, "predictions", allocate_too_much)
    code, _, err = run_cli(capsys, "predict", str(trained_run), "1 2 3")
    assert_one_line_error(code, err, "attnlab: error: the machine ran out of memory")


@needs_data
def test_compare_refuses_a_step_too_large_before_any_variant_runs(capsys, monkeypatch, tmp_path):
    """Its timing probe ran a full batch's step before the trainer's check: with
    --block-size 100000 it filled the memory as training had."""
    monkeypatch.setattr(memory, "available_on", lambda device: 1000)
    out = tmp_path / "cmp"
    code, _, err = run_cli(
        capsys, "compare", "shakespeare", "--block-size", "32", "--out", str(out)
    )
    assert_one_line_error(code, err, "variant 'gpt': one training step on a micro-batch of 12")
    assert not out.exists()


def test_evaluation_takes_the_micro_batches_training_proved_to_fit(tmp_path):
    """eval took whole --batch-size batches: a run trained with --grad-accum 8 on a GPU then
    needed 8 times the memory of any step it had run. The metrics do not depend on it."""
    out = tmp_path / "run"
    assert train(out, "--epochs", "1", "--grad-accum", "5") == 0  # batches of 50, micro 10
    run = load_run(out)
    real_report, sizes = run.task.report, []

    def recording_report(model, test, batches, plots):
        def seen():
            for batch in batches:
                sizes.append(len(batch[0]))
                yield batch

        return real_report(model, test, seen(), plots)

    run.task.report = recording_report
    metrics = evaluate_run(run)["metrics"]
    assert sizes == [10] * 10  # the 100 test examples
    whole_batches = loader(run.task.splits().test, run.task, batch_size=50)
    assert metrics == pytest.approx(run.task.evaluate(run.model.eval(), whole_batches), rel=1e-6)
