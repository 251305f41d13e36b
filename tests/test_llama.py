"""attnlab's Llama: equal to Hugging Face's LlamaForCausalLM (logits with and without the
cache, padded batches, greedy generation), its config checks and the weight mapping."""

import dataclasses

import pytest
import torch

from attnlab.errors import InputError
from attnlab.generation import generate
from attnlab.interop import from_hf
from attnlab.interop.hf_llama import llama_config_from_hf, load_hf_state_dict
from attnlab.models import MODELS, Llama, LlamaConfig
from attnlab.nn import RMSNorm

from .hugging_face import transformers_or_skip

transformers = transformers_or_skip(module_level=True)

TINY = dict(
    vocab_size=100,
    hidden_size=64,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    intermediate_size=128,
    max_position_embeddings=64,
    initializer_range=0.1,  # logits of a few units, so greedy choices are clear-cut
    bos_token_id=None,  # no special tokens in this vocabulary
    eos_token_id=None,
    pad_token_id=None,
)


def hf_llama(**overrides):
    """A tiny random ``LlamaForCausalLM`` (float32, eval mode) with non-trivial norm gains."""
    model = transformers.LlamaForCausalLM(transformers.LlamaConfig(**{**TINY, **overrides}))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.add_(0.2 * torch.randn_like(p))
    return model.eval()


@pytest.fixture(scope="module")
def pair():
    torch.manual_seed(0)
    reference = hf_llama()
    return reference, from_hf(reference)


def test_from_hf_builds_the_llama_blocks(pair):
    reference, model = pair
    assert isinstance(model, Llama) and not model.training
    spec = model.config.block_spec()
    assert (spec.kv_heads, spec.positions, spec.norm, spec.activation, spec.bias) == (
        2,
        "rotary",
        "rmsnorm",
        "swiglu",
        False,
    )
    assert model.config.block_size == 64
    assert isinstance(model.layers[0].norm1, RMSNorm) and model.lm_head is not None
    assert model.layers[0].self_attn.qkv_proj.weight.shape == ((4 + 2 * 2) * 16, 64)
    n_params = sum(p.numel() for p in model.parameters())
    assert n_params == sum(p.numel() for p in reference.parameters())


@pytest.mark.parametrize("length", [1, 7, 64])
def test_logits_equal_hugging_face_without_the_cache(pair, length):
    reference, model = pair
    ids = torch.randint(0, 100, (2, length))
    with torch.no_grad():
        torch.testing.assert_close(model(ids), reference(ids).logits, atol=1e-5, rtol=0)


@pytest.mark.parametrize("prompt_length", [1, 5, 30])
def test_logits_equal_hugging_face_with_the_cache(pair, prompt_length):
    reference, model = pair
    ids = torch.randint(0, 100, (2, prompt_length))
    steps = 12
    with torch.no_grad():
        theirs = reference.generate(
            ids,
            attention_mask=torch.ones_like(ids),
            max_new_tokens=steps,
            do_sample=False,
            output_logits=True,
            return_dict_in_generate=True,
        )
        sequence = theirs.sequences  # (B, prompt_length + steps)
        cache = model.make_cache()
        ours = [model(ids, cache=cache)[:, -1]]  # the prompt, then one token at a time
        for t in range(prompt_length, prompt_length + steps - 1):
            ours.append(model(sequence[:, t : t + 1], cache=cache)[:, -1])
        ours = torch.stack(ours, dim=1)  # (B, steps, vocab)
        # against Hugging Face's own cached steps, and against one uncached forward
        torch.testing.assert_close(ours, torch.stack(theirs.logits, dim=1), atol=1e-5, rtol=0)
        uncached = reference(sequence[:, :-1]).logits[:, prompt_length - 1 :]
        torch.testing.assert_close(ours, uncached, atol=1e-5, rtol=0)
    assert len(cache[0]) == sequence.size(1) - 1
    assert cache[0].k.shape[1] == 2  # the cache holds the two key/value heads only


def test_greedy_generation_equals_hugging_face(pair):
    reference, model = pair
    for prompt in (torch.randint(0, 100, (1, 3)), torch.randint(0, 100, (3, 9))):
        with torch.no_grad():
            theirs = reference.generate(
                prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=20, do_sample=False
            )
        assert torch.equal(generate(model, prompt, 20, temperature=0.0), theirs)
        assert torch.equal(generate(model, prompt, 20, temperature=0.0, use_cache=False), theirs)


