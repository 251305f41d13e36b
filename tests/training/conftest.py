from collections.abc import Callable

import pytest

from attnlab.cli import main
from attnlab.runs import write_run_config
from attnlab.tasks.reverse import ReverseConfig, ReverseTask
from attnlab.training import TrainConfig, Trainer

# A small reverse problem: 20 steps per epoch.
SMALL = ["--train-size", "1000", "--val-size", "100", "--test-size", "100", "--batch-size", "50"]


def train(out, *extra: str) -> int:
    return main(["train", "reverse", "--out", str(out), "--no-progress", *SMALL, *extra])


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory):
    """A reverse run trained briefly, shared by the CLI tests."""
    out = tmp_path_factory.mktemp("run") / "reverse"
    assert train(out, "--epochs", "2") == 0
    return out


def trainer_with_a_struck_step(run_dir, step: int, strike: Callable) -> Trainer:
    """A Trainer of a small reverse run (20 steps of 25, validated every 5) whose training
    step number ``step`` computes ``strike(loss)`` instead of the loss (a step counts the
    real batches: the memory count on the meta device before step 1 is not one)."""
    task = ReverseTask(ReverseConfig(train_size=500, val_size=50, test_size=50))
    model = task.build_model()
    config = TrainConfig(epochs=1, batch_size=25, val_every=5)
    write_run_config(run_dir, task, config, model)
    real_loss, steps = task.loss, []

    def struck_loss(model, batch):
        if batch[0].device.type != "meta":
            steps.append(1)
        loss = real_loss(model, batch)
        return strike(loss) if len(steps) == step else loss

    task.loss = struck_loss
    return Trainer(task, model, config, run_dir, progress=False)
