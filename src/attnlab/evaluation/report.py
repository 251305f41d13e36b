"""The test-set report of a run: metrics and a few samples, saved into metrics.json on request."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from attnlab.errors import RunDirError
from attnlab.runs import Run
from attnlab.training.checkpoint import METRICS, read_json, write_json
from attnlab.training.trainer import batches_on, loader, resolve_device


def evaluate_run(run: Run, device: str = "auto", save: bool = False) -> dict[str, Any]:
    """Report on the run's best model on the test split.

    Returns the task's report: ``{"metrics": {...}, "samples": [...], ...}``. Nothing is
    written unless ``save``: then the report becomes the ``"test"`` entry of metrics.json
    (written atomically) and the task's figures go to ``plots/``. A metrics.json that cannot
    be read holds the run's history, so ``save`` refuses it (RunDirError) before evaluating,
    never replaces it. Without ``save`` a read-only run directory reports as well as any other.
    """
    if not isinstance(run, Run):  # a run's path gave "'str' object has no attribute 'model'"
        raise TypeError(
            f"run must be a Run, as attnlab.load_run(run_dir) returns; got {type(run).__name__}"
        )
    metrics = _saved_metrics(run.dir / METRICS) if save else {}  # first: before the work
    target = resolve_device(device)
    model = run.model.to(target).eval()
    test = run.task.splits().test
    test_loader = loader(test, run.task, batch_size=run.train_config.micro_batch_size)
    plots = run.dir / "plots" if save else None
    report = run.task.report(model, test, batches_on(test_loader, target), plots)
    if save:
        write_json(run.dir / METRICS, {"task": run.task.name, **metrics, "test": report})
    return report


def _saved_metrics(path: Path) -> dict[str, Any]:
    """What the run's ``metrics.json`` holds (``{}`` while there is none), to which a saved
    report is added; one that cannot be read is a RunDirError that says how to go on."""
    keep = (
        "it holds the run's history, which --save would replace: mend or move it, or leave "
        "out --save"
    )
    if not path.exists() and not path.is_symlink():
        return {}
    try:
        metrics = read_json(path)
    except RunDirError as e:
        raise RunDirError(f"{e}; {keep}") from e
    except OSError as e:
        raise RunDirError(f"cannot read {path} ({e.strerror or e}); {keep}") from e
    if not isinstance(metrics, dict):
        raise RunDirError(f"{path} holds a JSON {type(metrics).__name__}, not an object; {keep}")
    return metrics
