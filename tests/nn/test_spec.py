"""BlockSpec: validated, handed whole to every layer, and equal to the keyword constructors."""

import dataclasses

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from attnlab.interop import from_torch, torch_attn_mask, torch_key_padding_mask
from attnlab.models import Bert, BertConfig
from attnlab.nn import (
    BlockSpec,
    DecoderLayer,
    EncoderLayer,
    FeedForward,
    MultiHeadAttention,
    Transformer,
    TransformerEncoder,
    causal_mask,
    padding_mask,
)
from attnlab.nn.spec import ACTIVATIONS

SPEC = BlockSpec(
    d_model=16,
    num_heads=4,
    d_ff=24,
    dropout=0.1,
    attention_dropout=0.3,
    ffn_dropout=0.0,
    activation="gelu",
    norm_first=True,
    layer_norm_eps=1e-6,
    bias=False,
)


def test_defaults_are_the_papers_base_model():
    # Table 3 "base": d_model 512, h 8, d_ff 2048, P_drop 0.1; post-LN and ReLU (3.1, 3.3).
    spec = BlockSpec()
    assert (spec.d_model, spec.num_heads, spec.d_ff, spec.d_head) == (512, 8, 2048, 64)
    assert (spec.dropout, spec.attention_dropout_rate, spec.ffn_dropout_rate) == (0.1,) * 3
    assert (spec.activation, spec.norm_first, spec.layer_norm_eps, spec.bias) == (
        "relu",
        False,
        1e-5,
        True,
    )
    # The paper's multi-head attention, absolute positions, LayerNorm.
    assert (spec.num_kv_heads, spec.kv_heads, spec.positions, spec.norm) == (
        None,
        8,
        "absolute",
        "layernorm",
    )
    assert all(f.metadata["help"] for f in dataclasses.fields(BlockSpec))
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.d_model = 256


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"d_model": 10, "num_heads": 3}, r"divisible by num_heads; got d_model=10, num_heads=3"),
        ({"d_model": 0}, r"d_model must be at least 1; got 0"),
        ({"num_heads": -2}, r"num_heads must be at least 1; got -2"),
        ({"d_ff": 0}, r"d_ff must be at least 1; got 0"),
        ({"d_model": 64.0}, r"d_model must be a whole number; got 64\.0"),
        ({"dropout": 1.0}, r"dropout must be in \[0, 1\); got 1\.0"),
        ({"dropout": -0.1}, r"dropout must be in \[0, 1\); got -0\.1"),
        ({"attention_dropout": 1.5}, r"attention_dropout must be in \[0, 1\); got 1\.5"),
        ({"ffn_dropout": "0.1"}, r"ffn_dropout must be a number; got '0\.1'"),
        (
            {"activation": "tanh"},
            r"activation must be one of relu, gelu, gelu_tanh, swiglu; got 'tanh'",
        ),
        ({"norm_first": 1}, r"norm_first must be true or false; got 1"),
        ({"bias": "yes"}, r"bias must be true or false; got 'yes'"),
        ({"layer_norm_eps": 0.0}, r"layer_norm_eps must be positive; got 0\.0"),
        ({"norm": "batchnorm"}, r"norm must be one of layernorm, rmsnorm; got 'batchnorm'"),
        ({"num_kv_heads": 0}, r"num_kv_heads must be at least 1; got 0"),
        ({"num_kv_heads": 2.0}, r"num_kv_heads must be a whole number; got 2\.0"),
        (
            {"num_heads": 8, "num_kv_heads": 3},
            r"^num_heads must be divisible by num_kv_heads; got num_heads=8, num_kv_heads=3$",
        ),
        ({"num_heads": 4, "num_kv_heads": 8}, r"divisible by num_kv_heads; got num_heads=4"),
        ({"positions": "relative"}, r"positions must be one of absolute, rotary; got"),
        (
            {"d_model": 24, "num_heads": 8, "positions": "rotary"},
            r"rotary positions .* d_head = d_model / num_heads must be even; got d_head=3",
        ),
        ({"rope_theta": 0.5}, r"rope_theta must be at least 1; got 0\.5"),
        ({"rope_theta": float("inf")}, r"rope_theta must be a finite number; got inf"),
        ({"layer_norm_eps": float("inf")}, r"layer_norm_eps must be a finite number; got inf"),
        ({"layer_norm_eps": float("nan")}, r"layer_norm_eps must be a finite number; got nan"),
    ],
)
def test_an_invalid_spec_is_a_value_error_naming_the_field(fields, message):
    with pytest.raises(ValueError, match=message):
        BlockSpec(**fields)


