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

from lockgraph.checks import MAX_EDGES_SHOWN, finding_id
from lockgraph.graph import FS_RECLAIM, best_evidence, reachable, shortest_path_or_none
from lockgraph.static.facts import kb
from lockgraph.static.slab_roots import Root
from lockgraph.static.solve import Solved, Step, entry_contexts, gfp_reclaims
from lockgraph.model import Evidence, Finding, Severity
from lockgraph.rules import RULES

SPINNING = kb.SPINNING_KINDS


@dataclass(slots=True)
class RootVerdict:
    root: Root
    locks: list[dict[str, Any]] = field(default_factory=list)
    strict_leaf: dict[str, Any] = field(default_factory=dict)
    dtor_safe: dict[str, Any] = field(default_factory=dict)
    ctor: dict[str, Any] = field(default_factory=dict)
    blind_spots: list[str] = field(default_factory=list)   # most telling first (solve.blind_rank)
    blind_locked: list[str] = field(default_factory=list)  # those reached while a lock is held
    splats: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        out = {"function": self.root.function, "kind": self.root.kind, "why": self.root.how,
               "caches": self.root.caches, "defined": bool(self.root.fids),
               "locks": self.locks, "blind_spots": self.blind_spots,
               "blind_spots_under_lock": self.blind_locked}
        if self.root.kind == "dtor":
            out["strict_leaf"] = self.strict_leaf
            out["dtor_safe"] = self.dtor_safe
            out["predicted_splats"] = self.splats
        if self.root.kind == "ctor":
            out["ctor_context"] = self.ctor
        out["witnesses"] = [lk["witness"] for lk in self.locks]
        return out


def _steps(steps: tuple[Step, ...]) -> list[dict[str, Any]]:
    return [s.to_json() for s in steps]


def _stack(steps: tuple[Step, ...]) -> tuple[str, ...]:
    return tuple(s.label() for s in steps)


def _edge_ev(G: nx.DiGraph, a: str, b: str) -> Evidence:
    e = best_evidence(G, a, b)
    src = "static analysis" if e.source == "static" else f"{e.source}, runtime"
    return Evidence(e.file, e.line, f"'{a}' -> '{b}' ({src})", e.stack)


def judge(S: Solved, roots: list[Root], G: nx.DiGraph, name: Callable[[str], str]) -> tuple[
        list[RootVerdict], list[Finding]]:
    verdicts: list[RootVerdict] = []
    findings: list[Finding] = []
    irq_safe = {name(a["lock"]) for a in S.acquisitions if a["irq"]} | {
        name(c) for c in S.irq_classes}
    for r in roots:
        v = RootVerdict(r)
        verdicts.append(v)
        if not r.fids:
            v.blind_spots.append(f"definition of {r.function}() not found in the scanned sources")
            v.strict_leaf = {"verdict": "unproven", "violations": []}
            v.dtor_safe = {"verdict": "unproven", "reasons": ["no definition"]}
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
        v.blind_locked = sorted(locked)
        v.locks = [{"lock": n, "kind": kinds[n] or "unknown", "witness": _steps(witnesses[n])}
                   for n in sorted(witnesses)]
        sleeps = any(fid in S.sleeps for fid in r.fids)
        if r.kind == "dtor":
            _dtor(S, r, v, G, witnesses, kinds, sleeps, irq_safe, name, findings)
        elif r.kind == "ctor":
            _ctor(S, r, v, witnesses, sleeps, name, findings)
    return verdicts, findings


