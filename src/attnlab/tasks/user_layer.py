"""Check a user's ``--layer`` or ``--decoder-layer FILE.py:ClassName`` against its contract
before the model is built.

:func:`user_layer_fields` (an encoder layer), :func:`user_decoder_layer_fields` (a decoder
layer) and :func:`user_llama_block_fields` (a Llama block) import the file, build one layer
at the task's size and run a tiny probe forward with the masks the model will give it, so
that a layer that does not fit gets one sentence naming what is wrong (no such file, not a
.py file, an error while importing, no such class, not an ``nn.Module``, a constructor that
refuses its contract's arguments, a forward that fails or returns a non-tensor or the wrong
shape, and for a Llama block one whose earlier outputs read later positions), before the
full model is allocated. The contracts themselves are stated in
:mod:`attnlab.models.user_layer`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypedDict

import torch
from torch import Tensor, nn

from attnlab.errors import ConfigError
from attnlab.models.llama import LlamaConfig
from attnlab.models.user_layer import (
    CONTRACT,
    DECODER_CONTRACT,
    LLAMA_CONTRACT,
    LayerError,
    file_sha256,
    load_layer_class,
    split_layer_spec,
)
from attnlab.nn.masks import causal_mask

PROBE_BATCH, PROBE_LEN, PROBE_SOURCE_LEN = 2, 3, 4

# The names of the constructor arguments of each contract, for the messages.
LAYER_ARGS = ("d_model", "num_heads", "d_ff", "dropout")
LLAMA_ARGS = ("d_model", "num_heads", "num_kv_heads", "d_ff", "eps", "rope_theta")


def _construct(
    layer_class: type[nn.Module], args: tuple, names: tuple[str, ...], contract: str
) -> nn.Module:
    """``layer_class(*args)``; ConfigError naming the arguments ``names`` if it fails."""
    name = layer_class.__name__
    try:
        return layer_class(*args)
    except TypeError as e:
        raise ConfigError(
            f"{name}({', '.join(names)}) failed ({e}): the layer must be {contract}"
        ) from e
    except Exception as e:
        shown = ", ".join(str(a) for a in args)
        raise ConfigError(f"{name}({shown}) raised {type(e).__name__}: {e}") from e


def _padding_mask(length: int) -> Tensor:
    """A padding mask ``(2, 1, 1, length)`` whose second sequence ends in padding."""
    mask = torch.ones(PROBE_BATCH, 1, 1, length, dtype=torch.bool)  # (B, 1, 1, length)
    mask[1, ..., -1] = False
    return mask


def _encoder_inputs(d_model: int, generator: torch.Generator) -> tuple[tuple, dict]:
    """An encoder layer's probe: ``x (2, 3, d_model)`` and a padding mask ``(2, 1, 1, 3)``."""
    x = torch.randn(PROBE_BATCH, PROBE_LEN, d_model, generator=generator)  # (B, T, d_model)
    return (x,), {"mask": _padding_mask(PROBE_LEN)}


def _decoder_inputs(d_model: int, generator: torch.Generator) -> tuple[tuple, dict]:
    """A decoder layer's probe: ``x (2, 3, d_model)``, ``memory (2, 4, d_model)`` (a source of
    another length), the causal mask ``(3, 3)`` and a source padding mask ``(2, 1, 1, 4)``."""
    x = torch.randn(PROBE_BATCH, PROBE_LEN, d_model, generator=generator)  # (B, T, d_model)
    memory = torch.randn(PROBE_BATCH, PROBE_SOURCE_LEN, d_model, generator=generator)  # (B, S, .)
    masks = {"tgt_mask": causal_mask(PROBE_LEN), "memory_mask": _padding_mask(PROBE_SOURCE_LEN)}
    return (x, memory), masks


def _llama_inputs(d_model: int, generator: torch.Generator) -> tuple[tuple, dict]:
    """A Llama block's probe: ``x (2, 3, d_model)`` alone (the block masks causally itself)."""
    x = torch.randn(PROBE_BATCH, PROBE_LEN, d_model, generator=generator)  # (B, T, d_model)
    return (x,), {}


def _described(name: str, args: tuple, kwargs: dict) -> str:
    """``Layer.forward(x (2, 3, 16), mask=(2, 1, 1, 3))``: the call, with its shapes."""
    shown = [f"{n} {tuple(a.shape)}" for n, a in zip(("x", "memory"), args, strict=False)]
    shown += [f"{n}={tuple(a.shape)}" for n, a in kwargs.items()]
    return f"{name}.forward({', '.join(shown)})"


