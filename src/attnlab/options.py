"""Config fields that declare their own help, range, choices and resumability.

Every config dataclass of attnlab (the task configs, :class:`~attnlab.tasks.configs.ModelSize`
and :class:`~attnlab.training.TrainConfig`) builds its fields with :func:`option`, so one
declaration serves three readers:

* the command line: each field becomes a ``--flag`` whose help text shows its default and
  what is allowed;
* validation: :func:`check_fields` (called from each config's ``__post_init__``) refuses a
  value of the wrong type, outside its range or not among its choices, with a
  :class:`~attnlab.errors.ConfigError` naming the field, the value and what is allowed, so a
  config is checked wherever it is built (the CLI, Python, a run's ``config.json``);
* ``--resume``: only fields declared ``resumable`` may change when a run is continued.

This module imports neither torch nor anything heavy: ``attnlab --help`` reads it.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from attnlab.errors import ConfigError

# Bounds that keep a mistyped number from asking for absurd memory or time.
MAX_SEED = 2**63 - 1


def option(
    default: Any,
    help: str,  # noqa: A002  (argparse's own word)
    *,
    choices: tuple[str, ...] | None = None,
    low: float | None = None,
    high: float | None = None,
    below: float | None = None,
    resumable: bool = False,
    metavar: str | None = None,
) -> Any:
    """A dataclass field with its help text and what values it allows.

    ``low``/``high`` are inclusive bounds, ``below`` an exclusive upper bound (a dropout rate
    is below 1). ``resumable=True``: ``--resume`` may change it (it does not change what the
    saved run means, e.g. the number of epochs or the device). ``metavar``: the value's name
    in ``--help`` (default: from its type or choices).
    """
    metadata = {"help": help, "choices": choices, "low": low, "high": high, "below": below}
    metadata |= {"resumable": resumable, "metavar": metavar}
    return dataclasses.field(default=default, metadata=metadata)


def nested(factory: Callable[[], Any], help: str) -> Any:  # noqa: A002
    """A field holding another config dataclass (its fields become flags of their own)."""
    return dataclasses.field(default_factory=factory, metadata={"help": help, "nested": True})


def shown_value(value: Any, limit: int = 70) -> str:
    """``repr(value)``, cut to ``limit`` characters with its full length: a value of a
    hand-edited ``config.json`` (a string or a list of 100,000 characters) quoted in an
    error keeps the message one readable line."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text):,} characters)"


def _num(x: float) -> str:
    return f"{x:,}" if isinstance(x, int) else f"{x:g}"


def allowed(field: dataclasses.Field) -> str:
    """What a field allows, in words: ``one of a, b``, ``at least 1``, ``in [0, 1)``..."""
    meta = field.metadata
    choices = [str(c) for c in meta.get("choices") or ()]
    if len(choices) == 2:
        return " or ".join(choices)
    if choices:
        return "one of " + ", ".join(choices)
    low, high, below = meta.get("low"), meta.get("high"), meta.get("below")
    if low is not None and below is not None:
        return f"in [{_num(low)}, {_num(below)})"
    if low is not None and high is not None:
        return f"from {_num(low)} to {_num(high)}"
    if low is not None:
        return f"at least {_num(low)}"
    if high is not None:
        return f"at most {_num(high)}"
    return ""


_TYPES = {
    bool: ("true or false", lambda v: isinstance(v, bool)),
    int: ("a whole number", lambda v: isinstance(v, int) and not isinstance(v, bool)),
    float: ("a number", lambda v: isinstance(v, (int, float)) and not isinstance(v, bool)),
    str: ("a string", lambda v: isinstance(v, str)),
}


def _check_type(field: dataclasses.Field, value: Any) -> None:
    """Refuse a value whose type is not that of the field's default (ints pass for floats)."""
    kind = type(field.default)
    if kind not in _TYPES:
        return
    name, is_kind = _TYPES[kind]
    if not is_kind(value):
        raise ConfigError(f"{field.name} must be {name}; got {shown_value(value)}")
    if kind is float and not math.isfinite(value):
        raise ConfigError(f"{field.name} must be a finite number; got {shown_value(value)}")


