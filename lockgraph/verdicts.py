"""Per-root verdicts from the static graph: strict leaf, dtor-safe, ctor context, splats.

For each slab destructor D with lock set L(D):
* strict leaf (the reviewer's rule): no lock in L(D) has an outgoing edge in the merged graph;
* dtor-safe (what prevents deadlock): every lock in L(D) and after them spins (no sleeping
  lock, no reclaim), each is irq-safe, and adding C -> d for every context C where D runs
  (fs_reclaim; locks held at sites that free objects of D's cache) closes no cycle — when it
  does, the cycle is printed the way lockdep would print it.
"Proven" only when nothing reachable from D was skipped; otherwise "unproven" with the
blind spots.  A constructor runs inside kmem_cache_alloc() in the caller's context: one that
sleeps or allocates with reclaim is an error at every atomic allocation site of its cache.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import networkx as nx

from lockgraph.checks import MAX_EDGES_SHOWN
from lockgraph.graph import FS_RECLAIM, best_evidence, reachable, shortest_path_or_none
from lockgraph.static.facts import kb
from lockgraph.static.gfp import gfp_reclaims
from lockgraph.static.slab_roots import Root
from lockgraph.static.solve import Solved
from lockgraph.static.witnesses import Step, entry_contexts
from lockgraph.model import Evidence

SPINNING = kb.SPINNING_KINDS


@dataclass(slots=True)
class TakenLock:
    """A lock a root can take, with the call chain that reaches it (JSON steps)."""

    lock: str
    kind: str
    witness: list[dict[str, Any]]

    def to_json(self) -> dict[str, Any]:
        return {"lock": self.lock, "kind": self.kind, "witness": self.witness}


@dataclass(slots=True)
class Violation:
    """A lock of a destructor with an outgoing edge: `lock` -> `to` (the strict-leaf rule)."""

    lock: str
    to: str
    edge: Evidence | None      # the edge's best evidence; None for "(reclaim)"
    witness: list[dict[str, Any]]

    def to_json(self) -> dict[str, Any]:
        return {"lock": self.lock, "to": self.to,
                "edge": self.edge.to_json() if self.edge else None, "witness": self.witness}


@dataclass(slots=True)
class StrictLeaf:
    verdict: str = "unproven"
    violations: list[Violation] = field(default_factory=list)
    omitted: int = 0           # violations past MAX_EDGES_SHOWN per lock, counted only

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"verdict": self.verdict,
                               "violations": [x.to_json() for x in self.violations]}
        if self.omitted:
            out["violations_omitted"] = self.omitted
        return out


@dataclass(slots=True)
class ContextCycle:
    """A lock of the destructor taken under a context (`held`) it already leads back to."""

    held: str
    lock: str
    path: list[str]            # lock --> ... --> held
    why: str
    splat: str
    evidence: list[Evidence]


@dataclass(slots=True)
class DtorSafe:
    verdict: str = "unproven"
    reasons: list[str] = field(default_factory=list)
    not_irq_safe: list[str] = field(default_factory=list)
    cycles: list[ContextCycle] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"verdict": self.verdict, "reasons": self.reasons, "not_irq_safe": self.not_irq_safe}


@dataclass(slots=True)
class AtomicSite:
    """An allocation from a constructor's cache in atomic context."""

    function: str
    file: str
    line: int
    context: str

    def to_json(self) -> dict[str, Any]:
        return {"function": self.function, "file": self.file, "line": self.line,
                "context": self.context}


@dataclass(slots=True)
class CtorContext:
    sleeps_or_reclaims: bool = False
    why: list[str] = field(default_factory=list)
    allocation_sites: int = 0
    atomic_sites: list[AtomicSite] = field(default_factory=list)
    witness: tuple[Step, ...] = ()   # to what makes it sleep or reclaim

    def to_json(self) -> dict[str, Any]:
        return {"sleeps_or_reclaims": self.sleeps_or_reclaims, "why": self.why,
                "allocation_sites": self.allocation_sites,
                "atomic_sites": [a.to_json() for a in self.atomic_sites]}


