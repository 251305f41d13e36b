"""generate() for decoder-only models: the cache changes nothing but speed, the window
slides past block_size, and the sampling controls do what they say."""

import functools

import pytest
import torch

from attnlab.errors import CompileError, InputError
from attnlab.generation import _filter_logits, _next_token, generate
from attnlab.models import GPT, GPTConfig, Llama, LlamaConfig


def _gpt(block_size=32, seed=0) -> GPT:
    torch.manual_seed(seed)
    config = GPTConfig(vocab_size=50, block_size=block_size, num_layers=2, num_heads=4, d_model=32)
    return GPT(config).eval()


def test_cached_and_uncached_greedy_generation_give_identical_tokens(device):
    model = _gpt().to(device)  # float32 on either device: the tokens must be equal
    prompt = torch.randint(0, 50, (2, 5)).to(device)
    cached = generate(model, prompt, 20, temperature=0, use_cache=True)
    plain = generate(model, prompt, 20, temperature=0, use_cache=False)
    assert cached.shape == (2, 25)
    assert torch.equal(cached, plain)
    assert torch.equal(cached[:, :5], prompt)


def test_greedy_generation_is_the_argmax_of_a_full_forward_pass():
    model = _gpt()
    out = generate(model, torch.tensor([[1, 2, 3]]), 10, temperature=0)
    logits = model(out[:, :-1])  # (1, 12, V): one pass over everything generated
    assert torch.equal(logits[0, 2:].argmax(-1), out[0, 3:])


def test_generation_past_the_block_size_slides_the_window_on_both_paths():
    model = _gpt(block_size=16)
    prompt = torch.randint(0, 50, (1, 10))
    cached = generate(model, prompt, 40, temperature=0, use_cache=True)
    plain = generate(model, prompt, 40, temperature=0, use_cache=False)
    assert cached.shape == (1, 50)
    assert torch.equal(cached, plain)
    # The last token was predicted from the window the docs describe: the window slides by
    # half a block (8) whenever it would pass 16 tokens, so with 49 tokens it starts at 40
    # (starts so far: 0, 8 at 17 tokens, ..., 32 at 41, 40 at 49).
    window = cached[:, 40:49]
    assert model(window)[0, -1].argmax().item() == cached[0, -1].item()


def test_the_same_seed_gives_the_same_sample_and_leaves_the_global_rng_alone():
    model = _gpt()
    prompt = torch.tensor([[1, 2]])
    state = torch.get_rng_state()
    a = generate(model, prompt, 15, temperature=1.0, seed=7)
    assert torch.equal(torch.get_rng_state(), state)
    b = generate(model, prompt, 15, temperature=1.0, seed=7)
    c = generate(model, prompt, 15, temperature=1.0, seed=8)
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_top_k_and_top_p_keep_only_the_allowed_tokens():
    logits = torch.log(torch.tensor([[0.5, 0.25, 0.15, 0.1]]))
    top_k = _filter_logits(logits, top_k=2, top_p=None)
    assert torch.isinf(top_k[0, 2:]).all() and torch.isfinite(top_k[0, :2]).all()
    # 0.5 + 0.25 = 0.75 < 0.8: the nucleus of 0.8 needs the third token too.
    top_p = _filter_logits(logits, top_k=None, top_p=0.8)
    assert torch.isfinite(top_p[0, :3]).all() and torch.isinf(top_p[0, 3])
    assert torch.isfinite(_filter_logits(logits, None, 0.01)[0, 0])  # the best always stays


@pytest.mark.parametrize(
    "temperature, top_k, top_p, kept",
    [
        (1.0, None, None, 4),
        (0.5, None, None, 4),
        (2.0, 2, None, 2),
        (1.0, None, 0.8, 3),  # 0.5 + 0.25 < 0.8: the third token is needed
        (0.5, None, 0.8, 2),  # at T = 0.5 the first two hold 0.72 + 0.18: the nucleus is 2
    ],
)
def test_samples_follow_the_softmax_of_the_logits_over_temperature_in_the_kept_tokens(
    temperature, top_k, top_p, kept
):
    """What is sampled, not only which logits are masked: softmax(logits / T) is p^(1/T)
    renormalised, and top-k and top-p keep the likeliest tokens of that tempered distribution
    (Holtzman et al. apply the nucleus after the temperature)."""
    p = torch.tensor([0.5, 0.25, 0.15, 0.1])
    expected = p ** (1 / temperature)
    expected[kept:] = 0
    expected /= expected.sum()
    n = 100_000
    logits = p.log().expand(n, 4) + 3.0  # one row per draw; a shift of the logits is no change
    ids = _next_token(logits, temperature, top_k, top_p, torch.Generator().manual_seed(0))
    frequencies = torch.bincount(ids, minlength=4) / n
    torch.testing.assert_close(frequencies, expected, atol=0.006, rtol=0)  # ~4 standard errors


