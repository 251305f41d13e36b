"""Run directories, atomic checkpoints and loading.

A run directory holds everything needed to reload, resume and report::

    config.json         the task, its hyperparameters, the training config, the attnlab version
    model.safetensors   the best model so far (by the task's validation metric)
    checkpoint.pt       the last checkpoint: weights, optimizer, scheduler, step, RNG states,
                        and the configs it was trained with
    metrics.json        validation history, best and test metrics
    plots/              training curves and other figures
    tensorboard/        TensorBoard event files

Every file is written to a temporary file in the same directory and then renamed over the
old one (``os.replace`` is atomic on POSIX and Windows), so a crash or a ``kill -9`` never
leaves a truncated file: the reader sees the old version or the new one. The weights are
safetensors (no pickle); ``checkpoint.pt`` is read with ``torch.load(weights_only=True)``,
which refuses anything but tensors and plain containers.
"""

from __future__ import annotations

import dataclasses
import json
import pickle
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from attnlab import files
from attnlab.errors import RunDirError
from attnlab.files import atomic_write, parse_json
from attnlab.options import flat_dict

CONFIG = "config.json"
MODEL = "model.safetensors"
CHECKPOINT = "checkpoint.pt"
METRICS = "metrics.json"


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Write ``data`` as indented JSON, atomically."""
    atomic_write(path, lambda tmp: tmp.write_text(json.dumps(data, indent=2) + "\n"))


def refuse_non_file(path: Path) -> None:
    """Refuse a file of a run directory that is there but is a folder, a FIFO or a device
    (which a reader would call missing, or wait on for ever)."""
    files.refuse_non_file(path, RunDirError, "the run keeps a file")


def read_json(path: Path) -> dict[str, Any]:
    """Read a JSON file of a run directory, with a clear error if it is missing or corrupt."""
    refuse_non_file(path)
    if not path.is_file():
        raise RunDirError(f"{path} is missing: is {path.parent} an attnlab run directory?")
    try:
        return parse_json(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise RunDirError(f"{path} is not valid JSON ({e})") from e
    except ValueError as e:  # nested too deep, or a number too long
        raise RunDirError(f"{path} is not the JSON of an attnlab run ({e})") from e


def _unique_tensors(model: nn.Module) -> dict[str, Tensor]:
    """``model.state_dict()`` without the second name of a tied tensor.

    Tied weights (a decoder's output projection that is its embedding matrix, section 3.4)
    appear under two names; safetensors stores each tensor once, so the first name keeps it
    and the model's own tying restores the other on load.
    """
    tensors, seen = {}, set()
    for name, tensor in model.state_dict().items():
        key = (tensor.data_ptr(), tensor.shape, tensor.stride())
        if key not in seen:
            seen.add(key)
            tensors[name] = tensor.detach().contiguous()
    return tensors


def save_weights(path: Path, model: nn.Module, metadata: dict[str, str] | None = None) -> None:
    """Save ``model``'s parameters and persistent buffers as safetensors, atomically."""
    tensors = _unique_tensors(model)
    atomic_write(path, lambda tmp: save_file(tensors, str(tmp), metadata=metadata))


def check_tensors(path: Path, tensors: dict[str, Any], expected: dict[str, Tensor]) -> None:
    """Refuse ``tensors`` unless they are exactly the tensors ``expected`` (names, shapes,
    dtypes) and hold only finite numbers; the message names the first tensor at fault."""
    missing, extra = sorted(set(expected) - set(tensors)), sorted(set(tensors) - set(expected))
    if missing or extra:
        name = (missing or extra)[0]
        kind = "has no weight" if missing else "has a weight this model does not have:"
        raise RunDirError(f"{path} does not hold the weights of this model: it {kind} {name!r}")
    for name, want in expected.items():
        got = tensors[name]
        if not isinstance(got, Tensor) or got.shape != want.shape or got.dtype != want.dtype:
            found = f"{tuple(got.shape)} {got.dtype}" if isinstance(got, Tensor) else type(got)
            raise RunDirError(
                f"{path} does not hold the weights of this model: {name!r} is {found}, "
                f"expected {tuple(want.shape)} {want.dtype}"
            )
        if got.is_floating_point() and not torch.isfinite(got).all():
            raise RunDirError(f"{path} holds NaN or infinite values in {name!r}: refused")


def load_weights(path: Path, model: nn.Module) -> None:
    """Load safetensors weights into ``model``; missing, unreadable, truncated or foreign
    files, wrong dtypes and NaN or infinite values are errors of one sentence."""
    refuse_non_file(path)
    if not path.is_file():
        resume = ""
        if (path.parent / CHECKPOINT).is_file():  # stopped before its first validation
            resume = f" (its first validation writes one: continue with --resume {path.parent})"
        raise RunDirError(f"{path} is missing: the run has no saved model yet{resume}")
    try:
        with open(path, "rb"):
            pass  # a permission problem is reported as such, not as a missing file
        tensors = load_file(str(path))
    except PermissionError as e:
        raise RunDirError(f"cannot read {path}: permission denied") from e
    except (SafetensorError, OSError) as e:
        raise RunDirError(f"{path} is not a readable safetensors file ({e})") from e
    check_tensors(path, tensors, _unique_tensors(model))
    model.load_state_dict(tensors, strict=False)  # tied names are filled through their twin


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Save the resume state (plain containers of tensors and numbers), atomically."""
    atomic_write(path, lambda tmp: torch.save(state, tmp))


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Load a resume state written by :func:`save_checkpoint`, refusing pickled objects."""
    refuse_non_file(path)
    if not path.is_file():
        raise RunDirError(f"{path} is missing: there is no checkpoint to resume from")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types for corrupt or unsafe files
        raise _unloadable(path, e) from e
    if not isinstance(state, dict):
        raise RunDirError(
            f"{path} is not an attnlab checkpoint (it holds a {type(state).__name__})"
        )
    return state


def _unloadable(path: Path, error: Exception) -> RunDirError:
    """Why ``torch.load`` could not read the checkpoint ``path``, and what is left to use."""
    # torch.load(weights_only=True) met an object: "Unsupported class" before torch 2.4
    if "Unsupported global" in str(error) or "Unsupported class" in str(error):
        problem = "holds objects other than tensors and plain containers (not loaded)"
    elif isinstance(error, pickle.UnpicklingError):  # its text is about weights_only
        problem = "is truncated or corrupt (unreadable pickle data)"
    else:
        detail = str(error).split(". ")[0].strip() or type(error).__name__
        problem = f"is truncated or corrupt ({detail})"
    if (path.parent / MODEL).is_file():
        left = f"its best weights are kept apart, in {MODEL} (for eval and predict)"
    else:
        left = "the run must be trained again"
    return RunDirError(f"{path} {problem}, so the run cannot be resumed; {left}")


CHECKPOINT_KEYS = {"model", "optimizer", "scheduler", "step", "best", "best_step",
                   "bad_validations", "history", "rng"}  # fmt: skip


def check_checkpoint(
    path: Path, state: dict[str, Any], model: nn.Module, optimizer: Any, task: str
) -> None:
    """Refuse a checkpoint that is not this run's: another task or model, other tensors,
    NaN weights, a step that is not a count, or an optimizer state of another shape."""
    missing = sorted(CHECKPOINT_KEYS - set(state))
    if missing:
        raise RunDirError(f"{path} is not an attnlab checkpoint (it has no {missing[0]!r})")
    for key, want in (("task", task), ("model_class", type(model).__name__)):
        if key in state and state[key] != want:
            raise RunDirError(f"{path} is a checkpoint of {key} {state[key]!r}, not {want!r}")
    step = state["step"]
    if not isinstance(step, int) or isinstance(step, bool) or step < 0:
        raise RunDirError(f"{path} is not an attnlab checkpoint (its step is {step!r})")
    if not isinstance(state["model"], dict):
        raise RunDirError(f"{path} is not an attnlab checkpoint (no model weights)")
    check_tensors(path, state["model"], model.state_dict())
    saved = state["optimizer"]
    groups = saved.get("param_groups") if isinstance(saved, dict) else None
    if not isinstance(groups, list) or [len(g.get("params", ())) for g in groups] != [
        len(g["params"]) for g in optimizer.param_groups
    ]:
        raise RunDirError(f"{path} holds an optimizer state of another model or optimizer")


def run_configs(task_config: Any, train_config: Any) -> dict[str, dict[str, Any]]:
    """What a checkpoint records of the configs it was trained with: every task field, and
    the training fields that ``--resume`` may not change (the run's meaning), as JSON
    values (a tuple becomes a list, as in config.json)."""
    train = {
        field.name: getattr(train_config, field.name)
        for field in dataclasses.fields(train_config)
        if not field.metadata.get("resumable")
    }
    return json.loads(json.dumps({"task": flat_dict(task_config), "train": train}))


def check_run_configs(path: Path, state: dict[str, Any], now: dict[str, dict]) -> None:
    """Refuse to resume from ``state`` when ``now`` (:func:`run_configs` of the run's
    config.json) differs from what it was trained with: a hand-edited config.json, where a
    deleted field takes its default, would otherwise go on with other hyperparameters or
    another data split. Checkpoints of older versions record no configs."""
    saved = state.get("configs")
    if not isinstance(saved, dict):
        return
    for section, fields in now.items():
        recorded = saved.get(section, {})
        for name, value in fields.items():
            if name in recorded and recorded[name] != value:
                raise RunDirError(
                    f"{path.parent / CONFIG} was edited: its {name} is {value!r}, but "
                    f"{path.name} was trained with {recorded[name]!r}; restore it, or train "
                    "a new run"
                )
