"""Making and saving matplotlib figures without pyplot.

Figures are plain :class:`matplotlib.figure.Figure` objects, not registered with pyplot: saving
one needs no display and no backend, and attnlab never changes the process's matplotlib
backend (a notebook keeps its own, and its inline plots keep working).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from attnlab.files import atomic_write

# Dots per inch of the saved figures.
DPI = 110
# Matplotlib's Agg draws figures of fewer than 2**16 pixels a side, and only after drawing
# every panel: a larger one is refused before it is drawn (minutes of drawing, then an error).
MAX_SIDE_PIXELS = 2**16


def new_figure(**kwargs: Any) -> Figure:
    """A figure for saving to a file (``kwargs``: ``figsize``, ``layout``...)."""
    return Figure(**kwargs)


def save_figure(fig: Figure, path: str | Path) -> Path:
    """Write ``fig`` to ``path`` atomically (folders created, margins trimmed); returns it."""
    path = Path(path)
    fmt = path.suffix.lstrip(".").lower() or "png"
    atomic_write(path, lambda tmp: fig.savefig(tmp, format=fmt, dpi=DPI, bbox_inches="tight"))
    return path
