"""StaticKVCache: preallocated, fixed-shape key/value cache. Decoding with it equals decoding
without any cache (and Hugging Face's greedy generation for Llama), its mask matches a hand
computation, and a decoding step compiles to one graph that every later step reuses."""

import pytest
import torch

import attnlab.generation as generation
from attnlab.errors import ConfigError
from attnlab.generation import generate
from attnlab.models import GPT, GPTConfig, Llama, LlamaConfig
from attnlab.nn import BlockSpec, EncoderLayer, KVCache, MultiHeadAttention, StaticKVCache

from ..hugging_face import transformers_or_skip

LLAMA_SPEC = BlockSpec(
    d_model=32,
    num_heads=4,
    num_kv_heads=2,
    d_ff=48,
    dropout=0.0,
    positions="rotary",
    norm="rmsnorm",
    activation="swiglu",
    norm_first=True,
    bias=False,
)


def test_visible_is_the_causal_mask_over_written_positions_by_hand():
    cache = StaticKVCache(1, 1, max_len=5, d_head=2)
    cache.update(torch.zeros(1, 1, 3, 2), torch.zeros(1, 1, 3, 2))  # positions 0, 1, 2
    expected = torch.tensor(
        [[1, 0, 0, 0, 0], [1, 1, 0, 0, 0], [1, 1, 1, 0, 0]], dtype=torch.bool
    )  # query i (position i) sees keys 0..i; positions 3, 4 are not written
    assert torch.equal(cache.visible(3), expected)
    cache.update(torch.ones(1, 1, 1, 2), torch.ones(1, 1, 1, 2))  # position 3
    assert torch.equal(cache.visible(1), torch.tensor([[1, 1, 1, 1, 0]], dtype=torch.bool))
    assert len(cache) == 4 and torch.equal(cache.k[0, 0, 3], torch.ones(2))


@pytest.mark.parametrize("spec", [BlockSpec(d_model=32, num_heads=4, dropout=0.0), LLAMA_SPEC])
def test_step_by_step_attention_with_the_static_cache_equals_the_whole_sequence(spec):
    torch.manual_seed(0)
    layer = EncoderLayer(spec=spec).eval()
    x = torch.randn(2, 9, 32)  # (B, T, d_model)
    whole = layer(x, is_causal=True)
    cache = StaticKVCache.for_attention(layer.self_attn, batch_size=2, max_len=16)
    steps = [layer(x[:, :4], is_causal=True, cache=cache)]  # a prompt of 4, then one at a time
    steps += [layer(x[:, t : t + 1], is_causal=True, cache=cache) for t in range(4, 9)]
    torch.testing.assert_close(torch.cat(steps, dim=1), whole, rtol=1e-5, atol=1e-5)
    assert cache.k.shape == (2, spec.kv_heads, 16, spec.d_head)  # only the key/value heads


def _tiny_gpt() -> GPT:
    config = GPTConfig(vocab_size=50, block_size=16, num_layers=2, num_heads=2, d_model=32)
    return GPT(config).eval()


def _tiny_llama() -> Llama:
    config = LlamaConfig(
        vocab_size=50,
        hidden_size=32,
        intermediate_size=48,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=16,
        initializer_range=0.1,
    )
    return Llama(config).eval()


@pytest.mark.parametrize("build", [_tiny_gpt, _tiny_llama])
def test_generation_with_static_caches_equals_no_cache_past_the_window(build):
    torch.manual_seed(0)
    model = build()
    prompt = torch.randint(50, (3, 5))
    # 40 new tokens slide the 16-token window several times: the caches are emptied in place
    plain = generate(model, prompt, 40, temperature=0.0, use_cache=False)
    static = generate(model, prompt, 40, temperature=0.0, static_cache=True)
    assert torch.equal(static, plain)


def test_llama_static_cache_greedy_equals_hugging_face():
    transformers = transformers_or_skip()
    from attnlab.interop import from_hf

    torch.manual_seed(0)
    config = transformers.LlamaConfig(
        vocab_size=60,
        hidden_size=32,
        intermediate_size=48,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
        initializer_range=0.1,
        bos_token_id=None,
        eos_token_id=None,
        pad_token_id=None,
    )
    reference = transformers.LlamaForCausalLM(config).eval()
    prompt = torch.randint(60, (1, 6))
    expected = reference.generate(
        prompt,
        attention_mask=torch.ones_like(prompt),
        max_new_tokens=30,
        min_new_tokens=30,
        do_sample=False,
        pad_token_id=0,
    )
    ours = generate(from_hf(reference), prompt, 30, temperature=0.0, static_cache=True)
    assert torch.equal(ours, expected)


def test_padded_llama_batch_with_a_static_cache_matches_the_whole_forward():
    torch.manual_seed(0)
    model = _tiny_llama()
    ids = torch.randint(50, (2, 7))
    real = torch.ones(2, 7, dtype=torch.bool)
    real[1, :3] = False  # left padding
    whole = model(ids, attention_mask=real)
    cache = model.make_cache(batch_size=2)
    first = model(ids[:, :4], cache=cache, attention_mask=real[:, :4])
    rest = model(ids[:, 4:], cache=cache, attention_mask=real)
    stepped = torch.cat([first, rest], dim=1)
    torch.testing.assert_close(stepped[real], whole[real], rtol=1e-5, atol=1e-5)


