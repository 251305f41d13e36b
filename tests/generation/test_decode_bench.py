"""The decode benchmark suite runs and reports both sides (no timing assertions)."""

from attnlab.bench.common import BenchOptions
from attnlab.bench.decode import run


def test_decode_suite_reports_cached_and_uncached_rates():
    results = run(BenchOptions(quick=True, repeats=1))
    assert [r.case for r in results] == ["greedy batch 1, 10 tokens", "greedy batch 32, 10 tokens"]
    for r in results:
        assert r.attnlab > 0 and r.reference > 0 and r.ratio is not None
        assert r.reference_name == "attnlab without KV cache"
