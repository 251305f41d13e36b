"""The rollout overlay refuses an image or maps of the wrong rank, before drawing anything."""

import pytest
import torch

from attnlab.errors import InputError
from attnlab.viz import plot_rollout_overlay


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
