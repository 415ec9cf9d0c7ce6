"""Tables that fit the terminal (issue 11 item 7): ``status`` in 100 columns, ``top`` in any size.

:func:`fit_table` lays out a table like :func:`asynccluster.observe.format.table`, then, while
it is wider than ``width``: first cuts the *flexible* columns (a long "last exit" text) down
to their minimum with a "…", then drops whole columns in the given order of least importance.
Wider terminals therefore get more columns; ``--json`` always has every field. Pure
functions, no terminal access.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

GAP = 2  # spaces between two columns
ELLIPSIS = "…"


@dataclass(frozen=True)
class Layout:
    """How a table gives way: ``drop`` (header names, least important first), ``flexible``
    (header name -> the narrowest it may be cut to) and ``right`` (right-aligned headers)."""

    drop: tuple[str, ...] = ()
    flexible: tuple[tuple[str, int], ...] = ()
    right: frozenset[str] = frozenset()


def fit_table(headers: Sequence[str], rows: Sequence[Sequence[str]], layout: Layout, width: int) -> list[str]:
    """The table's lines, none wider than ``width`` where columns can be cut or dropped."""
    keep = list(range(len(headers)))
    widths = [max([len(headers[i]), *(len(row[i]) for row in rows)]) for i in range(len(headers))]
    limits = dict(layout.flexible)

    def total() -> int:
        return sum(widths[i] for i in keep) + GAP * (len(keep) - 1)

    for index, name in enumerate(headers):
        if name in limits and total() > width:
            widths[index] = max(limits[name], len(name), widths[index] - (total() - width))
    for name in layout.drop:
        if total() <= width:
            break
        if name in headers and headers.index(name) in keep and len(keep) > 1:
            keep.remove(headers.index(name))

    def line(cells: Sequence[str]) -> str:
        parts = []
        for i in keep:
            cell = _cut(cells[i], widths[i])
            parts.append(cell.rjust(widths[i]) if headers[i] in layout.right else cell.ljust(widths[i]))
        return (" " * GAP).join(parts).rstrip()[:width]

    return [line(headers), *(line(row) for row in rows)]


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: max(0, width - 1)] + ELLIPSIS


def wrap_fields(label: str, fields: Sequence[str], width: int, sep: str = ", ") -> list[str]:
    """``label`` then the fields, continued on indented lines so that none is wider than ``width``."""
    indent = " " * len(label)
    lines: list[str] = []
    current = label
    for index, text in enumerate(fields):
        piece = text + (sep if index < len(fields) - 1 else "")
        if current.strip() and len(current) + len(piece.rstrip()) > width and current != label:
            lines.append(current.rstrip())
            current = indent
        current += piece
    lines.append(current.rstrip())
    return [line[:width] for line in lines]


__all__ = ["Layout", "fit_table", "wrap_fields"]