def _dtor(S: Solved, r: Root, v: RootVerdict, G: nx.DiGraph, witnesses, kinds, sleeps: bool,
          irq_safe: set[str], name, findings: list[Finding]) -> None:
    blind = bool(v.blind_spots)
    violations = []
    omitted = 0
    for lock in sorted(witnesses):
        outs = sorted(b for b in G.successors(lock) if b != lock) if lock in G else []
        if lock == FS_RECLAIM:
            outs = outs or ["(reclaim)"]
        omitted += max(0, len(outs) - MAX_EDGES_SHOWN)
        for b in outs[:MAX_EDGES_SHOWN]:
            violations.append({"lock": lock, "to": b,
                               "edge": _edge_ev(G, lock, b).to_json() if G.has_edge(lock, b) else None,
                               "witness": _steps(witnesses[lock])})
        if outs:
            wit = witnesses[lock]
            ev = [Evidence(wit[-1].file if wit else "", wit[-1].line if wit else 0,
                           f"'{lock}' taken by {r.function}()" + (f" via {wit[1].function}()" if len(wit) > 1 else ""),
                           _stack(wit))]
            ev += [_edge_ev(G, lock, b) for b in outs[:MAX_EDGES_SHOWN] if G.has_edge(lock, b)]
            msg = (f"'{lock}' is taken in slab destructor {r.function}() but is not a leaf: "
                   + ", ".join(f"'{lock}' -> '{b}'" for b in outs[:3])
                   + (f" (and {len(outs) - 3} more)" if len(outs) > 3 else ""))
            rule = RULES["LG101"]
            findings.append(Finding("LG101", rule.slug, rule.severity, lock, msg, tuple(ev),
                                    (r.function, lock, outs[0]), finding_id("LG101", r.function, lock)))
    if violations:
        v.strict_leaf = {"verdict": "violated", "violations": violations}
        if omitted:
            v.strict_leaf["violations_omitted"] = omitted
    else:
        v.strict_leaf = {"verdict": "unproven" if blind else "proven", "violations": []}

    reasons: list[str] = []
    failed = False
    if sleeps:
        failed = True
        reasons.append(f"{r.function}() may sleep")
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
    cycles = []
    for c, why in sorted(contexts.items()):
        back = reachable(G, [c], reverse=True)
        for d in sorted(witnesses):
            if d == c:
                continue
            path = shortest_path_or_none(G, d, c) if d in back else None
            if path:
                cycles.append((c, d, path, why))
    if cycles:
        failed = True
        for c, d, path, why in cycles:
            splat = predicted_splat(G, r.function, c, d, path, why)
            v.splats.append(splat)
            rule = RULES["LG105"]
            ev = [_edge_ev(G, a, b) for a, b in zip(path, path[1:])]
            findings.append(Finding("LG105", rule.slug, rule.severity, d,
                                    f"slab destructor {r.function}() takes '{d}' in a context holding "
                                    f"'{c}' ({why}), and '{d}' --> '{c}' already exists",
                                    tuple(ev), tuple(path), finding_id("LG105", r.function, c, d),
                                    detail=splat))
        reasons.append(f"{len(cycles)} context edge(s) close a cycle (predicted splats below)")
    else:
        reasons.append("adding the destructor's context edges (" + ", ".join(
            f"'{c}'" for c in sorted(contexts)) + " -> its locks) closes no cycle")
    if not r.caches:
        reasons.append("no cache using this destructor found: free-site contexts not known")
        blind = True
    status = "violated" if failed else ("unproven" if blind else "proven")
    v.dtor_safe = {"verdict": status, "reasons": reasons, "not_irq_safe": not_irq}


def _ctor(S: Solved, r: Root, v: RootVerdict, witnesses, sleeps: bool, name,
          findings: list[Finding]) -> None:
    bad = sleeps or FS_RECLAIM in witnesses
    why = []
    if FS_RECLAIM in witnesses:
        why.append("allocates with a reclaiming gfp (takes fs_reclaim)")
    if sleeps:
        why.append("may sleep")
    atomic_sites = []
    all_sites = 0
    sites = sorted((x for cache in set(r.caches) for x in S.cache_allocs.get(cache, ())),
                   key=lambda x: x[0])
    for _seq, fid, al in sites:
        f = S.funcs[fid]
        all_sites += 1
        how, _ = gfp_reclaims(al.gfp, f)
        spinning = [h for h in al.held if h.kind in SPINNING]
        if how == "no" or spinning:
            ctx = f"gfp {al.gfp}" if how == "no" else f"under spinning lock '{spinning[-1].lock.text}'"
            atomic_sites.append({"function": f.name, "file": f.file, "line": al.line,
                                 "context": ctx})
    v.ctor = {"sleeps_or_reclaims": bad, "why": why, "allocation_sites": all_sites,
              "atomic_sites": atomic_sites}
    if bad and atomic_sites:
        rule = RULES["LG106"]
        nth: dict[tuple[str, str], int] = {}
        for s in atomic_sites:
            # The site by function and its rank there, not by line: the id survives edits
            # above it (a baseline would otherwise re-report it after every unrelated patch).
            where = (s["file"], s["function"])
            nth[where] = nth.get(where, 0) + 1
            wit = witnesses.get(FS_RECLAIM) or next(iter(witnesses.values()), ())
            ev = (Evidence(s["file"], s["line"], f"{s['function']}() allocates from "
                           f"{', '.join(r.caches)} in atomic context ({s['context']})"),
                  Evidence(wit[-1].file if wit else "", wit[-1].line if wit else 0,
                           f"constructor {r.function}() " + " and ".join(why), _stack(wit)))
            findings.append(Finding("LG106", rule.slug, rule.severity, r.function,
                                    f"constructor {r.function}() {' and '.join(why)} but runs inside "
                                    f"kmem_cache_alloc() at {s['file']}:{s['line']} ({s['context']})",
                                    ev, (r.function,), finding_id("LG106", r.function, *where, str(nth[where]))))


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
