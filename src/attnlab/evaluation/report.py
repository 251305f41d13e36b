"""The test-set report of a run: metrics and a few samples, saved into metrics.json on request."""

from __future__ import annotations

from typing import Any

from attnlab.errors import RunDirError
from attnlab.runs import Run
from attnlab.training.checkpoint import METRICS, read_json, write_json
from attnlab.training.trainer import batches_on, loader, resolve_device


def evaluate_run(run: Run, device: str = "auto", save: bool = False) -> dict[str, Any]:
    """Report on the run's best model on the test split.

    Returns the task's report: ``{"metrics": {...}, "samples": [...], ...}``. Nothing is
    written unless ``save``: then the report becomes the ``"test"`` entry of metrics.json
    (written atomically; an unreadable old metrics.json is replaced) and the task's figures go
    to ``plots/``. Without it a read-only run directory reports as well as any other.
    """
    if not isinstance(run, Run):  # a run's path gave "'str' object has no attribute 'model'"
        raise TypeError(
            f"run must be a Run, as attnlab.load_run(run_dir) returns; got {type(run).__name__}"
        )
    target = resolve_device(device)
    model = run.model.to(target).eval()
    test = run.task.splits().test
    test_loader = loader(test, run.task, batch_size=run.train_config.micro_batch_size)
    plots = run.dir / "plots" if save else None
    report = run.task.report(model, test, batches_on(test_loader, target), plots)
    if save:
        path = run.dir / METRICS
        try:
            metrics = read_json(path) if path.is_file() else {}
        except RunDirError:  # a damaged metrics.json: the test report starts it afresh
            metrics = {}
        metrics = metrics if isinstance(metrics, dict) else {}
        write_json(path, {"task": run.task.name, **metrics, "test": report})
    return report
