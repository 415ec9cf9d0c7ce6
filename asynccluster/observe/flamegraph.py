"""Collapsed stacks -> speedscope JSON, a flame graph SVG, and the top functions (issue 15).

``Stacks`` maps a stack (frame names, outermost first) to its sample count: what py-spy's
``raw`` output holds (``a;b;c 12`` per line) and what the stdlib sampler returns. One
converter for both tools, so ``asynccluster profile`` writes the same files either way.

speedscope: the "sampled" profile of https://www.speedscope.app/file-format-schema.json
(shared frames, one sample per distinct stack with its count as the weight). The SVG is a
classic flame graph (Brendan Gregg's layout): the root at the bottom, each frame as wide as
its share of the samples, children sorted by name; a frame's <title> gives its count and
share (hover in a browser). Frames narrower than :data:`MIN_WIDTH` pixels are left out.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from html import escape
from typing import Any

Stack = tuple[str, ...]
Stacks = dict[Stack, int]

WIDTH = 1200  # pixels
ROW = 16  # pixels per frame row
MIN_WIDTH = 0.5  # pixels
FONT = 11
SPEEDSCOPE_SCHEMA = "https://www.speedscope.app/file-format-schema.json"


def parse_collapsed(text: str) -> Stacks:
    """``frame;frame;frame COUNT`` lines (py-spy ``--format raw``) -> Stacks; bad lines skipped."""
    stacks: Counter[Stack] = Counter()
    for line in text.splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            stacks[tuple(stack.split(";"))] += int(count)
    return dict(stacks)


def speedscope(stacks: Stacks, name: str) -> dict[str, Any]:
    index: dict[str, int] = {}
    samples: list[list[int]] = []
    weights: list[int] = []
    for stack, count in stacks.items():
        samples.append([index.setdefault(frame, len(index)) for frame in stack])
        weights.append(count)
    total = sum(weights)
    return {
        "$schema": SPEEDSCOPE_SCHEMA,
        "shared": {"frames": [{"name": frame} for frame in index]},
        "profiles": [
            {"type": "sampled", "name": name, "unit": "none", "startValue": 0, "endValue": total,
             "samples": samples, "weights": weights}
        ],
        "name": name,
        "exporter": "asynccluster",
    }  # fmt: skip


def top_functions(stacks: Stacks, count: int = 10) -> list[dict[str, Any]]:
    """The functions with the most samples on top of the stack (self), with their total share."""
    own: Counter[str] = Counter()
    total: Counter[str] = Counter()
    samples = sum(stacks.values()) or 1
    for stack, weight in stacks.items():
        if stack:
            own[stack[-1]] += weight
        for frame in set(stack):
            total[frame] += weight
    return [
        {"function": frame, "self": weight, "self_pct": round(100.0 * weight / samples, 1),
         "total_pct": round(100.0 * total[frame] / samples, 1)}
        for frame, weight in own.most_common(count)
    ]  # fmt: skip


class _Node:
    __slots__ = ("children", "count", "name")

    def __init__(self, name: str) -> None:
        self.name = name
        self.count = 0
        self.children: dict[str, _Node] = {}


def _tree(stacks: Stacks) -> _Node:
    root = _Node("all")
    for stack, count in stacks.items():
        node = root
        node.count += count
        for frame in stack:
            node = node.children.setdefault(frame, _Node(frame))
            node.count += count
    return root


def svg(stacks: Stacks, title: str) -> str:
    """A flame graph of ``stacks`` as a standalone SVG document."""
    root = _tree(stacks)
    total = root.count or 1
    scale = WIDTH / total
    rects: list[tuple[float, int, float, _Node]] = []  # x, depth, width, node

    def place(node: _Node, x: float, depth: int) -> None:
        width = node.count * scale
        if width < MIN_WIDTH:
            return
        rects.append((x, depth, width, node))
        for child in sorted(node.children.values(), key=lambda n: n.name):
            place(child, x, depth + 1)
            x += child.count * scale

    place(root, 0.0, 0)
    depth = max((d for _, d, _, _ in rects), default=0) + 1
    height = (depth + 2) * ROW
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" '
        f'viewBox="0 0 {WIDTH} {height}" font-family="monospace" font-size="{FONT}">',
        '<rect width="100%" height="100%" fill="#fff"/>',
        f'<text x="{WIDTH / 2}" y="{ROW}" text-anchor="middle" font-size="{FONT + 3}">{escape(title)}</text>',
    ]
    for x, level, width, node in rects:
        y = height - (level + 1) * ROW
        share = 100.0 * node.count / total
        label = escape(node.name)
        chars = int((width - 4) / (FONT * 0.6))
        text = label if len(node.name) <= chars else escape(node.name[: max(0, chars - 2)] + "..") if chars > 3 else ""
        parts.append(
            f"<g><title>{label} ({node.count} samples, {share:.1f}%)</title>"
            f'<rect x="{x:.2f}" y="{y}" width="{width:.2f}" height="{ROW - 1}" fill="{_colour(node.name)}" rx="1"/>'
            + (f'<text x="{x + 2:.2f}" y="{y + ROW - 4}">{text}</text>' if text else "")
            + "</g>"
        )
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def _colour(name: str) -> str:
    """Warm colours, stable per function name (the same function has the same colour)."""
    digest = hashlib.md5(name.encode(), usedforsecurity=False).digest()
    return f"rgb({205 + digest[0] % 50},{80 + digest[1] % 130},{digest[2] % 60})"


def write(stacks: Stacks, path: str, fmt: str, title: str) -> None:
    """Write ``stacks`` to ``path`` as ``svg`` or ``speedscope`` JSON."""
    text = svg(stacks, title) if fmt == "svg" else json.dumps(speedscope(stacks, title))
    with open(path, "w", encoding="utf-8") as file:
        file.write(text)
