"""Checks over the merged graph: each yields findings that carry their own evidence.

A runtime-only run never proves anything: it judges what ran.  The verdict says so and
names that blind spot, so a clean run cannot be mistaken for a proof.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from lockgraph.graph import (FS_RECLAIM, best_evidence, build_graph, canonical_cycle,
                             cycle_edges, cycles, out_edges_sorted, reachable,
                             shortest_path_or_none)
from lockgraph.model import Evidence, Finding, Report, Severity
from lockgraph.contexts import Context, mark_contexts
from lockgraph.rules import RULES

if TYPE_CHECKING:
    import networkx as nx

#: Contexts shown per finding; the rest are counted, not printed.
MAX_CONTEXTS = 2
#: Outgoing edges of one lock given with evidence (findings, strict-leaf violations); the
#: rest are counted.  A whole-tree static graph gives core locks hundreds of them.
MAX_EDGES_SHOWN = 20


@dataclass(slots=True)
class CheckResult:
    findings: list[Finding]
    graph: nx.DiGraph
    dtor_locks: dict[str, list[Context]]
    reclaim_locks: dict[str, list[Context]]
    cycles_capped: bool
    blind_spots: list[str] = field(default_factory=list)
    roots: list = field(default_factory=list)      # verdicts.RootVerdict, with --src
    static: bool = False                           # a source tree was scanned
    sources: int = 0                               # source files scanned

    @property
    def verdict(self) -> str:
        """violated > unproven > proven; runtime evidence alone is never a proof."""
        if any(f.severity is Severity.ERROR for f in self.findings):
            return "violated"
        if self.static and self.roots and not self.blind_spots and all(
                r.strict_leaf.get("verdict", "proven") == "proven" and not r.blind_spots
                for r in self.roots):
            return "proven"
        return "unproven"

    def lock_table(self, which: dict[str, list[Context]]) -> list[dict[str, Any]]:
        G = self.graph
        rows = []
        for lock in sorted(which):
            outs = [b for _, b in out_edges_sorted(G, lock)] if lock in G else []
            rows.append({"lock": lock, "roots": sorted({c.root for c in which[lock]}),
                         "leaf": not outs, "out": outs})
        return rows


_VERSION = re.compile(r"#\d+")


def finding_id(rule: str, *parts: str) -> str:
    """Stable id of a finding: survives line moves, differs when its lock or path does.

    Lock names enter the id without lockdep's `#N` suffix (`stable_name`), so the report of
    another boot, where the same class registered under another number, keeps the id.
    """
    stable = (stable_name(p) for p in parts)
    h = hashlib.sha1("\x1f".join((rule, *stable)).encode()).hexdigest()[:12]
    return f"{rule}-{h}"


def exact_id(rule: str, *parts: str) -> str:
    """The id with `#N` kept: only for findings whose stable ids would collide in one run."""
    h = hashlib.sha1("\x1f".join((rule, *parts)).encode()).hexdigest()[:12]
    return f"{rule}-{h}"


def stable_name(lock: str) -> str:
    """A lock class name without lockdep's `#N` registration suffix — for ids only.

    Within one boot `#N` tells apart distinct classes that share a name (two
    `&type->s_umount_key` of two file system types), so the graph keeps it: they are two
    nodes.  But N is the order of registration, which differs from boot to boot, so an id
    that kept it would turn one cycle into a new finding every boot (syzkaller #5558).

    >>> stable_name("&q->q_usage_counter(io)#55")
    '&q->q_usage_counter(io)'
    """
    return _VERSION.sub("", lock)


def cycle_key(c: tuple[str, ...]) -> tuple[str, ...]:
    """A cycle's id parts: `#N` dropped first, then rotated, so that the rotation does not
    depend on suffix numbers (`X#9` sorts before `X#10` in one report, after it in another).

    >>> cycle_key(("b#2", "a#10"))
    ('a', 'b')
    """
    return canonical_cycle([stable_name(n) for n in c])


def distinct_ids(findings: list[Finding]) -> list[Finding]:
    """Findings whose `#N`-free ids collide in one run fall back to the exact id.

    Two classes with one name (`X#1`, `X#2`) are two findings here: a shared id would make
    one of them disappear when findings are keyed by id.
    """
    n = Counter(f.id for f in findings)
    return [f if n[f.id] == 1 else replace(f, id=exact_id(f.rule, f.lock, *f.path))
            for f in findings]


def _edge_evidence(G: nx.DiGraph, a: str, b: str) -> Evidence:
    e = best_evidence(G, a, b)
    n = len(G[a][b]["evidence"])
    more = f"; seen {n} times" if n > 1 else ""
    kind = "certain" if e.certain else "inferred from a held-lock listing"
    return Evidence(e.file, e.line, f"'{a}' -> '{b}' ({e.source}, {kind}{more})", e.stack)


def _contexts(ctxs: list[Context]) -> list[Evidence]:
    shown = [c.evidence for c in ctxs[:MAX_CONTEXTS]]
    if len(ctxs) > MAX_CONTEXTS:
        last = shown[-1]
        shown[-1] = Evidence(last.file, last.line,
                             f"{last.what} (and {len(ctxs) - MAX_CONTEXTS} more sites)", last.stack)
    return shown


def _finding(rule_id: str, lock: str, message: str, evidence: list[Evidence],
             path: tuple[str, ...], severity: Severity | None = None) -> Finding:
    rule = RULES[rule_id]
    return Finding(rule_id, rule.slug, severity or rule.severity, lock, message,
                   tuple(evidence), path, finding_id(rule_id, lock, *path))


def check_dtor_leaf(G: nx.DiGraph, dtor: dict[str, list[Context]]) -> list[Finding]:
    return distinct_ids(list(_dtor_leaf(G, dtor)))


def _dtor_leaf(G: nx.DiGraph, dtor: dict[str, list[Context]]) -> Iterable[Finding]:
    for lock in sorted(dtor):
        outs = out_edges_sorted(G, lock) if lock in G else []
        if not outs:
            continue
        roots = sorted({c.root for c in dtor[lock]})
        # The edge that matters most is the one leading back into reclaim.
        to_reclaim = shortest_path_or_none(G, lock, FS_RECLAIM)
        if to_reclaim and len(to_reclaim) > 1:
            outs.sort(key=lambda ab: ab[1] != to_reclaim[1])
        first = outs[0][1]
        more = f" (and {len(outs) - 1} more)" if len(outs) > 1 else ""
        msg = (f"'{lock}' is taken in slab destructor {', '.join(r + '()' for r in roots)}"
               f" but is not a leaf: '{lock}' -> '{first}'{more}")
        if to_reclaim:
            msg += "; it reaches fs_reclaim: " + " --> ".join(to_reclaim)
        ev = _contexts(dtor[lock]) + [_edge_evidence(G, a, b) for a, b in outs[:MAX_EDGES_SHOWN]]
        if to_reclaim and len(to_reclaim) > 2:
            ev += [_edge_evidence(G, a, b) for a, b in zip(to_reclaim[1:], to_reclaim[2:])]
        path = (roots[0], *(to_reclaim or (lock, first)))
        yield _finding("LG101", lock, msg, ev, path)


def check_reclaim(G: nx.DiGraph, reclaim: dict[str, list[Context]]) -> list[Finding]:
    return distinct_ids(list(_reclaim(G, reclaim)))


def _reclaim(G: nx.DiGraph, reclaim: dict[str, list[Context]]) -> Iterable[Finding]:
    back = reachable(G, [FS_RECLAIM], reverse=True)
    for lock in sorted(reclaim):
        if lock not in G or lock == FS_RECLAIM:
            continue
        path = shortest_path_or_none(G, lock, FS_RECLAIM) if lock in back else None
        ctx = _contexts(reclaim[lock])
        if path:
            msg = (f"'{lock}' is taken in reclaim context and reaches fs_reclaim again: "
                   + " --> ".join(path))
            ev = ctx + [_edge_evidence(G, a, b) for a, b in zip(path, path[1:])]
            yield _finding("LG102", lock, msg, ev, tuple(path))
            continue
        outs = out_edges_sorted(G, lock)
        if outs:
            msg = (f"'{lock}' is taken in reclaim context and is not a leaf "
                   f"('{lock}' -> '{outs[0][1]}'), but closes no cycle through fs_reclaim")
            ev = ctx + [_edge_evidence(G, a, b) for a, b in outs[:MAX_EDGES_SHOWN]]
            yield _finding("LG104", lock, msg, ev, (lock, outs[0][1]))


def check_cycles(G: nx.DiGraph) -> tuple[list[Finding], bool]:
    found, capped = cycles(G)
    out = []
    for c in found:
        edges = list(cycle_edges(c))
        certain = all(G[a][b]["certain"] for a, b in edges)
        text = " --> ".join(c + (c[0],))
        msg = f"lock cycle: {text}" + ("" if certain else " (rests on inferred edges)")
        f = _finding("LG103", c[0], msg, [_edge_evidence(G, a, b) for a, b in edges],
                     c, None if certain else Severity.WARNING)
        key = cycle_key(c)
        out.append(replace(f, id=finding_id("LG103", key[0], *key)))
    return distinct_ids(out), capped


def run_checks(reports: list[Report], dtors: Iterable[str] = ()) -> CheckResult:
    G = build_graph(reports)
    dtor, reclaim = mark_contexts(reports, dtors)
    findings = list(check_dtor_leaf(G, dtor)) + list(check_reclaim(G, reclaim))
    cyc, capped = check_cycles(G)
    findings += cyc
    order = {Severity.ERROR: 0, Severity.WARNING: 1, Severity.NOTE: 2}
    findings.sort(key=lambda f: (order[f.severity], f.rule, f.lock, f.path))
    blind = ["runtime evidence only: code paths that did not run are not covered"]
    if capped:
        blind.append("cycle enumeration capped; every cyclic component is still reported")
    return CheckResult(findings, G, dtor, reclaim, capped, blind)
