"""The interactive attention explorer: one self-contained HTML file per input.

The explorer shows a list of :class:`~attnlab.viz.views.AttentionView` (one per kind of
attention: an encoder-decoder has encoder self-attention, decoder self-attention and
cross-attention) in two ways:

- a *head view*: the query tokens in a left column, the key tokens in a right column, and a
  line from each query to each key whose opacity and width grow with the attention weight;
  pick the layer and the kind of attention, toggle heads by colour, hover a token to see only
  its lines;
- a *model view*: a grid of layer x head heatmaps; click one for a large heatmap with the
  tokens on both axes and the weight under the mouse.

Everything (script, style, data) is inlined: the file opens offline, from ``file://``, and
makes no network request. The weights are embedded as JSON integers in units of
``1 / WEIGHT_SCALE`` (4 decimals), and the page is drawn on ``<canvas>`` elements, so a view
of 256 tokens stays responsive. Views of more than :data:`MAX_WEIGHTS` weights in all are
refused with an :class:`~attnlab.errors.InputError` before the page is built.

    html = render_explorer(task.attention_views(model, "3 1 4 1 5"))
    save_explorer(views, "view.html")
    attnlab.viz.show(views)          # inline in Jupyter
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import torch

from attnlab.errors import InputError
from attnlab.files import write_text
from attnlab.viz.views import AttentionView, check_views

# Weights are stored as round(weight * WEIGHT_SCALE): 4 decimals, and short JSON integers.
WEIGHT_SCALE = 10_000
# At most this many weights in one page: MiniLM (6 layers x 12 heads) on its full 512 tokens
# is 18.9 million (a 49 MB page); a 24-layer, 16-head BERT at 512 would be 100 million, a
# 400 MB page built from gigabytes of Python integers.
MAX_WEIGHTS = 2**25
_ASSETS = ("explorer.html", "explorer.css", "explorer.js")


def render_explorer(
    views: AttentionView | Sequence[AttentionView], title: str = "Attention explorer"
) -> str:
    """One self-contained HTML document exploring ``views``.

    Args:
        views: one view, or several kinds of attention of the same input (e.g. encoder
            self-attention, decoder self-attention, cross-attention). Each view's ``maps`` is a
            list with one ``(H, T_q, T_k)`` tensor per layer of weights in ``[0, 1]``, with
            ``T_q`` query labels and ``T_k`` key labels. Views may differ in layers, heads and
            tokens.
        title: the page's title and heading.

    Returns:
        The HTML text: script, style and data inlined; no external reference.

    Raises:
        InputError (a ``ValueError``): no view, or a view whose maps and labels disagree.
    """
    data = explorer_data(views, title)
    # Inside <script type="application/json"> only "</" could end the element early; escaping
    # <, > and & as JSON \u escapes keeps any token (say "</script>") inert, and JSON.parse
    # restores it exactly.
    data_json = (
        json.dumps(data, ensure_ascii=False, separators=(",", ":"))
        .replace("<", "\\u003c")
        .replace(">", "\\u003e")
        .replace("&", "\\u0026")
    )
    template, css, js = (_asset(name) for name in _ASSETS)
    parts = {"TITLE": html.escape(title), "CSS": css, "JS": js, "DATA": data_json}
    # One pass: text substituted for one placeholder is never scanned for another.
    return re.sub(r"\{\{(TITLE|CSS|JS|DATA)\}\}", lambda m: parts[m.group(1)], template)


def explorer_data(
    views: AttentionView | Sequence[AttentionView], title: str = "Attention explorer"
) -> dict[str, Any]:
    """The JSON-ready data the explorer embeds (after checking ``views``).

    Returns ``{"title", "scale", "views": [{"title", "queries", "keys", "layers", "heads",
    "weights"}]}`` where ``weights[layer][head][query][key]`` is ``round(weight * scale)``.
    """
    if not isinstance(title, str):  # else an AttributeError from inside html.escape
        raise InputError(f"title must be a str; got {type(title).__name__}")
    checked = check_views(views)
    _check_size(checked)
    return {
        "title": title,
        "scale": WEIGHT_SCALE,
        "views": [
            {
                "title": view.title or f"attention {number}",
                "queries": [str(label) for label in view.query_labels],
                "keys": [str(label) for label in view.key_labels],
                "layers": len(maps),
                "heads": int(maps[0].size(0)),
                "weights": [_quantise(m) for m in maps],
            }
            for number, (view, maps) in enumerate(checked, 1)
        ],
    }


def save_explorer(
    views: AttentionView | Sequence[AttentionView],
    path: str | Path,
    title: str = "Attention explorer",
) -> Path:
    """Write :func:`render_explorer` of ``views`` to ``path`` atomically; returns the path."""
    return write_text(Path(path), render_explorer(views, title))


@dataclass
class ExplorerWidget:
    """An explorer page that Jupyter displays inline (see :func:`show`).

    ``_repr_html_`` wraps the page in a sandboxed ``<iframe srcdoc=...>``: its scripts and
    element ids stay inside the frame, so several explorers can live in one notebook.
    """

    html: str
    height: int = 760

    def _repr_html_(self) -> str:
        return (
            f'<iframe srcdoc="{html.escape(self.html, quote=True)}" '
            f'style="width: 100%; height: {self.height}px; border: 1px solid #ddd;" '
            'sandbox="allow-scripts allow-downloads" '
            'title="attnlab attention explorer"></iframe>'
        )

    def save(self, path: str | Path) -> Path:
        """Write the page to ``path`` atomically (folders created); returns the path."""
        return write_text(Path(path), self.html)


def show(
    views: AttentionView | Sequence[AttentionView],
    title: str = "Attention explorer",
    height: int = 760,
) -> ExplorerWidget:
    """The explorer of ``views`` as a Jupyter-displayable object (``height`` in pixels).

    In a notebook, end a cell with ``attnlab.viz.show(views)``; elsewhere call ``.save(path)``.
    """
    # Checked before the page is built: -1 or "x" made an iframe that no browser sizes.
    if isinstance(height, bool) or not isinstance(height, int) or height < 1:
        raise InputError(f"height must be a whole number of pixels >= 1; got {height!r}")
    return ExplorerWidget(render_explorer(views, title), height)


# -- helpers -------------------------------------------------------------------------------
def _asset(name: str) -> str:
    """The text of a file shipped in ``attnlab/viz/explorer_assets/``."""
    return (resources.files("attnlab.viz") / "explorer_assets" / name).read_text(encoding="utf-8")


def _check_size(checked: list[tuple[AttentionView, list[torch.Tensor]]]) -> None:
    """Refuse views of more than :data:`MAX_WEIGHTS` weights, before building the page."""
    total = sum(m.numel() for _, maps in checked for m in maps)
    if total > MAX_WEIGHTS:
        raise InputError(
            f"the explorer would hold {total:,} attention weights (layers x heads x tokens x "
            f"tokens), more than its {MAX_WEIGHTS:,}: shorten the input, or write a .png"
        )


def _quantise(weights: torch.Tensor) -> list[list[list[int]]]:
    """``(H, T_q, T_k)`` weights in [0, 1] as nested lists of ``round(w * WEIGHT_SCALE)``."""
    return torch.round(weights.clamp(0, 1) * WEIGHT_SCALE).to(torch.int32).tolist()
