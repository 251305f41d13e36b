"""Fixtures of the explorer tests: attention views made by hand, and a briefly trained run."""

import pytest
import torch

from attnlab.viz.views import AttentionView

from ..training.conftest import train


def random_maps(num_layers: int, num_heads: int, T_q: int, T_k: int) -> list[torch.Tensor]:
    """Softmax-normalised random attention, one ``(H, T_q, T_k)`` tensor per layer."""
    return [torch.randn(num_heads, T_q, T_k).mul(3).softmax(-1) for _ in range(num_layers)]


@pytest.fixture
def seq2seq_views() -> list[AttentionView]:
    """The three kinds of attention of a translation model, with an unsafe token among them."""
    source = ["The", "cat", "sat", "</script><b>", "&amp;", "."]
    target = ["<bos>", "Le", "chat", "s'", "est", "assis", "\u00e9t\u00e9"]
    return [
        AttentionView(random_maps(2, 4, 6, 6), source, source, "encoder self-attention"),
        AttentionView(random_maps(3, 4, 7, 7), target, target, "decoder self-attention"),
        AttentionView(random_maps(3, 4, 7, 6), target, source, "cross-attention"),
    ]


@pytest.fixture(scope="session")
def reverse_run(tmp_path_factory):
    """A reverse run trained for one short epoch."""
    out = tmp_path_factory.mktemp("run") / "reverse"
    assert train(out, "--epochs", "1") == 0
    return out
