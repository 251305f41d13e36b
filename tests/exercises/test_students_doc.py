"""Every ``attnlab`` command of docs/students.md runs, in the order the page gives them.

A student's work is simulated by the reference solutions (copied over the skeletons after
``start``); train and compare get small flags so that they take seconds.
"""

import csv
import re
import shlex
import shutil
from pathlib import Path

from attnlab.exercises.registry import available, practical

from ..cli_helpers import run_cli

PAGE = Path(__file__).parents[2] / "docs" / "students.md"
SMALL = {
    "train": "--d-model 16 --heads 2 --d-ff 32 --layers 1 --max-len 12 --epochs 1 "
    "--max-steps 3 --batch-size 256 --warmup 1 --no-progress --out run",
    "compare": "--d-model 16 --heads 2 --d-ff 32 --layers 1 --max-len 12 --epochs 1 "
    "--max-steps 3 --batch-size 256 --warmup 1 --budget 1 --out compared",
}


def commands() -> list[list[str]]:
    blocks = re.findall(r"```bash\n(.*?)```", PAGE.read_text(), flags=re.S)
    lines = [line.strip() for block in blocks for line in block.splitlines()]
    return [shlex.split(line)[1:] for line in lines if line.startswith("attnlab ")]


def fill_in(folder: Path) -> None:
    """What a student does between ``start`` and ``check``: the work, here the solutions."""
    for name in available():
        shutil.copy(practical(name).solution_module().__file__, folder / f"{name}.py")


def run_page_commands(capsys, tmp_path, monkeypatch, wanted: tuple[str, ...]) -> None:
    """Run the page's commands whose first word is in ``wanted``, in the page's order."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "my").mkdir()
    fill_in(tmp_path / "my")
    for args in commands():
        if args[0] not in wanted:
            continue
        if args[:2] == ["exercise", "start"]:
            shutil.rmtree(tmp_path / "my")
        if args[:2] == ["exercise", "grade"]:
            (tmp_path / "submissions" / "alice").mkdir(parents=True)
            fill_in(tmp_path / "submissions" / "alice")
        code, out, err = run_cli(capsys, *args, *SMALL.get(args[0], "").split())
        assert code == 0, (args, out, err)
        if args[:2] == ["exercise", "start"]:
            fill_in(tmp_path / "my")


def test_the_page_gives_these_commands():
    assert [c[:2] for c in commands()] == [
        ["exercise", "start"], ["exercise", "check"], ["exercise", "check"],
        ["train", "names"], ["compare", "names"], ["exercise", "solve"], ["exercise", "grade"],
    ]  # fmt: skip


def test_the_pages_exercise_commands_work(capsys, tmp_path, monkeypatch):
    run_page_commands(capsys, tmp_path, monkeypatch, ("exercise",))
    rows = list(csv.DictReader((tmp_path / "grades.csv").open()))
    assert rows[0]["student"] == "alice"
    assert {v for k, v in rows[0].items() if k not in ("student", "total")} == {"pass"}


def test_the_pages_train_and_compare_commands_work(capsys, tmp_path, monkeypatch):
    run_page_commands(capsys, tmp_path, monkeypatch, ("train", "compare"))
    assert (tmp_path / "run" / "config.json").is_file()
