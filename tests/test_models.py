import pytest
import torch

from attnlab.models import (
    SequenceClassifier,
    SequenceClassifierConfig,
    TokenPredictor,
    TokenPredictorConfig,
)


def test_token_predictor_with_tokens_and_with_features():
    model = TokenPredictor(TokenPredictorConfig(num_classes=7, vocab_size=10, num_layers=2))
    tokens = torch.randint(0, 10, (3, 12))
    assert model(tokens).shape == (3, 12, 7)
    maps = model.attention_maps(tokens)
    assert len(maps) == 2 and maps[0].shape == (3, 4, 12, 12)
    features = TokenPredictor(TokenPredictorConfig(num_classes=2, input_dim=5))
    assert features(torch.randn(3, 12, 5)).shape == (3, 12, 2)
    with pytest.raises(ValueError, match="exactly one"):
        TokenPredictorConfig(num_classes=2, vocab_size=3, input_dim=4)


@pytest.mark.parametrize("window", [None, 1])
def test_sequence_classifier_ignores_padding(window):
    config = SequenceClassifierConfig(
        vocab_size=20, num_classes=3, pad_id=0, max_len=10, window=window
    )
    model = SequenceClassifier(config).eval()
    tokens = torch.tensor([[4, 5, 6]])
    padded = torch.tensor([[4, 5, 6, 0, 0, 0]])
    torch.testing.assert_close(model(padded), model(tokens), atol=1e-5, rtol=0)
    maps = model.attention_maps(padded)
    assert maps[0].shape == (1, 4, 7, 7)
    assert (maps[0][..., 4:] == 0).all()  # nobody attends to padding


def test_sequence_classifier_window_limits_what_a_token_sees():
    config = SequenceClassifierConfig(vocab_size=20, num_classes=3, num_layers=1, window=1)
    model = SequenceClassifier(config).eval()
    tokens = torch.tensor([[4, 5, 6, 7, 8, 9]])
    changed = torch.tensor([[4, 5, 6, 7, 8, 3]])  # the last token: position 6 after [CLS]
    hidden, changed_hidden = (model.encoder(*model._encode_input(t)) for t in (tokens, changed))
    # one layer, window 1: token positions 1..4 cannot see position 6; CLS (0) and 5..6 can
    torch.testing.assert_close(hidden[:, 1:5], changed_hidden[:, 1:5])
    for position in (0, 5, 6):
        assert not torch.allclose(hidden[:, position], changed_hidden[:, position])
    weights = model.attention_maps(tokens)[0][0, 0]  # (1 + T, 1 + T), head 0
    assert (weights[2, 4:] == 0).all() and (weights[2, 1:4] > 0).all() and weights[2, 0] > 0
    assert (weights[0] > 0).all()  # the CLS token attends to every token


def test_sequence_classifier_window_wider_than_the_input_is_full_attention():
    config = SequenceClassifierConfig(vocab_size=20, num_classes=3, max_len=8)
    full = SequenceClassifier(config).eval()
    windowed = SequenceClassifier(SequenceClassifierConfig(**{**vars(config), "window": 8}))
    windowed.load_state_dict(full.state_dict())
    tokens = torch.randint(1, 20, (3, 8))
    torch.testing.assert_close(windowed.eval()(tokens), full(tokens))


def test_sequence_classifier_depends_on_cls_token():
    model = SequenceClassifier(SequenceClassifierConfig(vocab_size=20, num_classes=3)).eval()
    tokens = torch.randint(1, 20, (2, 6))
    before = model(tokens)
    with torch.no_grad():
        model.cls_token.add_(1.0)
    assert not torch.allclose(before, model(tokens))


def test_sequence_classifier_rejects_too_long_input():
    model = SequenceClassifier(SequenceClassifierConfig(vocab_size=20, num_classes=3, max_len=4))
    with pytest.raises(ValueError, match="exceeds the maximum length 5"):
        model(torch.randint(1, 20, (1, 5)))
