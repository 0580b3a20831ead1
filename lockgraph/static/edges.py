"""Static lock-dependency edges, following lockdep's rule (docs/kernel-facts.md §1.0): from
the newest held lock down to and including the first non-trylock, never into a trylock,
never from or to check=0 maps (RCU).  Through a call, a held lock gets an edge to what the
callee takes at its top level (its summary's `top`), not to what it takes under its own
locks; an allocation whose gfp is a parameter adds `→ fs_reclaim` only where some caller's
argument reclaims.  Also the list of every acquisition with its class.
"""

from __future__ import annotations

from collections import defaultdict
from copy import copy
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from lockgraph.static.facts import kb
from lockgraph.static.facts.walk import FuncFacts, Held, LockExpr
from lockgraph.static.gfp import FS_RECLAIM, gfp_reclaims, masked, scope_mask
from lockgraph.static.paramlocks import ParamLocks
from lockgraph.static.summaries import (ATOMIC, IRQS_OFF, PLAIN, Witness, context_at, dead,
                                        irqs_on, sleeping)
from lockgraph.static.witnesses import Step, indirect_hop, param_chain

if TYPE_CHECKING:
    from lockgraph.static.solve import Solved

#: Witnesses kept per static edge.
MAX_EVIDENCE = 5


@dataclass(slots=True)
class StaticEdge:
    """src -> dst with up to MAX_EVIDENCE witnesses.

    A witness through a call is kept as (call site, callee id) and its call chain is
    searched only when somebody reads `evidence`: the whole tree has millions of static
    edges and a check shows the chains of a few hundred."""

    src: str
    dst: str
    raw: list[tuple[Step, tuple[Step, ...] | str]] = field(default_factory=list)
    owner: "Solved | None" = None
    #: bit k: witness k was made in atomic context (a spinning source, or a call inside
    #: rcu_read_lock()), so its chain follows no sleep (summaries.atop)
    atomic: int = 0
    #: bit k: ... with interrupts off, so its chain follows nothing behind
    #: !irqs_disabled() either (summaries.itop)
    irqoff: int = 0

    def witness(self, k: int) -> tuple[Step, tuple[Step, ...]]:
        """Witness k with its call chain (searched now if it was not yet)."""
        step, via = self.raw[k]
        if isinstance(via, str):
            via = self.owner.chain(via, self.dst, edge=True, avoid=self.src,
                                   atomic=self.context(k))
            self.raw[k] = (step, via)
        return step, via

    def indirect_hop(self, k: int) -> str:
        """The ops-table call witness k goes through, "" if none (witnesses.indirect_hop)."""
        step, via = self.witness(k)
        return indirect_hop(self.owner, (step, *via))

    def context(self, k: int) -> int:
        """The context witness k was made in (summaries.PLAIN, ATOMIC, IRQS_OFF)."""
        return IRQS_OFF if self.irqoff >> k & 1 else ATOMIC if self.atomic >> k & 1 else PLAIN

    @property
    def evidence(self) -> list[tuple[Step, tuple[Step, ...]]]:
        return [self.witness(k) for k in range(len(self.raw))]

    def configs_of(self, k: int) -> set[str]:
        """CONFIG conditions of the lines witness k passes through."""
        conds = self.owner.conds if self.owner else {}
        step, via = self.witness(k)
        out: set[str] = set()
        for s in (step, *via):
            out.update(conds.get((s.file, s.line), ()))
        return out

    @property
    def configs(self) -> set[str]:
        """CONFIG conditions of all witnesses kept, so a reader can check each one."""
        out: set[str] = set()
        for k in range(len(self.raw)):
            out |= self.configs_of(k)
        return out



def _with_entry(f: FuncFacts, entry: tuple[Held, ...]) -> FuncFacts:
    """A view of f whose every event also holds the locks held on entry."""
    g = copy(f)
    g.acqs = [copy(a) for a in f.acqs]
    g.allocs = [copy(a) for a in f.allocs]
    g.calls = [copy(c) for c in f.calls]
    for ev in (*g.acqs, *g.allocs, *g.calls):
        ev.held = entry + ev.held
    return g


def reclaiming_params(funcs: dict[str, FuncFacts], targets: dict[str, tuple[tuple[str, ...], ...]],
                      param_reclaim: dict[str, dict[int, Witness]]) -> dict[tuple[str, int], Step]:
    """(function, gfp parameter) -> the call that passes it a reclaiming gfp, for every
    parameter some caller chain makes reclaim: the edges behind such a parameter exist
    only then."""
    flow: dict[tuple[str, int], set[tuple[str, int]]] = defaultdict(set)
    seeds: dict[tuple[str, int], Step] = {}
    for i, f in funcs.items():
        for c, row in zip(f.calls, targets[i]):
            for j in row:
                for n in param_reclaim.get(j, {}):
                    if masked(c.scopes) or n >= len(c.args):
                        continue
                    how, k2 = gfp_reclaims(c.args[n], f)
                    if how == "param":
                        flow[(i, k2)].add((j, n))
                    elif how in ("yes", "unknown"):
                        seeds.setdefault((j, n), Step(f.name, f.file, c.line))
    reclaiming: dict[tuple[str, int], Step] = dict(seeds)
    work = list(seeds)
    while work:
        key = work.pop()
        for nxt in flow.get(key, ()):
            if nxt not in reclaiming:
                reclaiming[nxt] = reclaiming[key]
                work.append(nxt)
    return reclaiming


