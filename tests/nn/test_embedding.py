import math

import pytest
import torch

from attnlab.nn import (
    LearnedPositionalEncoding,
    SinusoidalPositionalEncoding,
    TokenEmbedding,
    sinusoidal_table,
)


@pytest.mark.parametrize(
    "pos, i, d_model", [(0, 0, 8), (1, 0, 8), (3, 1, 8), (7, 3, 8), (50, 2, 16)]
)
def test_sinusoidal_table_matches_the_papers_formula(pos, i, d_model):
    table = sinusoidal_table(64, d_model)
    angle = pos / 10000 ** (2 * i / d_model)
    assert table[pos, 2 * i].item() == pytest.approx(math.sin(angle), abs=1e-6)
    assert table[pos, 2 * i + 1].item() == pytest.approx(math.cos(angle), abs=1e-6)


def test_sinusoidal_hand_computed_points():
    table = sinusoidal_table(4, 4)
    # pos 1: dims (sin(1), cos(1), sin(1/100), cos(1/100)) since 10000^(2/4) = 100
    expected = torch.tensor([math.sin(1), math.cos(1), math.sin(0.01), math.cos(0.01)])
    torch.testing.assert_close(table[1], expected)
    torch.testing.assert_close(table[0], torch.tensor([0.0, 1.0, 0.0, 1.0]))


def test_sinusoidal_table_odd_width():
    table = sinusoidal_table(10, 5)
    assert table.shape == (10, 5)
    assert table[3, 4].item() == pytest.approx(math.sin(3 / 10000 ** (4 / 5)), abs=1e-6)


def test_positional_encodings_add_positions_with_offset():
    pe = SinusoidalPositionalEncoding(8, max_len=20)
    x = torch.zeros(2, 5, 8)
    torch.testing.assert_close(pe(x), sinusoidal_table(20, 8)[:5].expand(2, 5, 8))
    torch.testing.assert_close(
        pe(x[:, :1], offset=4)[:, 0], sinusoidal_table(20, 8)[4].expand(2, 8)
    )
    learned = LearnedPositionalEncoding(8, max_len=20)
    torch.testing.assert_close(learned(x), learned.embedding.weight[:5].expand(2, 5, 8))


@pytest.mark.parametrize("cls", [SinusoidalPositionalEncoding, LearnedPositionalEncoding])
def test_a_tensor_offset_adds_the_rows_of_the_same_positions(cls):
    # A static cache's position tensor (compiled decoding steps): the table's rows 4..6.
    pe = cls(8, max_len=20)
    table = sinusoidal_table(20, 8) if cls is SinusoidalPositionalEncoding else None
    table = pe.embedding.weight.detach() if table is None else table
    x = torch.randn(2, 3, 8)
    torch.testing.assert_close(pe(x, offset=torch.tensor(4)), x + table[4:7])
    with pytest.raises(ValueError, match=r"0-d integer tensor; got torch.float32 of shape \(\)"):
        pe(x, offset=torch.tensor(4.0))
    with pytest.raises(ValueError, match=r"0-d integer tensor; got torch.int64 of shape \(1,\)"):
        pe(x, offset=torch.tensor([4]))


@pytest.mark.parametrize("cls", [SinusoidalPositionalEncoding, LearnedPositionalEncoding])
def test_too_long_sequence_names_both_lengths(cls):
    pe = cls(8, max_len=10)
    with pytest.raises(ValueError, match=r"sequence length 11 exceeds the maximum length 10"):
        pe(torch.zeros(1, 11, 8))
    with pytest.raises(ValueError, match=r"length 12 .* 10"):
        pe(torch.zeros(1, 3, 8), offset=9)


def test_dropout_after_adding_positions_only_in_training():
    pe = SinusoidalPositionalEncoding(16, max_len=10, dropout=0.5)
    x = torch.ones(4, 10, 16)
    assert (pe(x) == 0).float().mean() > 0.3
    pe.eval()
    assert (pe(x) == 0).float().mean() < 0.1  # only true zeros of x + PE


