import pytest
import torch

from attnlab.nn import causal_mask, check_mask, combine_masks, local_mask, padding_mask


def test_padding_mask_from_lengths():
    mask = padding_mask(torch.tensor([3, 1, 4]))
    assert mask.shape == (3, 1, 1, 4)
    assert mask[:, 0, 0].tolist() == [
        [True, True, True, False],
        [True, False, False, False],
        [True, True, True, True],
    ]


def test_padding_mask_from_tokens_and_max_len():
    tokens = torch.tensor([[5, 6, 0, 0], [7, 0, 8, 0]])
    assert padding_mask(tokens, pad_id=0)[:, 0, 0].tolist() == [
        [True, True, False, False],
        [True, False, True, False],
    ]
    assert padding_mask(torch.tensor([2]), max_len=5).shape == (1, 1, 1, 5)


def test_causal_mask_is_lower_triangular():
    mask = causal_mask(3)
    assert mask.tolist() == [[True, False, False], [True, True, False], [True, True, True]]


def test_causal_mask_for_cached_queries_sees_the_past():
    # the last 2 of 4 positions: query 0 is position 2, query 1 is position 3
    assert causal_mask(2, 4).tolist() == [[True, True, True, False], [True, True, True, True]]


def test_combine_masks_is_logical_and():
    combined = combine_masks(causal_mask(3), padding_mask(torch.tensor([2, 3])), None)
    assert combined.shape == (2, 1, 3, 3)
    assert combined[0, 0].tolist() == [
        [True, False, False],
        [True, True, False],
        [True, True, False],
    ]
    assert combine_masks(None, None) is None


@pytest.mark.parametrize("shape", [(3, 5), (2, 1, 1, 5), (1, 4, 3, 5), (2, 4, 3, 5), (2, 1, 3, 5)])
def test_check_mask_accepts_broadcastable_layouts(shape):
    check_mask(torch.ones(shape, dtype=torch.bool), B=2, H=4, T_q=3, T_k=5)


@pytest.mark.parametrize("shape", [(2, 5), (5,), (2, 3, 5), (3, 1, 1, 5), (2, 1, 1, 4), (5, 3)])
def test_check_mask_rejects_other_shapes_naming_both(shape):
    with pytest.raises(ValueError, match=r"expected .*\(3, 5\)") as info:
        check_mask(torch.ones(shape, dtype=torch.bool), B=2, H=4, T_q=3, T_k=5)
    assert str(tuple(shape)) in str(info.value)


def test_check_mask_rejects_float_masks():
    with pytest.raises(ValueError, match="bool"):
        check_mask(torch.zeros(3, 5), B=2, H=4, T_q=3, T_k=5)


def test_local_mask_is_the_band_of_width_window():
    assert local_mask(4, 1).tolist() == [
        [True, True, False, False],
        [True, True, True, False],
        [False, True, True, True],
        [False, False, True, True],
    ]
    torch.testing.assert_close(local_mask(5, 0), torch.eye(5, dtype=torch.bool))
    assert local_mask(5, 4).all()
    with pytest.raises(ValueError, match="window must be a whole number >= 0; got -1"):
        local_mask(3, -1)
    with pytest.raises(ValueError, match="window must be a whole number >= 0; got nan"):
        local_mask(3, float("nan"))  # was a mask of all False: every query attended to nothing


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: causal_mask(-1), "T_q must be a whole number >= 0; got -1"),  # negative dimension
        (lambda: causal_mask(3.0), "T_q must be a whole number >= 0; got 3.0"),  # ones() TypeError
        (lambda: causal_mask(2, 3.5), "T_k must be a whole number >= 0; got 3.5"),
        (lambda: local_mask(-1, 1), "T must be a whole number >= 0; got -1"),  # arange error
        (
            lambda: padding_mask(torch.tensor([1, 2]), max_len=-1),
            "max_len must be a whole number >= 0; got -1",
        ),
        (  # max() of an empty tensor before
            lambda: padding_mask(torch.tensor([], dtype=torch.long)),
            r"padding_mask\(lengths\) of an empty batch needs max_len",
        ),
    ],
)
def test_a_mask_of_an_impossible_size_is_named(make, message):
    with pytest.raises(ValueError, match=message):
        make()


