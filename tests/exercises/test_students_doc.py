"""Every ``attnlab`` command of docs/students.md runs, in the order the page gives them.

A student's work is simulated by the reference solutions (copied over the skeletons after
``start``); train and compare get small flags (per task) so that they take seconds.
"""

import csv
import hashlib
import json
import re
import shlex
import shutil
from pathlib import Path

from attnlab.exercises.registry import available, practical

from ..cli_helpers import run_cli
from ..data_sets import write_made_up_names, write_short_shakespeare, write_tutorial_pairs

PAGE = Path(__file__).parents[2] / "docs" / "students.md"
TINY = "--d-model 16 --heads 2 --d-ff 32 --layers 1 --epochs 1 --max-steps 3 --warmup 1"
# names reads a small made-up folder of its own (write_made_up_names), not the real 20,074
NAMES = f"{TINY} --max-len 12 --batch-size 256 --data-dir names"
# translate-small reads 60 pairs of its own (write_tutorial_pairs), not the 11,439 real ones
TRANSLATE = f"{TINY} --data-dir pairs --max-tokens 8 --bpe-vocab 100 --batch-size 16 --beam 2"
# shakespeare reads a 40,000-character text of its own (write_short_shakespeare); the page's
# `attnlab generate RUN` reads the run that `train shakespeare` writes to RUN
LLAMA = f"{TINY} --kv-heads 1 --block-size 16 --train-blocks 96 --val-blocks 24 --data-dir text"
SMALL = {  # (command, task) -> its small flags
    ("train", "names"): f"{NAMES} --no-progress --out run",
    ("compare", "names"): f"{NAMES} --budget 1 --out compared",
    ("train", "translate-small"): f"{TRANSLATE} --no-progress --out run-translate",
    ("compare", "translate-small"): f"{TRANSLATE} --budget 1 --out compared-translate",
    ("train", "shakespeare"): f"{LLAMA} --no-progress --out RUN",
    ("compare", "shakespeare"): f"{LLAMA} --budget 1 --out compared-llama",
    ("generate", "RUN"): "--max-new-tokens 20",
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
    write_made_up_names(tmp_path / "names")
    write_tutorial_pairs(tmp_path / "pairs")
    write_short_shakespeare(tmp_path / "text")
    for args in commands():
        if args[0] not in wanted:
            continue
        if args[:2] == ["exercise", "start"]:
            shutil.rmtree(tmp_path / "my")
        if args[:2] == ["exercise", "grade"]:
            (tmp_path / "submissions" / "alice").mkdir(parents=True, exist_ok=True)
            fill_in(tmp_path / "submissions" / "alice")
        code, out, err = run_cli(capsys, *args, *SMALL.get(tuple(args[:2]), "").split())
        assert code == 0, (args, out, err)
        if args[:2] == ["exercise", "start"]:
            fill_in(tmp_path / "my")


def test_the_page_gives_these_commands():
    assert [c[:2] for c in commands()] == [
        ["exercise", "start"], ["exercise", "check"], ["exercise", "check"],
        ["train", "names"], ["compare", "names"], ["train", "translate-small"],
        ["compare", "translate-small"], ["train", "shakespeare"], ["compare", "shakespeare"],
        ["generate", "RUN"], ["exercise", "solve"], ["exercise", "grade"],
        ["exercise", "grade"],  # --resume: every student is graded already, nothing to check
    ]  # fmt: skip


def test_the_pages_exercise_commands_work(capsys, tmp_path, monkeypatch):
    run_page_commands(capsys, tmp_path, monkeypatch, ("exercise",))
    rows = list(csv.DictReader((tmp_path / "grades.csv").open()))
    assert rows[0]["student"] == "alice"
    parts = {
        k: v for k, v in rows[0].items() if k not in ("student", "total", "ready_made", "note")
    }
    assert set(parts.values()) == {"pass"}
    assert (rows[0]["ready_made"], rows[0]["note"]) == ("", "")


def test_the_pages_train_and_compare_commands_work(capsys, tmp_path, monkeypatch):
    run_page_commands(capsys, tmp_path, monkeypatch, ("train", "compare", "generate"))
    # Each run trained the student's file (the solution copied into my/), recorded with the
    # SHA-256 of its bytes, and each comparison put it beside attnlab's own.
    for run, field, file in [
        ("run", "layer", "encoder.py:TransformerEncoderLayer"),
        ("run-translate", "decoder_layer", "decoder.py:DecoderLayer"),
        ("RUN", "layer", "llama.py:LlamaBlock"),
    ]:
        config = json.loads((tmp_path / run / "config.json").read_text())["model"]["config"]
        assert config[field] == str(tmp_path / "my" / file), run
        sha = hashlib.sha256((tmp_path / "my" / file.split(":")[0]).read_bytes()).hexdigest()
        assert config[f"{field}_sha256"] == sha, run
    for compared in ("compared", "compared-translate", "compared-llama"):
        assert {"yours", "attnlab"} <= {p.name for p in (tmp_path / compared).iterdir()}
