"""attnlab's GPT: the shape and cache contract, tied weights, GPT-2 initialisation, and equality
with Hugging Face's GPT2LMHeadModel."""

import functools
import math

import pytest
import torch

from attnlab.errors import InputError
from attnlab.generation import generate
from attnlab.models import GPT, MODELS, GPTConfig
from attnlab.training.checkpoint import load_weights, save_weights

from .conftest import fp32_atol
from .hugging_face import transformers_or_skip

SMALL = GPTConfig(vocab_size=37, block_size=24, num_layers=2, num_heads=4, d_model=32)


def small_gpt(**changes) -> GPT:
    return GPT(GPTConfig(**{**SMALL.__dict__, **changes})).eval()


def test_logits_shape_and_registry():
    model = small_gpt()
    ids = torch.randint(0, 37, (3, 10))
    assert model(ids).shape == (3, 10, 37)
    assert MODELS["GPT"] is GPT and GPT.config_class is GPTConfig


def test_positions_beyond_the_block_size_are_refused():
    model = small_gpt()
    with pytest.raises(ValueError, match="context window of 24 tokens"):
        model(torch.zeros(1, 25, dtype=torch.long))
    cache = model.make_cache()
    model(torch.zeros(1, 20, dtype=torch.long), cache=cache)
    with pytest.raises(ValueError, match="positions 20..24"):
        model(torch.zeros(1, 5, dtype=torch.long), cache=cache)


def test_causal_a_later_token_never_changes_earlier_logits():
    model = small_gpt()
    ids = torch.randint(0, 37, (2, 12))
    changed = ids.clone()
    changed[:, 7:] = torch.randint(0, 37, (2, 5))
    torch.testing.assert_close(model(changed)[:, :7], model(ids)[:, :7])


def test_cached_forward_in_pieces_equals_one_forward():
    model = small_gpt()
    ids = torch.randint(0, 37, (2, 15))
    cache = model.make_cache()
    assert len(cache) == 2 and len(cache[0]) == 0
    pieces = [model(ids[:, :9], cache=cache)]  # the prompt, then one token at a time
    for t in range(9, 15):
        pieces.append(model(ids[:, t : t + 1], cache=cache))
    assert len(cache[0]) == 15
    torch.testing.assert_close(torch.cat(pieces, dim=1), model(ids), atol=1e-5, rtol=0)


def test_attention_maps_are_causal_and_give_the_same_logits():
    model = small_gpt()
    ids = torch.randint(0, 37, (2, 9))
    logits, maps = model(ids, return_attention=True)
    torch.testing.assert_close(logits, model(ids), atol=1e-5, rtol=0)
    assert len(maps) == 2 and maps[0].shape == (2, 4, 9, 9)
    future = torch.ones(9, 9, dtype=torch.bool).triu(1)
    for weights in maps:
        assert (weights[..., future] == 0).all()
        torch.testing.assert_close(weights.sum(-1), torch.ones(2, 4, 9))


def test_lm_head_is_the_token_embedding():
    model = small_gpt()
    names = [name for name, _ in model.named_parameters()]
    assert not any("head" in name for name in names)  # one matrix, used twice
    # (that the logits are the final hidden states times the embedding matrix is proven by
    # the equality with Hugging Face's GPT-2, whose head is tied, below.)
    # The gradient reaches the embedding through the output projection too: a token that is
    # never an input still gets one.
    model(torch.zeros(1, 4, dtype=torch.long)).logsumexp(-1).sum().backward()
    assert model.token_embedding.weight.grad[5].abs().sum() > 0


def test_weights_round_trip_through_safetensors(tmp_path):
    model = small_gpt()
    save_weights(tmp_path / "model.safetensors", model)
    copy = small_gpt()
    load_weights(tmp_path / "model.safetensors", copy)
    ids = torch.randint(0, 37, (1, 8))
    torch.testing.assert_close(copy(ids), model(ids))


def test_gpt2_initialisation():
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=500, block_size=256, num_layers=6, num_heads=4, d_model=256))
    residual_std = 0.02 / math.sqrt(2 * 6)
    layer = model.layers[3]
    expected = {
        model.token_embedding.weight: 0.02,
        model.positions.embedding.weight: 0.02,
        layer.self_attn.qkv_proj.weight: 0.02,
        layer.feed_forward.linear1.weight: 0.02,
        layer.self_attn.out_proj.weight: residual_std,
        layer.feed_forward.linear2.weight: residual_std,
    }
    for weight, std in expected.items():
        assert weight.mean().abs() < 0.1 * std
        assert weight.std().item() == pytest.approx(std, rel=0.05)
    assert (layer.self_attn.qkv_proj.bias == 0).all() and (
        layer.feed_forward.linear2.bias == 0
    ).all()
    assert (layer.norm1.weight == 1).all() and (model.norm.bias == 0).all()


def test_bias_false_has_no_biases():
    model = small_gpt(bias=False)
    assert not [name for name, _ in model.named_parameters() if name.endswith("bias")]
    assert model(torch.randint(0, 37, (1, 5))).shape == (1, 5, 37)


def test_greedy_generation_is_the_same_with_and_without_the_cache_past_the_window():
    model = small_gpt()
    prompt = torch.randint(0, 37, (2, 5))
    cached = generate(model, prompt, 40, temperature=0.0, use_cache=True)  # 45 > block 24
    uncached = generate(model, prompt, 40, temperature=0.0, use_cache=False)
    assert cached.shape == (2, 45)
    assert torch.equal(cached, uncached)


# -- Hugging Face ------------------------------------------------------------------------------


