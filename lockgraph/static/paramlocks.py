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


class ParamLocks:
    """Lock parameters' classes, from the call sites.  `expand` is the union over every
    call site, for one lock; `pairs` keeps two parameters of one function together per
    call site — `mutex_lock_double(&ctx->mutex, &gctx->mutex)` and
    `mutex_lock_double(&event->mmap_mutex, &out->mmap_mutex)` make &ctx->mutex ->
    &ctx->mutex/1 and &event->mmap_mutex -> &event->mmap_mutex/1, never the crossed pairs
    a union of each parameter's classes would make."""

    #: How far up the callers a pair of parameters is followed (wrappers passing both on).
    PAIR_LEVELS = 4

    def __init__(self, funcs: dict[str, FuncFacts], targets: dict[str, tuple[tuple[str, ...], ...]],
                 local_acqs: dict[str, list[tuple[str, Acq]]], res: Resolver) -> None:
        self.funcs, self.res = funcs, res
        self.callers: dict[str, list[tuple[str, object]]] = defaultdict(list)
        for i, f in funcs.items():
            for c, row in zip(f.calls, targets.get(i, ())):
                for j in row:
                    self.callers[j].append((i, c))
        self.classes = self._classes(local_acqs)
        self._pairs: dict[tuple[str, int, int, int], frozenset[tuple[str, str]]] = {}

    def _arg(self, i: str, c, n: int) -> list[str]:
        return self.res.classes(LockExpr.parse(c.args[n]), self.funcs[i]) if n < len(c.args) else []

    def _classes(self, local_acqs) -> ParamClasses:
        """Every lock parameter's classes: a worklist from the parameters a body locks, up
        through the callers; a caller's own parameter passed on is a flow, filled last."""
        work = sorted({(i, param_index(cls)[0]) for i, acqs in local_acqs.items()
                       for cls, _ in acqs if cls.startswith("@param")})
        wanted = set(work)
        direct: dict[tuple[str, int], set[str]] = defaultdict(set)
        flows: dict[tuple[str, int], set[tuple[str, int]]] = defaultdict(set)
        while work:
            j, n = work.pop()
            for i, c in self.callers.get(j, ()):
                for cls in self._arg(i, c, n):
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

    def expand(self, cls: str, fid: str) -> list[str]:
        """A class in the terms of function `fid`'s callers: a lock parameter is each class
        its call sites pass (none when nothing scanned calls it), anything else itself."""
        if not cls.startswith("@param"):
            return [cls]
        n, sub = param_index(cls)
        return sorted(c + sub for c in self.classes.get((fid, n), ()))

    def pairs(self, fid: str, a: str, b: str) -> list[tuple[str, str]]:
        """(class of a, class of b) as one call site passes them, for two lock parameters
        of fid (`@param0`, `@param1/1`); a parameter the call site passes on from its own
        caller is followed up to PAIR_LEVELS, then stands for all its classes."""
        (m, sa), (n, sb) = param_index(a), param_index(b)
        got = self._pair(fid, m, n, self.PAIR_LEVELS)
        return sorted((x + sa, y + sb) for x, y in got)

    def _pair(self, fid: str, m: int, n: int, levels: int) -> frozenset[tuple[str, str]]:
        key = (fid, m, n, levels)
        if key in self._pairs:
            return self._pairs[key]
        self._pairs[key] = frozenset()   # a recursive caller adds nothing new
        out: set[tuple[str, str]] = set()
        for i, c in self.callers.get(fid, ()):
            for x in self._arg(i, c, m):
                for y in self._arg(i, c, n):
                    if levels > 0 and x.startswith("@param") and y.startswith("@param"):
                        (mx, sx), (ny, sy) = param_index(x), param_index(y)
                        out.update((p + sx, q + sy) for p, q in self._pair(i, mx, ny, levels - 1))
                    else:
                        out.update((p, q) for p in self.expand(x, i) for q in self.expand(y, i))
        self._pairs[key] = frozenset(out)
        return self._pairs[key]
