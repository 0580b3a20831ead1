"""Whole-program solve: the steps in order, and the answer every later question reads.

Names first (lock classes, call targets: resolution), then the bottom-up summaries
(summaries), then the static edges they imply (edges) and the slab caches' sites (caches).
Witness chains are not part of the solve: they are searched when evidence is printed
(witnesses), since only a few hundred of millions of possible ones are ever shown.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from lockgraph.static.caches import cache_allocs, cache_roles, free_sites
from lockgraph.static.constargs import narrowed
from lockgraph.static.edges import EdgeBuilder, StaticEdge
from lockgraph.static.facts import kb
from lockgraph.static.facts.scan import FileFacts
from lockgraph.static.facts.walk import Acq, Alloc, FuncFacts
from lockgraph.static.resolution import CallGraph, HeldNames, Resolver, fid
from lockgraph.static.summaries import ATOMIC, PLAIN, ClassIndex, Summaries, Takes, Witness
from lockgraph.static.witnesses import ChainSearch, Step, ranked_blind, reachable_blind


@dataclass(slots=True, kw_only=True)
class Solved:
    """What the roots, verdicts, checks and renderers read after the solve: one record of
    named fields, since each of them reads a different few."""

    files: list[FileFacts]
    funcs: dict[str, FuncFacts]
    by_name: dict[str, list[str]]
    conds: dict[tuple[str, int], tuple[str, ...]]
    resolver: Resolver
    # the call graph
    targets: dict[str, tuple[tuple[str, ...], ...]]
    callers: dict[str, list[tuple[str, frozenset[str], int]]]
    member_targets: dict[str, set[str]]
    unresolved: dict[str, list[tuple[str, int]]]  # callee text -> sites (file:line as str, line)
    blind: dict[str, frozenset[str]]            # function id -> its own blind spots (not callees')
    #: function id -> (index of the call, blind-spot label) of its unresolved calls
    blind_calls: dict[str, tuple[tuple[int, str], ...]]
    #: Summaries: bit sets over `classes` of what a function may take (any / at its top
    #: level through non-try acquisitions: a caller's held lock gets edges to these),
    #: lock-parameter entries, and the caller locks a path drops first.
    classes: ClassIndex
    anyb: dict[str, int]
    top: dict[str, int]
    clean: dict[str, int]                       # top classes reached with nothing dropped
    atop: dict[str, int]                        # top reached through no sleep (spinning holders)
    aany: dict[str, int]                        # any reached through no sleep (atomic callers)
    itop: dict[str, int]                        # atop with interrupts off (summaries.itop)
    iany: dict[str, int]                        # aany with interrupts off
    own: dict[str, frozenset[int]]              # classes taken in the body
    pcls: dict[str, dict[str, Witness]]
    drops: dict[str, dict[str, int]]            # dropped lock -> classes
    param_reclaim: dict[str, dict[int, Witness]]
    via_gfp: dict[str, int]                     # fs_reclaim through a gfp argument: call line
    #: gate -> summary without the events behind it (static/constargs.py)
    restricted: dict[str, dict[str, tuple[int, int, int, int]]]
    local_acqs: dict[str, list[tuple[str, Acq]]]
    kinds: dict[str, str]                       # lock class -> kind (spin, mutex, ...)
    irq_classes: set[str]
    sleeps: dict[str, Witness]
    # slab caches
    caches: dict[str, dict[str, str]]           # cache var -> {"ctor": f, "dtor": f}
    free_sites: list[tuple[str, str, int, tuple[str, ...]]]   # (cache var, fid, line, held classes)
    #: cache variable -> (order, function id, allocation) of its kmem_cache_alloc*() sites
    cache_allocs: dict[str, list[tuple[int, str, Alloc]]]
    #: Filled after the rest: an edge points back here to search its evidence.
    edges: dict[tuple[str, str], StaticEdge] = field(default_factory=dict)
    acquisitions: list[dict] = field(default_factory=list)
    search: ChainSearch = field(init=False)

    def __post_init__(self) -> None:
        self.search = ChainSearch(self)

    def callee_bits(self, c, j: str) -> tuple[int, int, int, int]:
        """(any, top, clean, atop) of callee j as call c reaches it (constant arguments
        applied)."""
        return narrowed(c, j, self.funcs, self.anyb, self.top, self.clean, self.atop,
                        self.restricted)

    def spinning(self, cls: str) -> bool:
        """Holding `cls` forbids sleeping: its edges through calls come from `atop`."""
        return self.kinds.get(cls) in kb.SPINNING_KINDS

    @property
    def takes(self) -> Takes:
        """fid -> {class: Taken} — built per question, never stored for every function."""
        return Takes(self)

    def chain(self, j: str, cls: str, edge: bool = False, limit: int = 40,
              avoid: str = "", atomic: int | None = None) -> tuple[Step, ...]:
        """`avoid`: the held lock of the edge shown; `atomic`, the context the chain starts
        in (summaries.PLAIN, ATOMIC, IRQS_OFF; by default ATOMIC when that lock spins),
        offers no chain through what that context forbids (see summaries.atop, itop)."""
        if atomic is None:
            atomic = ATOMIC if avoid and self.spinning(avoid) else PLAIN
        return self.search.chain(j, cls, edge, limit, avoid, atomic)

    def ranked_blind(self, fids) -> tuple[list[str], set[str]]:
        return ranked_blind(self, fids)

    def reachable_blind(self, fid: str) -> set[str]:
        return reachable_blind(self, fid)


def _index(files: list[FileFacts]) -> tuple[dict[str, FuncFacts], dict[str, list[str]],
                                            dict[tuple[str, int], tuple[str, ...]]]:
    """Function id -> facts (a second definition of a name in one file is told apart by its
    line), name -> ids, and (file, line) -> the CONFIG conditions of that line."""
    funcs: dict[str, FuncFacts] = {}
    by_name: dict[str, list[str]] = {}
    conds: dict[tuple[str, int], tuple[str, ...]] = {}
    for ff in files:
        for f in ff.functions:
            i = fid(f)
            if i in funcs:
                i = f"{i}@{f.line}"
            funcs[i] = f
            by_name.setdefault(f.name, []).append(i)
        for line, c in ff.conds.items():
            conds[(ff.path, line)] = c
    return funcs, by_name, conds


def solve(files: list[FileFacts], one_build: bool = False) -> Solved:
    """`one_build`: the files are what one .config links (a strong definition replaces a
    __weak one); otherwise every configuration's."""
    funcs, by_name, conds = _index(files)
    res = Resolver(files, funcs)
    calls = CallGraph(files, funcs, by_name, res, one_build)
    held_names = HeldNames(res)
    summ = Summaries(funcs, calls.targets, res, held_names)
    summ.run()
    S = Solved(
        files=files, funcs=funcs, by_name=by_name, conds=conds, resolver=res,
        targets=calls.targets, callers=calls.callers(held_names),
        member_targets=dict(calls.member_targets), unresolved=dict(calls.unresolved),
        blind=calls.blind, blind_calls=calls.blind_calls,
        classes=summ.classes, anyb=summ.anyb, top=summ.top, clean=summ.clean, atop=summ.atop,
        aany=summ.aany, itop=summ.itop, iany=summ.iany,
        own=summ.own,
        pcls=summ.pcls, drops=summ.drops(), param_reclaim=summ.param_reclaim,
        via_gfp=summ.via_gfp, restricted=summ.restricted, local_acqs={i: v for i, v in summ.local_acqs.items() if v},
        kinds=summ.kinds, irq_classes=summ.irq_classes, sleeps=summ.sleeps,
        caches=cache_roles(files, funcs, by_name), free_sites=free_sites(funcs, res),
        cache_allocs=cache_allocs(funcs))
    edges = EdgeBuilder(S)
    edges.run()
    S.edges, S.acquisitions = edges.edges, edges.acquisitions
    return S
