"""The ``--layer FILE.py:ClassName`` option of the encoder tasks and ``--decoder-layer`` of the
translation tasks (imports no torch).

The option names a class of the user's own that replaces attnlab's encoder (or decoder)
layer; the config checks the form of the value and the file (it exists, it is a ``.py``
file) and stores the file's absolute path, so a run reloads it from any working directory.
Importing the file and probing the class happen when the model is built
(:mod:`attnlab.tasks.user_layer`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from attnlab.errors import ConfigError
from attnlab.options import option

LAYER_HELP = (
    "your own encoder layer, FILE.py:ClassName, in place of attnlab's; the class must be "
    "an nn.Module built as Layer(d_model, num_heads, d_ff, dropout) whose forward(x, "
    "mask=None) maps x (B, T, d_model) and a bool padding mask (B, 1, 1, T), True = may "
    "attend, to (B, T, d_model). The run records the file's path and sha256 and refuses to "
    "reload a changed file"
)

DECODER_LAYER_HELP = (
    "your own decoder layer, FILE.py:ClassName, in place of attnlab's; the class must be an "
    "nn.Module built as Layer(d_model, num_heads, d_ff, dropout) whose forward(x, memory, "
    "tgt_mask=None, memory_mask=None) maps x (B, T, d_model), memory (B, S, d_model), a bool "
    "causal mask (T, T) and a bool source padding mask (B, 1, 1, S), True = may attend, to "
    "(B, T, d_model). --norm-first defaults to False with it (post-LN, as in the paper). "
    "The run records the file's path and sha256 and refuses to reload a changed file"
)

LLAMA_LAYER_HELP = (
    "your own Llama block, FILE.py:ClassName (such as the LlamaBlock of the llama.py that "
    "attnlab exercise start writes), in place of attnlab's; needs --arch llama and --dropout "
    "0. The class must be an nn.Module built as "
    "Layer(d_model, num_heads, num_kv_heads, d_ff, eps, rope_theta), where num_kv_heads is "
    "--kv-heads and d_ff the SwiGLU width (2/3 of --d-ff, rounded up to a multiple of 8), "
    "whose forward(x) maps x (B, T, d_model) to (B, T, d_model), attending causally. "
    "Generation recomputes the whole context at each step (no key/value cache). The run "
    "records the file's path and sha256 and refuses to reload a changed file"
)

# The task-config fields that name a user's layer.
LAYER_FIELDS = ("layer", "decoder_layer")

# With --layer or --decoder-layer, these task options default to what the practicals' layers
# expect (a padding mask only, and the paper's post-LN), unless given explicitly.
LAYER_DEFAULTS = {"window": 0, "norm_first": False}


def layer_option(help: str = LAYER_HELP) -> Any:
    """The ``layer`` (or ``decoder_layer``) field of a task config ('' = attnlab's own)."""
    return option("", help, metavar="FILE.py:ClassName")


def checked_layer_spec(spec: str, flag: str = "--layer") -> str:
    """``"FILE.py:ClassName"`` with FILE made absolute; ConfigError, naming ``flag``, if
    malformed or missing."""
    file, sep, name = spec.rpartition(":")
    if not sep or not file or not name.isidentifier():
        raise ConfigError(f"{flag} takes FILE.py:ClassName; got {spec!r}")
    path = Path(file).expanduser()
    if not path.exists():
        raise ConfigError(f"{flag}: the file {path} does not exist")
    if not path.is_file() or path.suffix != ".py":
        raise ConfigError(f"{flag}: {path} is not a Python file (FILE.py:ClassName)")
    return f"{path.resolve()}:{name}"
