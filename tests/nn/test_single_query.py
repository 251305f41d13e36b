"""The single-query attention of small decoding steps: equal to PyTorch's fused attention and
to the written-out math, and it starts no OpenMP thread team (counted by interposing
``GOMP_parallel``, the call that starts one, in a child process)."""

import shutil
import subprocess
import sys
import textwrap

import pytest
import torch
import torch.nn.functional as F

from attnlab.nn import repeat_kv, scaled_dot_product_attention
from attnlab.nn.single_query import fits, single_query_attention


@pytest.mark.parametrize(
    "B, H, H_kv, T_k, d", [(1, 4, 4, 9, 8), (3, 8, 2, 17, 16), (2, 4, 1, 1, 4)]
)
def test_equals_torch_fused_attention_and_the_explicit_math(B, H, H_kv, T_k, d):
    torch.manual_seed(0)
    q, k, v = torch.randn(B, H, 1, d), torch.randn(B, H_kv, T_k, d), torch.randn(B, H_kv, T_k, d)
    mask = torch.rand(B, 1, 1, T_k) > 0.3
    mask[..., 0] = True  # every row may attend somewhere
    for m in (None, mask):
        reference = F.scaled_dot_product_attention(q, repeat_kv(k, H), repeat_kv(v, H), attn_mask=m)
        torch.testing.assert_close(single_query_attention(q, k, v, m), reference)
        explicit, _ = scaled_dot_product_attention(q, k, v, m)
        torch.testing.assert_close(single_query_attention(q, k, v, m), explicit)


def test_a_query_with_no_allowed_key_gets_zeros_not_nan():
    q, k, v = torch.randn(2, 2, 1, 4), torch.randn(2, 2, 5, 4), torch.randn(2, 2, 5, 4)
    mask = torch.ones(2, 1, 1, 5, dtype=torch.bool)
    mask[1] = False
    out = single_query_attention(q, k, v, mask)
    assert torch.equal(out[1], torch.zeros(2, 1, 4))
    torch.testing.assert_close(out[0], F.scaled_dot_product_attention(q[:1], k[:1], v[:1])[0])


def test_fits_only_small_float32_cpu_steps_without_dropout_of_wide_enough_models():
    q, k = torch.randn(1, 4, 1, 64), torch.randn(1, 4, 127, 64)  # 4 * 127 * 64 = 32,512
    assert fits(q, k, 0.0)
    assert not fits(q, torch.randn(1, 4, 128, 64), 0.0)  # 32,768: PyTorch would use threads
    assert not fits(torch.randn(1, 4, 2, 64), k, 0.0)  # two queries: not a decoding step
    assert not fits(q, k, 0.1)
    assert not fits(q.double(), k.double(), 0.0)
    assert not fits(torch.randn(1, 4, 1, 32), torch.randn(1, 4, 8, 32), 0.0)  # width 128


COUNT_REGIONS = textwrap.dedent(
    """
    import ctypes, os, sys, torch
    from attnlab.generation import generate
    from attnlab.models import GPT, GPTConfig, Llama, LlamaConfig
    regions = ctypes.CDLL(os.environ["LD_PRELOAD"]).gomp_regions
    regions.restype = ctypes.c_long
    torch.manual_seed(0)
    # weights under attnlab.nn.linear's batched threshold: their one-row products use no threads
    gpt = GPT(GPTConfig(vocab_size=65, block_size=256, num_layers=2, num_heads=4, d_model=256,
        d_ff=512))
    llama = Llama(LlamaConfig(vocab_size=65, hidden_size=256, intermediate_size=96,
        num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
        max_position_embeddings=256))
    for model, use_cache in ((gpt.eval(), True), (llama.eval(), True), (gpt, False)):
        prompt = torch.randint(65, (1, 8))
        generate(model, prompt, 4, temperature=0.0)  # warm up
        counts = []
        for n in (10, 30):
            before = regions()
            generate(model, prompt, n, temperature=0.0, use_cache=use_cache)
            counts.append(regions() - before)
        print((counts[1] - counts[0]) / 20)  # thread teams per decoding step
    """
)

SHIM = """
#define _GNU_SOURCE
#include <dlfcn.h>
static void (*real_parallel)(void (*)(void *), void *, unsigned, unsigned);
static long regions;
void GOMP_parallel(void (*fn)(void *), void *data, unsigned n, unsigned flags) {
    if (!real_parallel) real_parallel = dlsym(RTLD_NEXT, "GOMP_parallel");
    __atomic_add_fetch(&regions, 1, __ATOMIC_RELAXED);
    real_parallel(fn, data, n, flags);
}
long gomp_regions(void) { return regions; }
"""


@pytest.mark.skipif(shutil.which("gcc") is None, reason="needs gcc to build the counting shim")
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="GOMP interposition: Linux")
def test_a_small_decoding_step_starts_no_thread_team(tmp_path):
    (tmp_path / "shim.c").write_text(SHIM)
    shim = tmp_path / "libcount.so"
    subprocess.run(
        ["gcc", "-O2", "-shared", "-fPIC", "-o", shim, tmp_path / "shim.c", "-ldl"], check=True
    )
    env = {"LD_PRELOAD": str(shim), "OMP_NUM_THREADS": "2", "PATH": "/usr/bin:/bin"}
    out = subprocess.run(
        [sys.executable, "-c", COUNT_REGIONS], env=env, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    gpt_steps, llama_steps, uncached_steps = (float(line) for line in out.stdout.split())
    assert (gpt_steps, llama_steps) == (0.0, 0.0)
    # the counter does count: without the cache, a step attends with many queries at once
    assert uncached_steps >= 2
