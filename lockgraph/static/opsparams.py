"""Ops tables handed in as parameters, resolved at each call site.

The page-table walker calls `ops->pte_hole()` where `ops` is `walk->ops`, and `walk` is the
`struct mm_walk` its caller filled with `.ops = ops` from *its* parameter, which the real
caller set to `&vmemmap_remap_ops` — a table with no `.pte_hole` at all.  Matched by type,
the call reaches every `.pte_hole` of every `mm_walk_ops` table (HMM's, which faults pages in),
so remapping the kernel's vmemmap under `init_mm`'s lock "faults user pages": the most
common false lock cycle on mm/ + kernel/.  As for callback parameters (callbacks.py), the
callee's call is resolved where the table is known: a member call whose object is a
parameter (or a field of one, through a local alias) becomes, at each call site, a call to
the member of the table that call site passes — through a local struct initialised from the
caller's own parameter (`struct mm_walk walk = { .ops = ops }`), several levels up.  A call
site whose argument is no known table keeps the resolution by type it had in the callee.
"""

from __future__ import annotations

import re
from collections import defaultdict

from lockgraph.static.callbacks import (Site, add_site, append_calls, bare, caller_site,
                                        open_at, own_site, param_indices, site_call)
from lockgraph.static.facts.walk import Call, FuncFacts

#: Levels of callers a (parameter, field path, member) call travels up (the page-table
#: walker nests pgd -> p4d -> pud -> pmd -> pte, each passing `walk` on).
DEPTH = 8
#: a member chain `a->b.c` (identifiers joined by -> and .), nothing else
CHAIN = re.compile(r"^[A-Za-z_]\w*(?:\s*(?:->|\.)\s*[A-Za-z_]\w*)*$")
_STEP = re.compile(r"\s*(?:->|\.)\s*")

#: (parameter index, field path inside it, member called)
Key = tuple[int, str, str]


def param_path(chain: str, f: FuncFacts) -> tuple[int, str] | None:
    """(parameter index, field path) the object chain of a member call in f starts from:
    `ops` (a parameter) -> (k, ""); `ops` aliasing `walk->ops` -> (k_walk, "ops")."""
    if not chain or not CHAIN.match(chain):
        return None
    parts = _STEP.split(chain)
    pidx = param_indices(f)
    if parts[0] in pidx:
        return pidx[parts[0]], ".".join(parts[1:])
    alias = f.aliases.get(parts[0], "").strip()
    if alias and CHAIN.match(alias):
        a = _STEP.split(alias)
        if a[0] in pidx:
            return pidx[a[0]], ".".join(a[1:] + parts[1:])
    return None


class Tables:
    """Designated initialisers by variable: what a table (or a local struct) holds."""

    def __init__(self, files, named) -> None:
        self.named = named
        self.by_var: dict[str, list] = defaultdict(list)   # var -> [(file, Desig)]
        for ff in files:
            for d in ff.desig:
                if d.var:
                    self.by_var[d.var].append((ff.path, d))

    def _entries(self, var: str, f: FuncFacts, line: int) -> list | None:
        """The initialiser of `var` as f sees it at `line`: a local one in f before the
        line (the latest), else a table of f's file, else the one table of that name."""
        cands = self.by_var.get(var)
        if not cands:
            return None
        local = [(fl, d) for fl, d in cands if fl == f.file and f.line <= d.line <= line]
        if local:
            start = max(d.line for _, d in local)
            # one initialiser: the entries from the latest opening before the call
            first = min(d.line for _, d in local if d.line >= start - 64)
            return [(fl, d) for fl, d in local if d.line >= first]
        same = [(fl, d) for fl, d in cands if fl == f.file]
        if same:
            return same
        files = {fl for fl, _ in cands}
        return cands if len(files) == 1 else None

    def resolve(self, arg: str, path: str, member: str, f: FuncFacts, line: int,
                depth: int = 0) -> tuple[str, object] | None:
        """What call site `arg` (in f, at line) makes of the callee's `param.path->member()`:
        ("fids", functions) for a known table, ("param", (k, path)) for f's own parameter,
        None when it is not known."""
        a = bare(arg)
        if not CHAIN.match(a) or depth > 3:
            return None
        steps = _STEP.split(a)
        pidx = param_indices(f)
        if steps[0] in pidx:
            return "param", (pidx[steps[0]], ".".join(steps[1:] + ([path] if path else [])))
        if len(steps) > 1:
            return None
        entries = self._entries(a, f, line)
        if entries is None:
            return None
        if not path:
            fids: set[str] = set()
            for fl, d in entries:
                if d.member == member and not d.outer:
                    v = d.value.lstrip("&").strip()
                    fids.update(self.named(v, fl))
            return "fids", fids
        head, _, rest = path.partition(".")
        nested = [(fl, d) for fl, d in entries if d.outer == path and d.member == member]
        if nested:
            fids = set()
            for fl, d in nested:
                fids.update(self.named(d.value.lstrip("&").strip(), fl))
            return "fids", fids
        for fl, d in entries:
            if d.member == head and not d.outer:
                return self.resolve(d.value, rest, member, f, line, depth + 1)
        return None


