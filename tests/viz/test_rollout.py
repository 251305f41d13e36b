"""The rollout overlay refuses an image or maps of the wrong rank, before drawing anything."""

import pytest
import torch

from attnlab.errors import InputError
from attnlab.viz import attention_rollout, plot_rollout_overlay, upsample_to_image


@pytest.mark.parametrize(
    "image, heat, layer_heats, message",
    [
        # F.interpolate's "same number of spatial dimensions" before
        (torch.rand(8, 8), torch.rand(4), (), r"heat must be a map over the patch grid .*\(4,\)"),
        (
            torch.rand(8, 8),
            torch.rand(2, 2),
            (torch.rand(2, 2), torch.rand(1, 2, 2)),
            r"layer_heats\[1\] must be a map over the patch grid",
        ),
        # "too many values to unpack" before
        (torch.rand(1, 8, 8), torch.rand(2, 2), (), r"grayscale image \(H, W\); got shape \(1, 8"),
    ],
)
def test_an_image_or_map_of_the_wrong_rank_is_named(tmp_path, image, heat, layer_heats, message):
    path = tmp_path / "overlay.png"
    with pytest.raises(InputError, match=message):
        plot_rollout_overlay(image, heat, path, layer_heats=layer_heats)
    assert not path.exists()


MAPS = torch.rand(2, 3, 3).softmax(-1)  # (H, T, T)


@pytest.mark.parametrize(
    "maps, message",
    [
        ([[[0.5]]], "each attention map must be a float tensor; got list"),  # AttributeError
        ([MAPS.long()], "must be a float tensor; got torch.int64"),  # torch's "mean(): could not"
        (torch.stack([MAPS, MAPS]), "maps must be a list of tensors, one per layer; got one"),
        # torch's "size of tensor a (3) must match" before
        (
            [MAPS[None], MAPS[None].expand(3, -1, -1, -1)],
            r"first one's shape \(1, 2, 3, 3\); got \(3, 2",
        ),
    ],
)
def test_rollout_names_maps_that_are_not_one_float_tensor_shape_per_layer(maps, message):
    with pytest.raises(InputError, match=message):
        attention_rollout(maps)
    assert attention_rollout([MAPS, MAPS]).shape == (3, 3)


@pytest.mark.parametrize(
    "heat, size, message",
    [
        (torch.rand(1, 2, 2), (4, 4), r"heat must be a tensor \(rows, cols\); got \(1, 2, 2\)"),
        (torch.rand(2, 2), (0, 4), r"image_size must be two whole numbers \(H, W\) >= 1; got"),
        (torch.rand(2, 2), 4, r"image_size must be two whole numbers"),
        # a 4 TB allocation before
        (torch.rand(2, 2), (10**6, 10**6), "image_size must be at most 67,108,864 pixels"),
    ],
)
def test_upsampling_names_a_bad_map_or_size(heat, size, message):
    with pytest.raises(InputError, match=message):
        upsample_to_image(heat, size)
    assert upsample_to_image(torch.rand(2, 2), (8192, 8192)).shape == (8192, 8192)


@pytest.mark.parametrize(
    "image, heat, message",
    [
        ([[0.5]], torch.rand(2, 2), "image must be a tensor; got list"),
        (torch.rand(8, 8), [[0.5]], "heat must be a tensor; got list"),
        # each was drawn divided by its sum: NaN or negative shares, without a word
        (torch.rand(8, 8), torch.zeros(2, 2), "heat must be finite and non-negative, with a"),
        (torch.rand(8, 8), -torch.rand(2, 2), "heat must be finite and non-negative"),
    ],
)
def test_the_overlay_names_a_list_or_a_map_it_cannot_divide_into_shares(
    tmp_path, image, heat, message
):
    with pytest.raises(InputError, match=message):
        plot_rollout_overlay(image, heat, tmp_path / "overlay.png")
