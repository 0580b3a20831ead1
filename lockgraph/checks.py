"""Checks over the merged graph: each yields findings that carry their own evidence.

Every check registers for the rule ids it produces (`@check`); `pipeline.run` runs them
all over one `CheckInput`, so a new rule is a row in `rules.py` plus one function here.
Findings are worded and identified by their rule (`rules.make`), never here.

A runtime-only run never proves anything: it judges what ran.  The verdict says so and
names that blind spot, so a clean run cannot be mistaken for a proof.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from lockgraph.contexts import Context
from lockgraph.graph import (FS_RECLAIM, best_evidence, canonical_cycle, cycle_edges, cycles,
                             evidence_rank, out_edges_sorted, reachable, shortest_path_or_none)
from lockgraph.model import Evidence, Finding, Report, Severity, trim_stack
from lockgraph.rules import RULES, exact_id, make, stable_name

if TYPE_CHECKING:
    import networkx as nx

#: Contexts shown per finding; the rest are counted, not printed.
MAX_CONTEXTS = 2
#: Outgoing edges of one lock given with evidence (findings, strict-leaf violations); the
#: rest are counted.  A whole-tree static graph gives core locks hundreds of them.
MAX_EDGES_SHOWN = 20
#: Pseudo-locks: lockdep maps that mark a context, not a lock anyone "takes".
PSEUDO_LOCKS = frozenset({FS_RECLAIM})


@dataclass(slots=True)
class CheckInput:
    """Everything a check may read: the merged graph and what was learnt building it."""

    graph: nx.DiGraph
    reports: list[Report]
    dtor_locks: dict[str, list[Context]]
    reclaim_locks: dict[str, list[Context]]
    roots: list = field(default_factory=list)        # verdicts.RootVerdict, with --src
    solved: Any = None                               # static.solve.Solved, with --src
    name: Callable[[str], str] = str                 # static class -> merged graph node
    blind_spots: list[str] = field(default_factory=list)   # checks add theirs
    cycles_capped: bool = False                             # set by the cycle check
    #: finding id -> every lock cycle it states (an LG105 states one per context)
    states: dict[str, list[tuple[str, ...]]] = field(default_factory=dict)


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
                r.strict_leaf.verdict == "proven" and not r.blind_spots for r in self.roots):
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


Check = Callable[[CheckInput], Iterable[Finding]]
#: (rule ids, check) in registration order; every rule of rules.RULES has exactly one.
CHECKS: list[tuple[tuple[str, ...], Check]] = []


def check(*rule_ids: str) -> Callable[[Check], Check]:
    def register(fn: Check) -> Check:
        assert all(r in RULES for r in rule_ids), rule_ids
        CHECKS.append((rule_ids, fn))
        return fn
    return register


def run_checks(inp: CheckInput) -> list[Finding]:
    """Every registered check, one root cause per finding, in report order."""
    from lockgraph.progress import lap

    found: list[Finding] = []
    for rule_ids, fn in CHECKS:
        lap("cycles" if rule_ids == ("LG103",) else f"checks {', '.join(rule_ids)}")
        for f in fn(inp):
            assert f.rule in rule_ids, (fn.__name__, f.rule)
            found.append(f)
    lap("grouping findings")
    found = group_root_causes(merge_same_id(distinct_ids(found)), inp.states)
    order = {Severity.ERROR: 0, Severity.WARNING: 1, Severity.NOTE: 2}
    return sorted(found, key=lambda f: (order[f.severity], f.rule, f.lock, f.path, f.id))


def cycle_key(c: tuple[str, ...]) -> tuple[str, ...]:
    """A cycle's id parts: `#N` dropped first, then rotated, so that the rotation does not
    depend on suffix numbers (`X#9` sorts before `X#10` in one report, after it in another).

    >>> cycle_key(("b#2", "a#10"))
    ('a', 'b')
    """
    return canonical_cycle([stable_name(n) for n in c])


def distinct_ids(findings: list[Finding]) -> list[Finding]:
    """Findings whose `#N`-free ids collide within one boot fall back to the exact id.

    Two classes with one name (`X#1`, `X#2`) in one log are two findings: a shared id would
    make one of them disappear when findings are keyed by id.  The same id from two logs
    (`X#3` in one boot is `X#7` in the next: N is registration order) is one finding, under
    the stable id, merged later — so a baseline keeps matching whatever logs are combined."""
    variants: dict[str, dict[tuple[str, tuple[str, ...]], set[str]]] = {}
    for f in findings:
        files = variants.setdefault(f.id, {}).setdefault((f.lock, f.path), set())
        files.update(e.file for e in f.evidence)

    def one_boot(sides: dict) -> bool:
        seen: set[str] = set()
        for files in sides.values():
            if seen & files:
                return True
            seen |= files
        return False

    split = {i for i, sides in variants.items() if len(sides) > 1 and one_boot(sides)}
    return [replace(f, id=exact_id(f.rule, f.lock, *f.path)) if f.id in split else f
            for f in findings]


def _union(*lists: Iterable[Evidence]) -> tuple[Evidence, ...]:
    """Evidence of several findings as one list: first sighting kept, in order."""
    return tuple(dict.fromkeys(e for ev in lists for e in ev))


def merge_same_id(findings: list[Finding]) -> list[Finding]:
    """One finding per id, its evidence the union in first-seen order."""
    by_id: dict[str, Finding] = {}
    for f in findings:
        old = by_id.get(f.id)
        if old is None:
            by_id[f.id] = f
        else:
            by_id[f.id] = replace(old, evidence=_union(old.evidence, f.evidence),
                                  detail=old.detail or f.detail)
    return list(by_id.values())


def group_root_causes(findings: list[Finding],
                      states: dict[str, list[tuple[str, ...]]] | None = None) -> list[Finding]:
    """One root cause, one finding.  A destructor's non-leaf lock whose edge closes a context
    cycle is that cycle (LG105): its non-leaf edges become the cycle's evidence.  A
    destructor entering reclaim, when one of its cycles already runs through fs_reclaim,
    is that cycle's cause and joins its evidence too.  A lock cycle that is exactly one of
    an LG105's context cycles is stated by that LG105; a reclaim re-entry (LG102) that is
    exactly a lock cycle is stated by the cycle (LG103), with the reclaim context as
    evidence.  Cycles are compared in order (rotated to their smallest lock), not as sets
    of locks: a -> b -> c -> a and a -> c -> b -> a are two deadlocks."""
    states = states or {}
    primary: dict[str, dict[str, Finding]] = {}
    by_cycle: dict[str, dict[tuple[str, ...], Finding]] = {"LG105": {}, "LG103": {}}
    for f in findings:
        if f.rule == "LG105":
            primary.setdefault(f.root, {})[f.lock] = f
        if f.rule in by_cycle:
            for c in states.get(f.id, [f.path]):
                by_cycle[f.rule].setdefault(cycle_key(tuple(c)), f)
    extra: dict[str, list[Evidence]] = {}
    out: list[Finding] = []
    for f in findings:
        mine = primary.get(f.root, {}) if f.rule == "LG101" else {}
        into = mine.get(f.lock)
        if into is None and f.rule == "LG101" and f.lock == FS_RECLAIM:
            into = next((g for _, g in sorted(mine.items()) if FS_RECLAIM in g.path), None)
        if into is None and f.rule == "LG103":
            into = by_cycle["LG105"].get(cycle_key(f.path))
        if into is None and f.rule == "LG102":
            cyc = by_cycle["LG103"].get(cycle_key(f.path))
            into = None if cyc is None or by_cycle["LG105"].get(cycle_key(cyc.path)) else cyc
        if into is not None:
            extra.setdefault(into.id, []).extend(f.evidence)
        else:
            out.append(f)
    return [replace(f, evidence=_union(f.evidence, extra[f.id])) if f.id in extra else f
            for f in out]


def _edge_evidence(G: nx.DiGraph, a: str, b: str, e=None) -> Evidence:
    e = e if e is not None else best_evidence(G, a, b)
    n = len(G[a][b]["evidence"])
    more = f"; seen {n} times" if n > 1 else ""
    if e.source == "static":
        return Evidence(e.file, e.line, f"'{a}' -> '{b}' (static analysis{more})", e.stack)
    kind = "certain" if e.certain else "inferred from a held-lock listing"
    return Evidence(e.file, e.line, f"'{a}' -> '{b}' ({e.source}, {kind}{more})", e.stack)


def _contexts(ctxs: list[Context]) -> list[Evidence]:
    shown = [c.evidence for c in ctxs[:MAX_CONTEXTS]]
    if len(ctxs) > MAX_CONTEXTS:
        last = shown[-1]
        shown[-1] = Evidence(last.file, last.line,
                             f"{last.what} (and {len(ctxs) - MAX_CONTEXTS} more sites)", last.stack)
    return shown


def _nonleaf(G: nx.DiGraph, lock: str, root: str, taken: list[Evidence],
             outs: list[str]) -> Finding:
    """LG101 for `lock` taken by destructor `root`: the edge into reclaim first."""
    to_reclaim = shortest_path_or_none(G, lock, FS_RECLAIM) if lock != FS_RECLAIM else None
    if to_reclaim and len(to_reclaim) > 1:
        outs.sort(key=lambda b: b != to_reclaim[1])
    shown = outs[:3]
    edges = ", ".join(f"'{lock}' -> '{b}'" for b in shown) + (
        f" (and {len(outs) - 3} more)" if len(outs) > 3 else "")
    tail = "; it reaches fs_reclaim: " + " --> ".join(to_reclaim) if to_reclaim else ""
    ev = taken + [_edge_evidence(G, lock, b) for b in outs[:MAX_EDGES_SHOWN] if G.has_edge(lock, b)]
    if to_reclaim and len(to_reclaim) > 2:
        ev += [_edge_evidence(G, a, b) for a, b in zip(to_reclaim[1:], to_reclaim[2:])]
    path = (root, *(to_reclaim or (lock, outs[0])))
    return make("LG101", lock, ev, path, roots=f"{root}()", edges=edges, tail=tail, root=root)


@check("LG101")
def dtor_nonleaf(inp: CheckInput) -> Iterable[Finding]:
    """Runtime: locks seen taken under a destructor frame.  Static: each root's strict-leaf
    violations.  A destructor that enters reclaim itself is said so, not as a lock it takes."""
    G = inp.graph
    for lock in sorted(inp.dtor_locks):
        outs = [b for _, b in out_edges_sorted(G, lock)] if lock in G else []
        for root in sorted({c.root for c in inp.dtor_locks[lock]}):
            ctxs = [c for c in inp.dtor_locks[lock] if c.root == root]
            if lock in PSEUDO_LOCKS:
                yield _enters_reclaim(root, _contexts(ctxs)[0])
            elif outs:  # one finding per destructor: its id does not depend on the others
                yield _nonleaf(G, lock, root, _contexts(ctxs), list(outs))
    for v in inp.roots:
        if v.root.kind != "dtor":
            continue
        by_lock: dict[str, list[str]] = {}
        for x in v.strict_leaf.violations:
            by_lock.setdefault(x.lock, []).append(x.to)
        taken = {lk.lock: lk.witness for lk in v.locks}
        for lock, outs in sorted(by_lock.items()):
            wit = taken.get(lock, [])
            ev = Evidence(wit[-1]["file"] if wit else "", wit[-1]["line"] if wit else 0,
                          f"'{lock}' taken by {v.root.function}()"
                          + (f" via {wit[1]['function']}()" if len(wit) > 1 else ""),
                          tuple(_label(s) for s in wit))
            if lock in PSEUDO_LOCKS:
                yield _enters_reclaim(v.root.function, ev)
            else:
                yield _nonleaf(G, lock, v.root.function, [ev], [b for b in outs if b != "(reclaim)"])


def _label(step: dict) -> str:
    return f"{step['function']} ({step['file']}:{step['line']})"


def _enters_reclaim(root: str, ev: Evidence) -> Finding:
    """The destructor allocates with a reclaiming gfp (`ev` is where it enters reclaim):
    every lock held where it runs gets an edge to fs_reclaim, and inside reclaim it
    re-enters it.  fs_reclaim is a lockdep map marking that context, so this is not worded
    as a lock it takes."""
    site = f"{ev.file}:{ev.line}" if ev.file else "an unknown place"
    ev = replace(ev, what=f"{root}() enters memory reclaim at {site}")
    return make("LG101", FS_RECLAIM, [ev], (root, FS_RECLAIM), variant="enters_reclaim",
                root=root, site=site)


@check("LG102", "LG104")
def reclaim_nonleaf(inp: CheckInput) -> Iterable[Finding]:
    G = inp.graph
    back = reachable(G, [FS_RECLAIM], reverse=True)
    for lock in sorted(inp.reclaim_locks):
        if lock not in G or lock in PSEUDO_LOCKS:
            continue
        path = shortest_path_or_none(G, lock, FS_RECLAIM) if lock in back else None
        ctx = _contexts(inp.reclaim_locks[lock])
        if path:
            ev = ctx + [_edge_evidence(G, a, b) for a, b in zip(path, path[1:])]
            yield make("LG102", lock, ev, tuple(path), chain=" --> ".join(path), route=tuple(path))
            continue
        outs = out_edges_sorted(G, lock)
        if outs:
            ev = ctx + [_edge_evidence(G, a, b) for a, b in outs[:MAX_EDGES_SHOWN]]
            yield make("LG104", lock, ev, (lock, outs[0][1]), to=outs[0][1], route=(lock, outs[0][1]))


@check("LG103")
def lock_cycles(inp: CheckInput) -> Iterable[Finding]:
    G = inp.graph
    found = cycles(G)
    if found.capped:
        inp.cycles_capped = True
        inp.blind_spots.append(found.blind_spot())
    for c in found.cycles:
        edges = list(cycle_edges(c))
        certain = all(G[a][b]["certain"] for a, b in edges)
        shown, may = [], ""
        for a, b in edges:
            e, hop = _direct_evidence(G, a, b)
            shown.append(_edge_evidence(G, a, b, e))
            may = may or hop
        note = "" if certain else " (rests on inferred edges)"
        if may:
            note += f" (a may-path: through the indirect call {may})"
        yield make("LG103", c[0], shown, c,
                   severity=None if certain and not may else Severity.WARNING,
                   chain=" --> ".join(c + (c[0],)), cycle=cycle_key(c), start=cycle_key(c)[0],
                   inferred=note)


def _direct_evidence(G: nx.DiGraph, a: str, b: str) -> tuple[Any, str]:
    """The witness of a -> b to show, and the ops-table call it goes through ("" for
    none): the first witness, in best_evidence's order, whose chain calls each callee by
    name — a cycle resting on a may-path (an ops member resolved by its name, not by the
    object it is called on) is a warning, as LG107 makes such a sleep."""
    ranked = sorted(G[a][b]["evidence"], key=evidence_rank)
    first = ""
    for e in ranked:
        hop = getattr(e, "may", "")
        if not hop:
            return e, ""
        first = first or hop
    return ranked[0], first


@check("LG105")
def dtor_context_cycles(inp: CheckInput) -> Iterable[Finding]:
    """One finding per destructor lock: every context it closes a cycle with is one more
    predicted splat of the same cause, not another finding."""
    for v in inp.roots:
        if v.root.kind != "dtor":
            continue
        by_lock: dict[str, list] = {}
        for c in v.dtor_safe.cycles:
            by_lock.setdefault(c.lock, []).append(c)
        for lock, cs in sorted(by_lock.items()):
            cs.sort(key=lambda c: (c.held != FS_RECLAIM, c.held))
            takes = "enters memory reclaim" if lock in PSEUDO_LOCKS else f"takes '{lock}'"
            ev = [e for c in cs for e in c.evidence]
            f = make("LG105", lock, _union(ev), tuple(cs[0].path),
                       detail="\n\n".join(c.splat for c in cs), root=v.root.function, takes=takes,
                       contexts=" and ".join(f"'{c.held}' ({c.why})" for c in cs),
                       paths=" and ".join(" --> ".join(f"'{n}'" for n in (c.path[0], c.path[-1]))
                                          for c in cs))
            inp.states[f.id] = [tuple(c.path) for c in cs]
            yield f


@check("LG106")
def ctor_in_atomic(inp: CheckInput) -> Iterable[Finding]:
    for v in inp.roots:
        c = v.ctor
        if v.root.kind != "ctor" or c is None or not (c.sleeps_or_reclaims and c.atomic_sites):
            continue
        why = " and ".join(c.why)
        wit = c.witness
        nth: dict[tuple[str, str], int] = {}
        for s in c.atomic_sites:
            # The site by function and its rank there, not by line: the id survives edits
            # above it (a baseline would otherwise re-report it after every unrelated patch).
            where = (s.file, s.function)
            nth[where] = nth.get(where, 0) + 1
            ev = [Evidence(s.file, s.line, f"{s.function}() allocates from "
                           f"{', '.join(v.root.caches)} in atomic context ({s.context})"),
                  Evidence(wit[-1].file if wit else "", wit[-1].line if wit else 0,
                           f"constructor {v.root.function}() {why}", tuple(x.label() for x in wit))]
            yield make("LG106", v.root.function, ev, (v.root.function,), why=why,
                       site=f"{s.file}:{s.line}", context=s.context, file=s.file,
                       function=s.function, nth=nth[where], root=v.root.function)


@check("LG107")
def sleep_in_atomic(inp: CheckInput) -> Iterable[Finding]:
    """Static: a sleep reached while a spinning lock is held (static/atomic.py)."""
    if inp.solved is None:
        return []
    from lockgraph.static.atomic import sleep_in_atomic as find

    return find(inp.solved, inp.name)


#: Report kinds that are findings by themselves: kind (or other_kind) -> (rule, what).
REPORT_RULES: dict[str, tuple[str, str]] = {
    "recursive": ("LG110", "recursive locking"),
    "inconsistent_state": ("LG111", "an inconsistent lock state"),
    "irq_inversion": ("LG112", "a possible irq lock inversion"),
    "irq_safe_unsafe": ("LG112", "an irq-safe -> irq-unsafe lock order"),
    "invalid_wait_context": ("LG113", "an invalid wait context"),
    "bad_unlock_balance": ("LG114", "a bad unlock balance"),
    "held_lock_freed": ("LG115", "a held lock freed"),
    "held_on_return_to_user": ("LG116", "a lock held when returning to user space"),
    "sleep_in_invalid_context": ("LG117", "a sleeping function called from invalid context"),
}


def _report_kind(r: Report) -> str:
    if r.kind == "other" and r.other_kind:
        return r.other_kind[0]
    return r.kind


def _report_locks(r: Report) -> tuple[str, str]:
    """(the lock the report is about, the other lock of a two-lock report, or "")."""
    if r.kind in ("recursive", "inconsistent_state", "invalid_wait_context") and r.new_lock:
        return r.new_lock.name, ""
    if r.kind == "irq_inversion":
        return r.subject_lock.name if r.subject_lock else "", r.other_lock or ""
    if r.kind == "irq_safe_unsafe":
        return (r.new_lock.name if r.new_lock else ""), r.other_lock or ""
    if r.subject_lock:
        return r.subject_lock.name, ""
    if r.new_lock:
        return r.new_lock.name, ""
    held = r.held_locks
    return (held[-1] if held else ""), ""


def _report_place(r: Report, kind: str, what: str, lock: str, stack: tuple[str, ...]) -> Evidence:
    """Where the reported thing happened: the source site the kernel printed, else the
    acquisition lockdep caught, else the report's own header line."""
    if r.site:
        return Evidence(r.file, r.line, f"{what} at {r.site}", stack)
    if r.new_lock and kind != "bad_unlock_balance":
        at = f" at {r.new_lock.at}()" if r.new_lock.at else ""
        verb = "taken again" if kind == "recursive" else "being taken"
        return Evidence(r.file, r.new_lock.line, f"'{r.new_lock.name}' {verb}{at}", stack)
    return Evidence(r.file, r.line, f"{what} reported" + (f" on '{lock}'" if lock else ""), stack)


