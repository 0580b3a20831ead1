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
    """
    import networkx as nx

    found: set[tuple[str, ...]] = set()
    components = partial = 0
    # Self-loops are no cycles here.  Without copying the whole graph to drop them: they
    # change neither the strongly connected components nor the order they come in, and a
    # view that hides them iterates nodes and successors exactly like the loop-free copy.
    H = None  # that copy, built only for components that need a shortest-cycle search
    for comp in nx.strongly_connected_components(G):
        if len(comp) < 2:
            continue
        components += 1
        sub = nx.subgraph_view(G, filter_node=nx.filters.show_nodes(G.nbunch_iter(comp)),
                               filter_edge=_not_a_loop)
        before = len(found)
        complete = True
        if before < cap:
            gen = nx.simple_cycles(sub, length_bound=length_bound)
            for c in gen:
                found.add(canonical_cycle(c))
                if len(found) >= cap:
                    complete = next(gen, None) is None
                    break
        else:
            complete = False
        if len(found) == before:
            if H is None:  # shortest paths also walk predecessors, whose order a copy changes
                H = G.copy()
                H.remove_edges_from(list(nx.selfloop_edges(H)))
            found.add(canonical_cycle(_shortest_cycle(H.subgraph(comp))))
        partial += not complete
    return Cycles(sorted(found, key=lambda c: (len(c), c)), components, partial)


def _not_a_loop(u: str, v: str) -> bool:
    return u != v


def _shortest_cycle(G: nx.DiGraph) -> list[str]:
    start = min(G.nodes)
    best: list[str] | None = None
    for pred in sorted(G.predecessors(start)):
        p = shortest_path_or_none(G, start, pred)
        if p is not None and (best is None or len(p) < len(best)):
            best = p
    return best or [start]


def cycle_edges(c: tuple[str, ...]) -> Iterator[tuple[str, str]]:
    for i, a in enumerate(c):
        yield a, c[(i + 1) % len(c)]
