"""A run's life in the real world: one writer per run, full disks, signals, runs stopped before
their first checkpoint, foreign and corrupt checkpoints, read-only run directories."""

import errno
import fcntl
import json
import os
import shutil
import signal
import sys
import threading

import pytest
import torch
from safetensors.torch import load_file, save_file

import attnlab.files
from attnlab.cli import main
from attnlab.errors import RunDirError
from attnlab.training import TrainConfig
from attnlab.training.checkpoint import load_checkpoint
from attnlab.training.lock import RunLock

from ..cli_helpers import assert_one_line_error, run_cli
from ..data_sets import needs_data
from .conftest import SMALL, train
from .test_trainer import Child, start_training


def tree(path):
    """Every file under ``path`` with its size and modification time."""
    return {
        str(p.relative_to(path)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in sorted(path.rglob("*"))
        if p.is_file()
    }


def run_files(path):
    """:func:`tree` of a run directory without its lock file (a start rewrites its PID)."""
    return {name: stamp for name, stamp in tree(path).items() if name != ".lock"}


def assert_same_weights(a, b):
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name


def test_two_trainings_into_one_directory_exactly_one_runs(tmp_path):
    run_dir = tmp_path / "same"
    children = [start_training(run_dir, 20_000) for _ in range(2)]
    results = [child.finish() for child in children]
    codes = sorted(code for code, _, _ in results)
    assert codes == [0, 2], [err for _, _, err in results]
    winner = next(c for c, (code, _, _) in zip(children, results, strict=True) if code == 0)
    _, _, err = next(r for r in results if r[0] == 2)
    assert_one_line_error(2, err, f"in use by another attnlab process (PID {winner.proc.pid})")
    assert len(list((run_dir / "tensorboard").iterdir())) == 1  # one run's log, not two


def test_a_holder_that_has_not_yet_written_its_pid_is_named_once_it_has(tmp_path):
    # The race the test above can meet: the winner holds the lock, its PID not yet written.
    fd = os.open(tmp_path / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    writer = threading.Timer(0.05, os.write, (fd, b"4242\n"))
    writer.start()
    try:
        with pytest.raises(RunDirError, match=r"in use by another attnlab process \(PID 4242\)"):
            RunLock(tmp_path).acquire()
    finally:
        writer.join()
        os.close(fd)


def test_two_resumes_of_one_run_exactly_one_runs(tmp_path):
    run_dir = tmp_path / "run"
    assert train(run_dir, "--epochs", "1") == 0
    resume = [sys.executable, "-m", "attnlab.cli", "train", "reverse", "--resume", str(run_dir),
              "--epochs", "30", "--no-progress"]  # fmt: skip
    first = Child(resume)
    first.wait_for_line(r"^run directory:", stream="stdout")  # it holds the lock now
    second = Child(resume)
    code, _, err = second.finish()
    assert_one_line_error(code, err, f"in use by another attnlab process (PID {first.proc.pid})")
    assert err.rstrip().endswith("wait for it to finish")  # not "choose another --out"
    first.proc.send_signal(signal.SIGTERM)
    assert first.finish()[0] == 128 + signal.SIGTERM


def test_eval_save_is_refused_while_the_run_trains_but_eval_reads(capsys, tmp_path):
    run_dir = tmp_path / "training"
    child = start_training(run_dir, 1000, "--val-every", "20", "--epochs", "100000")
    try:
        child.wait_for_line(r"^step +20 ")  # a model is saved; training goes on till stopped
        code, out, err = run_cli(capsys, "eval", str(run_dir))  # a reader: no lock needed
        assert code == 0 and out.startswith("test set: loss"), err
        code, _, err = run_cli(capsys, "eval", str(run_dir), "--save")
        pid = child.proc.pid
        assert_one_line_error(code, err, f"in use by another attnlab process (PID {pid})")
        assert "leave out --save" in err
    finally:
        child.proc.send_signal(signal.SIGTERM)
    assert child.finish()[0] == 128 + signal.SIGTERM
    assert "test" not in json.loads((run_dir / "metrics.json").read_text())
    code, _, err = run_cli(capsys, "eval", str(run_dir), "--save")  # the run is free now
    assert code == 0, err
    assert json.loads((run_dir / "metrics.json").read_text())["test"]["metrics"]


def test_the_run_stays_locked_while_its_test_report_is_written(monkeypatch, tmp_path):
    import attnlab.evaluation

    real_evaluate_run, tries = attnlab.evaluation.evaluate_run, []

    def evaluate_run(run, **kwargs):  # what `eval --save` or `--resume` would meet meanwhile
        try:
            RunLock(run.dir).acquire().release()
            tries.append("free")
        except RunDirError:
            tries.append("locked")
        return real_evaluate_run(run, **kwargs)

    monkeypatch.setattr(attnlab.evaluation, "evaluate_run", evaluate_run)
    assert train(tmp_path / "run", "--epochs", "1") == 0
    assert tries == ["locked"]
    RunLock(tmp_path / "run").acquire().release()  # and free once train returns


def test_ctrl_c_during_the_test_report_says_the_run_is_saved(capsys, monkeypatch, tmp_path):
    import attnlab.evaluation

    real_evaluate_run = attnlab.evaluation.evaluate_run

    def interrupted(run, **kwargs):
        raise KeyboardInterrupt  # Ctrl-C once training is done, while the report is made

    monkeypatch.setattr(attnlab.evaluation, "evaluate_run", interrupted)
    run_dir = tmp_path / "run"
    code, out, err = run_cli(
        capsys, "train", "reverse", "--out", str(run_dir), "--no-progress", *SMALL, "--epochs", "1"
    )
    assert code == 128 + signal.SIGINT
    ours = [line for line in err.splitlines() if line.startswith("attnlab:")]
    assert ours == [
        f"attnlab: interrupted: the test report was not written; the trained run is saved in "
        f"{run_dir}, and attnlab eval {run_dir} --save writes the report"
    ]
    assert "test set:" not in out
    monkeypatch.setattr(attnlab.evaluation, "evaluate_run", real_evaluate_run)
    code, out, err = run_cli(capsys, "eval", str(run_dir), "--save")  # as it says: it works
    assert code == 0 and out.startswith("test set: loss"), err


def test_a_full_disk_stops_with_one_sentence_and_keeps_the_last_checkpoint(
    capsys, monkeypatch, tmp_path
):
    calls = []
    real_save = torch.save

    def save_until_the_disk_is_full(obj, path, *args, **kwargs):
        calls.append(path)
        if len(calls) == 3:  # the third checkpoint: half a file, then ENOSPC
            with open(path, "wb") as f:
                f.write(b"half a checkpoint")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_save(obj, path, *args, **kwargs)

    monkeypatch.setattr(torch, "save", save_until_the_disk_is_full)
    run_dir = tmp_path / "full"
    code, _, err = run_cli(
        capsys, "train", "reverse", "--out", str(run_dir), "--no-progress", *SMALL,
        "--epochs", "1", "--val-every", "5",
    )  # fmt: skip
    lines = err.strip().splitlines()  # the validation log lines, then one sentence
    assert code == 2 and "Traceback" not in err
    assert lines[-1].startswith("attnlab: error: cannot write") and lines[-2].startswith("step")
    assert "No space left on device: training stopped at step 15" in lines[-1]
    assert "the last good checkpoint (step 10)" in lines[-1]
    assert load_checkpoint(run_dir / "checkpoint.pt")["step"] == 10
    assert not [p.name for p in run_dir.iterdir() if ".tmp" in p.name]


def test_sigterm_saves_exits_143_and_resume_is_bit_identical(tmp_path):
    straight = tmp_path / "straight"
    assert train(straight, "--train-size", "20000", "--val-size", "100", "--test-size", "100",
                 "--epochs", "2", "--dropout", "0.1") == 0  # fmt: skip
    stopped = tmp_path / "stopped"
    child = start_training(stopped, 20_000, "--dropout", "0.1", "--val-every", "100")
    child.wait_for_line(r"^step +100 ")
    child.proc.send_signal(signal.SIGTERM)
    code, out, err = child.finish()
    assert code == 128 + signal.SIGTERM, err
    assert "SIGTERM: stopping after this step" in err and "test set:" not in out
    step = load_checkpoint(stopped / "checkpoint.pt")["step"]
    assert 100 < step < 800
    assert main(["train", "reverse", "--resume", str(stopped), "--no-progress"]) == 0
    assert load_checkpoint(stopped / "checkpoint.pt")["step"] == 800
    assert_same_weights(
        load_checkpoint(straight / "checkpoint.pt")["model"],
        load_checkpoint(stopped / "checkpoint.pt")["model"],
    )


def stop_at_step(monkeypatch, step: int, signum=signal.SIGTERM):
    """Training in this process receives ``signum`` while it computes step ``step``'s loss
    (the memory count on the meta device before step 1 is not a step)."""
    from attnlab.tasks.reverse import ReverseTask

    real_loss, steps = ReverseTask.loss, []

    def loss(self, model, batch):
        if batch[0].device.type != "meta":
            steps.append(1)
            if len(steps) == step:
                os.kill(os.getpid(), signum)  # its handler runs before the step ends
        return real_loss(self, model, batch)

    monkeypatch.setattr(ReverseTask, "loss", loss)


def test_a_stopped_and_resumed_run_ends_exactly_as_one_never_stopped(monkeypatch, tmp_path):
    """A stop validated the step it struck in, which no uninterrupted run does: the resumed
    run's history had one more entry, and that entry could become the best model or count
    towards --patience. Now the stop writes a checkpoint only (with the steps' running mean
    loss), and history, best model, early stop and test report are those of a straight run."""
    options = ["--epochs", "4", "--val-every", "5", "--patience", "3", "--dropout", "0.1"]
    assert train(tmp_path / "straight", *options) == 0
    with monkeypatch.context() as patch:
        stop_at_step(patch, 13)
        assert train(tmp_path / "stopped", *options) == 128 + signal.SIGTERM
    stopped = tmp_path / "stopped"
    assert load_checkpoint(stopped / "checkpoint.pt")["step"] == 13
    assert [h["step"] for h in json.loads((stopped / "metrics.json").read_text())["history"]] == [
        5,
        10,
    ]
    assert main(["train", "reverse", "--resume", str(stopped), "--no-progress"]) == 0
    straight_metrics = json.loads((tmp_path / "straight" / "metrics.json").read_text())
    resumed_metrics = json.loads((stopped / "metrics.json").read_text())
    assert resumed_metrics == straight_metrics  # history (train loss too), best, test report
    assert (stopped / "model.safetensors").read_bytes() == (
        tmp_path / "straight" / "model.safetensors"
    ).read_bytes()


def test_a_run_stopped_before_its_first_validation_says_it_has_no_best_model_yet(
    capsys, monkeypatch, tmp_path
):
    with monkeypatch.context() as patch:
        stop_at_step(patch, 3, signal.SIGINT)
        code = train(tmp_path / "early", "--epochs", "2")
    out, err = capsys.readouterr()
    assert code == 128 + signal.SIGINT
    assert "stopped before its first validation: no best model yet" in out
    resume = f"continue with --resume {tmp_path / 'early'}"
    assert f"stopped by SIGINT after step 3; the checkpoint is saved: {resume}" in err
    assert not (tmp_path / "early" / "model.safetensors").exists()
    code, _, err = run_cli(capsys, "eval", str(tmp_path / "early"))
    assert_one_line_error(
        code, err, f"no saved model yet (its first validation writes one: {resume})"
    )
    assert main(["train", "reverse", "--resume", str(tmp_path / "early"), "--no-progress"]) == 0
    assert (
        json.loads((tmp_path / "early" / "metrics.json").read_text())["history"][-1]["step"] == 40
    )


def test_resuming_past_max_steps_with_steps_never_validated_is_refused(
    capsys, monkeypatch, tmp_path
):
    with monkeypatch.context() as patch:
        stop_at_step(patch, 7)
        assert train(tmp_path / "r", "--epochs", "2", "--val-every", "5") == 128 + signal.SIGTERM
    before, _ = run_files(tmp_path / "r"), capsys.readouterr()
    args = ["train", "reverse", "--resume", str(tmp_path / "r"), "--max-steps", "6"]
    code, _, err = run_cli(capsys, *args)
    assert_one_line_error(
        code,
        err,
        "the checkpoint is at step 7, 2 step(s) after its last validation, and this run ends at "
        "step 6: give a --max-steps above 7 (or 0) to train on and validate them",
    )
    assert run_files(tmp_path / "r") == before


def test_a_second_ctrl_c_stops_at_once_without_a_traceback(tmp_path):
    run_dir = tmp_path / "twice"
    child = start_training(run_dir, 50_000, "--val-every", "100")
    child.wait_for_line(r"^step +100 ")
    child.proc.send_signal(signal.SIGINT)
    child.wait_for_line(r"SIGINT: stopping after this step")
    child.proc.send_signal(signal.SIGINT)
    code, _, err = child.finish()
    assert code == 128 + signal.SIGINT
    assert "Traceback" not in err and "KeyboardInterrupt" not in err
    load_checkpoint(run_dir / "checkpoint.pt")  # whole: the one of step 100 or a later one


def test_a_run_under_nohup_ignores_sighup_and_still_stops_on_sigterm(tmp_path):
    run_dir = tmp_path / "nohup"
    ignoring_sighup = (  # as nohup starts a command: SIGHUP ignored, then exec (the same PID)
        "import os, signal, sys; signal.signal(signal.SIGHUP, signal.SIG_IGN); "
        "os.execv(sys.executable, [sys.executable, '-m', 'attnlab.cli', *sys.argv[1:]])"
    )
    child = Child([sys.executable, "-c", ignoring_sighup, "train", "reverse", "--out",
                   str(run_dir), "--no-progress", *SMALL, "--epochs", "50"])  # fmt: skip
    child.wait_for_line(r"^step +20 ")
    child.proc.send_signal(signal.SIGHUP)  # the terminal closed: training goes on
    child.proc.send_signal(signal.SIGTERM)
    code, _, err = child.finish()
    assert code == 128 + signal.SIGTERM, err
    assert "SIGTERM: stopping after this step" in err and "SIGHUP" not in err
    assert load_checkpoint(run_dir / "checkpoint.pt")["step"] < 1000


@needs_data
def test_compare_stops_at_a_signal_and_shows_the_variants_that_finished(tmp_path):
    out = tmp_path / "compare"
    child = Child([sys.executable, "-m", "attnlab.cli", "compare", "names", "--budget", "1",
                   "--out", str(out), "--d-model", "16", "--layers", "1", "--d-ff", "32",
                   "--val-every", "20", "--json"])  # fmt: skip
    with child.changed:  # the second variant's first validation: the first one is done
        child.changed.wait_for(
            lambda: (
                sum(line.startswith("step     20 ") for line in child.lines["stderr"]) >= 2
                or "stderr" in child.closed
            ),
            600,
        )
    child.proc.send_signal(signal.SIGINT)
    code, stdout, err = child.finish()
    assert code == 128 + signal.SIGINT, err
    assert "Traceback" not in err
    variants = ["attnlab", "torch", "gru"]
    rows = json.loads(stdout[stdout.index("[") :])  # the variants that finished, in order
    done = len(rows)
    assert 1 <= done < len(variants) and [r["variant"] for r in rows] == variants[:done]
    ours = [line for line in err.splitlines() if line.startswith("attnlab:")]
    assert ours == [err.splitlines()[-1]]  # one line, the last
    assert f"interrupted during variant {variants[done]!r}" in ours[0]
    assert not [v for v in variants[done + 1 :] if (out / v).exists()]  # none started after


def test_a_stopped_run_can_still_report(tmp_path):
    run_dir = tmp_path / "report"
    child = start_training(run_dir, 50_000, "--val-every", "100", "--report-on-stop")
    child.wait_for_line(r"^step +100 ")
    child.proc.send_signal(signal.SIGTERM)
    code, out, _ = child.finish()
    assert code == 128 + signal.SIGTERM and "test set:" in out


def test_a_run_killed_before_its_first_checkpoint_restarts_with_resume(tmp_path):
    straight = tmp_path / "straight"
    options = [*SMALL, "--epochs", "1", "--val-every", "20"]
    assert train(straight, *options) == 0
    killed = tmp_path / "killed"
    child = Child([sys.executable, "-m", "attnlab.cli", "train", "reverse", "--out", str(killed),
                   "--no-progress", *options])  # fmt: skip
    child.wait_for_line(r"^run directory:", stream="stdout")  # config.json is written
    child.proc.kill()
    child.finish()
    assert not (killed / "checkpoint.pt").exists()
    code, _, err = run_cli_subprocess("train", "reverse", "--out", str(killed), *options)
    assert code == 2 and f"pass --resume {killed}" in err
    assert main(["train", "reverse", "--resume", str(killed), "--no-progress"]) == 0
    assert_same_weights(
        load_checkpoint(straight / "checkpoint.pt")["model"],
        load_checkpoint(killed / "checkpoint.pt")["model"],
    )


def run_cli_subprocess(*args):
    child = Child([sys.executable, "-m", "attnlab.cli", *args])
    return child.finish()


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("finished") / "run"
    assert train(run_dir, "--epochs", "1") == 0
    return run_dir


@pytest.fixture
def copy_of(finished_run, tmp_path):
    def copy():
        target = tmp_path / "copy"
        shutil.copytree(finished_run, target)
        return target

    return copy


def foreign_checkpoint(run_dir, tmp_path):
    """A checkpoint of the names task's GRU, written into a reverse run."""
    other = load_checkpoint(run_dir / "checkpoint.pt")
    other["model"] = {"embedding.weight": torch.zeros(20, 8), "head.bias": torch.zeros(18)}
    other["task"], other["model_class"] = "names", "GRUClassifier"
    return other


CORRUPTIONS = {
    "another task's checkpoint": (foreign_checkpoint, "is a checkpoint of task 'names'"),
    "an empty dict": (lambda run, tmp: {}, "is not an attnlab checkpoint (it has no"),
    "a string step": (
        lambda run, tmp: {**load_checkpoint(run / "checkpoint.pt"), "step": "ten"},
        "its step is 'ten'",
    ),
    "a list": (lambda run, tmp: [1, 2], "it holds a list"),
    "NaN weights": (
        lambda run, tmp: {
            **(state := load_checkpoint(run / "checkpoint.pt")),
            "model": {k: v.float() * float("nan") for k, v in state["model"].items()},
        },
        "holds NaN or infinite values in",
    ),
    "a negative count of steps since the last validation": (
        lambda run, tmp: {
            **load_checkpoint(run / "checkpoint.pt"),
            "since_validation": {"loss_sum": 1.5, "steps": -3, "tokens": 0},
        },
        "cannot be restored (ValueError: since_validation holds other than two counts",
    ),
}


@pytest.mark.parametrize("make, message", CORRUPTIONS.values(), ids=CORRUPTIONS.keys())
def test_a_foreign_or_corrupt_checkpoint_is_one_sentence(capsys, copy_of, tmp_path, make, message):
    run_dir = copy_of()
    torch.save(make(run_dir, tmp_path), run_dir / "checkpoint.pt")
    before = run_files(run_dir)
    code, _, err = run_cli(capsys, "train", "reverse", "--resume", str(run_dir), "--epochs", "3")
    assert_one_line_error(code, err, message)
    assert run_files(run_dir) == before


# What becomes of the best model, and what the one line must say of it.
BEST_MODEL_DAMAGE = {
    "deleted": (lambda path: path.unlink(), "model.safetensors is missing; it is the best model"),
    "truncated": (
        lambda path: path.write_bytes(path.read_bytes()[:100]),
        "model.safetensors is not a readable safetensors file",
    ),
    "another model's": (
        lambda path: save_file({"w": torch.zeros(2)}, path),
        "model.safetensors does not hold the weights of this model",
    ),
}


@pytest.mark.parametrize("damage, message", BEST_MODEL_DAMAGE.values(), ids=BEST_MODEL_DAMAGE)
def test_resume_refuses_a_lost_best_model_before_training(capsys, copy_of, damage, message):
    """A resumed run trained on, and then stopped without a test report when no validation
    beat the best model of its checkpoint: the report reads model.safetensors."""
    run_dir = copy_of()
    damage(run_dir / "model.safetensors")
    before = run_files(run_dir)
    code, _, err = run_cli(capsys, "train", "reverse", "--resume", str(run_dir), "--epochs", "3")
    assert_one_line_error(code, err, message)
    assert "which the test report after training reads: restore it, or train a new run" in err
    assert run_files(run_dir) == before


def _without_batch_size(config):
    del config["train"]["batch_size"]  # the run trained with 50 (SMALL)


def _other_train_size(config):
    config["task_config"]["train_size"] = 900  # another split of the data


CONFIG_EDITS = {
    "a deleted training field": (
        _without_batch_size,
        f"config.json was edited: its batch_size is {TrainConfig().batch_size}, but "
        "checkpoint.pt was trained with 50; restore it, or train a new run",
    ),
    "another task value": (
        _other_train_size,
        "config.json was edited: its train_size is 900, but checkpoint.pt was trained with 1000",
    ),
}


@pytest.mark.parametrize("edit, message", CONFIG_EDITS.values(), ids=CONFIG_EDITS)
def test_resume_refuses_a_config_json_edited_away_from_its_checkpoint(
    capsys, copy_of, edit, message
):
    """A field deleted from config.json took its default, and the run went on with other
    hyperparameters (or another split) without a word."""
    run_dir = copy_of()
    config = json.loads((run_dir / "config.json").read_text())
    edit(config)
    (run_dir / "config.json").write_text(json.dumps(config))
    before = run_files(run_dir)
    code, _, err = run_cli(capsys, "train", "reverse", "--resume", str(run_dir), "--epochs", "3")
    assert_one_line_error(code, err, message)
    assert run_files(run_dir) == before


def test_resume_accepts_a_config_json_whose_resumable_fields_were_edited(capsys, copy_of):
    run_dir = copy_of()
    config = json.loads((run_dir / "config.json").read_text())
    config["train"]["epochs"] = 2  # --resume may change epochs, and so may an edit
    (run_dir / "config.json").write_text(json.dumps(config))
    code, _, err = run_cli(capsys, "train", "reverse", "--resume", str(run_dir), "--no-progress")
    assert code == 0, err
    assert load_checkpoint(run_dir / "checkpoint.pt")["step"] == 40  # 2 epochs of 20 steps


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda t: {k: v * float("nan") for k, v in t.items()}, "holds NaN or infinite values"),
        (lambda t: {k: v.to(torch.int32) for k, v in t.items()}, "torch.int32, expected"),
        (lambda t: dict(list(t.items())[1:]), "it has no weight"),
        (
            lambda t: {**t, "extra.weight": torch.zeros(2)},
            "it has a weight this model does not have: 'extra.weight'",
        ),
    ],
    ids=["NaN", "integer", "a missing tensor", "an extra tensor"],
)
def test_bad_weights_are_refused_on_load(capsys, copy_of, change, message):
    run_dir = copy_of()
    weights = load_file(run_dir / "model.safetensors")
    save_file(change(weights), run_dir / "model.safetensors")
    for command in (["eval", str(run_dir)], ["predict", str(run_dir), "1 2 3"]):
        code, _, err = run_cli(capsys, *command)
        assert_one_line_error(code, err, message)


