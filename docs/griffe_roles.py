"""A griffe extension for the API reference: Sphinx roles in docstrings become links.

It also reads an ``Args (torch.nn style):`` header as ``Args:`` (the parser knows only the
plain one), and splits the grouped entries of an ``Args:`` section (``temperature, top_k:
...``), which the Google-style parser would read as one parameter named ``temperature,
top_k``, into one entry per name with the shared description.

attnlab's docstrings cross-reference with Sphinx roles (``:class:`~attnlab.nn.BlockSpec```,
``:func:`greedy_search```), which Markdown would print as they are. Once the package is loaded,
each role becomes an optional cross-reference to the object it names, resolved the way Python
would resolve the name inside the docstring's module: a link where that object has a page, plain
code where it has none (a private helper, a module the reference leaves out).
"""

from __future__ import annotations

import re
from typing import Any

import griffe

_GROUP = re.compile(r"^(\s+)(\w+(?:, \w+)+): (.*)$")
_ROLE = re.compile(r":(?:class|func|meth|mod|attr|data|exc|obj):`(~?)([\w.]+)(\(\))?`")


def _resolve(obj: griffe.Object, name: str) -> str | None:
    """The full path of the object ``name`` means inside ``obj``'s docstring, or None."""
    scopes = [obj, *_parents(obj)]
    for scope in scopes:
        head, _, rest = name.partition(".")
        if head in scope.members:
            target = scope.members[head]
            try:
                found = target[rest] if rest else target
                return found.canonical_path
            except (KeyError, griffe.AliasResolutionError, griffe.CyclicAliasError):
                return None
    root = obj.package
    if name.startswith(root.name + "."):
        try:
            return root[name[len(root.name) + 1 :]].canonical_path
        except (KeyError, griffe.AliasResolutionError, griffe.CyclicAliasError):
            return None
    return None


def _split_grouped_args(text: str) -> str:
    """``a, b: text`` in an ``Args:`` section -> ``a: text`` and ``b: text``."""
    out, in_args = [], False
    for line in text.splitlines():
        if line.strip() == "Args (torch.nn style):":
            line = line.replace("Args (torch.nn style):", "Args:")
        if line.strip() == "Args:":
            in_args = True
        elif line.strip() and not line.startswith((" ", "\t")):
            in_args = False
        group = _GROUP.match(line) if in_args else None
        if group is None:
            out.append(line)
            continue
        indent, names, description = group.groups()
        out.extend(f"{indent}{name}: {description}" for name in names.split(", "))
    return "\n".join(out)


def _parents(obj: griffe.Object) -> list[griffe.Object]:
    out = []
    while obj.parent is not None:
        obj = obj.parent
        out.append(obj)
    return out


def _link(obj: griffe.Object, match: re.Match) -> str:
    tilde, name, call = match.group(1), match.group(2), match.group(3) or ""
    title = (name.rsplit(".", 1)[-1] if tilde else name) + call
    path = _resolve(obj, name)
    if path is None:
        return f"`{title}`"
    return f'<autoref identifier="{path}" optional><code>{title}</code></autoref>'


class SphinxRolesToLinks(griffe.Extension):
    """Rewrite every docstring of the loaded package once it is complete."""

    def on_package(self, *, pkg: griffe.Module, **kwargs: Any) -> None:
        self._rewrite(pkg, seen=set())

    def _rewrite(self, obj: griffe.Object, seen: set[str]) -> None:
        if obj.path in seen:
            return
        seen.add(obj.path)
        if obj.docstring is not None:
            text = _split_grouped_args(obj.docstring.value)
            obj.docstring.value = _ROLE.sub(lambda m: _link(obj, m), text)
        for member in obj.members.values():
            if not member.is_alias:
                self._rewrite(member, seen)
