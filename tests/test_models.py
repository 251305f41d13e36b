import pytest
import torch

from attnlab.models import (
    GPT,
    Bert,
    BertConfig,
    GPTConfig,
    GRUClassifier,
    GRUClassifierConfig,
    Llama,
    LlamaConfig,
    Seq2SeqConfig,
    Seq2SeqTransformer,
    SequenceClassifier,
    SequenceClassifierConfig,
    TokenPredictor,
    TokenPredictorConfig,
    ViTConfig,
)


def test_token_predictor_with_tokens_and_with_features():
    config = TokenPredictorConfig(num_classes=7, vocab_size=10, num_layers=2, dropout=0.0)
    model = TokenPredictor(config).eval()
    tokens = torch.randint(0, 10, (3, 12))
    logits = model(tokens)
    assert logits.shape == (3, 12, 7)
    maps = model.attention_maps(tokens)
    assert len(maps) == 2 and maps[0].shape == (3, 4, 12, 12)
    for weights in maps:  # distributions over every key, the later ones included: no causal mask
        torch.testing.assert_close(weights.sum(-1), torch.ones(3, 4, 12))
        assert (weights.triu(diagonal=1) > 0).any(dim=-1)[..., :-1].all()
    changed = tokens.clone()
    changed[:, -1] = (tokens[:, -1] + 1) % 10  # the last token only: the first position sees it
    assert not torch.allclose(model(changed)[:, 0], logits[:, 0])
    torch.testing.assert_close(model(tokens[:1]), logits[:1])  # each sequence on its own
    features = TokenPredictor(TokenPredictorConfig(num_classes=2, input_dim=5)).eval()
    x = torch.randn(3, 12, 5)
    assert features(x).shape == (3, 12, 2)
    # positions are added: without them the encoder is permutation-equivariant
    assert not torch.allclose(features(x.flip(1)).flip(1), features(x), atol=1e-4)
    with pytest.raises(ValueError, match="exactly one"):
        TokenPredictorConfig(num_classes=2, vocab_size=3, input_dim=4)


@pytest.mark.parametrize("window", [None, 1])
def test_sequence_classifier_ignores_padding(window):
    config = SequenceClassifierConfig(
        vocab_size=20, num_classes=3, pad_id=0, max_len=10, window=window
    )
    model = SequenceClassifier(config).eval()
    tokens = torch.tensor([[4, 5, 6]])
    padded = torch.tensor([[4, 5, 6, 0, 0, 0]])
    torch.testing.assert_close(model(padded), model(tokens), atol=1e-5, rtol=0)
    maps = model.attention_maps(padded)
    assert maps[0].shape == (1, 4, 7, 7)
    assert (maps[0][..., 4:] == 0).all()  # nobody attends to padding


def test_sequence_classifier_window_limits_what_a_token_sees():
    config = SequenceClassifierConfig(vocab_size=20, num_classes=3, num_layers=1, window=1)
    model = SequenceClassifier(config).eval()
    tokens = torch.tensor([[4, 5, 6, 7, 8, 9]])
    changed = torch.tensor([[4, 5, 6, 7, 8, 3]])  # the last token: position 6 after [CLS]
    hidden, changed_hidden = (model.encoder(*model._encode_input(t)) for t in (tokens, changed))
    # one layer, window 1: token positions 1..4 cannot see position 6; CLS (0) and 5..6 can
    torch.testing.assert_close(hidden[:, 1:5], changed_hidden[:, 1:5])
    for position in (0, 5, 6):
        assert not torch.allclose(hidden[:, position], changed_hidden[:, position])
    weights = model.attention_maps(tokens)[0][0, 0]  # (1 + T, 1 + T), head 0
    assert (weights[2, 4:] == 0).all() and (weights[2, 1:4] > 0).all() and weights[2, 0] > 0
    assert (weights[0] > 0).all()  # the CLS token attends to every token