@pytest.mark.parametrize("settings", [{"temperature": 1e-300}, {"top_p": 1e-300}])
def test_the_smallest_temperature_or_nucleus_is_greedy_not_nan(settings):
    """Logits / 1e-300 overflowed to inf - inf = nan, and a top_p of 1e-300 rounds to 0 in
    float32 and dropped every token: both crashed torch.multinomial. Their limit is greedy."""
    model = _gpt()
    prompt = torch.tensor([[4, 5, 6]])
    sampled = generate(model, prompt, 12, **{"temperature": 1.0, **settings}, seed=0)
    assert torch.equal(sampled, generate(model, prompt, 12, temperature=0))


def test_sampling_with_top_k_one_is_greedy():
    model = _gpt()
    prompt = torch.tensor([[4, 5, 6]])
    sampled = generate(model, prompt, 12, temperature=0.8, top_k=1, seed=0)
    assert torch.equal(sampled, generate(model, prompt, 12, temperature=0))


def test_streaming_and_stop_string():
    model = _gpt()
    seen = []
    decode = "".join  # stand-in: each id becomes a character below
    alphabet = [chr(ord("a") + i % 26) for i in range(50)]
    out = generate(
        model,
        torch.tensor([[1]]),
        30,
        temperature=0,
        on_token=lambda ids: seen.append(ids.item()),
        stop=None,
    )
    assert seen == out[0, 1:].tolist()
    target = alphabet[out[0, 4].item()]  # a character the greedy text reaches at step 4
    stopped = generate(
        model,
        torch.tensor([[1]]),
        30,
        temperature=0,
        stop=target,
        decode=lambda ids: decode(alphabet[i] for i in ids),
    )
    text = "".join(alphabet[i] for i in stopped[0, 1:].tolist())
    assert text.endswith(target) and text.count(target) == 1 and stopped.size(1) <= 5


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"max_new_tokens": -1}, "max_new_tokens"),
        ({"max_new_tokens": 5, "temperature": -1.0}, "temperature"),
        ({"max_new_tokens": 5, "temperature": float("nan")}, "temperature must be a finite"),
        ({"max_new_tokens": 5, "top_p": float("nan")}, "top_p"),
        ({"max_new_tokens": 5, "top_k": 0}, "top_k"),
        ({"max_new_tokens": 5, "top_p": 1.5}, "top_p"),
    ],
)
def test_bad_sampling_settings_are_input_errors(kwargs, message):
    with pytest.raises(InputError, match=message):
        generate(_gpt(), torch.tensor([[1]]), **kwargs)


def test_eos_id_may_be_one_id_or_several():
    model = _gpt()
    prompt = torch.tensor([[1, 2, 3]])
    free = generate(model, prompt, 10, temperature=0)[0, 3:].tolist()  # (10,) new ids
    fourth = free[3]
    first_seen = free.index(fourth) + 1  # tokens up to and including its first appearance
    unused = next(i for i in range(50) if i not in free)
    assert generate(model, prompt, 10, temperature=0, eos_id=fourth).size(1) == 3 + first_seen
    several = generate(model, prompt, 10, temperature=0, eos_id=[unused, fourth])
    assert several[0, 3:].tolist() == free[:first_seen]
    assert generate(model, prompt, 10, temperature=0, eos_id=[unused]).size(1) == 13


def test_generation_records_no_graph_and_its_ids_can_be_trained_on():
    model = _gpt()
    seen = []  # whether autograd was recording inside the model's forward pass
    model.register_forward_hook(lambda *_: seen.append(torch.is_grad_enabled()))
    out = generate(model, torch.tensor([[1, 2, 3]]), 5, temperature=0)
    assert seen and not any(seen)
    assert not out.is_inference()  # an inference tensor could not be saved for backward
    loss = model(out[:, :-1]).logsumexp(-1).mean()  # the embedding saves the ids for backward
    loss.backward()
    assert model.token_embedding.weight.grad is not None


