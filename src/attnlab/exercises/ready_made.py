"""What a student's file takes ready-made, found by reading it (never by running it).

A part that calls ``torch.nn.LayerNorm``, ``F.scaled_dot_product_attention`` or attnlab's own
blocks passes on that library's code, not the student's. The checker cannot tell from the
outputs (they are right), so it reads the file: every name below that the file uses, and
every import of attnlab, is reported beside the verdicts, unless the practical's own skeleton
uses it too (the decoder's skeleton hands out an attention built on
``F.scaled_dot_product_attention``; the attention practical's, ``nn.LayerNorm``). The teacher
decides what was allowed. A determined student can hide a call (``getattr``, ``exec``); this
reading is for the ordinary case.
"""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

from attnlab.exercises.registry import practical as get_practical
from attnlab.files import read_text

# The library pieces that do some part's whole work; a name also covers what it holds
# (torch.nn.Transformer covers torch.nn.Transformer.generate_square_subsequent_mask).
READY_MADE = (
    "torch.nn.MultiheadAttention",
    "torch.nn.Transformer",
    "torch.nn.TransformerEncoder",
    "torch.nn.TransformerEncoderLayer",
    "torch.nn.TransformerDecoder",
    "torch.nn.TransformerDecoderLayer",
    "torch.nn.LayerNorm",
    "torch.nn.RMSNorm",
    "torch.layer_norm",
    "torch.rms_norm",
    "torch.nn.functional.layer_norm",
    "torch.nn.functional.rms_norm",
    "torch.nn.functional.scaled_dot_product_attention",
    "torch.nn.functional.multi_head_attention_forward",
    "torch.optim.lr_scheduler.CosineAnnealingLR",
    "torch.optim.lr_scheduler.CosineAnnealingWarmRestarts",
    "torch.optim.lr_scheduler.LambdaLR",
    "torch.optim.lr_scheduler.LinearLR",
    "torch.optim.lr_scheduler.OneCycleLR",
    "torch.optim.lr_scheduler.SequentialLR",
    "attnlab",
)


def ready_made(practical: str, source: str) -> list[str]:
    """The ready-made pieces ``source`` (a student's file for ``practical``) uses and the
    practical's skeleton does not: ``["torch.nn.LayerNorm (line 42)", ...]`` in the order of
    their first use; ``[]`` for a file that does not parse (the checker says why)."""
    given = _given(practical)
    used = {name: line for name, line in _uses(source).items() if name not in given}
    return [f"{name} (line {line})" for name, line in sorted(used.items(), key=lambda u: u[1])]


@cache
def _given(practical: str) -> frozenset[str]:
    """The ready-made pieces the skeleton of ``practical`` itself uses."""
    template = get_practical(practical).template_module().__file__
    assert template is not None  # a module read from a .py file
    return frozenset(_uses(read_text(Path(template))))


def _uses(source: str) -> dict[str, int]:
    """Each entry of READY_MADE that ``source`` imports or names (for attnlab, each module it
    imports), with its first line."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):  # ValueError: a null byte (Python 3.10)
        return {}
    aliases = _aliases(tree)
    found: dict[str, int] = {}
    for node in ast.walk(tree):
        line = getattr(node, "lineno", 0)
        for dotted in _names_in(node, aliases):
            entry = next((e for e in READY_MADE if dotted == e or dotted.startswith(e + ".")), None)
            if entry == "attnlab":  # named as imported: attnlab.nn, attnlab.exercises...
                entry = dotted if isinstance(node, ast.Import | ast.ImportFrom) else None
            if entry is not None:
                found[entry] = min(found.get(entry, line), line)
    return found


def _aliases(tree: ast.Module) -> dict[str, str]:
    """What each imported name stands for: ``{"F": "torch.nn.functional", "nn": "torch.nn"}``."""
    aliases = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                top = alias.name.split(".")[0]
                aliases[alias.asname or top] = alias.name if alias.asname else top
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            for alias in node.names:
                aliases[alias.asname or alias.name] = f"{node.module}.{alias.name}"
    return aliases


def _names_in(node: ast.AST, aliases: dict[str, str]) -> list[str]:
    """The dotted names ``node`` stands for: an import's modules, or ``nn.LayerNorm`` read
    through the aliases as ``torch.nn.LayerNorm``."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if isinstance(node, ast.ImportFrom) and node.module and not node.level:
        return [f"{node.module}.{alias.name}" for alias in node.names]
    dotted = _dotted(node, aliases)
    return [] if dotted is None else [dotted]


def _dotted(node: ast.AST, aliases: dict[str, str]) -> str | None:
    if isinstance(node, ast.Name):
        return aliases.get(node.id)
    if isinstance(node, ast.Attribute):
        base = _dotted(node.value, aliases)
        return None if base is None else f"{base}.{node.attr}"
    return None