def test_sequence_classifier_window_wider_than_the_input_is_full_attention():
    config = SequenceClassifierConfig(vocab_size=20, num_classes=3, max_len=8)
    full = SequenceClassifier(config).eval()
    windowed = SequenceClassifier(SequenceClassifierConfig(**{**vars(config), "window": 8}))
    windowed.load_state_dict(full.state_dict())
    tokens = torch.randint(1, 20, (3, 8))
    torch.testing.assert_close(windowed.eval()(tokens), full(tokens))


def test_sequence_classifier_depends_on_cls_token():
    model = SequenceClassifier(SequenceClassifierConfig(vocab_size=20, num_classes=3)).eval()
    tokens = torch.randint(1, 20, (2, 6))
    before = model(tokens)
    with torch.no_grad():
        model.cls_token.add_(1.0)
    assert not torch.allclose(before, model(tokens))


def test_sequence_classifier_rejects_too_long_input():
    model = SequenceClassifier(SequenceClassifierConfig(vocab_size=20, num_classes=3, max_len=4))
    with pytest.raises(ValueError, match="exceeds the maximum length 5"):
        model(torch.randint(1, 20, (1, 5)))


def seq2seq(**changes) -> Seq2SeqConfig:
    return Seq2SeqConfig(**{"src_vocab_size": 12, "tgt_vocab_size": 13, "d_model": 8, **changes})


def classifier(**changes) -> SequenceClassifierConfig:
    return SequenceClassifierConfig(**{"vocab_size": 10, "num_classes": 3, **changes})


def gpt(**changes) -> GPTConfig:
    return GPTConfig(**{"vocab_size": 11, "block_size": 8, "d_model": 8, "num_heads": 2, **changes})


