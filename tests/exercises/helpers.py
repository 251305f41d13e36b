"""Plant mistakes into a copy of a solution file and check it the way the child process does."""

import io
import json
from pathlib import Path

import torch

from attnlab.exercises import child
from attnlab.exercises.registry import practical


def solution_text(name: str) -> str:
    return Path(practical(name).solution_module().__file__).read_text()


def plant(path: Path, name: str, changes: dict[str, str]) -> Path:
    """Write the solution of practical ``name`` to ``path`` with each ``old`` -> ``new``."""
    text = solution_text(name)
    for old, new in changes.items():
        assert text.count(old) == 1, old
        text = text.replace(old, new)
    path.write_text(text)
    return path


def check_here(name: str, path: Path, only: tuple[str, ...] = ()) -> tuple[list[str], dict]:
    """``(file problems, {part: verdict})``, computed in this process (tests only: attnlab's
    commands always check in a child process)."""
    out, threads = io.StringIO(), torch.get_num_threads()
    torch.set_num_threads(1)  # as in the child process: tiny tensors
    try:
        child.check(name, path.resolve(), out, timeout=30.0, only=list(only))
    finally:
        torch.set_num_threads(threads)
    records = [json.loads(line) for line in out.getvalue().splitlines()]
    problems = [r["message"] for r in records if r["event"] == "problem"]
    return problems, {r["part"]: r for r in records if r["event"] == "part"}


def assert_only_hint(name: str, verdicts: dict, mistake: str) -> None:
    """In practical ``name``'s ``verdicts``: the part of ``mistake`` fails, and every failing
    part fails as that mistake, with its hint."""
    mistakes = {m.name: m for m in practical(name).mistakes}
    failing = {part: v for part, v in verdicts.items() if v["status"] != "pass"}
    assert mistakes[mistake].part in failing, verdicts
    for part, verdict in failing.items():
        assert (verdict["status"], verdict["mistake"]) == ("fail", mistake), (part, verdict)
        assert verdict["message"] == mistakes[mistake].hint, (part, verdict)
