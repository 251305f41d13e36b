"""``attnlab bench``: attnlab side by side with its reference implementations, in one table.

Suites (each a module ``attnlab.bench.<name>`` with ``run(options) -> list[BenchResult]``, see
:mod:`attnlab.bench.common`), imported only when they run, since their references may need
optional libraries:

    encoder  TransformerEncoder vs torch.nn.TransformerEncoder: train step, inference,
             inference with padding
    gpt      the baby GPT's training vs nanoGPT (CPU); GPT-2 small training vs HF (GPU)
    bert     MiniLM inference vs Hugging Face BertModel
    decode   encoder-decoder greedy decoding with the KV cache vs without
    generate GPT-2 and Llama generation vs Hugging Face generate; static vs growing cache

With ``load`` (``attnlab bench --load N``) every suite runs twice, idle and then beside N
competing PyTorch training processes (:mod:`attnlab.bench.load`); each case is labelled
``[idle]`` or ``[load N]``, so that one table holds both.

A suite that cannot run here (its module or its reference library is missing) is listed as
skipped with the reason. Results that report "TFLOP/s" get a model FLOPs utilisation (MFU)
column when the device's peak is known (see :func:`attnlab.bench.flops.peak_flops`).
"""

from __future__ import annotations

import dataclasses
import importlib
import platform
from dataclasses import dataclass, field
from typing import Any

import torch

from attnlab.bench.common import BenchOptions, BenchResult, BenchSkipped
from attnlab.bench.flops import peak_flops
from attnlab.bench.load import competing_load
from attnlab.errors import AttnlabError

SUITES = {
    "encoder": "attnlab.bench.encoder",
    "gpt": "attnlab.bench.gpt",
    "bert": "attnlab.bench.bert",
    "decode": "attnlab.bench.decode",
    "generate": "attnlab.bench.generate",
}


@dataclass
class BenchReport:
    """The results of the suites that ran and the reasons of those that were skipped."""

    options: BenchOptions
    results: list[BenchResult] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        """JSON-ready: the environment, one dict per result (with its ratio), the skipped."""
        return {
            "environment": _environment(self.options),
            "options": dataclasses.asdict(self.options),
            "results": [{**dataclasses.asdict(r), "ratio": r.ratio} for r in self.results],
            "skipped": self.skipped,
        }

    def table(self) -> str:
        """One aligned text table of every result, with a header and the skipped suites."""
        env = _environment(self.options)
        lines = [
            f"device {env['device']} ({env['device_name']}), precision {self.options.precision}"
            f"{', compiled' if self.options.compile else ''}, torch {env['torch']}, "
            f"{env['threads']} CPU thread{'' if env['threads'] == 1 else 's'}"
        ]
        columns = ["suite", "case", "unit", "attnlab", "reference", "vs", "ratio", "extras"]
        rows = [
            [
                r.suite,
                r.case,
                r.unit,
                _number(r.attnlab),
                _number(r.reference) if r.reference is not None else "-",
                r.reference_name,
                f"{r.ratio:.2f}x" if r.ratio is not None else "-",
                "  ".join(_extra(k, v) for k, v in r.extra.items()),
            ]
            for r in self.results
        ]
        if rows:
            widths = [max(len(c), *(len(row[i]) for row in rows)) for i, c in enumerate(columns)]
            right = {"attnlab", "reference", "ratio"}
            fmt = [str.rjust if c in right else str.ljust for c in columns]

            def line(cells: list[str]) -> str:
                parts = (f(c, w) for f, c, w in zip(fmt, cells, widths, strict=True))
                return "  ".join(parts).rstrip()

            lines += [line(columns), "-" * len(line(columns))]
            lines += [line(row) for row in rows]
            lines.append(
                "ratio = how many times better attnlab is than the reference (> 1: faster)"
            )
        lines += [f"skipped {suite}: {reason}" for suite, reason in self.skipped.items()]
        return "\n".join(lines)


def run_bench(
    names: list[str], options: BenchOptions, report: BenchReport | None = None
) -> BenchReport:
    """Run the named suites (all of them if ``names`` is empty), in the order given, adding
    their results to ``report`` (a new one by default) as each suite ends: a caller stopped
    by Ctrl-C still holds the results of the suites that finished."""
    names = names or list(SUITES)
    unknown = [n for n in names if n not in SUITES]
    if unknown:
        raise AttnlabError(
            f"unknown benchmark suite {unknown[0]!r}: choose from {', '.join(SUITES)}"
        )
    report = BenchReport(options) if report is None else report
    for name in dict.fromkeys(names):  # each once, in order
        try:
            module = importlib.import_module(SUITES[name])
        except ModuleNotFoundError as e:
            if e.name == SUITES[name]:
                report.skipped[name] = "this version of attnlab has no such suite yet"
            else:
                report.skipped[name] = f"it needs the module {e.name}, which is not installed"
            continue
        try:
            results = _run_suite(module, options)
        except BenchSkipped as e:
            report.skipped[name] = str(e)
            continue
        report.results += [_with_mfu(r, options) for r in results]
    return report


def _run_suite(module: Any, options: BenchOptions) -> list[BenchResult]:
    """A suite's results; with ``options.load``, idle and then under load, each labelled."""
    if not options.load:
        return module.run(options)
    idle = [_labelled(r, "idle") for r in module.run(options)]
    with competing_load(options.load):
        loaded = [_labelled(r, f"load {options.load}") for r in module.run(options)]
    return idle + loaded


def _labelled(result: BenchResult, label: str) -> BenchResult:
    return dataclasses.replace(result, case=f"{result.case} [{label}]")


def _with_mfu(result: BenchResult, options: BenchOptions) -> BenchResult:
    """Add (or, with --peak-tflops, recompute) MFU = achieved TFLOP/s / peak TFLOP/s."""
    achieved = result.extra.get("TFLOP/s")
    peak = peak_flops(torch.device(options.device), options.precision, options.peak_tflops)
    if achieved is not None and peak is not None:
        result.extra["MFU"] = achieved * 1e12 / peak
    return result


def _environment(options: BenchOptions) -> dict[str, Any]:
    device = torch.device(options.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor()
    return {
        "device": str(device),
        "device_name": name or platform.machine(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
    }


def _number(value: float) -> str:
    if value >= 1000:
        return f"{value:,.0f}"
    return f"{value:.3g}"


def _extra(name: str, value: float) -> str:
    if name == "MFU":
        return f"MFU {value:.1%}"
    return f"{name} {_number(value)}"