def padded(rows: list[torch.Tensor], left: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows of different lengths padded with token 0 on the left or right, and the mask
    (1 = real token)."""
    T = max(len(row) for row in rows)
    ids = torch.zeros(len(rows), T, dtype=torch.long)
    mask = torch.zeros(len(rows), T, dtype=torch.long)
    for i, row in enumerate(rows):
        span = slice(T - len(row), T) if left else slice(0, len(row))
        ids[i, span], mask[i, span] = row, 1
    return ids, mask


def test_a_right_padded_batch_equals_hugging_face_and_each_row_alone(pair):
    reference, model = pair
    rows = [torch.randint(0, 100, (n,)) for n in (9, 4, 6)]
    ids, mask = padded(rows, left=False)
    with torch.no_grad():
        ours = model(ids, attention_mask=mask)
        theirs = reference(ids, attention_mask=mask).logits
        for i, row in enumerate(rows):
            n = len(row)
            torch.testing.assert_close(ours[i, :n], theirs[i, :n], atol=1e-5, rtol=0)
            torch.testing.assert_close(ours[i, :n], model(row[None])[0], atol=1e-5, rtol=0)


def test_a_left_padded_batch_decodes_like_hugging_face_generate(pair):
    # Hugging Face's generate numbers each row's real tokens from 0 (positions from the
    # attention mask); attnlab's Llama does the same from its attention_mask.
    reference, model = pair
    rows = [torch.randint(0, 100, (n,)) for n in (3, 8, 5)]
    ids, mask = padded(rows, left=True)
    with torch.no_grad():
        theirs = reference.generate(
            ids,
            attention_mask=mask,
            max_new_tokens=10,
            do_sample=False,
            output_logits=True,
            return_dict_in_generate=True,
            pad_token_id=0,
        )
        sequence = theirs.sequences  # (B, 8 + 10)
        cache = model.make_cache()
        full_mask = torch.cat([mask, torch.ones(3, 10, dtype=torch.long)], dim=1)
        ours = [model(ids, cache=cache, attention_mask=mask)[:, -1]]
        for t in range(8, 17):
            step = model(sequence[:, t : t + 1], cache=cache, attention_mask=full_mask[:, : t + 1])
            ours.append(step[:, -1])
        ours = torch.stack(ours, dim=1)  # (B, 10, vocab)
        torch.testing.assert_close(ours, torch.stack(theirs.logits, dim=1), atol=1e-5, rtol=0)
        assert torch.equal(ours.argmax(-1), sequence[:, 8:])
        # each row as if it had no padding
        for i, row in enumerate(rows):
            alone = model(torch.cat([row, sequence[i, 8:-1]])[None])[0, len(row) - 1 :]
            torch.testing.assert_close(ours[i], alone, atol=1e-5, rtol=0)


def test_tied_embeddings_and_attention_maps():
    torch.manual_seed(1)
    reference = hf_llama(tie_word_embeddings=True, num_key_value_heads=1)
    model = from_hf(reference)
    assert model.lm_head is None and model.lm_head_weight is model.token_embedding.weight
    ids = torch.randint(0, 100, (2, 10))
    with torch.no_grad():
        logits, maps = model(ids, return_attention=True)
        torch.testing.assert_close(logits, reference(ids).logits, atol=1e-5, rtol=0)
    assert len(maps) == 2 and maps[0].shape == (2, 4, 10, 10)
    future = torch.ones(10, 10, dtype=torch.bool).triu(1)
    assert all((weights[..., future] == 0).all() for weights in maps)


# -- config, registry and checks ---------------------------------------------------------------


def test_config_defaults_are_hugging_faces_and_round_trip():
    # Hugging Face fills in num_key_value_heads = num_attention_heads; attnlab leaves None.
    hf_defaults = transformers.LlamaConfig().to_dict()
    expected = dataclasses.replace(LlamaConfig(), num_key_value_heads=32)
    assert llama_config_from_hf(hf_defaults) == expected
    assert MODELS["Llama"] is Llama and Llama.config_class is LlamaConfig
    small = LlamaConfig(**{k: TINY[k] for k in TINY if not k.endswith("token_id")})
    assert LlamaConfig(**dataclasses.asdict(small)) == small  # what a run's config.json holds


def test_num_heads_not_divisible_by_key_value_heads_is_one_sentence():
    with pytest.raises(ValueError) as error:
        LlamaConfig(hidden_size=64, num_attention_heads=4, num_key_value_heads=3)
    assert str(error.value) == (
        "num_attention_heads must be divisible by num_key_value_heads; got 4 and 3"
    )
    config = {**TINY, "num_key_value_heads": 3, "model_type": "llama"}
    with pytest.raises(InputError, match=r"^the Llama config cannot be used: num_attention_heads"):
        llama_config_from_hf(config)


def test_positions_beyond_the_context_are_refused(pair):
    _, model = pair
    with pytest.raises(ValueError, match="context window of 64 tokens"):
        model(torch.zeros(1, 65, dtype=torch.long))
    cache = model.make_cache()
    model(torch.zeros(1, 60, dtype=torch.long), cache=cache)
    with pytest.raises(ValueError, match="positions 60..64"):
        model(torch.zeros(1, 5, dtype=torch.long), cache=cache)
    with pytest.raises(ValueError, match=r"attention_mask must have shape .* = \(1, 61\)"):
        one = torch.ones(1, 1, dtype=torch.long)
        model(torch.zeros(1, 1, dtype=torch.long), cache=cache, attention_mask=one)


@pytest.mark.parametrize(
    "option, message",
    [
        ({"rope_scaling": {"rope_type": "linear", "factor": 2.0}}, "rope type 'linear'"),
        ({"rope_parameters": {"rope_type": "llama3", "rope_theta": 5e5}}, "rope type 'llama3'"),
        ({"attention_bias": True}, "attention_bias=True is not supported"),
        ({"mlp_bias": True}, "mlp_bias=True is not supported"),
        ({"hidden_act": "gelu"}, "hidden_act='gelu' is not supported"),
        ({"head_dim": 32}, "head_dim=32 is not supported"),
        ({"model_type": "mistral"}, "model_type 'mistral' is not a Llama config"),
    ],
)
def test_unsupported_hugging_face_options_are_one_sentence(option, message):
    with pytest.raises(InputError, match=message) as error:
        llama_config_from_hf({**TINY, "model_type": "llama", **option})
    assert "\n" not in str(error.value)


def test_old_config_files_give_the_rotary_base():
    # transformers 4 wrote rope_theta and rope_scaling at the top level
    config = llama_config_from_hf({**TINY, "rope_theta": 5e5, "rope_scaling": None})
    assert config.rope_theta == 5e5


def test_the_weight_mapping_checks_every_tensor(pair):
    reference, model = pair
    state = reference.state_dict()
    load_hf_state_dict(Llama(model.config), state)  # complete: loads
    missing = {k: v for k, v in state.items() if k != "model.layers.1.mlp.up_proj.weight"}
    with pytest.raises(InputError, match="no tensor 'model.layers.1.mlp.up_proj.weight'"):
        load_hf_state_dict(Llama(model.config), missing)
    extra = {**state, "model.layers.2.mlp.up_proj.weight": torch.zeros(1)}
    with pytest.raises(InputError, match="unexpected tensor 'model.layers.2.mlp.up_proj.weight'"):
        load_hf_state_dict(Llama(model.config), extra)
    wrong = {**state, "model.norm.weight": torch.ones(32)}
    with pytest.raises(InputError, match=r"'norm.weight' has shape \(32,\) but the config needs"):
        load_hf_state_dict(Llama(model.config), wrong)


@pytest.mark.parametrize("key", ["mlp.up_proj.weight", "self_attn.k_proj.weight"])
def test_tensors_fused_into_one_matrix_must_have_its_width(pair, key):
    reference, model = pair
    state = reference.state_dict()
    name = f"model.layers.0.{key}"
    narrow = {**state, name: state[name][:, :-1]}  # one column short
    with pytest.raises(InputError, match="cannot be stacked into one matrix") as error:
        load_hf_state_dict(Llama(model.config), narrow)
    assert name in str(error.value) and "\n" not in str(error.value)


def test_a_float_attention_mask_is_refused_not_read_backwards():
    # an additive mask (0 = attend, -inf = padding) was read with .bool(): padding attended
    model = Llama(
        LlamaConfig(
            vocab_size=20,
            hidden_size=8,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=16,
        )
    ).eval()
    additive = torch.tensor([[float("-inf"), 0.0, 0.0]])
    with pytest.raises(ValueError, match="attention_mask must be bool or integer .*float32"):
        model(torch.ones(1, 3, dtype=torch.long), attention_mask=additive)
    as_int = model(torch.ones(1, 3, dtype=torch.long), attention_mask=torch.tensor([[0, 1, 1]]))
    as_bool = model(
        torch.ones(1, 3, dtype=torch.long), attention_mask=torch.tensor([[0, 1, 1]]).bool()
    )
    torch.testing.assert_close(as_int, as_bool)
    with pytest.raises(TypeError, match="attention_mask must be a tensor .*got list"):
        model(torch.ones(1, 3, dtype=torch.long), attention_mask=[[0, 1, 1]])


def test_input_ids_beyond_the_vocabulary_are_named_not_an_index_error():
    small = {k: v for k, v in TINY.items() if not k.endswith("token_id")}
    model = Llama(LlamaConfig(**small)).eval()
    with pytest.raises(ValueError, match=r"input_ids must be ids in \[0, 100\) .*from -1 to 3"):
        model(torch.tensor([[3, -1]]))