@dataclass(slots=True)
class RootVerdict:
    root: Root
    locks: list[TakenLock] = field(default_factory=list)
    strict_leaf: StrictLeaf = field(default_factory=StrictLeaf)
    dtor_safe: DtorSafe = field(default_factory=DtorSafe)
    ctor: CtorContext | None = None
    blind_spots: list[str] = field(default_factory=list)   # most telling first (witnesses.blind_rank)
    blind_locked: list[str] = field(default_factory=list)  # those reached while a lock is held
    #: what the static reasoning takes for granted (ASSUMPTIONS), for a root it analysed
    assumptions: list[str] = field(default_factory=list)

    @property
    def splats(self) -> list[str]:
        return [c.splat for c in self.dtor_safe.cycles]

    def to_json(self) -> dict[str, Any]:
        out = {"function": self.root.function, "kind": self.root.kind, "why": self.root.how,
               "caches": self.root.caches, "defined": bool(self.root.fids),
               "locks": [lk.to_json() for lk in self.locks], "blind_spots": self.blind_spots,
               "blind_spots_under_lock": self.blind_locked}
        if self.root.kind == "dtor":
            out["strict_leaf"] = self.strict_leaf.to_json()
            out["dtor_safe"] = self.dtor_safe.to_json()
            out["predicted_splats"] = self.splats
        if self.root.kind == "ctor":
            out["ctor_context"] = self.ctor.to_json() if self.ctor else {}
        out["witnesses"] = [lk.witness for lk in self.locks]
        out["assumptions"] = self.assumptions
        return out


#: What a static root verdict rests on besides its blind spots: the paths the summaries
#: leave out as impossible in a kernel without the bugs LG107 reports (summaries.py).
ASSUMPTIONS = [
    "no sleep in atomic context: a path that sleeps (a blocking lock, a sleeping call, "
    "reclaim) is not followed under a spinning lock or inside rcu_read_lock() — LG107 "
    "reports such paths as bugs",
    "a !PREEMPT_RT kernel: code behind `if (!irqs_disabled())` is not followed under a "
    "lock taken with interrupts disabled (spin_lock_irqsave() and kin)",
]


def _steps(steps: tuple[Step, ...]) -> list[dict[str, Any]]:
    return [s.to_json() for s in steps]


def _edge_ev(G: nx.DiGraph, a: str, b: str) -> Evidence:
    e = best_evidence(G, a, b)
    src = "static analysis" if e.source == "static" else f"{e.source}, runtime"
    return Evidence(e.file, e.line, f"'{a}' -> '{b}' ({src})", e.stack)


def judge(S: Solved, roots: list[Root], G: nx.DiGraph, name: Callable[[str], str]) -> list[RootVerdict]:
    """Each root's verdicts, with the evidence findings are later made from (checks.py)."""
    verdicts: list[RootVerdict] = []
    irq_safe = {name(a["lock"]) for a in S.acquisitions if a["irq"]} | {
        name(c) for c in S.irq_classes}
    for r in roots:
        v = RootVerdict(r)
        verdicts.append(v)
        if not r.fids:
            v.blind_spots.append(f"definition of {r.function}() not found in the scanned sources")
            v.dtor_safe = DtorSafe("unproven", ["no definition"])
            if r.kind == "ctor":
                v.ctor = CtorContext()
            continue
        witnesses: dict[str, tuple[Step, ...]] = {}
        kinds: dict[str, str] = {}
        for fid in r.fids:
            for cls, _w in sorted(S.takes.get(fid, {}).items()):
                if cls.startswith("@param"):
                    continue
                kind = S.kinds.get(cls, "")
                if kind in kb.NO_EDGE_KINDS:
                    continue
                n = name(cls)
                witnesses.setdefault(n, S.chain(fid, cls))
                kinds[n] = kind
        v.blind_spots, locked = S.ranked_blind(r.fids)
        v.assumptions = list(ASSUMPTIONS)
        v.blind_locked = sorted(locked)
        v.locks = [TakenLock(n, kinds[n] or "unknown", _steps(witnesses[n])) for n in sorted(witnesses)]
        sleeps = any(fid in S.sleeps for fid in r.fids)
        if r.kind == "dtor":
            _dtor(S, r, v, G, witnesses, sleeps, irq_safe, name)
        elif r.kind == "ctor":
            _ctor(S, r, v, witnesses, sleeps)
    return verdicts