class EdgeBuilder:
    """The static edges and the acquisitions of one solved program.

    `full` remembers, per source class, the destinations whose edge keeps MAX_EVIDENCE
    witnesses already: on the whole tree a held lock meets the same callee classes at
    thousands of call sites, and looking at each again would dominate the solve."""

    def __init__(self, S: Solved) -> None:
        self.S = S
        self.edges: dict[tuple[str, str], StaticEdge] = {}
        self.acquisitions: list[dict] = []
        self.full: dict[str, int] = {}   # source class -> bits of its edges whose evidence is complete
        self.noedge = 0
        self.spins: set[str] = set()
        for cls, k in S.kinds.items():
            if k in kb.NO_EDGE_KINDS and cls in S.classes.ids:
                self.noedge |= 1 << S.classes.ids[cls]
            if k in kb.SPINNING_KINDS:
                self.spins.add(cls)
        self.reclaiming = reclaiming_params(S.funcs, S.targets, S.param_reclaim)
        #: a lock parameter's classes: what its callers pass (static/paramlocks.py)
        self.params = ParamLocks(S.funcs, S.targets, S.local_acqs, S.resolver)

    def run(self) -> None:
        S = self.S
        for i, f in S.funcs.items():
            entry: tuple[Held, ...] = ()
            if not S.callers.get(i):
                # No caller in the scanned code: an asserted lock (lockdep_assert_held,
                # __must_hold) is the callers' contract, so it is held on entry.
                entry = tuple(Held(lk, "asserted", "X", False, line) for lk, line in f.asserted)
                entry += tuple(Held(LockExpr.parse(a[len("__must_hold("):-1]), "asserted", "X", False, f.line)
                               for a in f.annotations if a.startswith("__must_hold("))
            if entry:
                f = _with_entry(f, entry)
            self._acquisitions(i, f)
            self._allocations(i, f)
            self._calls(i, f)

    def sources(self, i: str, f: FuncFacts, held: tuple[Held, ...]) -> list[str]:
        """The held classes an acquisition here gets an edge from: newest first, down to
        and including the first non-trylock; a lock parameter is the classes its callers
        pass."""
        return [x for c in self.raw_sources(i, f, held) for x in self.params.expand(c, i)]

    def raw_sources(self, i: str, f: FuncFacts, held: tuple[Held, ...]) -> list[str]:
        """sources() with lock parameters left as `@paramN`."""
        out = []
        for c, h in reversed(self.S.resolver.held_classes(f, held)):
            if h.kind in kb.NO_EDGE_KINDS or not self.params.expand(c, i):
                continue
            out.append(c)
            if not h.try_:
                break
        return out

    def add(self, src: str, dst: str, step: Step, via: tuple[Step, ...] | str,
            atomic: int = PLAIN) -> bool:
        """Record an edge's witness (`via` a callee id: chain searched when read, in the
        context `atomic`); True once the edge keeps MAX_EVIDENCE of them."""
        if src == dst:
            return False
        e = self.edges.get((src, dst))
        if e is None:
            e = self.edges[(src, dst)] = StaticEdge(src, dst, [], self.S)
        if len(e.raw) < MAX_EVIDENCE:
            if atomic:
                e.atomic |= 1 << len(e.raw)
            if atomic == IRQS_OFF:
                e.irqoff |= 1 << len(e.raw)
            e.raw.append((step, via))
        return len(e.raw) >= MAX_EVIDENCE

    def _acquisitions(self, i: str, f: FuncFacts) -> None:
        for a in f.acqs:
            for own in self.S.resolver.classes(a.lock, f):
                own = own + (f"/{a.subclass}" if a.subclass else "")
                step = Step(f.name, f.file, a.line)
                for cls in self.params.expand(own, i) or [own]:
                    self.acquisitions.append({"function": f.name, "lock": cls, "file": f.file,
                                              "line": a.line, "mode": a.mode, "kind": a.kind,
                                              "try": a.try_, "irq": a.irq})
                if a.try_ or a.kind in kb.NO_EDGE_KINDS or dead(a):
                    continue
                dsts = self.params.expand(own, i)   # never `@param`: the callers' classes
                for s in self.raw_sources(i, f, a.held):
                    if s.startswith("@param") and own.startswith("@param"):
                        # two locks handed in: paired per call site
                        for x, y in self.params.pairs(i, s, own):
                            self.add(x, y, step, ())
                        continue
                    for x in self.params.expand(s, i):
                        for cls in dsts:
                            self.add(x, cls, step, ())

    def _allocations(self, i: str, f: FuncFacts) -> None:
        for al in f.allocs:
            how, pk = gfp_reclaims(al.gfp, f)
            if masked(al.scopes) or dead(al):
                continue
            if how in ("yes", "unknown"):
                for s in self.sources(i, f, al.held):
                    self.add(s, FS_RECLAIM, Step(f.name, f.file, al.line), ())
            elif how == "param" and (i, pk) in self.reclaiming:
                caller = self.reclaiming[(i, pk)]
                for s in self.sources(i, f, al.held):
                    self.add(s, FS_RECLAIM, Step(f.name, f.file, al.line), (caller,))

    def _at_call(self, dj: dict[str, int], c, f: FuncFacts) -> dict[str, int]:
        out: dict[str, int] = {}
        for key, bits in dj.items():
            for lk in self.S.resolver.at_call(key, c, f):
                out[lk] = out.get(lk, 0) | bits
        return out

    def _param_calls(self, i: str, f: FuncFacts, c, j: str, srcs: list[str], here: Step,
                     ctx: int) -> None:
        """A held lock -> the class a callee takes through its lock parameter: call c's
        argument (cgroup_rstat_flush_locked() holding cgroup_rstat_lock calls
        _cgroup_rstat_cpu_lock(per_cpu_ptr(&cgroup_rstat_cpu_lock, cpu), ...)).  The
        callee's summary leaves these out of its top set: its callers resolve them."""
        S = self.S
        for key, w in sorted(S.pcls[j].items()):
            reals = S.resolver.at_call(key, c, f) if w.edge else ()
            if not reals:
                continue
            via = S.chain(j, key)
            for real in reals:
                for dst in self.params.expand(real, i) if real.startswith("@param") else (real,):
                    blocking = (S.kinds.get(dst) in kb.BLOCKING_KINDS
                                or S.resolver.kind_hint(dst) in kb.BLOCKING_KINDS)
                    for s in srcs:
                        if s == dst or s in w.dropped:
                            continue
                        at = ctx or (ATOMIC if s in self.spins else PLAIN)
                        if at and (blocking or sleeping(c)):
                            continue   # sleeping in atomic context: LG107's, not an edge
                        self.add(s, dst, here, via, at)

    def _calls(self, i: str, f: FuncFacts) -> None:
        """A held lock -> what each callee takes at its top level (but not what it reaches
        only through paths that drop that lock first), and -> fs_reclaim where the callee
        reclaims through a gfp argument."""
        S, full, add, reclaiming, noedge = self.S, self.full, self.add, self.reclaiming, self.noedge
        U, drops, param_reclaim, spins = S.classes, S.drops, S.param_reclaim, self.spins
        for c, row in zip(f.calls, S.targets[i]):
            if not c.held or not row:
                continue
            srcs = self.sources(i, f, c.held)
            if not srcs:
                continue
            here = Step(f.name, f.file, c.line)
            m = ~noedge & ~scope_mask(c.scopes)
            # under rcu_read_lock() every source, as a spinlock; under a lock taken with
            # interrupts off, nothing behind !irqs_disabled() (summaries.itop)
            ctx = context_at(c.held)
            if ctx == IRQS_OFF and irqs_on(c):
                continue
            for j in row:
                _, tj, cj, sj = S.callee_bits(c, j)
                bits, sbits = tj & m, sj & m
                if ctx == IRQS_OFF:
                    sbits &= S.itop[j]
                dj = drops.get(j)
                if dj and any(k[0] == "@" for k in dj):  # it drops a lock it was handed
                    dj = self._at_call(dj, c, f)
                for s in srcs:
                    # a spinning lock: not through a sleep (summaries.atop)
                    at = ctx or (ATOMIC if s in spins else PLAIN)
                    if at:
                        if sleeping(c):
                            continue
                        need = sbits & ~full.get(s, 0)
                    else:
                        need = bits & ~full.get(s, 0)
                    if dj and s in dj:  # reached only through paths that drop s first
                        need &= ~(dj[s] & ~cj)
                    for b in U.bits(need):
                        cls = U.names[b]
                        if cls == s:
                            full[s] = full.get(s, 0) | (1 << b)
                            continue
                        if add(s, cls, here, j, at):
                            full[s] = full.get(s, 0) | (1 << b)
                if j in S.pcls:
                    self._param_calls(i, f, c, j, srcs, here, ctx)
                for n, w in param_reclaim.get(j, {}).items():
                    # not w.edge: the allocation runs under the callee's own lock
                    if not w.edge or masked(c.scopes) or n >= len(c.args):
                        continue
                    how, k2 = gfp_reclaims(c.args[n], f)
                    via = param_chain(j, n, S.funcs, param_reclaim)
                    if how == "param":
                        if (i, k2) not in reclaiming:
                            continue
                        via = via + (reclaiming[(i, k2)],)
                    elif how not in ("yes", "unknown"):
                        continue
                    for s in srcs:
                        if s not in w.dropped:
                            add(s, FS_RECLAIM, Step(f.name, f.file, c.line), via)
