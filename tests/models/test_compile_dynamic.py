"""The masked models compile into one graph that serves every sequence length
(``torch.compile(fullgraph=True, dynamic=True)``), and give the eager outputs.

The shape checks of :mod:`attnlab.nn.masks` run on symbolic sizes there: a check that
dynamo cannot trace breaks ``fullgraph`` and, with ``dynamic=True``, refused masks that fit.
Dynamo's "eager" backend captures and guards the graph as inductor does, without compiling
C++ (the inductor run of the training loop is in tests/training/test_precision.py).
"""

import pytest
import torch

from attnlab.models.classifier import SequenceClassifier, SequenceClassifierConfig
from attnlab.models.seq2seq import Seq2SeqConfig, Seq2SeqTransformer
from attnlab.nn import TransformerEncoder, padding_mask

dynamo = pytest.importorskip("torch._dynamo")


def _compiled(model: torch.nn.Module):
    dynamo.reset()
    return torch.compile(model.eval(), backend="eager", fullgraph=True, dynamic=True)


def _padded_tokens(B: int, T: int, vocab: int) -> torch.Tensor:
    """Token ids ``(B, T)`` in ``3 .. vocab - 1``, the last row padded (id 0) after 2 tokens."""
    tokens = torch.randint(3, vocab, (B, T))
    tokens[-1, 2:] = 0
    return tokens


def test_an_encoder_with_a_padding_mask_serves_two_lengths_with_one_graph():
    torch.manual_seed(0)
    encoder = TransformerEncoder(num_layers=2, d_model=16, num_heads=2, d_ff=32, dropout=0.0)
    compiled = _compiled(encoder)
    with torch.no_grad(), dynamo.config.patch(error_on_recompile=True):
        for T in (5, 7):
            x = torch.randn(3, T, 16)  # (B, T, d_model)
            mask = padding_mask(torch.tensor([T, T - 2, 1]), max_len=T)  # (B, 1, 1, T)
            torch.testing.assert_close(compiled(x, mask=mask), encoder(x, mask=mask))


@pytest.mark.parametrize("window", [None, 1])
def test_a_classifier_with_padding_and_a_local_window_compiles_whole(window):
    torch.manual_seed(0)
    config = SequenceClassifierConfig(
        vocab_size=20, num_classes=3, d_model=16, num_heads=2, num_layers=1, window=window
    )
    model = SequenceClassifier(config).eval()
    compiled = _compiled(model)
    with torch.no_grad(), dynamo.config.patch(error_on_recompile=True):
        for T in (6, 9):
            tokens = _padded_tokens(2, T, 20)
            torch.testing.assert_close(compiled(tokens), model(tokens))


def test_an_encoder_decoder_compiles_whole_over_source_and_target_lengths():
    torch.manual_seed(0)
    config = Seq2SeqConfig(
        src_vocab_size=20,
        tgt_vocab_size=20,
        d_model=16,
        num_heads=2,
        num_encoder_layers=1,
        num_decoder_layers=1,
        d_ff=32,
        dropout=0.0,
    )
    model = Seq2SeqTransformer(config).eval()
    compiled = _compiled(model)
    with torch.no_grad(), dynamo.config.patch(error_on_recompile=True):
        for T_src, T_tgt in ((6, 4), (9, 5)):
            src, tgt_in = _padded_tokens(2, T_src, 20), _padded_tokens(2, T_tgt, 20)
            torch.testing.assert_close(compiled(src, tgt_in), model(src, tgt_in))