def test_the_spec_reaches_every_layer_of_a_transformer():
    model = Transformer(num_encoder_layers=2, num_decoder_layers=3, spec=SPEC)
    attentions = [m for m in model.modules() if isinstance(m, MultiHeadAttention)]
    feed_forwards = [m for m in model.modules() if isinstance(m, FeedForward)]
    layers = [m for m in model.modules() if isinstance(m, (EncoderLayer, DecoderLayer))]
    norms = [m for m in model.modules() if isinstance(m, nn.LayerNorm)]
    assert (len(attentions), len(feed_forwards), len(layers)) == (2 + 2 * 3, 5, 5)
    for attention in attentions:
        assert (attention.num_heads, attention.d_head, attention.dropout) == (4, 4, 0.3)
        assert attention.qkv_proj.bias is None and attention.out_proj.bias is None
    for ff in feed_forwards:
        assert (ff.linear1.out_features, ff.dropout.p, ff.activation_name) == (24, 0.0, "gelu")
        assert ff.linear1.bias is None
    for layer in layers:
        assert layer.norm_first
        residual_dropouts = [m for name, m in layer.named_children() if name.startswith("drop")]
        assert [d.p for d in residual_dropouts] == [0.1] * len(residual_dropouts)
    # 2 per encoder layer, 3 per decoder layer, a final one per pre-LN stack
    assert len(norms) == 2 * 2 + 3 * 3 + 2
    assert all(norm.eps == 1e-6 and norm.bias is None for norm in norms)


def test_bert_dropouts_come_from_its_config_through_the_spec():
    config = BertConfig(
        vocab_size=50,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        hidden_dropout_prob=0.1,
        attention_probs_dropout_prob=0.3,
    )
    model = Bert(config)
    layers = list(model.encoder.layers)
    assert len(layers) == 2
    for layer in layers:
        assert layer.self_attn.dropout == 0.3
        assert layer.feed_forward.dropout.p == 0.0
        assert layer.dropout1.p == layer.dropout2.p == 0.1
        assert layer.norm1.eps == layer.norm2.eps == 1e-12


def test_each_dropout_rate_acts_where_the_spec_puts_it():
    # Only the attention weights are dropped: the feed-forward network stays deterministic in
    # train mode while the attention is not, and the attention weights contain zeros.
    spec = BlockSpec(d_model=16, num_heads=4, d_ff=32, dropout=0.0, attention_dropout=0.5)
    layer = EncoderLayer(spec=spec).train()
    x = torch.randn(2, 9, 16)
    torch.testing.assert_close(layer.feed_forward(x), layer.feed_forward(x))
    assert not torch.equal(layer.self_attn(x), layer.self_attn(x))
    _, weights = layer(x, need_weights=True)
    assert (weights == 0).any()


@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("grad", [True, False])
def test_every_activation_the_spec_allows_is_implemented(activation, grad):
    # Section 3.3, FFN(x) = act(x W1 + b1) W2 + b2, with torch's own activation functions;
    # SwiGLU (Shazeer 2020) gates x W3 with SiLU(x W1).
    hidden = {
        "relu": lambda ff, x: F.relu(ff.linear1(x)),
        "gelu": lambda ff, x: F.gelu(ff.linear1(x)),
        "gelu_tanh": lambda ff, x: F.gelu(ff.linear1(x), approximate="tanh"),
        "swiglu": lambda ff, x: (  # linear1 holds W1 over W3, and b1 over b3
            F.silu(F.linear(x, ff.linear1.weight[:16], ff.linear1.bias[:16]))
            * F.linear(x, ff.linear1.weight[16:], ff.linear1.bias[16:])
        ),
    }[activation]
    ff = FeedForward(spec=BlockSpec(d_model=8, num_heads=2, d_ff=16, activation=activation))
    ff.eval()
    with torch.no_grad():  # biases of zero (their initial value) would hide a misused one
        for p in ff.parameters():
            p.normal_()
    x = torch.randn(3, 5, 8)
    with torch.set_grad_enabled(grad):
        out = ff(x)
    expected = ff.linear2(hidden(ff, x))
    torch.testing.assert_close(out, expected)