@pytest.fixture
def eager_compile(monkeypatch):
    """torch.compile with dynamo's "eager" backend: the graph is captured and guarded as with
    inductor, without compiling C++ (the inductor run is in the slow tests)."""
    dynamo = pytest.importorskip("torch._dynamo")
    monkeypatch.setattr(torch, "compile", functools.partial(torch.compile, backend="eager"))
    dynamo.reset()
    yield dynamo
    dynamo.reset()


def _llama(block_size=32) -> Llama:
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=50,
        hidden_size=32,
        intermediate_size=48,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=block_size,
        initializer_range=0.1,
    )
    return Llama(config).eval()


@pytest.mark.parametrize("build", [_gpt, _llama])
def test_compiled_steps_give_the_tokens_of_eager_generation_with_one_graph(build, eager_compile):
    model = build(block_size=16)
    prompt = torch.randint(0, 50, (2, 5))
    # 40 new tokens in a window of 16: the window slides and the caches are refilled eagerly
    expected = generate(model, prompt, 40, temperature=0, use_cache=False)
    with eager_compile.config.patch(error_on_recompile=True):
        compiled = generate(model, prompt, 40, temperature=0, compile=True)
        again = generate(model, prompt, 40, temperature=0, compile=True)  # the same graph
    assert torch.equal(compiled, expected) and torch.equal(again, expected)


def test_compiling_needs_the_cache():
    with pytest.raises(InputError, match="compiling needs the key/value cache"):
        generate(_gpt(), torch.tensor([[1, 2]]), 3, use_cache=False, compile=True)


def test_a_model_that_cannot_be_compiled_gives_one_sentence(monkeypatch):
    dynamo = pytest.importorskip("torch._dynamo")

    def broken_backend(graph, example_inputs):
        raise RuntimeError("no C++ compiler\nand a long log")

    monkeypatch.setattr(torch, "compile", functools.partial(torch.compile, backend=broken_backend))
    dynamo.reset()
    with pytest.raises(CompileError, match="cannot compile the model here") as error:
        generate(_gpt(), torch.tensor([[1, 2]]), 3, temperature=0, compile=True)
    assert "\n" not in str(error.value) and "no C++ compiler" in str(error.value)
    dynamo.reset()


@pytest.mark.slow
@pytest.mark.parametrize("build", [_gpt, _llama])
def test_inductor_compiled_steps_give_the_tokens_of_eager_generation(build):
    # The default backend, which compiles C++ on the CPU (about 10 s a model); the floats may
    # differ from eager ones in the last bits, the greedy tokens of these peaked models do not.
    pytest.importorskip("torch._inductor")
    torch._dynamo.reset()
    model = build(block_size=32)
    prompt = torch.randint(0, 50, (1, 4))
    expected = generate(model, prompt, 20, temperature=0)
    assert torch.equal(generate(model, prompt, 20, temperature=0, compile=True), expected)
    torch._dynamo.reset()


@pytest.mark.parametrize(
    "prompt, message",
    [
        (torch.tensor([[1, 99]]), r"input_ids must be ids in \[0, \d+\) .*got ids from 1 to 99"),
        (torch.tensor([[-1, 2]]), r"input_ids must be ids in \[0, \d+\) .*got ids from -1 to 2"),
        (torch.tensor([[1.0, 2.0]]), "input_ids must be integer token ids .*torch.float32"),
        ([[1, 2]], "input_ids must be a tensor of token ids; got list"),
    ],
)
def test_a_prompt_the_model_cannot_embed_is_refused_before_decoding(prompt, message):
    # Checked once, before the first step: on a GPU an id beyond the vocabulary would end in a
    # device-side assert inside the embedding.
    with pytest.raises(InputError, match=message):
        generate(_gpt(), prompt, 3)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"max_new_tokens": 2.5}, "max_new_tokens must be a whole number; got 2.5"),
        ({"max_new_tokens": True}, "max_new_tokens must be a whole number; got True"),
        ({"max_new_tokens": 3, "top_k": 2.5}, "top_k must be a whole number; got 2.5"),
    ],
)
def test_counts_that_are_not_whole_numbers_are_named(kwargs, message):
    with pytest.raises(InputError, match=message):
        generate(_gpt(), torch.tensor([[1]]), **kwargs)