def test_eval_writes_nothing_unless_asked(capsys, copy_of):
    run_dir = copy_of()
    (run_dir / "metrics.json").write_text("{not json")  # eval must not need the old one
    before = tree(run_dir)
    code, out, err = run_cli(capsys, "eval", str(run_dir))
    assert code == 0, err
    assert out.startswith("test set: loss")
    assert tree(run_dir) == before  # not a byte written: a read-only run reports the same


def test_eval_save_refuses_a_damaged_metrics_json_before_evaluating(capsys, copy_of, monkeypatch):
    """It replaced the file, and with it the run's history (the validation curve, the best
    step), with the test report alone."""
    from attnlab.tasks.reverse import ReverseTask

    run_dir = copy_of()
    history = json.loads((run_dir / "metrics.json").read_text())
    keep = "it holds the run's history, which --save would replace: mend or move it"
    reports = []
    monkeypatch.setattr(ReverseTask, "report", lambda *a: reports.append(a))
    for damaged, why in (("{not json", "is not valid JSON"), ("[1, 2]", "holds a JSON list")):
        (run_dir / "metrics.json").write_text(damaged)
        before = run_files(run_dir)
        code, _, err = run_cli(capsys, "eval", str(run_dir), "--save")
        assert_one_line_error(code, err, why)
        assert keep in err and reports == []  # refused before the test set was evaluated
        assert run_files(run_dir) == before
    monkeypatch.undo()
    (run_dir / "metrics.json").write_text(json.dumps(history))
    code, _, err = run_cli(capsys, "eval", str(run_dir), "--save")
    assert code == 0, err
    saved = json.loads((run_dir / "metrics.json").read_text())
    assert saved["history"] == history["history"] and saved["test"]["metrics"]