def check_annotated(cls: type, values: Mapping[str, Any]) -> None:
    """Refuse a value of ``values`` whose type does not fit the annotation of the field of
    dataclass ``cls`` it is meant for (``int``, ``float``, ``bool``, ``str``, ``X | None``, a
    ``Literal``), with a :class:`ConfigError`: for configs without :func:`option` metadata
    (the models'), read back from a hand-editable ``config.json``. A name that is not a field,
    or a field without a default that is missing, is refused too."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for name in values:
        if name not in fields:
            raise ConfigError(f"{cls.__name__} has no field {shown_value(name)}")
    for name, f in fields.items():
        no_default = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        if f.init and no_default and name not in values:
            raise ConfigError(f"{cls.__name__} needs a value for {name!r}, and it has none")
    hints = typing.get_type_hints(cls)
    for name, value in values.items():
        if name in hints and not _fits(hints[name], value):
            raise ConfigError(f"{name} must be {_describe(hints[name])}; got {shown_value(value)}")


def _fits(annotation: Any, value: Any) -> bool:
    if annotation in _TYPES:
        return _TYPES[annotation][1](value) and not (
            annotation is float and not math.isfinite(value)
        )
    if typing.get_origin(annotation) is typing.Literal:
        return value in typing.get_args(annotation)
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return any(_fits(a, value) for a in typing.get_args(annotation))
    if annotation is type(None):
        return value is None
    return True  # a type this check does not know: left to the config's own checks


def _describe(annotation: Any) -> str:
    if annotation in _TYPES:
        return _TYPES[annotation][0]
    if typing.get_origin(annotation) is typing.Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(annotation))
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return " or ".join(_describe(a) for a in typing.get_args(annotation))
    return "null" if annotation is type(None) else getattr(annotation, "__name__", "valid")


def check_field(field: dataclasses.Field, value: Any) -> None:
    """Raise :class:`ConfigError` unless ``value`` suits ``field`` (type, range, choices); a
    nested config must be one of its class (its own fields were checked when it was made)."""
    if field.metadata.get("nested"):
        kind = type(_nested_default(field))
        if not isinstance(value, kind):  # else an AttributeError when the model is built
            raise ConfigError(f"{field.name} must be a {kind.__name__}; got {shown_value(value)}")
        return
    if "help" not in field.metadata:
        return
    _check_type(field, value)
    meta = field.metadata
    if meta["choices"] is not None and value not in meta["choices"]:
        problem = f"must be {allowed(field)}"
    elif meta["low"] is not None and value < meta["low"]:
        problem = (
            "must not be negative" if meta["low"] == 0 else f"must be at least {_num(meta['low'])}"
        )
    elif meta["high"] is not None and value > meta["high"]:
        problem = f"must be at most {_num(meta['high'])}"
    elif meta["below"] is not None and value >= meta["below"]:
        problem = f"must be below {_num(meta['below'])}"
    else:
        return
    raise ConfigError(f"{field.name} {problem}; got {shown_value(value)}")


def check_fields(config: Any) -> None:
    """Check every declared field of the dataclass instance ``config``."""
    for field in dataclasses.fields(config):
        check_field(field, getattr(config, field.name))


def _nested_default(field: dataclasses.Field) -> Any:
    """The default instance of a nested config field (declared with a default_factory)."""
    factory = field.default_factory
    assert callable(factory)  # a nested field always has one
    return factory()


def flat_fields(cls: type) -> Iterator[tuple[dataclasses.Field, Any]]:
    """``(field, default)`` for every leaf field of ``cls``, nested configs flattened.

    The defaults of a nested config's fields are those of the owner's default instance, so a
    task's own model size shows as the flags' defaults.
    """
    for field in dataclasses.fields(cls):
        if field.metadata.get("nested"):
            inner = _nested_default(field)
            for leaf in dataclasses.fields(inner):
                yield leaf, getattr(inner, leaf.name)
        else:
            yield field, field.default


def build(cls: type, values: Mapping[str, Any]) -> Any:
    """``cls`` from flat ``values`` (leaf field -> value); nested configs are filled in.

    Leaf fields missing from ``values`` keep their defaults. Raises :class:`ConfigError` for
    an unknown field or a bad value.
    """
    values = dict(values)
    kwargs = {}
    for field in dataclasses.fields(cls):
        if field.metadata.get("nested"):
            inner = _nested_default(field)
            names = {f.name for f in dataclasses.fields(inner)}
            mine = {name: values.pop(name) for name in names & set(values)}
            kwargs[field.name] = dataclasses.replace(inner, **mine) if mine else inner
        elif field.name in values:
            kwargs[field.name] = values.pop(field.name)
    if values:
        raise ConfigError(f"{cls.__name__} has no field {shown_value(sorted(values)[0])}")
    try:
        return cls(**kwargs)
    except TypeError as e:  # a required field without a default
        raise ConfigError(f"{cls.__name__}: {e}") from e


def from_json(cls: type, data: Any) -> Any:
    """``cls`` from its ``dataclasses.asdict`` form, as read from a ``config.json``.

    Accepts the flat form of older runs too (nested fields at the top level). Anything that
    is not a JSON object of known fields is a :class:`ConfigError`.
    """
    if not isinstance(data, dict):
        raise ConfigError(f"the {cls.__name__} must be a JSON object; got {type(data).__name__}")
    nested = {f.name: f for f in dataclasses.fields(cls) if f.metadata.get("nested")}
    flat = {}
    for key, value in data.items():
        if key in nested and not isinstance(value, dict):
            inner = ", ".join(f.name for f in dataclasses.fields(_nested_default(nested[key])))
            raise ConfigError(f"{key} must be a JSON object of {inner}; got {shown_value(value)}")
        if isinstance(value, dict):
            flat.update(value)
        else:
            flat[key] = value
    return build(cls, flat)


def flat_dict(config: Any) -> dict[str, Any]:
    """The leaf fields of a config as one flat dict (nested configs merged in)."""
    out = {}
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        if field.metadata.get("nested"):
            out.update(flat_dict(value))
        else:
            out[field.name] = value
    return out


# Config fields that count layers (attnlab's, Hugging Face's). Even the meta device builds
# each layer as a Python object: a billion of them would take hours and all the memory.
LAYER_FIELDS = (
    "num_layers",
    "num_encoder_layers",
    "num_decoder_layers",
    "num_hidden_layers",
    "n_layer",
)
MAX_LAYERS = 10_000


def check_depth(values: Mapping[str, Any]) -> None:
    """Refuse a config (a mapping of its fields) of more than :data:`MAX_LAYERS` layers,
    before anything is built."""
    for name in LAYER_FIELDS:
        depth = values.get(name)
        if isinstance(depth, int) and depth > MAX_LAYERS:
            raise ConfigError(f"{name} must be at most {MAX_LAYERS:,}; got {depth:,}")
