"""Kill ``attnlab train`` at random points, many times, and check what it leaves behind.

    python benchmarks/fault_injection.py --kills 50

Each round starts a small ``attnlab train reverse`` (a checkpoint every 5 steps, so writes are
frequent) and sends it SIGKILL after a random delay: half the rounds at once, half the moment
a temporary file next appears in the run directory, that is, in the middle of writing a
checkpoint, the weights or the metrics. Then it checks that every file left is whole
(config.json parses, model.safetensors and checkpoint.pt load and pass attnlab's checks), that
``--resume`` finishes the run, and that the resumed run's weights equal those of an
uninterrupted run, bit for bit. It prints one line per round and a summary, and exits 1 if
anything failed.
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from attnlab.runs import load_run
from attnlab.training.checkpoint import load_checkpoint

TRAIN = ["train", "reverse", "--no-progress", "--train-size", "2000", "--val-size", "50",
         "--test-size", "50", "--batch-size", "50", "--epochs", "2", "--val-every", "5",
         "--dropout", "0.1"]  # fmt: skip
STEPS = 80  # 2 epochs of 2,000 / 50


@dataclass
class Round:
    """What one kill left behind."""

    during_write: bool
    step: int | None  # the step of the checkpoint left, if any
    unloadable: list[str]
    resume_error: str | None  # the last line the resume printed, if it failed
    identical: bool

    @property
    def resumed(self) -> bool:
        return self.resume_error is None


def attnlab(*args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "attnlab.cli", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def kill_at_random(run_dir: Path, rng: random.Random, in_a_write: bool) -> bool:
    """Start a run and SIGKILL it after a random delay, or (``in_a_write``) at the first
    temporary file seen after that delay; returns whether one existed at the kill."""
    child = attnlab(*TRAIN, "--out", str(run_dir))
    delay = time.monotonic() + rng.uniform(1.0, 6.0)
    while child.poll() is None:
        late = time.monotonic() > delay
        writing = late and run_dir.is_dir() and any(run_dir.glob(".*.tmp*"))
        if writing or (late and not in_a_write):
            child.kill()
            child.wait()
            return writing
        time.sleep(0.0005 if late else 0.01)
    return False  # it finished before the kill: a round like any other


def unloadable_files(run_dir: Path) -> list[str]:
    """The files of the run that exist but cannot be read back."""
    bad = []
    checks = {
        "config.json": lambda p: json.loads(p.read_text()),
        "model.safetensors": lambda p: load_run(run_dir),
        "checkpoint.pt": load_checkpoint,
    }
    for name, check in checks.items():
        path = run_dir / name
        if path.exists():
            try:
                check(path)
            except Exception as e:  # noqa: BLE001  (any failure to read is what we count)
                bad.append(f"{name} ({type(e).__name__}: {e})")
    return bad


def one_round(run_dir: Path, reference: dict, rng: random.Random, in_a_write: bool) -> Round:
    during_write = kill_at_random(run_dir, rng, in_a_write)
    unloadable = unloadable_files(run_dir)
    checkpoint = run_dir / "checkpoint.pt"
    step = load_checkpoint(checkpoint)["step"] if checkpoint.exists() and not unloadable else None
    if (run_dir / "config.json").exists():
        finish = attnlab("train", "reverse", "--resume", str(run_dir), "--no-progress")
    else:  # killed before it wrote anything: start it again
        finish = attnlab(*TRAIN, "--out", str(run_dir))
    _, err = finish.communicate()
    if finish.returncode != 0:
        last_line = (err.strip().splitlines() or ["(nothing on stderr)"])[-1]
        return Round(
            during_write, step, unloadable, f"exit {finish.returncode}: {last_line}", False
        )
    weights = load_checkpoint(checkpoint)["model"]
    identical = weights.keys() == reference.keys() and all(
        torch.equal(weights[k], reference[k]) for k in reference
    )
    return Round(during_write, step, unloadable, None, identical)


def run(kills: int, seed: int, root: Path) -> list[Round]:
    rng = random.Random(seed)
    reference_dir = root / "reference"
    reference_run = attnlab(*TRAIN, "--out", str(reference_dir))
    if reference_run.wait() != 0:
        raise SystemExit(f"the uninterrupted run failed: {reference_run.stderr.read()}")
    reference = load_checkpoint(reference_dir / "checkpoint.pt")["model"]
    rounds = []
    for i in range(kills):
        result = one_round(root / f"round-{i}", reference, rng, in_a_write=i % 2 == 1)
        rounds.append(result)
        print(
            f"round {i:>3}: killed {'during a write' if result.during_write else 'at random':<14}"
            f" checkpoint step {result.step!s:>4}  unloadable {len(result.unloadable)}"
            f"  resumed {result.resumed}  identical {result.identical}"
            + "".join(f"\n    unloadable: {problem}" for problem in result.unloadable)
            + (f"\n    resume failed: {result.resume_error}" if result.resume_error else ""),
            flush=True,
        )
    return rounds


def summary(rounds: list[Round]) -> str:
    writes = sum(r.during_write for r in rounds)
    unloadable = sum(bool(r.unloadable) for r in rounds)
    failed = sum(not r.resumed for r in rounds)
    different = sum(r.resumed and not r.identical for r in rounds)
    return (
        f"{len(rounds)} kills ({writes} during a write): {unloadable} left an unloadable file, "
        f"{failed} resumes failed, {different} resumed runs differ from the uninterrupted one"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=10, help="how many runs to kill")
    parser.add_argument("--seed", type=int, default=0, help="seed of the kill times")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as root:
        rounds = run(args.kills, args.seed, Path(root))
    line = summary(rounds)
    print(line)
    bad = any(r.unloadable or not r.resumed or not r.identical for r in rounds)
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
