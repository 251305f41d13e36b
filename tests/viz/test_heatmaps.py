"""Attention heatmaps (PNG) refuse maps and labels that disagree, before drawing anything."""

import pytest
import torch

from attnlab.errors import InputError
from attnlab.viz import plot_attention_grid

from .conftest import random_maps

LABELS = ["a", "b", "c"]


def test_a_grid_of_consistent_maps_is_saved(tmp_path):
    path = plot_attention_grid(random_maps(2, 2, 3, 3), LABELS, LABELS, tmp_path / "grid.png")
    assert path.stat().st_size > 0


@pytest.mark.parametrize(
    "maps, query_labels, message",
    [
        # matplotlib's "FixedLocator locations (3) ... labels (2)" before
        (random_maps(1, 2, 3, 3), ["a", "b"], "2 query and 3 key labels for maps of 3 queries"),
        ([], LABELS, "has no attention maps"),  # an IndexError before
        # both drawn as a wrong figure, silently
        ([torch.rand(1, 2, 3, 3).softmax(-1)], LABELS, r"layer 1 has shape \(1, 2, 3, 3\)"),
        (
            [*random_maps(1, 2, 3, 3), *random_maps(1, 3, 3, 3)],
            LABELS,
            r"layer 2 has shape \(3, 3, 3\) but layer 1 has \(2, 3, 3\)",
        ),
    ],
)
def test_maps_and_labels_that_disagree_are_refused_before_drawing(
    tmp_path, maps, query_labels, message
):
    path = tmp_path / "grid.png"
    with pytest.raises(InputError, match=message):
        plot_attention_grid(maps, query_labels, LABELS, path)
    assert not path.exists()
