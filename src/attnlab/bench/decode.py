"""Benchmark suite "decode": encoder-decoder greedy decoding with and without the KV cache.

A :class:`~attnlab.models.Seq2SeqTransformer` of the paper's base size (d_model 512, 8 heads,
6 + 6 layers, d_ff 2048; an 8,000-token shared vocabulary as in ``attnlab train translate``;
random weights) translates sources of 12 tokens into exactly 50 tokens, at batch 1 and
batch 32 (``--quick``: a 2 + 2-layer model of width 128, 10 tokens).

* attnlab side: :func:`attnlab.generation.greedy_search` with the cache - one decoder step
  per token, cross-attention keys/values computed once per source;
* reference side: the same search without a cache - each step re-runs the decoder over the
  whole prefix (and, like the cached side, projects only the last position onto the
  vocabulary).

At batch 1 a cached step is a chain of matrix-vector products whose time is that of reading
the weights (about 100 MB at this size); :mod:`attnlab.nn.linear` reads them with both
threads.

Both sides produce the same tokens (tested in tests/generation); only the time differs.
"""

from __future__ import annotations

from functools import partial

import torch

from attnlab.bench.common import BenchOptions, BenchResult, interleaved_medians
from attnlab.errors import InputError
from attnlab.generation import greedy_search
from attnlab.models import Seq2SeqConfig, Seq2SeqTransformer
from attnlab.training.devices import autocast

SUITE = "decode"
VOCAB, SOURCE_LEN = 8000, 12


def run(options: BenchOptions) -> list[BenchResult]:
    """Tokens/s of greedy decoding with the cache (attnlab) and without (reference)."""
    if options.size != "default":
        raise InputError(f"the decode suite has one size, 'default'; got {options.size!r}")
    device = torch.device(options.device)
    new_tokens = 10 if options.quick else 50
    repeats = options.repeats or (2 if options.quick else 7)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        # eos_id = VOCAB is no token of the vocabulary: the search never stops early, so
        # every call decodes exactly `new_tokens` tokens.
        config = Seq2SeqConfig(
            src_vocab_size=VOCAB,
            tgt_vocab_size=VOCAB,
            eos_id=VOCAB,
            d_model=128 if options.quick else 512,
            num_heads=8,
            num_encoder_layers=2 if options.quick else 6,
            num_decoder_layers=2 if options.quick else 6,
            d_ff=256 if options.quick else 2048,
            max_len=64,
            share_embeddings=True,
        )
        model = Seq2SeqTransformer(config).to(device).eval()
        sources = torch.randint(3, VOCAB, (32, SOURCE_LEN)).to(device)  # (32, S)
    results = []
    for batch in (1, 32):
        src = sources[:batch]

        def decode(use_cache: bool, src: torch.Tensor = src) -> None:
            with autocast(device, options.precision):
                greedy_search(model, src, max_new_tokens=new_tokens, use_cache=use_cache)

        decode(True)  # warm-up
        decode(False)
        seconds = interleaved_medians(
            {"cached": partial(decode, True), "plain": partial(decode, False)},
            device,
            repeats,
        )
        cached_ms, plain_ms = seconds["cached"] * 1e3, seconds["plain"] * 1e3
        results.append(
            BenchResult(
                suite=SUITE,
                case=f"greedy batch {batch}, {new_tokens} tokens",
                unit="tokens/s",
                attnlab=batch * new_tokens / cached_ms * 1e3,
                reference=batch * new_tokens / plain_ms * 1e3,
                reference_name="attnlab without KV cache",
                extra={"ms": cached_ms},
            )
        )
    return results
