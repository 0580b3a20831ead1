"""Roots found in the scanned tree: slab destructors, constructors, reclaim entry points.

docs/kernel-facts.md §4 (ctor/dtor registration; the RFC's `.dtor` member of
`struct kmem_cache_args`) and §5 (shrinker callbacks are assigned, never statically
initialised, in 6.12; kswapd/balance_pgdat and direct reclaim hold fs_reclaim).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from lockgraph.static.facts.kb import RECLAIM_CALLS
from lockgraph.static.resolution import assigned_function
from lockgraph.static.solve import Solved

#: Reclaim entry points that run with fs_reclaim held (docs/kernel-facts.md §5).
RECLAIM_ENTRIES = ("kswapd", "balance_pgdat", "__perform_reclaim", "__node_reclaim",
                   *RECLAIM_CALLS)
#: The struct whose `.ctor`/`.dtor` members are slab constructor/destructor (the RFC's
#: `.dtor`; 6.12's `.ctor`).  A `.dtor` of any other struct (nouveau's subdev functions,
#: bpf kptr fields, ...) is some other destructor: it becomes a root only when its struct
#: is passed to kmem_cache_create() (Solved.caches).
SLAB_ARGS = "kmem_cache_args"
#: Members whose function pointer is a shrinker callback.
SHRINKER_MEMBERS = ("scan_objects", "count_objects")


@dataclass(slots=True)
class Root:
    function: str
    kind: str                   # dtor | ctor | reclaim
    fids: list[str]             # definitions found (empty: not in the scanned sources)
    how: list[str] = field(default_factory=list)     # why it is a root, with file:line
    caches: list[str] = field(default_factory=list)  # cache variables it serves


def find_roots(S: Solved, dtors: tuple[str, ...] = ()) -> list[Root]:
    roots: dict[tuple[str, str], Root] = {}

    def add(name: str, kind: str, how: str, cache: str = "") -> None:
        r = roots.get((name, kind))
        if r is None:
            r = roots[(name, kind)] = Root(name, kind, sorted(S.by_name.get(name, [])))
        if how not in r.how:
            r.how.append(how)
        if cache and cache not in r.caches:
            r.caches.append(cache)

    for ff in S.files:
        for d in ff.desig:
            v = d.value.lstrip("&").strip()
            if d.member in ("dtor", "ctor") and v.isidentifier() and v != "NULL" \
                    and d.type.replace("struct ", "").strip() == SLAB_ARGS:
                where = f".{d.member} = {v} in {d.var or 'an initialiser'} ({ff.path}:{d.line})"
                caches = [c for c, m in S.caches.items() if m.get(d.member) == v]
                add(v, d.member, where)
                for c in caches:
                    add(v, d.member, where, c)
            if d.member in SHRINKER_MEMBERS and v in S.by_name:
                add(v, "reclaim", f".{d.member} = {v} ({ff.path}:{d.line})")
    for cache, m in S.caches.items():
        for kind in ("ctor", "dtor"):
            if kind in m and m[kind] in S.by_name:
                add(m[kind], kind, f"{kind} of cache {cache}", cache)
    for f in S.funcs.values():
        for base, member, value, line in f.assigns:
            if member in SHRINKER_MEMBERS and assigned_function(value, f, S.by_name):
                add(value, "reclaim", f"{base}->{member} = {value} ({f.file}:{line})")
    for name in RECLAIM_ENTRIES:
        if name in S.by_name:
            add(name, "reclaim", "runs with fs_reclaim held (docs/kernel-facts.md §5)")
    for name in dtors:
        add(name, "dtor", "named with --dtor")
    order = {"dtor": 0, "ctor": 1, "reclaim": 2}
    return sorted(roots.values(), key=lambda r: (order[r.kind], r.function))
