"""DecoderLayer, TransformerDecoder and Transformer equal their torch.nn twins; the KV cache
changes nothing but speed."""

import pytest
import torch
from torch import nn

from attnlab.interop import from_torch, to_torch, torch_attn_mask, torch_key_padding_mask
from attnlab.nn import (
    DecoderLayer,
    DecoderLayerCache,
    KVCache,
    MultiHeadAttention,
    StaticKVCache,
    Transformer,
    TransformerDecoder,
    causal_mask,
    padding_mask,
)

TOL = 1e-5
D, H, F = 32, 4, 64


def _randomise_biases(module: nn.Module) -> None:
    """torch initialises biases to zero; random ones make the comparison meaningful."""
    with torch.no_grad():
        for name, p in module.named_parameters():
            if name.endswith("bias"):
                p.normal_(std=0.1)


def _inputs(B=3, T=5, S=7):
    torch.manual_seed(0)
    tgt, memory = torch.randn(B, T, D), torch.randn(B, S, D)
    src_pad = padding_mask(torch.tensor([S, 4, 2]))  # (B, 1, 1, S)
    return tgt, memory, src_pad


@pytest.mark.parametrize("norm_first", [False, True])
@pytest.mark.parametrize("activation", ["relu", "gelu"])
@pytest.mark.parametrize("mode", ["eval", "train"])
def test_decoder_layer_equals_torch(norm_first, activation, mode):
    reference = nn.TransformerDecoderLayer(
        D, H, F, dropout=0.0, activation=activation, batch_first=True, norm_first=norm_first
    )
    _randomise_biases(reference)
    ours = from_torch(reference)
    getattr(reference, mode)()
    getattr(ours, mode)()
    tgt, memory, src_pad = _inputs()
    T = tgt.size(1)
    expected = reference(
        tgt,
        memory,
        tgt_mask=torch_attn_mask(causal_mask(T)),
        memory_key_padding_mask=torch_key_padding_mask(src_pad),
    )
    got = ours(tgt, memory, memory_mask=src_pad, is_causal=True)
    assert (got - expected).abs().max() <= TOL
    got_explicit = ours(tgt, memory, self_mask=causal_mask(T), memory_mask=src_pad)
    assert (got_explicit - expected).abs().max() <= TOL


def test_decoder_layer_weights_and_target_padding():
    reference = nn.TransformerDecoderLayer(D, H, F, dropout=0.0, batch_first=True).eval()
    _randomise_biases(reference)
    ours = from_torch(reference)
    tgt, memory, src_pad = _inputs()
    tgt_pad = padding_mask(torch.tensor([5, 5, 3]))  # (B, 1, 1, T)
    expected = reference(
        tgt,
        memory,
        tgt_mask=torch_attn_mask(causal_mask(5)),
        tgt_key_padding_mask=torch_key_padding_mask(tgt_pad),
        memory_key_padding_mask=torch_key_padding_mask(src_pad),
    )
    out, self_w, cross_w = ours(
        tgt, memory, self_mask=tgt_pad, memory_mask=src_pad, is_causal=True, need_weights=True
    )
    assert (out - expected).abs().max() <= TOL
    assert self_w.shape == (3, H, 5, 5) and cross_w.shape == (3, H, 5, 7)
    assert torch.all(self_w.triu(diagonal=1) == 0)  # causal: nothing above the diagonal
    assert torch.all(cross_w[2, :, :, 2:] == 0)  # source padding gets no attention
    torch.testing.assert_close(cross_w.sum(-1), torch.ones(3, H, 5))


@pytest.mark.parametrize("final_norm", [False, True])
def test_decoder_stack_equals_torch(final_norm):
    layer = nn.TransformerDecoderLayer(D, H, F, dropout=0.0, batch_first=True)
    norm = nn.LayerNorm(D) if final_norm else None
    reference = nn.TransformerDecoder(layer, num_layers=3, norm=norm).eval()
    for i, sub in enumerate(reference.layers):  # the stack deep-copied one layer: make them differ
        torch.manual_seed(i)
        _randomise_biases(sub)
    ours = from_torch(reference)
    assert isinstance(ours, TransformerDecoder) and len(ours.layers) == 3
    tgt, memory, src_pad = _inputs()
    expected = reference(
        tgt,
        memory,
        tgt_mask=torch_attn_mask(causal_mask(5)),
        memory_key_padding_mask=torch_key_padding_mask(src_pad),
    )
    got = ours(tgt, memory, memory_mask=src_pad, is_causal=True)
    assert (got - expected).abs().max() <= TOL


def _assert_transformers_agree(ours: Transformer, reference: nn.Transformer) -> None:
    """Same output on a padded source and a causal target, masks converted for torch."""
    tgt, src, src_pad = _inputs()
    expected = reference(
        src,
        tgt,
        tgt_mask=torch_attn_mask(causal_mask(5)),
        src_key_padding_mask=torch_key_padding_mask(src_pad),
        memory_key_padding_mask=torch_key_padding_mask(src_pad),
    )
    got = ours(src, tgt, src_mask=src_pad, memory_mask=src_pad, tgt_is_causal=True)
    assert (got - expected).abs().max() <= TOL