def test_token_embedding_is_scaled_by_sqrt_d_model():
    emb = TokenEmbedding(vocab_size=11, d_model=16)
    tokens = torch.tensor([[1, 2, 3]])
    torch.testing.assert_close(emb(tokens), emb.weight[tokens] * 4.0)
    big = TokenEmbedding(1000, 256)
    assert big(torch.arange(1000)[None]).std().item() == pytest.approx(1.0, abs=0.05)


def test_sinusoidal_table_is_not_saved_in_state_dict():
    assert "table" not in SinusoidalPositionalEncoding(8).state_dict()


@pytest.mark.parametrize(
    "tokens, message",
    [
        (torch.tensor([[1, 5]]), r"tokens must be ids in \[0, 5\) .*got ids from 1 to 5"),
        (torch.tensor([[-2, 1]]), r"tokens must be ids in \[0, 5\) .*got ids from -2 to 1"),
        (torch.tensor([[1.0]]), "tokens must be integer token ids .*got dtype torch.float32"),
        (torch.tensor([[True]]), "tokens must be integer token ids .*got dtype torch.bool"),
    ],
)
def test_token_ids_the_embedding_cannot_look_up_are_named(tokens, message):
    with pytest.raises(ValueError, match=message):
        TokenEmbedding(5, 4)(tokens)


@pytest.mark.parametrize("encoding", [SinusoidalPositionalEncoding, LearnedPositionalEncoding])
def test_a_positional_encoding_names_an_input_it_cannot_add_to(encoding):
    positions = encoding(8, max_len=10)
    with pytest.raises(ValueError, match=r"x must have shape \(B, T, d_model=8\); got \(1, 3, 6\)"):
        positions(torch.randn(1, 3, 6))  # was a broadcast RuntimeError
    with pytest.raises(ValueError, match="offset must be a whole number >= 0; got -2"):
        positions(torch.randn(1, 3, 8), offset=-2)  # was a broadcast RuntimeError
    with pytest.raises(ValueError, match="offset must be a whole number >= 0; got 1.5"):
        positions(torch.randn(1, 3, 8), offset=1.5)  # was a slice TypeError


@pytest.mark.parametrize("encoding", [SinusoidalPositionalEncoding, LearnedPositionalEncoding])
def test_a_position_table_of_a_mistyped_size_is_refused_unallocated(encoding):
    with pytest.raises(ValueError, match="max_len must be a whole number >= 0; got -1"):
        encoding(8, max_len=-1)
    # max_len=10**12 tried to allocate 8 TB (the float64 table) before failing
    with pytest.raises(ValueError, match="max_len must be at most 1,048,576 positions; got 1,0"):
        encoding(8, max_len=10**12)


def test_sinusoidal_table_refuses_sizes_it_cannot_build():
    with pytest.raises(ValueError, match="max_len must be a whole number >= 0; got -1"):
        sinusoidal_table(-1, 8)
    with pytest.raises(ValueError, match=r"max_len must be at most 1,048,576 .*\(a table of"):
        sinusoidal_table(10**9, 8)
    with pytest.raises(ValueError, match="d_model must be at most 65,536; got 1,000,000,000,000"):
        sinusoidal_table(4, 10**12)  # the allocator's RuntimeError (4 TB) before


@pytest.mark.parametrize(
    "args, message",
    [
        ((5, 0), "d_model must be a whole number >= 1; got 0"),  # was a ZeroDivisionError
        ((-1, 8), "vocab_size must be a whole number >= 1; got -1"),
        ((5, 8, 10), r"padding_idx must be None or an id in \[0, vocab_size=5\); got 10"),
        ((5, 8, 1.5), r"padding_idx must be None or an id in \[0, vocab_size=5\); got 1.5"),
        # a RuntimeError of the allocator (32 TB, 40 TB) before, or the OOM killer
        ((10**12, 8), "vocab_size must be at most 16,777,216; got 1,000,000,000,000"),
        ((5, 10**12), "d_model must be at most 65,536; got 1,000,000,000,000"),
    ],
)
def test_token_embedding_refuses_sizes_it_cannot_build(args, message):
    with pytest.raises(ValueError, match=message):
        TokenEmbedding(*args)
