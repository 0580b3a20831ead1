"""The merged lock dependency graph and the queries the checks ask of it.

Nodes are lock classes named exactly as lockdep prints them; an edge A -> B means B was
acquired while A was held, and carries every piece of evidence that showed it.  Runtime
reports and static scans feed the same graph, so one query answers for both.
"""

from __future__ import annotations

import gc
from dataclasses import dataclass
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

from lockgraph.model import Edge, Report

if TYPE_CHECKING:
    import networkx as nx

FS_RECLAIM = "fs_reclaim"


def build_graph(reports: Iterable[Report]) -> nx.DiGraph:
    """One DiGraph from many reports; duplicated console copies add nothing.

    >>> from lockgraph.model import Edge, Report
    >>> r = Report("a.log", 1, "circular", edges=[Edge("A", "B", True, "chain", "a.log", 3)])
    >>> G = build_graph([r, r])
    >>> G["A"]["B"]["certain"], len(G["A"]["B"]["evidence"])
    (True, 1)
    """
    enabled = gc.isenabled()
    gc.disable()  # only containers are built here: a cyclic collection finds no garbage
    try:
        return _build_graph(reports)
    finally:
        if enabled:
            gc.enable()


def _build_graph(reports: Iterable[Report]) -> nx.DiGraph:
    import networkx as nx

    # What add_edge(G, e, seen) does edge by edge, gathered first and inserted at once: the
    # same nodes, edges and attributes in the same order (first sighting of each edge).
    seen: set[tuple] = set()
    edges: dict[tuple[str, str], dict] = {}
    for rep in reports:
        if rep.duplicate_of is not None:
            continue
        # A recursive (AA) acquisition is no dependency: lockdep records none for it, and
        # an edge from the locks held in between back to the class would turn the AA report
        # (its own finding, LG110) into an inferred ABBA cycle.
        again = rep.new_lock.name if rep.kind == "recursive" and rep.new_lock else None
        for e in rep.edges:
            if e.dst == again and e.source == "held_to_new":
                continue
            key = (e.src, e.dst, e.source, e.file, e.line)
            if key in seen:
                continue
            seen.add(key)
            data = edges.get((e.src, e.dst))
            if data is None:
                edges[(e.src, e.dst)] = {"evidence": [e], "certain": e.certain}
            else:
                data["evidence"].append(e)
                data["certain"] = data["certain"] or e.certain
    G = nx.DiGraph()
    G.add_edges_from((a, b, data) for (a, b), data in edges.items())
    return G


def add_edge(G: nx.DiGraph, e: Edge, seen: set[tuple] | None = None) -> None:
    key = (e.src, e.dst, e.source, e.file, e.line)
    if seen is not None:
        if key in seen:
            return
        seen.add(key)
    if G.has_edge(e.src, e.dst):
        data = G[e.src][e.dst]
        data["evidence"].append(e)
        data["certain"] = data["certain"] or e.certain
    else:
        G.add_edge(e.src, e.dst, evidence=[e], certain=e.certain)


def best_evidence(G: nx.DiGraph, a: str, b: str) -> Edge:
    """The evidence a reviewer should see first: certain before inferred, then by place."""
    return min(G[a][b]["evidence"], key=lambda e: (not e.certain, e.file, e.line, e.source))


def out_edges_sorted(G: nx.DiGraph, n: str) -> list[tuple[str, str]]:
    return sorted((n, m) for m in G.successors(n) if m != n)


def shortest_path_or_none(G: nx.DiGraph, a: str, b: str) -> list[str] | None:
    import networkx as nx

    try:
        return nx.shortest_path(G, a, b)
    except (nx.NetworkXNoPath, nx.NodeNotFound):
        return None


def reachable(G: nx.DiGraph, sources, reverse: bool = False) -> set[str]:
    """Nodes reachable from any of `sources` (or that reach one, `reverse`), sources
    included: one traversal, where a shortest-path search per pair on a whole-tree graph
    (millions of edges) would be one traversal each."""
    nxt = G.predecessors if reverse else G.successors
    seen = {s for s in sources if s in G}
    work = list(seen)
    while work:
        for m in nxt(work.pop()):
            if m not in seen:
                seen.add(m)
                work.append(m)
    return seen


