"""Your own encoder layer, decoder layer or Llama block in attnlab's models: load it from a
file, stack it like attnlab's.

``attnlab train names --layer my_layer.py:TransformerEncoderLayer`` builds the model with your
class in place of :class:`~attnlab.nn.EncoderLayer`; ``attnlab train translate-small
--decoder-layer my/decoder.py:DecoderLayer`` puts yours in place of
:class:`~attnlab.nn.DecoderLayer`; ``attnlab train shakespeare --arch llama --layer
my/llama.py:LlamaBlock`` puts yours in place of attnlab's Llama block in
:class:`~attnlab.models.Llama`. The class must follow the constructor contract of the
encoder, the decoder or the llama practical (``attnlab exercise start``):

* ``Layer(d_model: int, num_heads: int, d_ff: int, dropout: float)``, an ``nn.Module``;
* an encoder layer's ``forward(x, mask=None)`` with ``x: (B, T, d_model)`` and ``mask`` bool
  ``(B, 1, 1, T)``, ``True`` = may attend (a padding mask), or ``None``; it returns
  ``(B, T, d_model)``;
* a decoder layer's ``forward(x, memory, tgt_mask=None, memory_mask=None)`` with
  ``x: (B, T, d_model)``, the encoder output ``memory: (B, S, d_model)``, ``tgt_mask`` bool
  ``(T, T)`` (the causal mask) and ``memory_mask`` bool ``(B, 1, 1, S)`` (the source padding
  mask), ``True`` = may attend; it returns ``(B, T, d_model)``;
* a Llama block is built as ``Layer(d_model: int, num_heads: int, num_kv_heads: int, d_ff:
  int, eps: float, rope_theta: float)`` (``d_ff``: the SwiGLU hidden width; ``eps``: the
  RMSNorms'; ``rope_theta``: the rotary base) and has no dropout; its ``forward(x)`` takes
  ``x: (B, T, d_model)``, the whole sequence from position 0, and returns ``(B, T,
  d_model)``, attending causally (position ``t`` reads positions ``<= t`` only): it builds
  its rotary tables and causal mask itself, on ``x``'s device. It keeps no key/value cache,
  so generation recomputes the whole context at every step.

The file is one self-contained Python file (it may import torch and installed packages); it
runs inside the training process, as any code you train does. A run records the file's
absolute path, the class name and the file's sha256, so reloading the run (``attnlab eval``,
``predict``, ``translate``, ``generate``, ``--resume``) imports the same file again, and
refuses it if it has changed.

This module imports only torch, :mod:`attnlab.nn` and the standard library (it is part of
:mod:`attnlab.models`); its :class:`LayerError` is a ``ValueError`` with one sentence, which
:mod:`attnlab.tasks.user_layer` turns into attnlab's own error for the command line.
"""

from __future__ import annotations

import hashlib
import importlib.util
import inspect
import sys
from pathlib import Path
from types import ModuleType

import torch
from torch import Tensor, nn

from attnlab.nn.masks import causal_mask

CONTRACT = (
    "Layer(d_model, num_heads, d_ff, dropout), an nn.Module whose forward(x, mask=None) maps "
    "x (B, T, d_model) and a bool padding mask (B, 1, 1, T), True = may attend, "
    "to (B, T, d_model)"
)
DECODER_CONTRACT = (
    "Layer(d_model, num_heads, d_ff, dropout), an nn.Module whose forward(x, memory, "
    "tgt_mask=None, memory_mask=None) maps x (B, T, d_model), memory (B, S, d_model), a bool "
    "causal mask (T, T) and a bool source padding mask (B, 1, 1, S), True = may attend, "
    "to (B, T, d_model)"
)
LLAMA_CONTRACT = (
    "Layer(d_model, num_heads, num_kv_heads, d_ff, eps, rope_theta), an nn.Module whose "
    "forward(x) maps x (B, T, d_model) to (B, T, d_model), attending causally (position t "
    "reads positions <= t only)"
)

_MODULES: dict[tuple[Path, str], ModuleType] = {}  # (file, sha256) -> its module, imported once


class LayerError(ValueError):
    """A user's layer file or class does not fit the contract (one sentence)."""


def split_layer_spec(spec: str) -> tuple[Path, str]:
    """``"FILE.py:ClassName"`` -> (the file, the class name)."""
    if not isinstance(spec, str):  # else "'int' object has no attribute 'rpartition'"
        raise TypeError(f"a layer is given as a string FILE.py:ClassName; got {spec!r}")
    file, sep, name = spec.rpartition(":")
    if not sep or not file or not name.isidentifier():
        raise LayerError(f"a layer is given as FILE.py:ClassName; got {spec!r}")
    return Path(file), name


