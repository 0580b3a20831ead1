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


def evidence_rank(e: Edge) -> tuple:
    """The order a reviewer should see evidence in: certain before inferred, then by place."""
    return (not e.certain, e.file, e.line, e.source)


def best_evidence(G: nx.DiGraph, a: str, b: str) -> Edge:
    """The evidence a reviewer should see first (evidence_rank)."""
    return min(G[a][b]["evidence"], key=evidence_rank)


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


#: Successor-list entries one cycle search may read.  The cap on cycles found does not
#: bound the work: the whole tree's lock graph (one strongly connected component of ~10k
#: classes, millions of edges) let networkx's bounded search read edges for hours between
#: two cycles, from a start node that a set's hash order picked.  Counted, not timed, so a
#: capped answer is the same on every machine and in every process.
CYCLE_STEPS = 20_000_000


@dataclass(slots=True)
class Cycles:
    """The cycles reported, and exactly what the enumeration bound left out."""

    cycles: list[tuple[str, ...]]
    components: int          # strongly connected components with a cycle
    partial: int             # of them, not searched to the end (past the cap: one cycle each)

    @property
    def capped(self) -> bool:
        return self.partial > 0

    def blind_spot(self) -> str:
        return (f"cycle enumeration capped: {self.partial} of {self.components} cyclic "
                "component(s) not searched to the end (each shows at least its shortest cycle)")


def cycles(G: nx.DiGraph, length_bound: int = 8, cap: int = 500,
           steps: int = CYCLE_STEPS) -> Cycles:
    """Distinct simple cycles (canonical, sorted), at least one per cyclic component.

    Shortest first across the whole graph (every component's ABBA pairs, then every
    component's three-lock cycles, ...), each from its smallest node, components and
    successors in name order: which cycles a capped search returns depends on the graph
    alone, never on hash seeds or insertion order (networkx's search starts from a set's
    first element, so the kept cycles changed from run to run).  Enumeration stops after
    `cap` cycles or `steps` successor reads (a dense graph has exponentially many cycles);
    every strongly connected component still yields at least its shortest cycle, so no
    deadlock-capable SCC goes unreported, and the components whose search did not run to
    the end are counted exactly.
    """
    import networkx as nx

    found: dict[tuple[str, ...], None] = {}   # insertion-ordered: the cap+1-th is dropped
    comps = sorted((sorted(c) for c in nx.strongly_connected_components(G) if len(c) >= 2),
                   key=lambda c: c[0])
    searches = [_ComponentSearch(G, comp) for comp in comps]
    budget = [steps]
    done = [0] * len(comps)      # longest cycle length searched to the end, per component
    cut = False
    for length in range(2, length_bound + 1):
        for k, search in enumerate(searches):
            if length > len(comps[k]):
                continue          # no simple cycle is longer than its component
            if search.run(length, cap + 1, found, budget):
                cut = True
                break
            done[k] = length
        if cut:
            break
    if len(found) > cap:
        found.popitem()           # it only showed that more exist
    # a two-lock component has one cycle, which the fallback below shows whatever happened
    partial = sum(1 for k, comp in enumerate(comps)
                  if len(comp) > 2 and done[k] < min(len(comp), length_bound))
    result = set(found)
    shown = {c[0] for c in result}  # a cycle starts at its smallest lock, in its component
    for comp in comps:
        if shown.isdisjoint(comp):
            result.add(_shortest_cycle(G, comp))
    return Cycles(sorted(result, key=lambda c: (len(c), c)), len(comps), partial)


class _ComponentSearch:
    """The cycles of one component (`comp` sorted) of one exact length, each from its
    smallest node over larger ones only (so once, already canonical).  Successor lists are
    built once per node and shared by every length; every list entry read costs one step
    of the shared budget."""

    def __init__(self, G: nx.DiGraph, comp: list[str]) -> None:
        self.G, self.comp = G, comp
        self.rank = {n: k for k, n in enumerate(comp)}
        self.lists: dict[int, list[int]] = {}

    def succs(self, k: int, budget: list[int]) -> list[int]:
        out = self.lists.get(k)
        if out is None:
            nbrs = self.G.succ[self.comp[k]]
            budget[0] -= len(nbrs)
            rank = self.rank
            out = self.lists[k] = sorted(rank[m] for m in nbrs if m in rank and m != self.comp[k])
        return out

    def run(self, length: int, cap: int, found: dict, budget: list[int]) -> bool:
        """Add every cycle of `length`; True when the cap or the budget cut it short."""
        from bisect import bisect_left, bisect_right

        comp = self.comp

        def closes(k: int, s: int) -> bool:
            out = self.succs(k, budget)
            i = bisect_left(out, s)
            return i < len(out) and out[i] == s

        def walk(path: list[int], on: set[int]) -> bool:
            s, nxt = path[0], self.succs(path[-1], budget)
            last = len(path) + 1 == length  # the next node must close the cycle
            for i in range(bisect_right(nxt, s), len(nxt)):
                budget[0] -= 1
                if budget[0] <= 0:
                    return True
                w = nxt[i]
                if w in on:
                    continue
                if last:
                    if closes(w, s):
                        found[tuple(comp[k] for k in path) + (comp[w],)] = None
                        if len(found) >= cap:
                            return True
                    continue
                path.append(w)
                on.add(w)
                stop = walk(path, on)
                path.pop()
                on.discard(w)
                if stop:
                    return True
            return budget[0] <= 0

        return any(walk([s], {s}) for s in range(len(comp)))


def _shortest_cycle(G: nx.DiGraph, comp: list[str]) -> tuple[str, ...]:
    """A shortest cycle through the component's smallest node: breadth-first over
    successors in name order, so ties are broken the same way every time."""
    members = set(comp)
    start = comp[0]
    parent: dict[str, str] = {start: start}
    level = [start]
    while level:
        nxt = []
        for u in level:
            for v in sorted(G.successors(u)):
                if v == start and u != start:
                    path = [u]
                    while path[-1] != start:
                        path.append(parent[path[-1]])
                    return tuple(reversed(path))
                if v in members and v not in parent:
                    parent[v] = u
                    nxt.append(v)
        level = nxt
    return (start,)


def cycle_edges(c: tuple[str, ...]) -> Iterator[tuple[str, str]]:
    for i, a in enumerate(c):
        yield a, c[(i + 1) % len(c)]