def canonical_cycle(cycle: list[str]) -> tuple[str, ...]:
    """Rotate a cycle to start at its smallest name, so every report of it has one id.

    >>> canonical_cycle(["b", "c", "a"])
    ('a', 'b', 'c')
    """
    k = cycle.index(min(cycle))
    return tuple(cycle[k:] + cycle[:k])


@dataclass(slots=True)
class Cycles:
    """The cycles reported, and exactly what the enumeration bound left out."""

    cycles: list[tuple[str, ...]]
    components: int          # strongly connected components with a cycle
    partial: int             # of them, enumerated only in part (past the cap: one cycle each)

    @property
    def capped(self) -> bool:
        return self.partial > 0

    def blind_spot(self) -> str:
        return (f"cycle enumeration capped: {self.partial} of {self.components} cyclic "
                "component(s) show only some of their cycles (each shows at least its shortest)")


def cycles(G: nx.DiGraph, length_bound: int = 8, cap: int = 500) -> Cycles:
    """Distinct simple cycles (canonical, sorted), at least one per cyclic component.

    Enumeration is bounded (a dense /proc/lockdep graph has exponentially many cycles):
    up to `cap` cycles of length <= `length_bound` in all; past the cap, and in a component
    without a short cycle, a component yields its shortest cycle through its smallest node,
    so no deadlock-capable SCC goes unreported and the count of partly shown ones is exact.
    Which cycles are kept under the cap depends only on the lock names: components in
    order of their smallest lock, each cycle found from its smallest lock, successors in
    name order (networkx's enumeration order follows set iteration, which changes with
    Python's hash seed, so the same graph gave other cycles from run to run).
    """
    import networkx as nx

    found: list[tuple[str, ...]] = []
    components = partial = 0
    comps = sorted((sorted(c) for c in nx.strongly_connected_components(G) if len(c) > 1),
                   key=lambda c: c[0])
    for comp in comps:
        components += 1
        before = len(found)
        complete = len(found) < cap and _enumerate(G, comp, length_bound, cap, found)
        if len(found) == before:
            found.append(canonical_cycle(_shortest_cycle(G, comp)))
        partial += not complete
    return Cycles(sorted(set(found), key=lambda c: (len(c), c)), components, partial)


def _enumerate(G: nx.DiGraph, comp: list[str], bound: int, cap: int,
               found: list[tuple[str, ...]]) -> bool:
    """Append the component's simple cycles of length <= bound, each once (from its smallest
    lock), until `found` holds `cap`; True when none was left out."""
    members = set(comp)
    succ = {n: sorted(m for m in G.successors(n) if m in members and m != n) for n in comp}
    pred = {n: [m for m in G.predecessors(n) if m in members and m != n] for n in comp}
    for k, start in enumerate(comp):
        allowed = set(comp[k + 1:])
        # hops from each allowed lock back to start: prunes paths that cannot close in time
        dist = {start: 0}
        frontier = [start]
        for d in range(1, bound):
            nxt = []
            for n in frontier:
                for m in pred[n]:
                    if m in allowed and m not in dist:
                        dist[m] = d
                        nxt.append(m)
            frontier = nxt
        path = [start]
        on_path = {start}
        stack = [iter(succ[start])]
        while stack:
            for m in stack[-1]:
                if m == start:
                    if len(path) > 1:
                        found.append(tuple(path))
                        if len(found) >= cap:
                            return False
                elif m in dist and m not in on_path and len(path) + dist[m] <= bound:
                    path.append(m)
                    on_path.add(m)
                    stack.append(iter(succ[m]))
                    break
            else:
                stack.pop()
                on_path.discard(path.pop())
    return True


def _shortest_cycle(G: nx.DiGraph, comp: list[str]) -> list[str]:
    """A shortest cycle through the component's smallest lock (breadth-first, successors in
    name order, so the answer depends on the names only)."""
    members = set(comp)
    start = comp[0]
    parent: dict[str, str] = {}
    frontier = [start]
    while frontier:
        nxt = []
        for n in frontier:
            for m in sorted(G.successors(n)):
                if m == start and n != start:
                    path = [n]
                    while path[-1] != start:
                        path.append(parent[path[-1]])
                    return path[::-1]
                if m in members and m != start and m not in parent:
                    parent[m] = n
                    nxt.append(m)
        frontier = nxt
    return [start]


def cycle_edges(c: tuple[str, ...]) -> Iterator[tuple[str, str]]:
    for i, a in enumerate(c):
        yield a, c[(i + 1) % len(c)]
