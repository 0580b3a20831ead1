"""The lock classes a lock parameter stands for: the arguments its call sites pass.

A function that takes the lock it is handed (`spin_lock(lock)` in `_atomic_dec_and_lock`,
`mutex_lock_double(a, b)`) names no class of its own: the summaries already give its
callers the argument's class (summaries.Summaries._lock_params).  What its own body does
under that lock — the acquisitions listed by `scan`, the edges from the lock to what it
takes next — needs the classes themselves, per parameter: the union over every call site,
through callers that pass their own parameter on (`@paramK` of the caller).
"""

from __future__ import annotations

from collections import defaultdict

from lockgraph.static.facts.walk import Acq, FuncFacts, LockExpr
from lockgraph.static.resolution import Resolver

#: (function id, parameter index) -> the classes call sites pass as that lock
ParamClasses = dict[tuple[str, int], frozenset[str]]


def param_index(cls: str) -> tuple[int, str]:
    """`@param2/1` -> (2, "/1"): the parameter and the subclass suffix the acquisition adds."""
    n, _, sub = cls[6:].partition("/")
    return int(n), f"/{sub}" if sub else ""


def param_classes(funcs: dict[str, FuncFacts], targets: dict[str, tuple[tuple[str, ...], ...]],
                  local_acqs: dict[str, list[tuple[str, Acq]]], res: Resolver) -> ParamClasses:
    """Every lock parameter's classes: a worklist from the parameters a body locks, up
    through the callers; a caller's own parameter passed on is a flow, filled last."""
    callers: dict[str, list[tuple[str, object]]] = defaultdict(list)
    for i, f in funcs.items():
        for c, row in zip(f.calls, targets.get(i, ())):
            for j in row:
                callers[j].append((i, c))
    work = sorted({(i, param_index(cls)[0]) for i, acqs in local_acqs.items()
                   for cls, _ in acqs if cls.startswith("@param")})
    wanted = set(work)
    direct: dict[tuple[str, int], set[str]] = defaultdict(set)
    flows: dict[tuple[str, int], set[tuple[str, int]]] = defaultdict(set)
    while work:
        j, n = work.pop()
        for i, c in callers.get(j, ()):
            if n >= len(c.args):
                continue
            for cls in res.classes(LockExpr.parse(c.args[n]), funcs[i]):
                if not cls.startswith("@param"):
                    direct[(j, n)].add(cls)
                    continue
                k = param_index(cls)[0]
                flows[(i, k)].add((j, n))
                if (i, k) not in wanted:
                    wanted.add((i, k))
                    work.append((i, k))
    got: dict[tuple[str, int], set[str]] = {k: set(v) for k, v in direct.items()}
    pending = sorted(got)
    while pending:  # a caller's classes reach every parameter it passes them to
        src = pending.pop()
        for dst in flows.get(src, ()):
            have = got.setdefault(dst, set())
            if not got[src] <= have:
                have |= got[src]
                pending.append(dst)
    return {k: frozenset(v) for k, v in got.items() if v}


def expand(cls: str, fid: str, params: ParamClasses) -> list[str]:
    """A class in the terms of function `fid`'s callers: a lock parameter is each class its
    call sites pass (none when nothing scanned calls it), anything else itself."""
    if not cls.startswith("@param"):
        return [cls]
    n, sub = param_index(cls)
    return sorted(c + sub for c in params.get((fid, n), ()))
