"""``from_hf``: turn an in-memory Hugging Face model into its attnlab twin.

``transformers`` is optional: nothing here imports it. Each converter lives in its own module
(``attnlab.interop.hf_<family>``) and is imported only when a model of its class arrives.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import torch
from torch import Tensor, nn

from attnlab.errors import InputError

# Hugging Face class name -> (module, function) of the converter that maps it.
CONVERTERS: dict[str, tuple[str, str]] = {
    "BertModel": ("attnlab.interop.hf_bert", "bert_from_hf"),
    "GPT2LMHeadModel": ("attnlab.interop.hf_gpt2", "gpt2_from_hf"),
    "LlamaForCausalLM": ("attnlab.interop.hf_llama", "llama_from_hf"),
}


def from_hf(model: Any) -> nn.Module:
    """The attnlab model with the weights of the Hugging Face ``model`` (in eval mode).

    Dispatches on ``type(model).__name__`` through :data:`CONVERTERS`, e.g. a
    ``transformers.BertModel`` becomes an :class:`attnlab.models.bert.Bert` whose last hidden
    states ``(B, T, D)`` equal the original's. Raises ``TypeError`` for other classes.
    """
    name = type(model).__name__
    if name not in CONVERTERS:
        raise TypeError(
            f"from_hf cannot convert a {name}; supported: {', '.join(sorted(CONVERTERS))}"
        )
    module_name, function_name = CONVERTERS[name]
    converter = getattr(importlib.import_module(module_name), function_name)
    return converter(model)


ModelT = TypeVar("ModelT", bound=nn.Module)  # one model class, whichever it is


def twin_of(
    hf_model: Any, model: ModelT, load: Callable[[ModelT, dict[str, Tensor]], None]
) -> ModelT:
    """``model`` moved to ``hf_model``'s device and dtype, loaded with its weights through
    ``load(model, hf_state_dict)``, in eval mode: what every converter returns."""
    first = next(hf_model.parameters())
    model = model.to(device=first.device, dtype=first.dtype)
    load(model, hf_model.state_dict())
    return model.eval()


def skeleton(build: Callable[[], ModelT]) -> ModelT:
    """``build()`` on the meta device: the model's parameter shapes without their memory, to
    check a checkpoint's tensors against its config before allocating anything.

    Raises :class:`~attnlab.errors.InputError` for sizes so large that torch cannot even
    compute a tensor's size (say ``hidden_size`` 10**12), or hold one in 64 bits (2**63,
    a ``TypeError`` whose message carries torch's C++ stack).
    """
    try:
        with torch.device("meta"):
            return build()
    except (RuntimeError, TypeError) as e:
        if isinstance(e, TypeError) and "Overflow" not in str(e):
            raise
        reason = "a size past 2**63" if isinstance(e, TypeError) else " ".join(str(e).split())
        raise InputError(f"the config's sizes are too large for any model ({reason})") from e


def check_state(model: nn.Module, mapped: Mapping[str, Tensor], sizes: str = "") -> None:
    """Refuse, with one sentence, a tensor of ``mapped`` that ``model`` cannot hold as it is:
    a shape other than the one ``model``'s config gives it (``sizes`` names that config's
    sizes in the message), or integer values where ``model`` has floating-point weights (a
    quantized checkpoint, which copying into float weights would silently spoil). ``model``
    may be on the meta device, so that nothing is allocated before the check.
    """
    for key, expected in model.state_dict().items():
        if key not in mapped:
            continue
        tensor = mapped[key]
        if tuple(tensor.shape) != tuple(expected.shape):
            raise InputError(
                f"tensor {key!r} has shape {tuple(tensor.shape)} but the config{sizes} needs "
                f"{tuple(expected.shape)}: the weights do not match config.json"
            )
        if expected.is_floating_point() and not tensor.is_floating_point():
            raise InputError(
                f"tensor {key!r} holds {str(tensor.dtype).removeprefix('torch.')} values: "
                "attnlab loads unquantized weights (float32, float16 or bfloat16) only"
            )