@pytest.mark.filterwarnings("ignore:enable_nested_tensor is True")  # torch's own pre-LN note
@pytest.mark.parametrize("norm_first", [False, True])
def test_transformer_equals_torch(norm_first):
    torch.manual_seed(1)
    reference = nn.Transformer(
        D, H, 2, 3, F, dropout=0.0, batch_first=True, norm_first=norm_first
    ).eval()
    _randomise_biases(reference)
    ours = from_torch(reference)
    assert isinstance(ours, Transformer)
    _assert_transformers_agree(ours, reference)


def test_to_torch_round_trip_of_transformer():
    torch.manual_seed(2)
    ours = Transformer(D, H, 2, 2, F, dropout=0.0).eval()
    _randomise_biases(ours)
    reference = to_torch(ours).eval()
    assert isinstance(reference, nn.Transformer)
    _assert_transformers_agree(ours, reference)


def test_kv_cache_grows_and_reorders():
    cache = KVCache()
    assert len(cache) == 0 and cache.k is None
    chunks = [torch.randn(2, H, n, 8) for n in (3, 1, 20)]
    for chunk in chunks:
        k, v = cache.update(chunk, chunk + 1)
    expected = torch.cat(chunks, dim=2)
    assert len(cache) == 24
    torch.testing.assert_close(k, expected, rtol=0, atol=0)
    torch.testing.assert_close(v, expected + 1, rtol=0, atol=0)
    cache.reorder(torch.tensor([1, 1]))
    torch.testing.assert_close(cache.k, expected[[1, 1]], rtol=0, atol=0)


def test_cached_self_attention_equals_full_causal_attention():
    torch.manual_seed(3)
    mha = MultiHeadAttention(D, H).eval()
    x = torch.randn(2, 9, D)
    full = mha(x, is_causal=True)
    cache = KVCache()
    # A prompt of 4 tokens at once, then one token per step.
    steps = [mha(x[:, :4], is_causal=True, cache=cache)]
    steps += [mha(x[:, t : t + 1], is_causal=True, cache=cache) for t in range(4, 9)]
    assert (torch.cat(steps, dim=1) - full).abs().max() <= TOL


@pytest.mark.parametrize("norm_first", [False, True])
def test_cached_decoding_equals_full_decoding(norm_first):
    torch.manual_seed(4)
    decoder = TransformerDecoder(2, D, H, F, dropout=0.0, norm_first=norm_first).eval()
    tgt, memory, src_pad = _inputs(T=6)
    full = decoder(tgt, memory, memory_mask=src_pad, is_causal=True)
    cache = decoder.make_cache()
    steps = [
        decoder(tgt[:, t : t + 1], memory, memory_mask=src_pad, is_causal=True, cache=cache)
        for t in range(6)
    ]
    assert (torch.cat(steps, dim=1) - full).abs().max() <= TOL
    # The cross-attention keys and values were computed once, from the 7 source positions.
    assert all(len(layer.cross_attn) == 7 and len(layer.self_attn) == 6 for layer in cache)


def test_filled_cross_attention_cache_needs_no_memory():
    torch.manual_seed(5)
    layer = DecoderLayer(D, H, F, dropout=0.0).eval()
    tgt, memory, src_pad = _inputs(T=2)
    cache = DecoderLayerCache()
    first = layer(tgt[:, :1], memory, memory_mask=src_pad, is_causal=True, cache=cache)
    second = layer(tgt[:, 1:], None, memory_mask=src_pad, is_causal=True, cache=cache)
    full = layer(tgt, memory, memory_mask=src_pad, is_causal=True)
    assert (torch.cat([first, second], dim=1) - full).abs().max() <= TOL


def test_cross_attention_without_memory_or_cache_is_an_error():
    mha = MultiHeadAttention(D, H)
    with pytest.raises(ValueError, match="needs memory"):
        mha(torch.randn(1, 2, D), cross=True)


def test_a_refused_mask_leaves_the_cache_as_it_was():
    """The mask is checked before the new keys and values are cached: after a refused call
    the next step decodes as if the call had not been made."""
    torch.manual_seed(6)
    mha = MultiHeadAttention(D, H).eval()
    x = torch.randn(2, 4, D)
    for cache in (KVCache(), StaticKVCache.for_attention(mha, batch_size=2, max_len=8)):
        mha(x[:, :3], is_causal=True, cache=cache)
        with pytest.raises(ValueError, match="mask"):
            mha(x[:, 3:], mask=torch.ones(2, 1, 1, 5, dtype=torch.bool), cache=cache)
        assert len(cache) == 3
        last = mha(x[:, 3:], is_causal=True, cache=cache)
        assert (last - mha(x, is_causal=True)[:, 3:]).abs().max() <= TOL