def test_leftover_temporary_files_are_cleaned_when_a_run_resumes(copy_of):
    run_dir = copy_of()
    leftover = run_dir / ".checkpoint.pt.abc123.tmp.pt"
    leftover.write_bytes(b"what a kill -9 during a write leaves")
    assert main(["train", "reverse", "--resume", str(run_dir), "--epochs", "2"]) == 0
    assert not leftover.exists()


def test_a_nan_stop_names_no_checkpoint_when_there_is_none(capsys, tmp_path):
    run_dir = tmp_path / "nan"
    code, _, err = run_cli(
        capsys, "train", "reverse", "--out", str(run_dir), "--no-progress", *SMALL,
        "--lr", "1e30", "--val-every", "1", "--grad-clip", "0",
    )  # fmt: skip
    assert_one_line_error(code, err, "the validation loss became nan at step 1")
    assert f"no checkpoint was saved yet in {run_dir}" in err
    assert not (run_dir / "checkpoint.pt").exists() and not (run_dir / "model.safetensors").exists()


def test_atomic_write_removes_its_temporary_file_when_the_writer_fails(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("good")

    def fails(tmp):
        tmp.write_text("half")
        raise OSError(errno.EDQUOT, os.strerror(errno.EDQUOT))

    with pytest.raises(attnlab.errors.OutputError, match="Disk quota exceeded"):
        attnlab.files.atomic_write(target, fails)
    assert target.read_text() == "good" and [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_a_long_bad_input_gives_a_short_line(capsys, finished_run):
    code, _, err = run_cli(capsys, "predict", str(finished_run), "x" * 120_000)
    assert_one_line_error(code, err, "... (120,000 chars) not in the vocabulary")
    assert len(err) < 300
    code, _, err = run_cli(capsys, "predict", str(finished_run), " ".join(["x"] * 60_000))
    assert_one_line_error(code, err, "and 59,995 more not in the vocabulary")
    assert len(err) < 300


def test_a_byte_order_mark_is_not_part_of_the_first_input(capsys, finished_run, tmp_path):
    inputs = tmp_path / "inputs.txt"
    inputs.write_text("\ufeff3 1 4\n2 7\n", encoding="utf-8")
    code, out, err = run_cli(capsys, "predict", str(finished_run), "--file", str(inputs), "--json")
    assert code == 0, err
    assert [p["input"] for p in json.loads(out)] == [[3, 1, 4], [2, 7]]


def test_an_unreadable_weights_file_says_permission_denied(capsys, monkeypatch, finished_run):
    real_open = open

    def no_permission(path, *args, **kwargs):
        if str(path).endswith("model.safetensors"):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr("builtins.open", no_permission)
    code, _, err = run_cli(capsys, "predict", str(finished_run), "1 2")
    assert_one_line_error(code, err, "model.safetensors: permission denied")


def test_resuming_a_run_stopped_before_it_started_says_to_train_it_again(capsys, tmp_path):
    """A run killed before it wrote config.json leaves its directory with only the lock."""
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    RunLock(run_dir).acquire().release()
    code, _, err = run_cli(capsys, "train", "reverse", "--resume", str(run_dir))
    assert_one_line_error(code, err, f"{run_dir} holds no run yet (it was stopped before it ")
    assert err.strip().endswith(f"train into it again with --out {run_dir}")