def _probe(layer: nn.Module, args: tuple, kwargs: dict) -> Tensor:
    """One forward on the probe inputs, its output; ConfigError if the layer misfits."""
    name = type(layer).__name__
    try:
        out = layer.eval()(*args, **kwargs)
    except Exception as e:
        raise ConfigError(f"{_described(name, args, kwargs)} raised {type(e).__name__}: {e}") from e
    if not isinstance(out, Tensor):
        raise ConfigError(
            f"{name}.forward must return one tensor (B, T, d_model); it returned a "
            f"{type(out).__name__}"
        )
    x = args[0]
    if tuple(out.shape) != tuple(x.shape):
        raise ConfigError(
            f"{name}.forward returned shape {tuple(out.shape)} for x of shape "
            f"{tuple(x.shape)}; it must return (B, T, d_model), the shape of x"
        )
    return out


def _check_causal(layer: nn.Module, x: Tensor, out: Tensor) -> None:
    """ConfigError unless changing the last position of ``x (B, T, d_model)`` leaves the
    outputs ``out (B, T, d_model)`` of the earlier positions as they were."""
    changed = x.clone()
    changed[:, -1] += 1.0  # (B, T, d_model): only the last position differs
    if not torch.allclose(layer(changed)[:, :-1], out[:, :-1], atol=1e-5):
        name = type(layer).__name__
        raise ConfigError(
            f"{name}.forward is not causal: changing the last of {x.size(1)} positions changed "
            "the outputs of the earlier ones (mask the future: position t reads positions "
            "<= t only)"
        )


Construct = Callable[[type[nn.Module]], nn.Module]
Inputs = Callable[[int, torch.Generator], tuple[tuple, dict]]


def _checked_sha256(
    spec: str, construct: Construct, d_model: int, flag: str, inputs: Inputs, causal: bool = False
) -> str:
    """Load the layer ``spec``, build it with ``construct(layer_class)`` and probe it on
    ``inputs(d_model, generator)`` (and its causality if ``causal``); its file's sha256."""
    try:
        layer_class = load_layer_class(spec)
    except LayerError as e:
        raise ConfigError(f"{flag}: {e}") from e
    # The probe runs on the CPU with its own random numbers (the caller's seeded weights stay
    # as they would be without it), even inside a ``meta``-device context.
    with torch.device("cpu"), torch.random.fork_rng(devices=[]), torch.no_grad():
        layer = construct(layer_class)
        args, kwargs = inputs(d_model, torch.Generator().manual_seed(0))
        out = _probe(layer, args, kwargs)
        if causal:
            _check_causal(layer, args[0], out)
    return file_sha256(split_layer_spec(spec)[0])


def _sized(size: Any, contract: str) -> Construct:
    """Builds a layer class as ``Layer(d_model, num_heads, d_ff, dropout)`` of ``size``."""
    args = (size.d_model, size.heads, size.d_ff, size.dropout)
    return lambda layer_class: _construct(layer_class, args, LAYER_ARGS, contract)


class LayerFields(TypedDict, total=False):
    """A model config's fields naming a user's encoder layer or Llama block (none: attnlab's)."""

    layer: str
    layer_sha256: str


class DecoderLayerFields(TypedDict, total=False):
    """A model config's fields naming a user's decoder layer (none: attnlab's)."""

    decoder_layer: str
    decoder_layer_sha256: str


def user_layer_fields(spec: str, size: Any) -> LayerFields:
    """The model-config fields ``{"layer", "layer_sha256"}`` of a checked encoder layer.

    ``size`` is the task's :class:`~attnlab.configs.ModelSize`. Raises
    :class:`~attnlab.errors.ConfigError` (one sentence).
    """
    sha256 = _checked_sha256(spec, _sized(size, CONTRACT), size.d_model, "--layer", _encoder_inputs)
    return {"layer": spec, "layer_sha256": sha256}


def user_decoder_layer_fields(spec: str, size: Any) -> DecoderLayerFields:
    """The model-config fields ``{"decoder_layer", "decoder_layer_sha256"}`` of a checked
    decoder layer (probed with the causal mask ``(T, T)`` and a source padding mask
    ``(B, 1, 1, S)``, ``S != T``). Raises :class:`~attnlab.errors.ConfigError`."""
    construct = _sized(size, DECODER_CONTRACT)
    sha256 = _checked_sha256(spec, construct, size.d_model, "--decoder-layer", _decoder_inputs)
    return {"decoder_layer": spec, "decoder_layer_sha256": sha256}


def user_llama_block_fields(spec: str, config: LlamaConfig) -> LayerFields:
    """The Llama-config fields ``{"layer", "layer_sha256"}`` of a checked Llama block, built
    as ``Layer(*config.user_block_args())`` (the llama practical's ``LlamaBlock``), probed
    with ``x (2, 3, d_model)`` alone and checked to be causal. Raises
    :class:`~attnlab.errors.ConfigError` (one sentence)."""
    args = config.user_block_args()

    def construct(layer_class: type[nn.Module]) -> nn.Module:
        return _construct(layer_class, args, LLAMA_ARGS, LLAMA_CONTRACT)

    sha256 = _checked_sha256(
        spec, construct, config.hidden_size, "--layer", _llama_inputs, causal=True
    )
    return {"layer": spec, "layer_sha256": sha256}
