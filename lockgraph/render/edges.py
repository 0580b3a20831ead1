"""`lockgraph scan --format edges`: one line per lock-class edge, for diffs and for joining
runtime reports against the static graph with standard tools (sort, join, awk).

    from<TAB>to<TAB>file:line<TAB>function

The place is the edge's first witness (its call site in `function`); lines come in the
order of (from, to), one edge at a time, so a whole tree's millions of edges are written
without building the output first.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from lockgraph.pipeline import StaticScan


def _field(text: str) -> str:
    """A lock name as one field: tabs and line breaks would split or end the line."""
    return text.replace("\t", " ").replace("\n", " ").replace("\r", " ")


def scan_edges(st: StaticScan) -> Iterator[str]:
    from lockgraph.pipeline import display

    for (a, b), e in sorted(st.solved.edges.items()):
        step = e.raw[0][0]  # the call site only: `evidence` would search every witness's chain
        yield (f"{_field(a)}\t{_field(b)}\t{display(step.file, st.root)}:{step.line}"
               f"\t{step.function}\n")
