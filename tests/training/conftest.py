import pytest

from attnlab.cli import main

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
