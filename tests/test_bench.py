"""``attnlab bench``: one table of attnlab vs its references (no timing is asserted)."""

import json
import sys
import types

import torch

import attnlab.bench
from attnlab.bench import run_bench
from attnlab.bench.common import BenchOptions, BenchResult
from attnlab.bench.flops import gpt_flops_per_token, mfu, peak_flops

from .cli_helpers import assert_one_line_error, run_cli


def test_bench_encoder_quick_json_has_both_sides_and_ratios(capsys):
    code, out, _ = run_cli(capsys, "bench", "encoder", "--quick", "--device", "cpu", "--json")
    assert code == 0
    report = json.loads(out)
    rows = report["results"]
    assert [r["case"].split()[0] for r in rows] == ["train", "infer", "infer-pad"]
    for row in rows:
        assert row["suite"] == "encoder" and row["unit"] == "tokens/s"
        assert row["attnlab"] > 0 and row["reference"] > 0
        assert row["reference_name"] == "torch.nn.TransformerEncoder"
        assert row["ratio"] == row["attnlab"] / row["reference"]
        assert row["extra"]["TFLOP/s"] > 0
        assert "MFU" not in row["extra"]  # a CPU has no known peak
    assert report["environment"]["device"] == "cpu"


def test_unknown_suite_and_bad_options_are_one_line_errors(capsys):
    code, _, err = run_cli(capsys, "bench", "encoder", "nosuch")
    assert_one_line_error(code, err, "unknown benchmark suite 'nosuch': choose from encoder")
    code, _, err = run_cli(capsys, "bench", "--precision", "fp16", "--device", "cpu")
    assert_one_line_error(code, err, "--precision fp16 needs a CUDA GPU")
    code, _, err = run_cli(capsys, "bench", "encoder", "--size", "huge", "--quick")
    assert_one_line_error(code, err, "the encoder suite has one size, 'default'")
    code, _, err = run_cli(capsys, "bench", "--peak-tflops", "0")
    assert_one_line_error(code, err, "--peak-tflops must be positive")


def test_a_missing_suite_module_is_skipped_with_its_reason(monkeypatch):
    monkeypatch.setitem(attnlab.bench.SUITES, "later", "attnlab.bench.not_written")
    report = run_bench(["later"], BenchOptions(quick=True))
    assert report.results == []
    assert report.skipped == {"later": "this version of attnlab has no such suite yet"}
    assert "skipped later: this version of attnlab has no such suite yet" in report.table()


def test_table_has_one_row_per_result_with_ratio_and_mfu(monkeypatch):
    # a suite with a cost (ms, lower is better) and a rate; --peak-tflops gives MFU anywhere
    suite = types.ModuleType("fake_suite")
    suite.run = lambda options: [
        BenchResult("fake", "a", "ms", 2.0, 3.0, "ref", higher_is_better=False),
        BenchResult("fake", "b", "tokens/s", 1000.0, 500.0, "ref", extra={"TFLOP/s": 0.5}),
    ]
    monkeypatch.setitem(sys.modules, "fake_suite", suite)
    monkeypatch.setitem(attnlab.bench.SUITES, "fake", "fake_suite")
    lines = run_bench(["fake"], BenchOptions(peak_tflops=2.0)).table().splitlines()
    assert lines[1].split() == ["suite", "case", "unit", "attnlab", "reference", "vs", "ratio",
                                "extras"]  # fmt: skip
    assert lines[3].split() == ["fake", "a", "ms", "2", "3", "ref", "1.50x"]  # 3 ms / 2 ms
    assert lines[4].split()[6:] == ["2.00x", "TFLOP/s", "0.5", "MFU", "25.0%"]


def test_gpt_flops_follow_the_palm_estimate():
    # GPT-2 small: 124M parameters of which 0.79M are position embeddings (not counted)
    n, L, H, d, T = 124_439_808 - 1024 * 768, 12, 12, 768, 1024
    training = gpt_flops_per_token(n, L, H, d, T)
    assert training == 6 * n + 12 * L * T * d  # nanoGPT's estimate_mfu, per token
    assert gpt_flops_per_token(n, L, H, d, T, training=False) * 3 == training
    # 1 FLOP per token at 1 token/s against a 1 TFLOP/s peak
    peak = peak_flops(torch.device("cpu"), "bf16", override_tflops=1.0)
    assert peak == 1e12 and mfu(1.0, 1e12, peak) == 1.0
    assert peak_flops(torch.device("cpu"), "bf16") is None