def _dtor(S: Solved, r: Root, v: RootVerdict, G: nx.DiGraph, witnesses, sleeps: bool,
          irq_safe: set[str], name) -> None:
    blind = bool(v.blind_spots)
    sl = v.strict_leaf
    for lock in sorted(witnesses):
        outs = sorted(b for b in G.successors(lock) if b != lock) if lock in G else []
        if lock == FS_RECLAIM:
            outs = outs or ["(reclaim)"]
        sl.omitted += max(0, len(outs) - MAX_EDGES_SHOWN)
        for b in outs[:MAX_EDGES_SHOWN]:
            sl.violations.append(Violation(lock, b, _edge_ev(G, lock, b) if G.has_edge(lock, b) else None,
                                           _steps(witnesses[lock])))
    sl.verdict = "violated" if sl.violations else ("unproven" if blind else "proven")

    reasons: list[str] = []
    failed = False
    if sleeps:
        failed = True
        chain = next((_sleep_chain(S, fid) for fid in r.fids if fid in S.sleeps), ())
        via = " -> ".join(f"{s.function}() {s.file}:{s.line}" for s in chain)
        reasons.append(f"{r.function}() may sleep" + (f": {via}" if via else ""))
    merged_kinds: dict[str, str] = {}  # kinds by merged (runtime) name, first class wins
    for cls, k in S.kinds.items():
        merged_kinds.setdefault(name(cls), k)
    downstream = reachable(G, witnesses) | set(witnesses)
    sleeping = sorted(n for n in downstream
                      if n == FS_RECLAIM or (S.kinds.get(n) or merged_kinds.get(n, "")) not in SPINNING)
    if sleeping:
        failed = True
        reasons.append("takes, or leads to, locks that are not spinning locks or enter reclaim: "
                       + ", ".join(f"'{n}'" for n in sleeping[:8]))
    else:
        reasons.append("every lock taken, and every lock after them, is a spinning lock; no reclaim")
    not_irq = sorted(lock for lock in witnesses if lock not in irq_safe and lock != FS_RECLAIM)
    if not_irq:
        reasons.append("never seen taken with interrupts disabled (a free can run in hard irq): "
                       + ", ".join(f"'{n}'" for n in not_irq))
        failed = True
    else:
        reasons.append("every lock it takes is taken with interrupts disabled (irq-safe)")
    contexts = {FS_RECLAIM: "memory reclaim (kswapd, direct reclaim) frees slabs"}
    for cache in r.caches:
        for var, fid, line, held in S.free_sites:
            if var == cache:
                f = S.funcs[fid]
                for h in held:
                    contexts.setdefault(name(h), f"held at {f.name}() freeing {cache} ({f.file}:{line})")
                for h, where in entry_contexts(S, fid).items():
                    contexts.setdefault(name(h), f"{where}, which frees {cache}")
    cycles = v.dtor_safe.cycles
    for c, why in sorted(contexts.items()):
        back = reachable(G, [c], reverse=True)
        for d in sorted(witnesses):
            if d == c:
                continue
            path = shortest_path_or_none(G, d, c) if d in back else None
            if path:
                cycles.append(ContextCycle(c, d, path, why, predicted_splat(G, r.function, c, d, path, why),
                                           [_edge_ev(G, a, b) for a, b in zip(path, path[1:])]))
    if cycles:
        failed = True
        reasons.append(f"{len(cycles)} context edge(s) close a cycle (predicted splats below)")
    else:
        reasons.append("adding the destructor's context edges (" + ", ".join(
            f"'{c}'" for c in sorted(contexts)) + " -> its locks) closes no cycle")
    if not r.caches:
        reasons.append("no cache using this destructor found: free-site contexts not known")
        blind = True
    v.dtor_safe.verdict = "violated" if failed else ("unproven" if blind else "proven")
    v.dtor_safe.reasons = reasons
    v.dtor_safe.not_irq_safe = not_irq


