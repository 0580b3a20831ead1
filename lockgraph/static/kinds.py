"""Calls whose argument is of a kind the callee dispatches on, where the caller fixes the kind.

`__folio_put()` frees a folio by its kind: a zone-device folio through its pgmap's driver,
a hugetlb folio through `free_huge_folio()` (hugetlb_lock, the surplus pool, vmemmap
restore, synchronize_rcu()), any other through the page allocator.  `kfree()` of a large
kmalloc object calls `free_large_kmalloc()`, whose `folio_put()` frees a page the page
allocator gave kmalloc: never hugetlb, never zone-device.  Followed without that fact,
every lock held around a kfree() gets an edge to everything hugetlb freeing reaches — on
the whole 6.12 tree, 939 of the 1,040 witness chains of the LG103 cycles with Debian's
config ran kfree -> free_large_kmalloc -> folio_put -> __folio_put -> free_huge_folio.

Each entry is a kernel fact checked in the code (docs/kernel-facts.md §5): at a call from
`caller` to `callee`, the dispatching function `through` that the callee calls does not
reach `never` for this argument.  The call's targets become the callee's other callees and
the dispatcher's remaining ones — the frames of callee and dispatcher are left out of the
witness chain; a rule is not applied when either of them takes a lock or allocates itself
(nothing of theirs may be lost).
"""

from __future__ import annotations

from lockgraph.static.facts.walk import FuncFacts

#: (caller, callee) -> (dispatcher the callee calls, its callees this argument never reaches)
KIND_CALLS: dict[tuple[str, str], tuple[str, frozenset[str]]] = {
    # mm/slub.c: the folio of a large kmalloc object comes from the page allocator
    # (___kmalloc_large_node -> alloc_pages_noprof); __folio_put (mm/swap.c) tests
    # folio_is_zone_device() and folio_test_hugetlb() first.
    ("free_large_kmalloc", "folio_put"): ("__folio_put",
                                          frozenset({"free_huge_folio", "free_zone_device_folio"})),
}


def apply_kind_calls(funcs: dict[str, FuncFacts],
                     targets: dict[str, tuple[tuple[str, ...], ...]]) -> None:
    """Retarget the calls KIND_CALLS names."""
    callers = {caller for caller, _ in KIND_CALLS}
    for i, f in funcs.items():
        if f.name not in callers:
            continue
        rows = list(targets.get(i, ()))
        for k, (c, row) in enumerate(zip(f.calls, rows)):
            rule = KIND_CALLS.get((f.name, c.name))
            if rule is None or not row:
                continue
            through, never = rule
            got = _inlined(row, through, never, funcs, targets)
            if got is not None:
                rows[k] = got
        targets[i] = tuple(rows)


def _inlined(row: tuple[str, ...], through: str, never: frozenset[str],
             funcs: dict[str, FuncFacts], targets) -> tuple[str, ...] | None:
    out: set[str] = set()
    for j in row:
        g = funcs[j]
        if g.acqs or g.allocs:
            return None
        for c, sub in zip(g.calls, targets.get(j, ())):
            if c.name != through:
                out.update(sub)
                continue
            for d in sub:
                h = funcs[d]
                if h.acqs or h.allocs:
                    return None
                for c2, sub2 in zip(h.calls, targets.get(d, ())):
                    if c2.name not in never:
                        out.update(sub2)
    return tuple(sorted(out))