@pytest.mark.parametrize(
    "make, name",
    [
        (lambda: causal_mask(10**12), "T_q"),  # was the allocator's "Storage size ... overflowed"
        (lambda: causal_mask(1, 2**20 + 1), "T_k"),
        (lambda: local_mask(10**12, 3), "T"),  # was "can't allocate memory: 8000000000000 bytes"
        (lambda: padding_mask(torch.tensor([1]), max_len=10**12), "max_len"),
        (lambda: padding_mask(torch.tensor([1, 10**12])), "the longest of lengths"),
    ],
)
def test_a_mask_longer_than_any_sequence_is_refused_before_allocating(make, name):
    with pytest.raises(ValueError, match=f"^{name} must be at most 1,048,576 positions; got "):
        make()
    assert causal_mask(1, 2**20).shape == (1, 2**20)  # the bound itself is allowed


def test_an_empty_batch_of_lengths_with_max_len_is_an_empty_mask():
    assert padding_mask(torch.tensor([], dtype=torch.long), max_len=4).shape == (0, 1, 1, 4)


@pytest.mark.parametrize(
    "make, message",
    [
        (  # a row of all False before: the sequence silently attended to nothing
            lambda: padding_mask(torch.tensor([-1, 2])),
            r"needs lengths in \[0, max_len=2\]; got lengths from -1 to 2",
        ),
        (  # a row of all True before: the longer sequence cut to max_len without a word
            lambda: padding_mask(torch.tensor([5, 2]), max_len=3),
            r"needs lengths in \[0, max_len=3\]; got lengths from 2 to 5",
        ),
        (  # a bool tensor of "lengths" 0 and 1 before
            lambda: padding_mask(torch.tensor([True, False])),
            r"expects integer lengths of shape \(B,\); got \(2,\) torch.bool",
        ),
        (  # float ids, compared with pad_id as numbers, before
            lambda: padding_mask(torch.tensor([[1.0, 0.0]]), pad_id=0),
            r"expects integer tokens of shape \(B, T\); got \(1, 2\) torch.float32",
        ),
        (  # nothing was padding then (no id equals 0.5 or None ... or a string)
            lambda: padding_mask(torch.tensor([[1, 0]]), pad_id=0.5),
            "pad_id must be a whole number",
        ),
    ],
)
def test_padding_mask_refuses_lengths_and_pad_ids_it_would_misread(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_padding_mask_lengths_at_the_bounds_are_fine():
    mask = padding_mask(torch.tensor([0, 3]), max_len=3)[:, 0, 0]
    assert mask.tolist() == [[False] * 3, [True] * 3]


@pytest.mark.parametrize("value", [[3, 1], None, (2,)])
def test_padding_mask_of_something_not_a_tensor_says_so(value):
    # AttributeError "'list' object has no attribute 'dim'" before
    with pytest.raises(TypeError, match="padding_mask expects a tensor of lengths"):
        padding_mask(value)


def test_a_mask_that_is_not_a_tensor_is_named():
    # AttributeError "'bool' object has no attribute 'dtype'" before, from every entry point
    from attnlab.nn import MultiHeadAttention, scaled_dot_product_attention

    x, q = torch.zeros(1, 3, 8), torch.zeros(1, 2, 3, 4)
    with pytest.raises(TypeError, match="mask must be a bool tensor .*got bool .*is_causal=True"):
        MultiHeadAttention(8, 2)(x, mask=True)
    with pytest.raises(TypeError, match="mask must be a bool tensor .*got list"):
        scaled_dot_product_attention(q, q, q, mask=[[True] * 3] * 3)
    with pytest.raises(TypeError, match="each mask must be a bool tensor .*got int"):
        combine_masks(causal_mask(3), 1)
    with pytest.raises(ValueError, match="each mask must be a bool tensor .*torch.float32"):
        combine_masks(causal_mask(3), torch.ones(3, 3))


def test_padding_mask_reads_no_lengths_off_the_cpu_when_given_max_len():
    # The contract for lengths on a GPU (no device wait in a forward pass): values on the
    # meta device cannot be read at all, so any read would raise here.
    lengths = torch.tensor([1, 5], device="meta")  # 5 > max_len: the caller's to keep
    assert padding_mask(lengths, max_len=3).shape == (2, 1, 1, 3)
