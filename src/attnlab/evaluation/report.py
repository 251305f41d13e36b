"""The test-set report of a run: metrics and a few samples, saved into metrics.json."""

from __future__ import annotations

from typing import Any

from attnlab.runs import Run
from attnlab.training.checkpoint import METRICS, read_json, write_json
from attnlab.training.trainer import batches_on, loader, resolve_device


def evaluate_run(run: Run, device: str = "auto") -> dict[str, Any]:
    """Report on the run's best model on the test split; also written to metrics.json ("test").

    Returns the task's report: ``{"metrics": {...}, "samples": [...], ...}``.
    """
    target = resolve_device(device)
    model = run.model.to(target).eval()
    test = run.task.splits().test
    test_loader = loader(test, run.task, batch_size=run.train_config.batch_size)
    report = run.task.report(model, test, batches_on(test_loader, target), run.dir / "plots")
    path = run.dir / METRICS
    existing = read_json(path) if path.is_file() else {"task": run.task.name}
    existing["test"] = report
    write_json(path, existing)
    return report