class OpsSites:
    """Per function, the member calls it makes through a parameter (directly, or handed on
    to a callee that does), the indices of its own such calls, and for each what the
    callee's own resolution by type reached (what a call site passing no known table gets)."""

    def __init__(self) -> None:
        self.sites: dict[str, dict[Key, Site]] = {}
        self.own: dict[str, set[int]] = {}
        #: (function, key) -> what its own call reached, or the callee it hands the key to
        self.origin: dict[tuple[str, Key], tuple[str, ...]] = {}
        self.via: dict[tuple[str, Key], tuple[str, Key]] = {}

    def fallback(self, j: str, key: Key) -> tuple[str, ...]:
        """What the resolution by type of the call behind (j, key) reached."""
        seen = set()
        at = (j, key)
        while at not in self.origin and at in self.via and at not in seen:
            seen.add(at)
            at = self.via[at]
        return self.origin.get(at, ())


def ops_sites(funcs: dict[str, FuncFacts], targets, tables: Tables, classes) -> OpsSites:
    out = OpsSites()
    sites, own, origin = out.sites, out.own, out.origin
    for i, f in funcs.items():
        if not f.params:
            continue
        for n, c in enumerate(f.calls):
            if c.member and c.base:
                pp = param_path(c.base, f)
                if pp is not None:
                    key = (pp[0], pp[1], c.name)
                    add_site(sites.setdefault(i, {}), key, own_site(c))
                    own.setdefault(i, set()).add(n)
                    origin[(i, key)] = tuple(sorted(set(origin.get((i, key), ())) | set(targets[i][n])))
    # A caller is read again only for callees whose sites changed since it was last read:
    # re-adding what it added then changes nothing (add_site merges), so the rounds, and
    # the DEPTH bound, give what reading every call every round gives.
    clock = 0
    changed: dict[str, int] = dict.fromkeys(sites, 0)   # function -> clock of its last change
    read: dict[str, int] = {}                           # function -> clock when last read
    for _ in range(DEPTH):
        grew = False
        for i, f in funcs.items():
            if not f.params:
                continue
            since = read.get(i, -1)
            read[i] = clock
            for c, row in zip(f.calls, targets[i]):
                for j in row:
                    if changed.get(j, -1) <= since:
                        continue
                    for (k, path, m), site in list(sites.get(j, {}).items()):
                        if k >= len(c.args) or not open_at(site, funcs[j], c):
                            continue
                        r = tables.resolve(c.args[k], path, m, f, c.line)
                        if r is None or r[0] != "param":
                            continue
                        key = (r[1][0], r[1][1], m)
                        if key not in sites.get(i, {}):
                            out.via[(i, key)] = (j, (k, path, m))
                        if add_site(sites.setdefault(i, {}), key,
                                    caller_site(c, f, funcs[j], site, classes)):
                            grew = True
                            clock += 1
                            changed[i] = clock
        if not grew:
            break
    return out


def add_ops_calls(funcs: dict[str, FuncFacts], targets, ops: OpsSites, tables: Tables,
                  classes, called: set[str], own=None) -> None:
    """Each call that hands a table to such a parameter calls that table's member; an
    argument that is no known table calls what the callee's own resolution reached (so does
    a function nothing calls that hands on its own parameter).  The callee's own member call
    is then resolved at its call sites, when it has any (`called`: the functions some call
    reaches)."""
    for i, f in list(funcs.items()):
        extra: list[Call] = []
        rows: list[tuple[str, ...]] = []
        for c, row in zip(f.calls, targets[i]):
            for j in row:
                for key, site in sorted(ops.sites.get(j, {}).items()):
                    k, path, m = key
                    if k >= len(c.args) or not open_at(site, funcs[j], c):
                        continue
                    r = tables.resolve(c.args[k], path, m, f, c.line)
                    if r is not None and r[0] == "param" and i in called:
                        continue  # resolved at i's own callers
                    known = r is not None and r[0] == "fids"
                    got = tuple(sorted(r[1])) if known else ops.fallback(j, key)
                    if not got:
                        continue
                    base = "" if known else "->".join([c.args[k].strip(), *path.split(".")] if path
                                                      else [c.args[k].strip()])
                    if own is not None and not known:  # static/owntables.py
                        got = own.narrow(i, base, m, got)
                    extra.append(site_call(m, c, f, funcs[j], site, classes, base))
                    rows.append(got)
        if extra:
            append_calls(funcs, targets, i, extra, rows)
    for j, per in ops.own.items():  # the callee's own call: resolved at its call sites
        if j in called:
            targets[j] = tuple(() if n in per else t for n, t in enumerate(targets[j]))
