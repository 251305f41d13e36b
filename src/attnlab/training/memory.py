"""How much memory a model and one training step need, found before they are allocated.

The model is first built on PyTorch's ``meta`` device, which records shapes and allocates
nothing, so a config that asks for a model no machine can hold (a typo in ``--d-model``, a
hand-edited ``config.json``) gets one sentence instead of minutes of swapping and a crash.
One training step is then run there too, on the shape of a real micro-batch, to count the
layer outputs that the backward pass keeps: ``--block-size 100000`` is refused at once,
where it would otherwise fill the memory in the middle of the first step.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from attnlab.errors import ConfigError
from attnlab.machine import available_on, check_memory, refuse_if_short
from attnlab.tasks.base import Task
from attnlab.training.devices import to_device

BYTES_PER_PARAMETER = {"inference": 4, "training": 16}  # fp32 weights (+ grads, 2 Adam moments)
BYTES_PER_ACTIVATION = {"fp32": 4, "bf16": 2, "fp16": 2}  # what autocast's matmuls write
# What autograd keeps for the backward pass was 0.76x to 1.34x the layer outputs counted by
# activation_bytes on the five tasks (tests/training/test_memory.py): a step is refused only
# when this share of them is more than the memory free.
SURE_SHARE = 0.75


def count_parameters(build: Callable[[], nn.Module]) -> int:
    """The number of parameters of ``build()``, built on the meta device (no memory used)."""
    return _count(build)[0]


def _count(build: Callable[[], nn.Module]) -> tuple[int, int]:
    """``(parameters, bytes of buffers)`` of ``build()``, built on the meta device. A size
    past PyTorch's 64-bit counts (a hand-edited ``d_model`` of 2**40) is a ConfigError."""
    try:
        with torch.device("meta"):
            model = build()
    except (TypeError, RuntimeError) as e:
        if "overflow" not in str(e).lower():
            raise
        raise ConfigError(
            "a tensor of this model would hold more than 2**63 numbers, more than PyTorch can "
            "count: choose a smaller --d-model, --d-ff or vocabulary"
        ) from e
    buffer_bytes = sum(b.numel() * b.element_size() for b in model.buffers())
    return sum(p.numel() for p in model.parameters()), buffer_bytes


def check_fits(build: Callable[[], nn.Module], purpose: str = "training") -> int:
    """Refuse a model whose ``purpose`` ("training" or "inference") needs more memory than is
    available, its buffers (e.g. a table of positions) included; returns its parameter
    count."""
    parameters, buffer_bytes = _count(build)
    check_memory(
        parameters * BYTES_PER_PARAMETER[purpose] + buffer_bytes,
        f"the model has {parameters:,} parameters: {purpose}",
        "choose a smaller --d-model, --d-ff or --layers",
    )
    return parameters


def activation_bytes(
    build: Callable[[], nn.Module],
    loss: Callable[[nn.Module, Any], Tensor],
    batch: Any,
    bytes_per_value: int = 4,
) -> int:
    """Bytes of the layer outputs that one training forward pass of ``batch`` produces: the
    floating-point outputs of every leaf module (Linear, LayerNorm, dropout, embedding), about
    what the backward pass keeps (most are the saved inputs of the next layer).

    ``build()`` and ``loss(model, batch)`` run on the meta device, so nothing is allocated;
    ``batch`` is a real batch (on the CPU), moved there. The tensors inside functions (the
    fused attention kernel's own, the loss's) are not counted. Raises whatever the model
    raises when its forward pass cannot run on the meta device (e.g. ``.item()``).
    """
    total = 0

    def count(module: nn.Module, inputs: Any, output: Any) -> None:
        nonlocal total
        outputs = output if isinstance(output, tuple | list) else (output,)
        for t in outputs:
            if isinstance(t, Tensor) and t.is_floating_point():
                total += t.numel() * bytes_per_value

    with torch.device("meta"):
        model = build()
    model.train()
    for module in model.modules():
        if next(module.children(), None) is None:  # a leaf: its output is one activation
            module.register_forward_hook(count)
    loss(model, to_device(batch, torch.device("meta")))
    return total


def check_step_fits(task: Task, batch: Any, device: torch.device, precision: str) -> None:
    """Refuse, with a ConfigError, a micro-batch ``batch`` of ``task`` whose training step
    needs more memory than ``device`` has free: ``SURE_SHARE`` of its layer outputs
    (:func:`activation_bytes`) and a gradient for every parameter, less than it will take.
    A model whose forward pass cannot run on the meta device (a layer of your own that
    calls ``.item()``) is not checked."""
    bytes_per_value = BYTES_PER_ACTIVATION[precision]
    try:
        layer_outputs = activation_bytes(task.build_model, task.loss, batch, bytes_per_value)
    except Exception:  # the meta device cannot run this model: nothing is known
        return
    gradients = count_parameters(task.build_model) * 4
    examples = task.batch_size_of(batch)
    where = "this machine" if device.type == "cpu" else str(device)
    refuse_if_short(
        int(layer_outputs * SURE_SHARE) + gradients,
        available_on(device),
        f"one training step on a micro-batch of {examples:,} examples",
        "choose a smaller --batch-size, a larger --grad-accum, shorter sequences or a "
        "smaller model",
        where,
        bound="at least",
    )
