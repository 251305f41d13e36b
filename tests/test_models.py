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


def test_sequence_classifier_ignores_padding():
    config = SequenceClassifierConfig(vocab_size=20, num_classes=3, pad_id=0, max_len=10)
    model = SequenceClassifier(config).eval()
    tokens = torch.tensor([[4, 5, 6]])
    padded = torch.tensor([[4, 5, 6, 0, 0, 0]])
    torch.testing.assert_close(model(padded), model(tokens), atol=1e-5, rtol=0)
    maps = model.attention_maps(padded)
    assert maps[0].shape == (1, 4, 7, 7)
    assert (maps[0][..., 4:] == 0).all()  # nobody attends to padding


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