def test_the_buffers_keep_their_storage_and_the_growing_cache_does_not():
    torch.manual_seed(0)
    mha = MultiHeadAttention(spec=BlockSpec(d_model=16, num_heads=2, dropout=0.0)).eval()
    static = StaticKVCache.for_attention(mha, batch_size=1, max_len=64)
    growing = KVCache()
    storage, moved = static.k.data_ptr(), set()
    for _ in range(40):
        x = torch.randn(1, 1, 16)
        mha(x, is_causal=True, cache=static), mha(x, is_causal=True, cache=growing)
        assert static.k.data_ptr() == storage
        moved.add(growing.k.data_ptr())
    assert len(moved) > 1  # the growing cache reallocated (doubling) on the way


def test_one_compiled_graph_serves_every_decoding_step():
    dynamo = pytest.importorskip("torch._dynamo")
    torch.manual_seed(0)
    layer = EncoderLayer(spec=LLAMA_SPEC).eval()
    cache = StaticKVCache.for_attention(layer.self_attn, batch_size=1, max_len=32)
    eager_cache = StaticKVCache.for_attention(layer.self_attn, batch_size=1, max_len=32)

    def step(x):
        return layer(x, is_causal=True, cache=cache)

    dynamo.reset()
    compiled = torch.compile(step, backend="eager", fullgraph=True, dynamic=False)
    with torch.no_grad(), dynamo.config.patch(error_on_recompile=True):
        for _ in range(6):  # a recompilation (a new shape or a guard on the position) raises
            x = torch.randn(1, 1, 32)
            torch.testing.assert_close(
                compiled(x), layer(x, is_causal=True, cache=eager_cache), rtol=1e-5, atol=1e-5
            )
    assert len(cache) == 6


@pytest.mark.parametrize("make_model", [_tiny_gpt, _tiny_llama], ids=["gpt", "llama"])
def test_one_compiled_graph_gives_every_decoding_steps_logits(make_model):
    # The position must reach the graph as a tensor: torch < 2.5 bakes a value read back to
    # Python at tracing (int(position)) into the graph, so that every later step would embed
    # the first step's position. Logits are compared, not only the tokens they pick.
    dynamo = pytest.importorskip("torch._dynamo")
    torch.manual_seed(0)
    model = make_model()
    tokens = torch.randint(50, (1, 13))
    expected = model(tokens)  # (1, 13, vocab): the whole sequence at once, no cache
    cache = model.make_cache(batch_size=1, max_len=13)
    dynamo.reset()
    step = torch.compile(model, backend="eager", fullgraph=True, dynamic=False)
    with torch.no_grad():
        model(tokens[:, :5], cache=cache)  # the prompt, eagerly: (1, 5) is another shape
        with dynamo.config.patch(error_on_recompile=True):
            for t in range(5, 13):  # a recompilation (a guard on the position) raises
                logits = step(tokens[:, t : t + 1].clone(), cache=cache)  # (1, 1, vocab)
                torch.testing.assert_close(logits[0, -1], expected[0, t], atol=1e-5, rtol=0)
    assert len(cache[0]) == 13


def test_bad_sizes_and_overflow_are_clear_errors():
    with pytest.raises(ValueError, match="max_len must be a positive integer; got 0"):
        StaticKVCache(1, 2, 0, 8)
    cache = StaticKVCache(1, 2, 4, 8)
    with pytest.raises(ValueError, match=r"new keys must have shape \(B, H_kv, T_new, d_head\)"):
        cache.update(torch.zeros(1, 3, 1, 8), torch.zeros(1, 3, 1, 8))
    cache.update(torch.zeros(1, 2, 3, 8), torch.zeros(1, 2, 3, 8))
    with pytest.raises(ValueError, match="the cache holds 4 positions; 3 are written and 2 more"):
        cache.update(torch.zeros(1, 2, 2, 8), torch.zeros(1, 2, 2, 8))
    mha = MultiHeadAttention(16, 2)
    with pytest.raises(ValueError, match="cross-attention takes a KVCache"):
        mha(torch.randn(1, 1, 16), torch.randn(1, 3, 16), cache=StaticKVCache(1, 2, 4, 8))


def test_static_caches_too_large_for_the_memory_are_refused_before_allocating(monkeypatch):
    prompt = torch.tensor([[1, 2, 3]])
    # A typo in the window: rotary positions need no table, so only the caches would be huge.
    llama = Llama(
        LlamaConfig(**{**_tiny_llama().config.__dict__, "max_position_embeddings": 2**40})
    )
    # 10**6 new tokens (generate's bound) for 10**5 rows: 2.6e14 bytes of caches
    positions = 3 + 10**6
    with pytest.raises(
        ConfigError, match=f"static key/value caches for 100,000 rows of {positions:,}"
    ):
        generate(llama.eval(), prompt.expand(10**5, 3), 10**6, temperature=0.0, static_cache=True)
    # By hand: 2 layers x (keys + values) x 2 key/value heads x d_head 8 x 4 bytes, for each
    # of the 16 positions of the window (3 + 40 capped at 16) of each of the 2 rows.
    needed = 2 * 2 * 2 * 8 * 4 * 16 * 2
    monkeypatch.setattr(generation, "available_on", lambda device: needed - 1)
    with pytest.raises(ConfigError, match=f"needs about {needed:,} bytes"):
        generate(_tiny_llama(), prompt.repeat(2, 1), 40, temperature=0.0, static_cache=True)
    monkeypatch.setattr(generation, "available_on", lambda device: needed)
    out = generate(_tiny_llama(), prompt.repeat(2, 1), 40, temperature=0.0, static_cache=True)
    assert out.shape == (2, 43)