def _sleep_chain(S: Solved, fid: str, limit: int = 40) -> tuple[Step, ...]:
    """The calls from fid down to the function that sleeps itself (its sleeping call's line
    last), following the solver's sleep witnesses."""
    out: list[Step] = []
    seen: set[str] = set()
    while fid in S.sleeps and fid not in seen and len(out) < limit:
        seen.add(fid)
        f, w = S.funcs[fid], S.sleeps[fid]
        out.append(Step(f.name, f.file, w.line))
        if w.callee is None:
            break
        fid = w.callee
    return tuple(out)


def _ctor(S: Solved, r: Root, v: RootVerdict, witnesses, sleeps: bool) -> None:
    c = v.ctor = CtorContext()
    if FS_RECLAIM in witnesses:
        c.why.append("allocates with a reclaiming gfp (takes fs_reclaim)")
    if sleeps:
        c.why.append("may sleep")
    c.sleeps_or_reclaims = bool(c.why)
    # the evidence of what the finding says: the chain into reclaim, else the chain to the
    # sleep (not to whichever lock the constructor happens to take first)
    c.witness = witnesses.get(FS_RECLAIM) or (
        next((_sleep_chain(S, fid) for fid in r.fids if fid in S.sleeps), ()) if sleeps else ())
    sites = sorted((x for cache in set(r.caches) for x in S.cache_allocs.get(cache, ())),
                   key=lambda x: x[0])
    for _seq, fid, al in sites:
        f = S.funcs[fid]
        c.allocation_sites += 1
        how, _ = gfp_reclaims(al.gfp, f)
        spinning = [h for h in al.held if h.kind in SPINNING]
        if how == "no" or spinning:
            ctx = f"gfp {al.gfp}" if how == "no" else f"under spinning lock '{spinning[-1].lock.text}'"
            c.atomic_sites.append(AtomicSite(f.name, f.file, al.line, ctx))


def predicted_splat(G: nx.DiGraph, dtor: str, held: str, acquired: str, path: list[str],
                    why: str) -> str:
    """The report lockdep would print: prev = `held`, next = `acquired`, path next --> prev."""
    n = len(path) - 1
    out = ["======================================================",
           "WARNING: possible circular locking dependency detected",
           "(predicted by lockgraph from static and runtime evidence, not observed)",
           "------------------------------------------------------",
           f"{dtor}() (slab destructor) is trying to acquire lock:",
           f" ({acquired})", "", "but task is already holding lock:", f" ({held})",
           f"  because {why}", "", "which lock already depends on the new lock.", "",
           "the existing dependency chain (in reverse order) is:", ""]
    for k in range(n, -1, -1):
        out.append(f"-> #{k} ({path[k]}):")
        if k >= 1:
            e = best_evidence(G, path[k - 1], path[k])
            out.append(f"       {e.file}:{e.line} ({e.source})")
            out.extend(f"       {s}" for s in e.stack[:12])
        else:
            out.append(f"       {dtor}() taking it while '{held}' is held")
        out.append("")
    out += ["other info that might help us debug this:", ""]
    if n >= 2:
        out += ["Chain exists of:", f"  {path[0]} --> {path[n - 1]} --> {path[n]}", ""]
    out += [" Possible unsafe locking scenario:", "",
            "       CPU0                    CPU1", "       ----                    ----",
            f"  lock({path[n]});", f"                               lock({path[n - 1]});",
            f"                               lock({path[n]});", f"  lock({path[0]});", "",
            " *** DEADLOCK ***"]
    return "\n".join(out)
