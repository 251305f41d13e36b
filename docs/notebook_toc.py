"""A mkdocs hook: the table of contents of a notebook page links to its headings' real ids.

mkdocs-jupyter slugs a notebook's headings twice, differently: the page's table of contents
drops the inline code of a heading (``## 2. `PositionalEncoding` (section 3.5)`` ->
``#2-section-35``) while the rendered heading keeps it (``#2-positionalencoding-section-35``),
so those entries lead nowhere. This hook points each such entry at the next heading of the
same level in the page, in document order (the order both lists follow).
"""

from __future__ import annotations

import re
from typing import Any

_HEADING = re.compile(r'<h([1-6])\s+id="([^"]+)"')


def _entries(items: list[Any]) -> list[Any]:
    out = []
    for item in items:
        out.append(item)
        out.extend(_entries(item.children))
    return out


def on_page_content(html: str, page: Any, **kwargs: Any) -> str:
    if not page.file.src_uri.endswith(".ipynb"):
        return html
    headings = [(int(level), id_) for level, id_ in _HEADING.findall(html)]
    ids = {id_ for _, id_ in headings}
    position = 0  # headings before this one are taken
    for entry in _entries(list(page.toc)):
        if entry.id not in ids:
            same_level = [h for h in headings[position:] if h[0] == entry.level]
            if not same_level:
                continue
            entry.id = same_level[0][1]
        taken = [i for i, (_, id_) in enumerate(headings) if id_ == entry.id and i >= position]
        position = taken[0] + 1 if taken else position
    return html