def file_sha256(path: Path) -> str:
    """The sha256 of a file's bytes, in hex."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _import_file(path: Path, digest: str) -> ModuleType:
    """Execute the file as a module of its own (once per file content)."""
    key = (path, digest)
    if key in _MODULES:
        return _MODULES[key]
    name = f"attnlab_user_layer_{digest[:16]}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise LayerError(f"{path} cannot be imported as a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses and pickling look their module up here
    try:
        spec.loader.exec_module(module)
    except SyntaxError as e:
        del sys.modules[name]
        line = f" on line {e.lineno}" if e.lineno else ""  # a null byte has no line number
        raise LayerError(f"{path} has a syntax error{line}: {e.msg}") from e
    except SystemExit as e:  # the file is a script: it must only define its class
        del sys.modules[name]
        raise LayerError(
            f"importing {path} called sys.exit({e.code!r}): a layer file may be imported only "
            "to define its class (put script code under if __name__ == '__main__':)"
        ) from e
    except Exception as e:
        del sys.modules[name]
        raise LayerError(f"importing {path} raised {type(e).__name__}: {e}") from e
    _MODULES[key] = module
    return module


def load_layer_class(spec: str, sha256: str | None = None) -> type[nn.Module]:
    """The class named by ``"FILE.py:ClassName"``; raises :class:`LayerError` (one sentence)
    for a missing or non-Python file, a file that fails to import, a missing class or one that
    is not an ``nn.Module`` subclass, and, when ``sha256`` is given, a file whose content has
    changed since (a run was trained with it)."""
    path, name = split_layer_spec(spec)
    if not path.is_file():
        raise LayerError(f"layer file {path} does not exist")
    if path.suffix != ".py":
        raise LayerError(f"layer file {path} is not a Python file (.py)")
    digest = file_sha256(path)
    if sha256 is not None and digest != sha256:
        raise LayerError(
            f"{path} has changed since this run was trained with it (its sha256 differs): "
            "restore that version of the file, or train a new run"
        )
    found = getattr(_import_file(path, digest), name, None)
    if found is None:
        raise LayerError(f"{path} defines no class {name}")
    if not (inspect.isclass(found) and issubclass(found, nn.Module)):
        raise LayerError(f"{name} in {path} is not a subclass of torch.nn.Module")
    return found


class _UserLayerStack(nn.Module):
    """``num_layers`` of a user's layer class, each built as ``layer_class(d_model, num_heads,
    d_ff, dropout)``, and a final LayerNorm if ``final_norm`` (pre-LN layers need one, as
    attnlab's pre-LN stacks have)."""

    def __init__(
        self,
        num_layers: int,
        layer_class: type[nn.Module],
        d_model: int,
        num_heads: int,
        d_ff: int,
        dropout: float,
        final_norm: bool = False,
    ):
        super().__init__()
        self.layers = nn.ModuleList(
            layer_class(d_model, num_heads, d_ff, dropout) for _ in range(num_layers)
        )
        self.norm = nn.LayerNorm(d_model) if final_norm else None


class UserLayerEncoder(_UserLayerStack):
    """``num_layers`` of a user's layer class, stacked as :class:`~attnlab.nn.TransformerEncoder`
    stacks attnlab's (section 3.1), with a final LayerNorm if ``final_norm`` (pre-LN layers).

    Each layer is built as ``layer_class(d_model, num_heads, d_ff, dropout)`` and called as
    ``layer(x, mask=mask)``. Input and output ``(B, T, d_model)``; ``mask`` bool
    ``(B, 1, 1, T)``, ``True`` = may attend. A user's layer returns no attention weights, so
    ``return_attention=True`` raises ``ValueError``.
    """

    def forward(
        self, x: Tensor, mask: Tensor | None = None, return_attention: bool = False
    ) -> Tensor:
        """``x (B, T, d_model)`` through the user's layers (and the final norm):
        ``(B, T, d_model)``. ``mask``: bool ``(B, 1, 1, T)``, ``True`` = may attend."""
        if return_attention:
            raise ValueError("a layer of your own returns no attention weights to show")
        for layer in self.layers:
            x = layer(x, mask=mask)  # (B, T, d_model)
        return x if self.norm is None else self.norm(x)


class UserLayerDecoder(_UserLayerStack):
    """``num_layers`` of a user's decoder layer class, stacked as
    :class:`~attnlab.nn.TransformerDecoder` stacks attnlab's (section 3.1), with a final
    LayerNorm if ``final_norm`` (pre-LN layers), and called as it is.

    Each layer is built as ``layer_class(d_model, num_heads, d_ff, dropout)`` and called as
    ``layer(x, memory, tgt_mask=..., memory_mask=...)``: ``tgt_mask`` is the causal mask
    ``(T, T)`` when ``is_causal`` (else ``self_mask`` as given), ``memory_mask`` the source
    padding mask ``(B, 1, 1, S)``, all ``True`` where no source padding mask is given; bool,
    ``True`` = may attend. Input ``x (B, T, d_model)`` and ``memory (B, S, d_model)``, output
    ``(B, T, d_model)``. A user's layer keeps no key/value cache (:meth:`make_cache` is
    ``None``: decoding re-reads the prefix at each step) and returns no attention weights, so
    ``cache`` and ``return_attention=True`` raise ``ValueError``.
    """

    def make_cache(self) -> None:
        """No cache: a user's layer computes attention over the whole prefix at every step."""
        return None

    def forward(
        self,
        x: Tensor,
        memory: Tensor | None,
        self_mask: Tensor | None = None,
        memory_mask: Tensor | None = None,
        is_causal: bool = False,
        cache: list | None = None,
        return_attention: bool = False,
    ) -> Tensor:
        """``x (B, T, d_model)`` through the user's decoder layers, each given
        ``memory (B, S, d_model)``: ``(B, T, d_model)``. Masks are bool, ``True`` = may attend, made
        as the class docstring says."""
        if return_attention:
            raise ValueError("a decoder layer of your own returns no attention weights to show")
        if cache is not None:
            raise ValueError("a decoder layer of your own keeps no key/value cache")
        if memory is None:  # attnlab's own decoder refuses it too (no cache to read it from)
            raise ValueError("cross-attention needs memory (or a filled cache)")
        T = x.size(1)
        tgt_mask = causal_mask(T, device=x.device) if is_causal else self_mask  # (T, T)
        if memory_mask is None:  # every source position may be attended to
            B, S = memory.shape[:2]
            memory_mask = torch.ones(B, 1, 1, S, dtype=torch.bool, device=memory.device)
        for layer in self.layers:
            x = layer(x, memory, tgt_mask=tgt_mask, memory_mask=memory_mask)  # (B, T, d_model)
        return x if self.norm is None else self.norm(x)
