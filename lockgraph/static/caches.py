"""Slab caches of the scanned code: the constructor and destructor each is created with,
where it is freed (with the locks held there) and where objects are allocated from it.

Kept by cache variable, because that is all a `kmem_cache_free(cachep, …)` site names:
the roots (slab_roots) and the destructor's contexts join on it.
"""

from __future__ import annotations

import re
from collections import defaultdict

from lockgraph.static.facts import kb
from lockgraph.static.facts.cparse import split_top
from lockgraph.static.facts.scan import FileFacts
from lockgraph.static.facts.walk import Alloc, FuncFacts
from lockgraph.static.resolution import IDENT, Resolver

_FREES = ("kmem_cache_free", "kmem_cache_destroy", "kmem_cache_shrink")


def cache_roles(files: list[FileFacts], funcs: dict[str, FuncFacts],
                by_name: dict[str, list[str]]) -> dict[str, dict[str, str]]:
    """cache variable -> {"ctor": f, "dtor": f}: from the `struct kmem_cache_args` (or
    other struct) passed to kmem_cache_create*(), and its ctor argument."""
    arg_structs: dict[tuple[str, str], dict[str, str]] = defaultdict(dict)
    for ff in files:
        for d in ff.desig:
            v = d.value.lstrip("&").strip()
            if d.member in ("ctor", "dtor") and IDENT.fullmatch(v):
                arg_structs[(ff.path, d.var)][d.member] = v
    caches: dict[str, dict[str, str]] = defaultdict(dict)
    for f in funcs.values():
        for var, text in f.aliases.items():
            m = re.match(r"kmem_cache_create\w*\s*\((.*)\)$", text)
            if not m:
                continue
            args = [a.strip() for a in split_top(m.group(1))]
            for a in args:
                if a.startswith("&") and (f.file, a[1:]) in arg_structs:
                    caches[var].update(arg_structs[(f.file, a[1:])])
            ctor_at = 6 if text.startswith("kmem_cache_create_usercopy") else 4
            if len(args) > ctor_at and IDENT.fullmatch(args[ctor_at]) and args[ctor_at] in by_name:
                caches[var]["ctor"] = args[ctor_at]
    return dict(caches)


def free_sites(funcs: dict[str, FuncFacts], res: Resolver) -> list[tuple[str, str, int, tuple[str, ...]]]:
    """(cache variable, function id, line, classes held) of each kmem_cache_free()-like call."""
    out = []
    for i, f in funcs.items():
        for c in f.calls:
            if c.name in _FREES and c.args:
                var = IDENT.findall(c.args[0])
                if var:
                    out.append((var[-1], i, c.line, tuple(x for x, _ in res.held_classes(f, c.held))))
    return out


def cache_allocs(funcs: dict[str, FuncFacts]) -> dict[str, list[tuple[int, str, Alloc]]]:
    """cache variable -> (order, function id, allocation) of its kmem_cache_alloc*() sites."""
    out: dict[str, list[tuple[int, str, Alloc]]] = defaultdict(list)
    seq = 0
    for i, f in funcs.items():
        for al in f.allocs:
            if al.api in kb.CACHE_ALLOCS:
                seq += 1
                out[al.target.split("->")[-1].split(".")[-1]].append((seq, i, al))
    return dict(out)
