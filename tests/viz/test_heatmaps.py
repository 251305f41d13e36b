"""Attention heatmaps (PNG) refuse maps and labels that disagree, before drawing anything."""

import pytest
import torch

from attnlab.errors import InputError
from attnlab.viz import heatmaps, plot_attention_grid, plot_training_curves
from attnlab.viz.figures import save_figure

from .conftest import random_maps

LABELS = ["a", "b", "c"]


def test_a_grid_of_consistent_maps_is_saved(tmp_path, monkeypatch):
    """Panel (layer l, head h) shows maps[l][h] with queries as rows and keys as columns, on a
    fixed [0, 1] colour scale; T_q != T_k, so a transposed map would show."""
    drawn = []

    def keep_the_figure(fig, path):
        drawn.append(fig)
        return save_figure(fig, path)

    monkeypatch.setattr(heatmaps, "save_figure", keep_the_figure)
    maps, keys = random_maps(2, 3, 3, 4), ["w", "x", "y", "z"]
    path = plot_attention_grid(maps, LABELS, keys, tmp_path / "grid.png", title="two layers")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    [grid] = drawn[0].subfigs
    panels = [ax for ax in grid.axes if ax.images]
    assert len(panels) == 2 * 3 and "two layers" in [t.get_text() for t in grid.texts]
    for index, ax in enumerate(panels):
        layer, head = divmod(index, 3)
        assert ax.get_title() == f"layer {layer + 1}, head {head + 1}"
        [image] = ax.images
        torch.testing.assert_close(torch.as_tensor(image.get_array().data), maps[layer][head])
        assert image.get_clim() == (0.0, 1.0)
        assert [t.get_text() for t in ax.get_xticklabels()] == keys
        assert [t.get_text() for t in ax.get_yticklabels()] == LABELS


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


def test_a_figure_larger_than_matplotlib_draws_is_refused_before_drawing(tmp_path):
    # 24 heads of 100 tokens: 24 panels of 29.5 inches, 77,880 pixels wide. Such a grid (a
    # BERT-large's at 512 tokens) drew its panels for many minutes before matplotlib refused.
    path = tmp_path / "grid.png"
    maps, labels = random_maps(1, 24, 100, 100), [str(i) for i in range(100)]
    with pytest.raises(InputError, match=r"77,880 x 3,245 pixels, more than matplotlib draws"):
        plot_attention_grid(maps, labels, labels, path)
    assert not path.exists()
    heatmaps._check_figure_size(595, 1)  # 65,450 pixels wide: drawn


# -- training curves (also a PNG) -----------------------------------------------------------
ROW = {"step": 10, "train_loss": 1.0, "val_loss": 1.2, "val_accuracy": 0.5}


@pytest.mark.parametrize(
    "history, monitor, message",
    [
        ([ROW], "bleu", r"history\[0\] must be a dict with step, train_loss, val_loss, "
         r"val_bleu; it lacks val_bleu$"),  # was KeyError: 'val_bleu'
        ([ROW, {"step": 20}], "accuracy", r"history\[1\] .* it lacks train_loss, val_loss, "
         r"val_accuracy$"),
        (ROW, "accuracy", "history must be a list of dicts, one per validation; got dict"),
    ],
)  # fmt: skip
def test_training_curves_name_a_missing_key_before_drawing(tmp_path, history, monitor, message):
    with pytest.raises(InputError, match=message):
        plot_training_curves(history, monitor, tmp_path / "curves.png")
    assert not (tmp_path / "curves.png").exists()
    assert plot_training_curves([ROW], "accuracy", tmp_path / "ok.png").stat().st_size > 0