def hf_gpt2(**overrides):
    transformers = transformers_or_skip()
    settings = dict(vocab_size=97, n_positions=32, n_embd=64, n_layer=3, n_head=4)
    settings.update(bos_token_id=None, eos_token_id=None)  # no special tokens in this vocabulary
    config = transformers.GPT2Config(**{**settings, **overrides})
    return transformers.GPT2LMHeadModel(config).eval()


def test_from_hf_gives_the_same_logits_as_gpt2(device):
    from attnlab.interop import from_hf

    torch.manual_seed(0)
    reference = hf_gpt2()
    with torch.no_grad():  # a random init has zero biases and unit norms: make them count
        for name, p in reference.named_parameters():
            if "ln" in name or name.endswith("bias"):
                p.add_(0.1 * torch.randn_like(p))
    model = from_hf(reference).to(device)
    reference.to(device)
    assert isinstance(model, GPT) and not model.training
    assert model.config.activation == "gelu_tanh" and model.config.block_size == 32
    ids = torch.randint(0, 97, (2, 32)).to(device)
    atol = fp32_atol(device, 1e-5)  # CUDA: 1e-4
    with torch.no_grad():
        expected = reference(ids).logits  # (B, T, vocab)
        torch.testing.assert_close(model(ids), expected, atol=atol, rtol=0)
        cache = model.make_cache()
        stepwise = [model(ids[:, :20], cache=cache)]
        stepwise += [model(ids[:, t : t + 1], cache=cache) for t in range(20, 32)]
        torch.testing.assert_close(torch.cat(stepwise, 1), expected, atol=atol, rtol=0)
        # the greedy choices of both models agree, cache or not
        ours = generate(model, ids[:, :4], 12, temperature=0.0)
        theirs = reference.generate(
            ids[:, :4],
            attention_mask=torch.ones_like(ids[:, :4]),
            max_new_tokens=12,
            do_sample=False,
            pad_token_id=0,
        )
        assert torch.equal(ours, theirs)


def test_from_hf_refuses_what_gpt_cannot_represent():
    from attnlab.interop import from_hf

    with pytest.raises(InputError, match="scale_attn_by_inverse_layer_idx"):
        from_hf(hf_gpt2(scale_attn_by_inverse_layer_idx=True))
    with pytest.raises(InputError, match="activation_function 'silu'"):
        from_hf(hf_gpt2(activation_function="silu"))


def test_state_dict_mapping_checks_every_tensor():
    transformers_or_skip()
    from attnlab.interop.hf_gpt2 import gpt2_state_dict_from_hf

    state = hf_gpt2().state_dict()
    mapped = gpt2_state_dict_from_hf(state, num_layers=3)
    assert set(mapped) == set(GPT(GPTConfig(97, 32, 3, 4, 64)).state_dict())
    torch.testing.assert_close(
        mapped["layers.1.self_attn.qkv_proj.weight"], state["transformer.h.1.attn.c_attn.weight"].T
    )
    del state["transformer.h.2.mlp.c_fc.bias"]
    with pytest.raises(InputError, match="no tensor 'transformer.h.2.mlp.c_fc.bias'"):
        gpt2_state_dict_from_hf(state, num_layers=3)


# -- the benchmark suite's cases run (no timing is asserted) -----------------------------------


def test_bench_training_throughput_case_runs_on_a_tiny_config():
    transformers_or_skip()
    from attnlab.bench.common import BenchOptions, BenchSkipped
    from attnlab.bench.gpt import gpt2_small_training, run

    tiny = GPTConfig(vocab_size=50, block_size=16, num_layers=1, num_heads=2, d_model=16)
    result = gpt2_small_training(BenchOptions(device="cpu", repeats=1), tiny, batch=(2, 16))
    assert result.case == "train GPT 1x16 2x16 (fp32)"
    assert result.attnlab > 0 and result.reference > 0 and result.extra["TFLOP/s"] > 0
    assert "MFU" not in result.extra  # a CPU has no known peak
    with pytest.raises(BenchSkipped, match="add --device cuda"):
        run(BenchOptions(device="cpu", size="gpt2-small"))
    with pytest.raises(ValueError, match="the gpt suite has sizes default, gpt2-small"):
        run(BenchOptions(size="huge"))


def test_input_ids_beyond_the_vocabulary_are_named_not_an_index_error():
    model = small_gpt()
    with pytest.raises(ValueError, match=r"input_ids must be ids in \[0, 37\) .*from 0 to 37"):
        model(torch.tensor([[0, 37]]))
    with pytest.raises(ValueError, match="input_ids must be integer token ids .*torch.float32"):
        model(torch.tensor([[0.0, 1.0]]))


def test_bench_training_case_compiles_forward_and_loss_in_one_graph(monkeypatch):
    """--compile compiles each side's forward pass and its loss together (dynamo's "eager"
    backend: the same graph capture as inductor, without compiling C++)."""
    transformers_or_skip()
    dynamo = pytest.importorskip("torch._dynamo")
    from attnlab.bench.common import BenchOptions
    from attnlab.bench.gpt import gpt2_small_training

    captured = []

    def counting_backend(graph, example_inputs):
        captured.append(graph)
        return graph.forward

    monkeypatch.setattr(
        torch, "compile", functools.partial(torch.compile, backend=counting_backend)
    )
    dynamo.reset()
    tiny = GPTConfig(vocab_size=50, block_size=16, num_layers=1, num_heads=2, d_model=16)
    options = BenchOptions(device="cpu", repeats=1, compile=True, precision="bf16")
    result = gpt2_small_training(options, tiny, batch=(2, 16))
    dynamo.reset()
    assert result.attnlab > 0 and result.reference > 0
    ops = [{str(n.target) for n in g.graph.nodes} for g in captured]
    with_loss = [targets for targets in ops if any("cross_entropy" in t for t in targets)]
    assert len(with_loss) == 2  # attnlab's graph and Hugging Face's each end in the loss
