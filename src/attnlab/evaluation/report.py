"""The test-set report of a run: metrics and a few samples, saved into metrics.json."""

from __future__ import annotations

from typing import Any

from attnlab.runs import Run
from attnlab.training.checkpoint import METRICS, read_json, write_json
from attnlab.training.trainer import batches_on, loader, resolve_device

NUM_SAMPLES = 3


def evaluate_run(run: Run, device: str = "auto") -> dict[str, Any]:
    """Evaluate the run's best model on the test split; write it under ``"test"`` in metrics.json.

    Returns ``{"metrics": {...}, "samples": [...]}``.
    """
    target = resolve_device(device)
    model = run.model.to(target).eval()
    test = run.task.splits().test
    test_loader = loader(test, run.task, batch_size=run.train_config.batch_size)
    metrics = run.task.evaluate(model, batches_on(test_loader, target))
    samples = run.task.samples(model.cpu(), test, NUM_SAMPLES)
    report = {"metrics": metrics, "samples": samples}
    path = run.dir / METRICS
    existing = read_json(path) if path.is_file() else {"task": run.task.name}
    existing["test"] = report
    write_json(path, existing)
    return report
