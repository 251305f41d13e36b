"""Configs check themselves: every value either validates or raises ConfigError, wherever the
config is built from (Python, the command line, a run's config.json)."""

import dataclasses
import math

import pytest

# A test extra, absent where only the test suite's CUDA cases run (benchmarks/gpu_check.py).
pytest.importorskip("hypothesis")
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from attnlab.configs import CARDS, ModelSize, TrainConfig  # noqa: E402
from attnlab.errors import ConfigError  # noqa: E402
from attnlab.options import build, flat_dict, flat_fields, from_json  # noqa: E402

CONFIGS = [TrainConfig, ModelSize, *(card.config for card in CARDS.values())]

ANY_VALUE = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.text(max_size=8),
    st.none(),
    st.lists(st.integers(), max_size=2),
    st.sampled_from(["adamw", "cosine", "bf16", "gelu", "char", "en-fr", "torch", "gru"]),
)


@st.composite
def raw_values(draw, cls):
    """A random subset of ``cls``'s leaf fields, each with a random value of any type."""
    names = [field.name for field, _ in flat_fields(cls)]
    chosen = draw(st.lists(st.sampled_from(names), unique=True, max_size=len(names)))
    return {name: draw(ANY_VALUE) for name in chosen}


@pytest.mark.parametrize("cls", CONFIGS, ids=lambda c: c.__name__)
@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_a_config_validates_or_raises_config_error(cls, data):
    values = data.draw(raw_values(cls))
    try:
        config = build(cls, values)
    except ConfigError as e:
        assert str(e) and "\n" not in str(e)
        return
    # it built: every value it holds is in its declared range, and it survives config.json
    for field, _ in flat_fields(cls):
        value = flat_dict(config)[field.name]
        meta = field.metadata
        if meta.get("choices"):
            assert value in meta["choices"]
        if meta.get("low") is not None:
            assert value >= meta["low"]
        if meta.get("high") is not None:
            assert value <= meta["high"]
        if meta.get("below") is not None:
            assert value < meta["below"]
        if isinstance(value, float):
            assert math.isfinite(value)
    assert from_json(cls, dataclasses.asdict(config)) == config


@pytest.mark.parametrize("cls", CONFIGS, ids=lambda c: c.__name__)
def test_defaults_are_valid_and_every_field_says_what_it_allows(cls):
    build(cls, {})
    for field, default in flat_fields(cls):
        assert field.metadata.get("help"), field.name
        if isinstance(default, (int, float)) and not isinstance(default, bool):
            meta = field.metadata
            declared = [meta.get(k) for k in ("low", "high", "below", "choices")]
            assert any(d is not None for d in declared), f"{cls.__name__}.{field.name}"


@pytest.mark.parametrize(
    "data, message",
    [
        (None, "must be a JSON object"),
        ([1, 2], "must be a JSON object"),
        ({"d_model": "wide"}, "d_model must be a whole number"),
        ({"size": {"d_model": 1e9}}, "d_model must be a whole number"),
        ({"size": {"d_model": 10**9}}, "d_model must be at most 65,536"),
        ({"colour": "red"}, "has no field 'colour'"),
    ],
)
def test_a_hand_edited_task_config_is_one_sentence(data, message):
    with pytest.raises(ConfigError, match=message):
        from_json(CARDS["reverse"].config, data)


def test_older_flat_task_configs_still_load():
    flat = {"d_model": 16, "heads": 2, "layers": 1, "d_ff": 32, "dropout": 0.0, "seq_len": 8}
    config = from_json(CARDS["reverse"].config, flat)
    assert config.size == ModelSize(layers=1, d_model=16, heads=2, d_ff=32, dropout=0.0)
    assert config.seq_len == 8


@pytest.mark.parametrize("card", CARDS.values(), ids=CARDS.keys())
def test_a_task_config_made_by_hand_names_a_size_that_is_not_a_model_size(card):
    # size=None or size=64 passed, and building the model failed with an AttributeError
    for size in (None, 64, {"d_model": 64}):
        with pytest.raises(ConfigError, match=r"size must be a ModelSize; got "):
            card.config(size=size)
    assert card.config(size=ModelSize(d_model=32)).size.d_model == 32
