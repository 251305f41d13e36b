"""The practicals by name, each imported only when asked for.

``PRACTICALS`` maps a practical's name (also its file name: ``encoder`` -> ``encoder.py``) to
the module ``attnlab.exercises.practicals.<name>`` that defines ``PRACTICAL``. Importing a
practical imports torch and its solution, so nothing is imported until :func:`practical`.
"""

from __future__ import annotations

import importlib
import importlib.util

from attnlab.errors import InputError
from attnlab.exercises.core import Practical

PRACTICALS = {
    "encoder": "the names practical: positional encoding, encoder layer, encoder with a CLS token",
    "attention": "the reversal practical: scaled dot-product, multi-head attention, encoder "
    "block, warm-up schedule",
    "decoder": "the translation practical: causal mask, decoder layer, greedy decoding",
    "llama": "today's blocks: RMSNorm, rotary positions, SwiGLU, grouped-query attention, "
    "the pre-norm Llama block",
}


def practical(name: str) -> Practical:
    """The practical called ``name``; an unknown name raises :class:`InputError`."""
    if name not in PRACTICALS:
        raise InputError(f"no practical '{name}' (choose from {', '.join(PRACTICALS)})")
    if name not in available():
        raise InputError(f"the {name} practical is not available in this version of attnlab")
    return importlib.import_module(f"attnlab.exercises.practicals.{name}").PRACTICAL


def available() -> list[str]:
    """The practicals whose files exist in this installation (those being written are left out)."""
    return [
        name
        for name in PRACTICALS
        if importlib.util.find_spec(f"attnlab.exercises.practicals.{name}")
    ]