# Each was accepted by the config, then failed (or not) while the model was being allocated.
BAD_CONFIGS = {
    "seq2seq d_model 0": (lambda: seq2seq(d_model=0), "d_model must be at least 1; got 0"),
    "seq2seq heads": (lambda: seq2seq(num_heads=3), "d_model must be divisible by num_heads"),
    "seq2seq dropout": (lambda: seq2seq(dropout=2.0), r"dropout must be in \[0, 1\); got 2.0"),
    "seq2seq max_len": (lambda: seq2seq(max_len=-1), "max_len must be at least 1; got -1"),
    "seq2seq layers": (
        lambda: seq2seq(num_decoder_layers=-1),
        "num_decoder_layers must be at least 1; got -1",
    ),
    "seq2seq pad_id": (  # was nn.Embedding's AssertionError
        lambda: seq2seq(pad_id=50),
        r"pad_id must be an id in \[0, tgt_vocab_size=13\); got 50",
    ),
    "seq2seq bos_id": (  # built, then every search ended in an IndexError
        lambda: seq2seq(bos_id=13),
        r"bos_id must be an id in \[0, tgt_vocab_size=13\); got 13",
    ),
    "seq2seq positional": (
        lambda: seq2seq(positional="rotary"),
        "positional must be 'sinusoidal' or 'learned'; got 'rotary'",
    ),
    "gpt dropout": (lambda: gpt(dropout=float("nan")), r"dropout must be in \[0, 1\); got nan"),
    "gpt d_ff 0": (lambda: gpt(d_ff=0), "d_ff must be at least 1; got 0"),  # was 4 * d_model
    "gpt activation": (lambda: gpt(activation="swish"), "activation must be one of"),
    "gpt a string": (lambda: gpt(vocab_size="11"), "vocab_size must be a whole number; got '11'"),
    "gpt a float": (lambda: gpt(d_model=8.5), "d_model must be a whole number; got 8.5"),
    "classifier heads": (lambda: classifier(num_heads=3), "divisible by num_heads"),
    "classifier classes": (lambda: classifier(num_classes=0), "num_classes must be at least 1"),
    "classifier pad_id": (  # padding was never masked
        lambda: classifier(pad_id=20),
        r"pad_id must be an id in \[0, vocab_size=10\); got 20",
    ),
    "classifier window": (lambda: classifier(window=-1), "window must be None or a whole"),
    "predictor input_dim": (
        lambda: TokenPredictorConfig(num_classes=2, input_dim=0),
        "input_dim must be at least 1; got 0",
    ),
    "vit channels": (lambda: ViTConfig(in_channels=0), "in_channels must be at least 1; got 0"),
    "vit heads": (lambda: ViTConfig(num_heads=3), "divisible by num_heads"),
    "bert heads 0": (  # was a ZeroDivisionError
        lambda: BertConfig(num_attention_heads=0),
        "num_attention_heads must be at least 1; got 0",
    ),
    "gru pad_id": (  # was nn.Embedding's bare AssertionError
        lambda: GRUClassifierConfig(vocab_size=10, num_classes=2, pad_id=10),
        r"pad_id must be an id in \[0, vocab_size=10\); got 10",
    ),
    "gru vocab": (  # was an IndexError while zeroing the padding row
        lambda: GRUClassifierConfig(vocab_size=0, num_classes=2),
        "vocab_size must be at least 1; got 0",
    ),
    "gru classes": (  # was built, with a head of no outputs
        lambda: GRUClassifierConfig(vocab_size=10, num_classes=0),
        "num_classes must be at least 1; got 0",
    ),
    "llama init nan": (  # was torch's "normal expects std >= 0.0" once allocated
        lambda: LlamaConfig(initializer_range=float("nan")),
        "initializer_range must be a finite number >= 0; got nan",
    ),
    "predictor max_len": (  # was accepted, then refused by the model's position table
        lambda: TokenPredictorConfig(num_classes=2, vocab_size=5, max_len=10**12),
        "max_len must be at most 1,048,576 positions; got",
    ),
    "classifier window True": (  # was a window of 1
        lambda: classifier(window=True),
        "window must be None or a whole number >= 0; got True",
    ),
    "gru dropout": (
        lambda: GRUClassifierConfig(vocab_size=10, num_classes=2, dropout=float("nan")),
        r"dropout must be in \[0, 1\); got nan",
    ),
    "gru bidirectional": (
        lambda: GRUClassifierConfig(vocab_size=10, num_classes=2, bidirectional=1),
        "bidirectional must be true or false; got 1",
    ),
    "llama tie_word_embeddings": (  # "no" was true: the output tied to the embedding
        lambda: LlamaConfig(tie_word_embeddings="no"),
        "tie_word_embeddings must be true or false; got 'no'",
    ),
    "seq2seq tie_output": (
        lambda: Seq2SeqConfig(src_vocab_size=9, tgt_vocab_size=9, tie_output="false"),
        "tie_output must be true or false; got 'false'",
    ),
    "seq2seq eos_id": (  # 2.5 was accepted: a search that never stops early
        lambda: Seq2SeqConfig(src_vocab_size=9, tgt_vocab_size=9, eos_id=2.5),
        "eos_id must be a whole number >= 0; got 2.5",
    ),
    "seq2seq share_embeddings": (
        lambda: Seq2SeqConfig(src_vocab_size=9, tgt_vocab_size=9, share_embeddings=0),
        "share_embeddings must be true or false; got 0",
    ),
}