@check(*sorted({rule for rule, _ in REPORT_RULES.values()}))
def lockdep_reports(inp: CheckInput) -> Iterable[Finding]:
    """Every lockdep report of a kind that is a bug by itself is a finding (a circular
    report is one too, through the cycle its edges close — LG103)."""
    for r in inp.reports:
        kind = _report_kind(r)
        if r.duplicate_of is not None or kind not in REPORT_RULES:
            continue
        rule, what = REPORT_RULES[kind]
        lock, other = _report_locks(r)
        stack = trim_stack(r.backtrace)
        # the acquiring (or releasing) function names the place in the id: a report cut off
        # before its backtrace still has it, so both copies of one bug keep one id
        site = r.new_lock or r.subject_lock
        frame = (site.at if site and site.at else "") or (stack[0] if stack else "")
        ev = []
        if kind == "recursive" and r.held_lock:
            at = f" at {r.held_lock.at}()" if r.held_lock.at else ""
            ev.append(Evidence(r.file, r.held_lock.line, f"'{r.held_lock.name}' already held, taken{at}"))
        ev.append(_report_place(r, kind, what, lock, stack))
        for hl in r.held_lists:
            for lk in hl.locks:
                at = f" at {lk.at}()" if lk.at else ""
                ev.append(Evidence(r.file, lk.line, f"held by {hl.task}: '{lk.name}'{at}"))
        detail = []
        if r.usage_transition:
            detail.append(f"usage {r.usage_transition}")
        if other:
            detail.append(f"with '{other}'")
        if r.irq_class:
            detail.append(f"{r.irq_class} interrupts")
        if r.context:
            detail.append(r.context)
        where = f" on '{lock}'" if lock else ""
        if detail:
            where += " (" + ", ".join(detail) + ")"
        task = f" in task {r.task}" if r.task else ""
        yield make(rule, lock or "(none)", ev, tuple(x for x in (lock, other) if x),
                   what=what, where=where, task=task, frame=frame, kind=kind, other=other,
                   transition=r.usage_transition or "")


@check("LG118")
def lockdep_turned_off(inp: CheckInput) -> Iterable[Finding]:
    for r in inp.reports:
        if r.duplicate_of is None and _report_kind(r) == "lockdep_off":
            ev = [Evidence(r.file, r.line, "INFO: lockdep is turned off")]
            yield make("LG118", "(none)", ev, (), where=f" at {r.file}:{r.line}")