def test_an_encoder_decoder_given_to_generate_is_pointed_to_the_searches():
    from attnlab.models import Seq2SeqConfig, Seq2SeqTransformer

    model = Seq2SeqTransformer(Seq2SeqConfig(11, 11, d_model=8, num_heads=2, d_ff=16)).eval()
    # an AttributeError before: 'Seq2SeqConfig' object has no attribute 'block_size'
    with pytest.raises(InputError, match="got a Seq2SeqTransformer; an encoder-decoder decodes"):
        generate(model, torch.tensor([[3, 4]]), 3)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"temperature": "0.7"}, "temperature must be a finite number; got '0.7'"),
        ({"temperature": None}, "temperature must be a finite number; got None"),
        ({"top_p": "0.9"}, r"top_p must be in \(0, 1\]; got '0.9'"),
        ({"seed": 1.5}, "seed must be a whole number; got 1.5"),
        ({"seed": 2**70}, r"seed must be in \[-2\*\*63, 2\*\*64\); got"),
        ({"eos_id": 2.0}, "eos_id must be a token id or a list of them; got 2.0"),
        ({"eos_id": "2"}, "eos_id must be a token id or a list of them; got '2'"),
        ({"eos_id": [2, -1]}, r"eos_id must hold token ids \(whole numbers >= 0\); got \[2, -1\]"),
        ({"top_p": True}, r"top_p must be in \(0, 1\]; got True"),  # was read as 1.0
        # These three failed after the first step, in Python's words ('in <string>' requires
        # string as left operand; 'str' object is not callable).
        ({"stop": 5, "decode": str}, "stop must be a string; got int"),
        ({"stop": "a", "decode": "abc"}, "decode must be a function; got str"),
        ({"on_token": "print"}, "on_token must be a function; got str"),
    ],
)
def test_settings_of_the_wrong_kind_are_named_not_left_to_python_or_torch(kwargs, message):
    # TypeError "must be real number, not str", "'float' object is not iterable" or torch's
    # "manual_seed expected a long" before: none said which argument.
    with pytest.raises(InputError, match=message):
        generate(_gpt(), torch.tensor([[1]]), 2, **kwargs)


def test_an_eos_id_outside_the_vocabulary_is_refused_and_the_last_id_is_accepted():
    model = _gpt()
    vocab = model.config.vocab_size
    # Before: accepted, and decoding ran to max_new_tokens as if no eos_id had been given.
    with pytest.raises(InputError, match=rf"eos_id {vocab} is not in the model's vocabulary"):
        generate(model, torch.tensor([[1]]), 2, eos_id=[1, vocab])
    out = generate(model, torch.tensor([[1]]), 2, eos_id=vocab - 1)
    assert out.shape[0] == 1 and 2 <= out.shape[1] <= 3


def test_a_prompt_on_another_device_than_the_model_is_refused_before_decoding():
    # The meta device stands in for a GPU: the prompt's device is not the model's.
    prompt = torch.tensor([[1, 2]], device="meta")
    with pytest.raises(InputError, match="input_ids is on meta but the model is on cpu"):
        generate(_gpt(), prompt, 2)


def test_a_model_whose_dropout_is_on_is_refused_and_one_without_dropout_is_not():
    # Forgetting model.eval() used to decode with dropout: another, worse sample every call.
    torch.manual_seed(0)
    sizes = {"vocab_size": 50, "block_size": 16, "num_layers": 1, "num_heads": 2, "d_model": 16}
    prompt = torch.tensor([[1, 2, 3]])
    with pytest.raises(InputError, match=r"training mode, where its dropout \(0.1\) makes"):
        generate(GPT(GPTConfig(**sizes, dropout=0.1)), prompt, 5, temperature=0)
    no_dropout = GPT(GPTConfig(**sizes, dropout=0.0))  # training mode
    assert no_dropout.training
    tokens = generate(no_dropout, prompt, 5, temperature=0)
    assert torch.equal(tokens, generate(no_dropout.eval(), prompt, 5, temperature=0))


def test_max_new_tokens_past_a_million_is_refused_and_a_million_is_not():
    # The window slides, so nothing else ended decoding: 10**12 ran until killed.
    with pytest.raises(InputError, match=r"max_new_tokens must be in 0 \.\. 1,000,000; got 10+"):
        generate(_gpt(), torch.tensor([[1]]), 10**12)
    stopped = generate(_gpt(), torch.tensor([[1]]), 10**6, temperature=0, eos_id=list(range(50)))
    assert stopped.shape == (1, 2)  # every id ends it: one step of a million allowed