@pytest.mark.parametrize("make, message", BAD_CONFIGS.values(), ids=BAD_CONFIGS.keys())
def test_a_model_config_refuses_a_bad_field_when_it_is_made(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_an_eos_id_outside_the_vocabulary_is_allowed():
    # only compared with the output: a search that never stops early (attnlab bench decode)
    assert seq2seq(eos_id=13).eos_id == 13


def test_a_mistyped_context_length_is_refused_by_the_config():
    # GPT(block_size=10**10) tried to allocate 320 GB for its position table
    with pytest.raises(ValueError, match="block_size must be at most 1,048,576 positions; got"):
        gpt(block_size=10**10)
    with pytest.raises(ValueError, match="max_len must be at most 1,048,576 positions; got"):
        seq2seq(max_len=10**12)


@pytest.mark.parametrize(
    "features",
    [torch.randn(2, 4, 5), torch.ones(2, 4, dtype=torch.long), torch.ones(2, 4, 3).long()],
)
def test_features_a_feature_model_cannot_project_are_named(features):
    # matmul shape and dtype errors before (token ids given to a feature model among them)
    model = TokenPredictor(TokenPredictorConfig(num_classes=2, input_dim=3, d_model=8, num_heads=2))
    with pytest.raises(
        ValueError, match=r"features must be a float tensor of shape \(B, T, input_dim=3\)"
    ):
        model(features)


def test_float64_features_are_named_with_the_conversion():
    # "mat1 and mat2 must have the same dtype, but got Double and Float" before (NumPy's default)
    model = TokenPredictor(TokenPredictorConfig(num_classes=2, input_dim=3, d_model=8, num_heads=2))
    with pytest.raises(ValueError, match=r"features must have the dtype .*; got torch.float64"):
        model(torch.randn(2, 4, 3, dtype=torch.float64))
    assert model.double()(torch.randn(2, 4, 3, dtype=torch.float64)).shape == (2, 4, 2)


def test_sequence_classifier_names_tokens_of_the_wrong_rank():
    model = SequenceClassifier(classifier(d_model=8, num_heads=2))
    with pytest.raises(ValueError, match=r"tokens must have shape \(B, T\); got \(1, 2, 3\)"):
        model(torch.ones(1, 2, 3, dtype=torch.long))  # "too many values to unpack" before


TOKEN_MODELS = {
    "gpt": lambda: GPT(gpt()),
    "bert": lambda: Bert(BertConfig(vocab_size=20, hidden_size=8, num_attention_heads=2)),
    "llama": lambda: Llama(
        LlamaConfig(vocab_size=20, hidden_size=8, num_attention_heads=2, num_hidden_layers=1)
    ),
    "classifier": lambda: SequenceClassifier(classifier(d_model=8, num_heads=2)),
    "gru": lambda: gru(),
    "seq2seq encoder": lambda: Seq2SeqTransformer(seq2seq(num_heads=2)).encode,
}


@pytest.mark.parametrize("make", TOKEN_MODELS.values(), ids=TOKEN_MODELS.keys())
def test_token_ids_given_as_a_list_are_named_not_an_attribute_error(make):
    # AttributeError "'list' object has no attribute 'dim'" before
    with pytest.raises(TypeError, match=r"(input_ids|tokens) must be a tensor of token ids"):
        make()([[1, 2, 3]])


def test_a_token_predictor_names_input_that_is_not_a_tensor():
    # AttributeError "'list' object has no attribute 'dim'" before
    model = TokenPredictor(TokenPredictorConfig(num_classes=2, input_dim=3, d_model=8, num_heads=2))
    with pytest.raises(TypeError, match="x must be a tensor of token ids or features; got list"):
        model([[[0.0, 1.0, 2.0]]])


def test_seq2seq_decode_names_an_empty_cache_list():
    # IndexError "list index out of range" (cache[0]) before; make_cache() gives one per layer
    model = Seq2SeqTransformer(seq2seq(num_heads=2, num_decoder_layers=2)).eval()
    src = torch.tensor([[3, 4, 5]])
    memory, src_mask = model.encode(src)
    tgt_in = torch.tensor([[1]])
    with pytest.raises(ValueError, match="cache has 0 layers; the decoder has 2"):
        model.decode(tgt_in, memory, src_mask, cache=[])
    cached = model.decode(tgt_in, memory, src_mask, cache=model.make_cache())
    torch.testing.assert_close(cached, model.decode(tgt_in, memory, src_mask))


def decode_step(kind: str):
    """``(step(cache), make_cache)`` of a tiny 2-layer model of ``kind``: one decoding step."""
    ids = torch.tensor([[1, 2]])
    if kind == "seq2seq":
        model = Seq2SeqTransformer(seq2seq(num_heads=2, num_decoder_layers=2)).eval()
        memory, src_mask = model.encode(torch.tensor([[3, 4, 5]]))
        return lambda cache: model.decode(ids, memory, src_mask, cache=cache), model.make_cache
    config = (
        gpt(num_layers=2)
        if kind == "gpt"
        else LlamaConfig(vocab_size=20, hidden_size=8, num_attention_heads=2, num_hidden_layers=2)
    )
    model = (GPT if kind == "gpt" else Llama)(config).eval()
    return lambda cache: model(ids, cache=cache), model.make_cache


@pytest.mark.parametrize("kind", ["gpt", "llama", "seq2seq"])
@pytest.mark.parametrize(
    "cache, got",
    [
        ([None, None], "a list of NoneType"),  # was "object of type 'NoneType' has no len()"
        ([1, 2], "a list of int"),
        ("ab", "str"),  # Seq2Seq: "'str' object has no attribute 'self_attn'"
        ({}, "dict"),
    ],
)
def test_decoding_names_a_cache_that_is_not_a_list_of_caches(kind, cache, got):
    step, make_cache = decode_step(kind)
    with pytest.raises(
        TypeError, match=f"cache must be a list of .*Cache.*, one per layer .*; got {got}$"
    ):
        step(cache)
    assert step(make_cache()).shape[:2] == (1, 2)  # make_cache()'s list still decodes


@pytest.mark.parametrize("kind", ["gpt", "llama"])
def test_decoding_names_a_lone_cache_and_a_mix_of_kinds(kind):
    step, make_cache = decode_step(kind)
    growing = make_cache()
    with pytest.raises(TypeError, match="; got KVCache$"):  # was read as a list of 0 layers
        step(growing[0])
    with pytest.raises(TypeError, match="; got a list of KVCache and StaticKVCache$"):
        step([growing[0], make_cache(1)[1]])  # attended with the first one's mask
    with pytest.raises(ValueError, match="cache has 1 layers; the model has 2"):
        step(growing[:1])


def test_seq2seq_project_names_a_hidden_state_of_the_wrong_width_or_type():
    model = Seq2SeqTransformer(seq2seq(num_heads=2)).eval()
    # torch's "mat1 and mat2 shapes cannot be multiplied (2x4 and 8x13)" before
    message = r"hidden must have shape \(B, T, d_model\) with d_model = 8; got \(1, 2, 4\)"
    with pytest.raises(ValueError, match=message):
        model.project(torch.zeros(1, 2, 4))
    with pytest.raises(TypeError, match="hidden must be a tensor"):  # torch's linear() before
        model.project([[0.0] * 8])
    assert model.project(torch.zeros(1, 2, 8)).shape == (1, 2, 13)


def test_shift_right_puts_bos_first_and_drops_the_last_token():
    model = Seq2SeqTransformer(seq2seq(num_heads=2, bos_id=1))
    tgt = torch.tensor([[5, 6, 2], [7, 2, 0]])
    assert model.shift_right(tgt).tolist() == [[1, 5, 6], [1, 7, 2]]  # by hand


@pytest.mark.parametrize(
    "tgt, error, message",
    [
        (torch.tensor([5, 6, 2]), ValueError, r"tgt must have shape \(B, T\); got \(3,\)"),
        (torch.ones(1, 2, 3, dtype=torch.long), ValueError, r"\(B, T\); got \(1, 2, 3\)"),
        ([[5, 6, 2]], TypeError, r"tgt must be a tensor of token ids \(B, T\); got list"),
        (torch.tensor([[5.0, 6.0]]), ValueError, "tgt must be integer token ids .*float32"),
    ],
)
def test_shift_right_names_a_target_that_is_not_a_batch_of_ids(tgt, error, message):
    # IndexError "too many indices for tensor of dimension 1" for one sentence before, and
    # AttributeError for a list; a float target came back as floats with bos_id in front
    model = Seq2SeqTransformer(seq2seq(num_heads=2))
    with pytest.raises(error, match=message):
        model.shift_right(tgt)


def gru() -> GRUClassifier:
    return GRUClassifier(GRUClassifierConfig(vocab_size=10, num_classes=3, d_embed=4, hidden=4))


@pytest.mark.parametrize(
    "tokens, message",
    [
        (torch.tensor([[3, 10]]), r"tokens must be ids in \[0, 10\) .*got ids from 3 to 10"),
        (torch.tensor([[3.0, 4.0]]), "tokens must be integer token ids .*torch.float32"),
        (torch.tensor([3, 4]), r"tokens must have shape \(B, T\); got \(2,\)"),
    ],
)
def test_gru_classifier_names_tokens_it_cannot_read(tokens, message):
    # IndexError "index out of range in self", torch's dtype RuntimeError and "Dimension out
    # of range" before
    with pytest.raises(ValueError, match=message):
        gru()(tokens)


def test_gru_classifier_takes_an_empty_batch_and_rows_without_positions():
    # "Cannot pack empty tensors" before, for both
    model = gru().eval()
    assert model(torch.zeros(0, 5, dtype=torch.long)).shape == (0, 3)
    no_positions = model(torch.zeros(2, 0, dtype=torch.long))  # (2, 3)
    assert torch.equal(no_positions, model(torch.zeros(2, 4, dtype=torch.long)))  # padding only


# Each was accepted by the config: the model then tried to allocate terabytes (the machine's
# allocator refused, or the OOM killer came), or to build a billion layers for hours.
HUGE_CONFIGS = {
    "gpt d_model": (lambda: gpt(d_model=2**40, num_heads=1), "d_model must be at most 65,536"),
    "gpt d_ff": (lambda: gpt(d_ff=2**40), "d_ff must be at most 262,144"),
    "gpt layers": (lambda: gpt(num_layers=10**9), "num_layers must be at most 10,000"),
    "gpt vocab": (lambda: gpt(vocab_size=2**40), "vocab_size must be at most 16,777,216"),
    "llama width": (
        lambda: LlamaConfig(hidden_size=2**40, num_attention_heads=1),
        "hidden_size must be at most 65,536",
    ),
    "seq2seq layers": (
        lambda: seq2seq(num_encoder_layers=10**9),
        "num_encoder_layers must be at most 10,000",
    ),
    "bert vocab": (lambda: BertConfig(vocab_size=10**12), "vocab_size must be at most"),
    "vit patch": (
        lambda: ViTConfig(image_size=2**21, patch_size=2**21),
        r"patch_size\*\*2 \* in_channels \(the values of a patch\) must be at most 262,144",
    ),
    "vit patches": (
        lambda: ViTConfig(image_size=2**21, patch_size=1),
        r"\(image_size / patch_size\)\*\*2 \+ 1 must be at most 1,048,576 positions",
    ),
    "predictor features": (
        lambda: TokenPredictorConfig(num_classes=2, input_dim=2**40),
        "input_dim must be at most 65,536",
    ),
    "gru hidden": (
        lambda: GRUClassifierConfig(vocab_size=10, num_classes=2, hidden=2**40),
        "hidden must be at most 65,536",
    ),
}


@pytest.mark.parametrize("make, message", HUGE_CONFIGS.values(), ids=HUGE_CONFIGS.keys())
def test_a_config_too_large_for_any_machine_is_refused_before_allocating(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_the_models_bound_on_layers_is_the_loaders():
    from attnlab.models.common import MAX_LAYERS
    from attnlab.options import MAX_LAYERS as LOADERS_MAX_LAYERS

    assert MAX_LAYERS == LOADERS_MAX_LAYERS