@pytest.mark.parametrize("norm_first", [False, True])
@pytest.mark.parametrize("activation", ["relu", "gelu"])
def test_a_spec_built_encoder_layer_equals_torch_and_the_keyword_built_one(norm_first, activation):
    reference = nn.TransformerEncoderLayer(
        16, 4, 24, dropout=0.0, activation=activation, layer_norm_eps=1e-6,
        batch_first=True, norm_first=norm_first,
    ).eval()  # fmt: skip
    keyword_built = from_torch(reference)  # EncoderLayer(d_model=..., num_heads=..., ...)
    spec = BlockSpec(16, 4, 24, 0.0, activation=activation, norm_first=norm_first)
    spec_built = EncoderLayer(spec=dataclasses.replace(spec, layer_norm_eps=1e-6)).eval()
    spec_built.load_state_dict(keyword_built.state_dict())  # the same parameter names
    x = torch.randn(3, 7, 16)
    mask = padding_mask(torch.tensor([7, 5, 2]))  # (B, 1, 1, T), True = real token
    expected = reference(x, src_key_padding_mask=torch_key_padding_mask(mask))
    torch.testing.assert_close(spec_built(x, mask=mask), expected, atol=1e-5, rtol=0)
    torch.testing.assert_close(spec_built(x, mask=mask), keyword_built(x, mask=mask))


@pytest.mark.filterwarnings("ignore:enable_nested_tensor is True:UserWarning")
def test_a_spec_built_transformer_equals_torch():
    reference = nn.Transformer(
        16, 4, num_encoder_layers=2, num_decoder_layers=2, dim_feedforward=24, dropout=0.0,
        activation="gelu", batch_first=True, norm_first=True,
    ).eval()  # fmt: skip
    spec = BlockSpec(16, 4, 24, 0.0, activation="gelu", norm_first=True)
    ours = Transformer(num_encoder_layers=2, num_decoder_layers=2, spec=spec).eval()
    ours.load_state_dict(from_torch(reference).state_dict())
    src, tgt = torch.randn(2, 6, 16), torch.randn(2, 5, 16)
    src_mask = padding_mask(torch.tensor([6, 3]))  # (B, 1, 1, S)
    expected = reference(
        src,
        tgt,
        tgt_mask=torch_attn_mask(causal_mask(5)),
        src_key_padding_mask=torch_key_padding_mask(src_mask),
        memory_key_padding_mask=torch_key_padding_mask(src_mask),
    )
    out = ours(src, tgt, src_mask=src_mask, memory_mask=src_mask, tgt_is_causal=True)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=0)


def test_keyword_constructors_build_the_spec_they_describe():
    keyword = EncoderLayer(16, 4, 24, 0.2, "gelu", True, 1e-6, False)
    spec = BlockSpec(16, 4, 24, 0.2, activation="gelu", norm_first=True, layer_norm_eps=1e-6)
    spec_built = EncoderLayer(spec=dataclasses.replace(spec, bias=False))
    spec_built.load_state_dict(keyword.state_dict())  # the same parameter names and shapes
    assert str(keyword) == str(spec_built)  # sizes, dropout rates, eps
    x = torch.randn(2, 5, 16)
    torch.testing.assert_close(spec_built.eval()(x), keyword.eval()(x))
    assert MultiHeadAttention(16, 4).dropout == 0.0  # a lone attention keeps its own default
    assert FeedForward(10, 20).dropout.p == 0.0  # num_heads plays no part in it


def test_spec_and_keywords_together_are_refused():
    with pytest.raises(TypeError, match=r"either spec or keyword arguments.*'d_model'"):
        EncoderLayer(16, 4, spec=SPEC)
    with pytest.raises(TypeError, match=r"'dropout'"):
        TransformerEncoder(2, dropout=0.3, spec=SPEC)
    with pytest.raises(TypeError, match=r"'attention_dropout'"):
        MultiHeadAttention(dropout=0.2, spec=SPEC)
    with pytest.raises(TypeError, match=r"EncoderLayer needs d_model and num_heads"):
        EncoderLayer()
