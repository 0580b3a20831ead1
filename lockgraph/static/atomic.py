"""Sleeping in atomic context (LG107): an operation that may sleep, reached while a spinning
lock is held (or inside rcu_read_lock(), kb.ATOMIC_KINDS) — the kernel's "BUG: sleeping function called from invalid context", predicted.

What sleeps: a blocking lock (kb.BLOCKING_KINDS, not its trylock), a kb.SLEEPING_CALLS call,
an allocation whose gfp allows direct reclaim (gfp_blocks: GFP_KERNEL, GFP_NOFS, GFP_NOIO;
not GFP_ATOMIC/GFP_NOWAIT), might_alloc()/might_sleep_if() on such a gfp.  An event behind
`if (gfpflags_allow_blocking(gfp))` (walk.blocking_gate) sleeps only where that gfp may block,
one behind `if (preemptible())` never under a spinning lock.  A gfp the analysis cannot
evaluate makes no finding (LG107 claims a bug; fs_reclaim edges, a may-relation, take the
other side).

Summaries per function, callees first (strongly connected components of the call graph):
`top[i]` — i may sleep outside any spinning section of its own, with a witness; `ptop[i][c]`
— the same under a condition c on a parameter: its gfp may block, or a flag is true/false
(`if (pi) cpuset_lock();` sleeps for callers passing true).  A sleep inside i's own
spinning section is i's finding and stays out of `top[i]`, so a long chain gives one finding,
at the function that holds the spinning lock around the sleep, never one per caller.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from lockgraph.model import Evidence, Finding, Severity
from lockgraph.rules import make
from lockgraph.static.callbacks import SLEEPS_FIRST
from lockgraph.static.facts import kb
from lockgraph.static.facts.walk import (ARG_FALSE, ARG_TRUE, IRQS_ON, PREEMPTIBLE, SLEPT,
                                         FuncFacts, Held, LockExpr, blocking_gate)
from lockgraph.static.gfp import gfp_blocks
from lockgraph.static.solve import Solved
from lockgraph.static.summaries import sccs
from lockgraph.static.witnesses import Step

#: Held kinds that make the context atomic (kernel-semantics §1.2, §1.3, §1.8).
ATOMIC_KINDS = kb.ATOMIC_KINDS
#: Calls that sleep when their gfp argument (at this index) may block.
GFP_SLEEPERS = {"might_alloc": 0}
#: Witnesses kept per function with different sets of caller locks dropped before the sleep.
MAX_DROP_VARIANTS = 3
#: Call-chain steps followed when a witness is printed.
MAX_CHAIN = 40
_EMPTY: frozenset[str] = frozenset()
#: A condition on a parameter: (index, "gfp" | "true" | "false"); None: unconditional.
Cond = tuple[int, str] | None


@dataclass(frozen=True, slots=True)
class Sleep:
    """Where a function sleeps: at `line` (an operation here, or a call to `callee`)."""

    line: int
    callee: str | None        # function id the sleep comes through; None: the operation is here
    op: str                   # "kmalloc", "mutex_lock", "msleep", ...
    arg: str                  # the gfp of an allocation, the lock of a lock, "" for a call
    what: str                 # "alloc" | "lock" | "call"
    dropped: frozenset[str] = _EMPTY   # caller lock classes released before it
    via: Cond = None          # through the callee's summary under this condition
    irqs_on: bool = False     # only with interrupts enabled (behind !irqs_disabled())

    def label(self) -> str:
        if self.what == "alloc":
            return f"{self.op}({self.arg or 'GFP_KERNEL'})"
        if self.what == "lock":
            return f"{self.op}({self.arg})"
        return f"{self.op}()"


def _param(f: FuncFacts, name: str) -> int:
    return next((k for k, (_, n) in enumerate(f.params) if n == name), -1)


def arg_allows(text: str, f: FuncFacts, sense: str) -> tuple[str, Cond]:
    """Does argument `text` (in f) meet a callee's condition `sense`?  ("yes" | "no" |
    "param", the condition on f's own parameter it depends on)."""
    if sense == "gfp":
        how, k = gfp_blocks(text, f)
        if how == "param":
            return "param", (k, "gfp")
        return ("yes" if how == "yes" else "no"), None  # an unknown gfp: no claim
    t, neg = text.replace(" ", ""), False
    while t.startswith("!"):
        t, neg = t[1:], not neg
    want = (sense == "true") != neg       # the value of t that meets the condition
    if t in ("false", "0", "NULL"):
        return ("no" if want else "yes"), None
    if t in ("true", "1"):
        return ("yes" if want else "no"), None
    k = _param(f, t)
    if k >= 0:
        return "param", (k, "true" if want else "false")
    return "yes", None  # a value not known here may be either


class _Analysis:
    def __init__(self, S: Solved) -> None:
        self.S = S
        self.top: dict[str, list[Sleep]] = {}
        self.ptop: dict[str, dict[tuple[int, str], Sleep]] = {}

    # -- what sleeps at one event -------------------------------------------------------
    def _gate(self, f: FuncFacts, gates: frozenset[str]) -> tuple[Cond, bool] | None:
        """None: the event never runs where blocking is forbidden; else the condition on a
        parameter it runs under, and whether it runs only with interrupts enabled."""
        cond: Cond = None
        irqs_on = False
        for g in sorted(gates):
            if g in (SLEPT, SLEEPS_FIRST):  # marks of the summaries (summaries.atop), not tests
                continue
            if g == PREEMPTIBLE:
                return None
            if g == IRQS_ON:
                irqs_on = True
            elif g.startswith((ARG_TRUE, ARG_FALSE)):
                k = _param(f, g.split(":", 1)[1])
                if k >= 0:
                    cond = (k, "true" if g.startswith(ARG_TRUE) else "false")
            else:
                how, k = gfp_blocks(g, f)
                if how == "param":
                    cond = (k, "gfp")
                elif how != "yes":
                    return None
        return cond, irqs_on

    def events(self, i: str, f: FuncFacts, conditional_only: bool = False):
        """(held, sleep, condition) per event of f that may sleep: a condition when it
        sleeps only for callers that meet it.  `conditional_only`: not the unconditional
        sleeps of callees (a summary that has a clean witness already needs none)."""
        S = self.S
        drops = self._dropset
        lock_ops: dict[int, str] = {line: n for n, line in f.sleeps}
        for a in f.acqs:
            if a.kind in kb.BLOCKING_KINDS and not a.try_:
                gate = self._gate(f, a.gates)
                if gate is not None:
                    yield a.held, Sleep(a.line, None, lock_ops.get(a.line, a.kind), a.lock.text,
                                        "lock", drops(f, a.dropped) if a.dropped else _EMPTY,
                                        irqs_on=gate[1]), gate[0]
        for al in f.allocs:
            gate = self._gate(f, al.gates)
            if gate is not None:
                s = Sleep(al.line, None, al.api, al.gfp, "alloc",
                          drops(f, al.dropped) if al.dropped else _EMPTY, irqs_on=gate[1])
                yield from self._when(al.held, s, al.gfp, f, "gfp", gate[0])
        for c, row in zip(f.calls, S.targets.get(i, ())):
            gate = self._gate(f, c.gates)
            if gate is None or c.name in kb.NO_SLEEP_CHECK:
                continue
            cond, irqs_on = gate
            d = drops(f, c.dropped) if c.dropped else _EMPTY
            if c.name in kb.SLEEPING_CALLS:
                yield c.held, Sleep(c.line, None, c.name, "", "call", d, irqs_on=irqs_on), cond
            elif c.name in GFP_SLEEPERS:
                n = GFP_SLEEPERS[c.name]
                if n < len(c.args):
                    s = Sleep(c.line, None, c.name, c.args[n], "alloc", d, irqs_on=irqs_on)
                    yield from self._when(c.held, s, c.args[n], f, "gfp", cond)
            elif c.name == "might_sleep_if":
                g = blocking_gate(c.args[0], f.aliases) if c.args else None
                if g is not None and g[1] and not g[0].startswith("@"):
                    s = Sleep(c.line, None, c.name, "", "call", d, irqs_on=irqs_on)
                    yield from self._when(c.held, s, g[0], f, "gfp", cond)
            else:
                # between pagefault_disable() and pagefault_enable() a callee's user access
                # fails instead of faulting: its might_fault() does not sleep here
                faults = kb.NOFAULT not in c.scopes
                for j in row:
                    for w in () if conditional_only and cond is None else self.top.get(j, ()):
                        if not faults and w.op in kb.FAULTING:
                            continue
                        yield c.held, Sleep(c.line, j, w.op, w.arg, w.what,
                                            d | self._mapped(w.dropped, c, f), None,
                                            irqs_on or w.irqs_on), cond
                    for (n, sense), w in sorted(self.ptop.get(j, {}).items()):
                        if n < len(c.args) and (faults or w.op not in kb.FAULTING):
                            s = Sleep(c.line, j, w.op, c.args[n] if sense == "gfp" else w.arg,
                                      w.what, d | self._mapped(w.dropped, c, f), (n, sense),
                                      irqs_on or w.irqs_on)
                            yield from self._when(c.held, s, c.args[n], f, sense, cond)

    @staticmethod
    def _when(held, s: Sleep, text: str, f: FuncFacts, sense: str, cond: Cond):
        how, k = arg_allows(text, f, sense)
        if how == "yes":
            yield held, s, cond
        elif how == "param":
            yield held, s, k

    def ids(self, f: FuncFacts, lk: LockExpr) -> set[str]:
        """Names a lock is matched by when a path drops it: its classes, and its struct
        field (`q->lock_ptr` in a callee is the caller's `q.lock_ptr`; neither has a class
        from an initialiser, and their texts differ)."""
        out = set(self.S.resolver.classes(lk, f))
        key = self.S.resolver.key_of(lk, f)
        if key is not None and key[0] != "static":
            out.add(f"{key[0]}.{key[1]}")
        return out

    def _dropset(self, f: FuncFacts, texts: frozenset[str]) -> frozenset[str]:
        out: set[str] = set()
        for t in texts:
            out |= self.ids(f, LockExpr.parse(t))
        return frozenset(out)

    def _mapped(self, dropped: frozenset[str], c, f: FuncFacts) -> frozenset[str]:
        """A callee's dropped lock parameter is the caller's argument."""
        if not any(x.startswith("@param") for x in dropped):
            return dropped
        out = set()
        for x in dropped:
            n = int(x[6:].split("/")[0]) if x.startswith("@param") else -1
            if n < 0:
                out.add(x)
            elif n < len(c.args):
                out |= self.ids(f, LockExpr.parse(c.args[n]))
        return frozenset(out)

    def atomic(self, i: str, f: FuncFacts, held: tuple[Held, ...]) -> list[tuple]:
        """Spinning locks held at an event, outermost first: (class, held, acquired with
        interrupts disabled, the names a drop matches it by, the condition on a parameter
        it is held under).  A lock held on some paths only counts when a flag parameter
        decides it (`if (check_refs) spin_lock(l)`: held for callers passing true);
        behind any other test (`if (a) spin_lock(l); ... if (b) spin_unlock(l);` with
        correlated conditions the walk cannot relate) it does not, as for lock edges."""
        out = []
        for h in held:
            if h.kind not in ATOMIC_KINDS:
                continue
            req: Cond = None
            if h.cond:
                flag = h.cond.lstrip("!")
                k = _param(f, flag)
                if k < 0:
                    continue
                req = (k, "false" if (len(h.cond) - len(flag)) % 2 else "true")
            ids = self.ids(f, h.lock)
            for cls in self.S.resolver.classes(h.lock, f):
                out.append((cls, h, h.irq, ids, req))
        return out

    def held_at(self, i: str, f: FuncFacts, held, s: Sleep) -> list[tuple]:
        """The spinning locks held around sleep s: none when s drops them first, or runs
        only with interrupts enabled and one of them disabled them."""
        spin = [x for x in self.atomic(i, f, held) if s.dropped.isdisjoint(x[3])]
        if s.irqs_on and any(x[2] for x in spin):
            return []
        return spin

    # -- summaries ------------------------------------------------------------------------
    def summarise(self, i: str) -> bool:
        """Recompute i's top-level sleeps from its callees' summaries; True when they grew."""
        f = self.S.funcs[i]
        top = self.top.get(i, [])
        ptop = self.ptop.get(i, {})
        grew = False
        for held, s, cond in self.events(i, f, bool(top) and not top[0].dropped):
            if self.held_at(i, f, held, s):
                continue  # inside i's own spinning section: i's finding, not its callers'
            if s.irqs_on and any(x[2] for x in self.atomic(i, f, held)):
                continue  # interrupts are off here: the sleep cannot happen
            if cond is not None:
                if cond not in ptop:
                    ptop[cond] = s
                    grew = True
                continue
            if top and not top[0].dropped:
                continue  # a clean witness serves every caller
            if not s.dropped:
                top[:] = [s]
                grew = True
            elif len(top) < MAX_DROP_VARIANTS and all(t.dropped != s.dropped for t in top):
                top.append(s)
                grew = True
        if top:
            self.top[i] = top
        if ptop:
            self.ptop[i] = ptop
        return grew

    def solve(self) -> None:
        S = self.S
        for scc in sccs(S.targets):
            if len(scc) == 1:
                self.summarise(scc[0])
                if not any(scc[0] in row for row in S.targets[scc[0]]):
                    continue
            inside = set(scc)
            callers_in: dict[str, set[str]] = {}
            for i in scc:
                for row in S.targets[i]:
                    for j in row:
                        if j in inside:
                            callers_in.setdefault(j, set()).add(i)
            queue = sorted(scc, reverse=True)
            queued = set(queue)
            while queue:
                i = queue.pop()
                queued.discard(i)
                if self.summarise(i):
                    for c in sorted(callers_in.get(i, ()), reverse=True):
                        if c not in queued:
                            queued.add(c)
                            queue.append(c)

    # -- findings ---------------------------------------------------------------------------
    def hops(self, i: str, s: Sleep):
        """(function id, its event) along the witness: i's event, then each callee's event
        down to the sleeping operation."""
        yield i, s
        seen = {i}
        cur = s
        while cur.callee is not None and len(seen) < MAX_CHAIN:
            j = cur.callee
            nxt = (self.ptop.get(j, {}).get(cur.via) if cur.via is not None
                   else next(iter(self.top.get(j, ())), None))
            if nxt is None or j in seen:
                return
            seen.add(j)
            yield j, nxt
            cur = nxt

    def indirect_hop(self, i: str, s: Sleep) -> str:
        """The first call of the witness made through a function pointer (an ops-table
        member resolved by name, not by the object it is called on), as text; "" if none.
        Such a hop is a may-path: the pointer may never hold that function there."""
        for j, ev in self.hops(i, s):
            if ev.callee is None:
                break
            f = self.S.funcs[j]
            # its own member call, or one opsparams.py hoisted here still resolved by type
            c = next((c for c in f.calls if c.line == ev.line and (c.member or c.base)), None)
            if c is not None:
                return (f"{c.base}->{c.name}()" if c.base else f"{c.name}()") + f" at {f.file}:{c.line}"
        return ""

    def chain(self, i: str, s: Sleep) -> tuple[Step, ...]:
        """The witness: i's event, then each callee's step down to the sleeping operation."""
        return tuple(Step(self.S.funcs[j].name, self.S.funcs[j].file, ev.line)
                     for j, ev in self.hops(i, s))


def sleep_in_atomic(S: Solved, name: Callable[[str], str] = str) -> list[Finding]:
    """LG107 findings: one per (function holding a spinning lock, that lock, sleeping
    operation at the end of the witness), at the outermost spinning lock held there."""
    A = _Analysis(S)
    A.solve()
    found: dict[str, Finding] = {}
    pending: dict[tuple[str, tuple[int, str]], list[tuple[str, Held, Sleep]]] = {}
    for i in sorted(S.funcs):
        f = S.funcs[i]
        if not any(h.kind in ATOMIC_KINDS for ev in (*f.acqs, *f.allocs, *f.calls) for h in ev.held):
            continue  # no spinning lock held anywhere in f: nothing to find here
        for held, s, cond in A.events(i, f):
            spin = A.held_at(i, f, held, s)
            if not spin:
                continue
            cls, h = spin[0][:2]
            cond = cond if cond is not None else spin[0][4]
            if cond is not None:
                pending.setdefault((i, cond), []).append((cls, h, s))
            else:
                _add(A, found, i, cls, h, s, name, None)
    for (i, cond), sites in sorted(pending.items()):
        caller = _meeting_caller(S, i, cond)
        if caller is not None:
            for cls, h, s in sites:
                _add(A, found, i, cls, h, s, name, caller)
    return [found[key] for key in sorted(found)]


def _meeting_caller(S: Solved, i: str, cond: tuple[int, str],
                    depth: int = 6) -> tuple[Step, str, str] | None:
    """A call that meets i's condition (transitively, through callers passing their own
    parameter on): (that call, the argument, its sense), else None."""
    seen = {(i, cond)}
    frontier = [(i, cond)]
    for _ in range(depth):
        nxt = []
        for j, (n, sense) in frontier:
            for caller, _held, line in sorted(S.callers.get(j, ()), key=lambda x: (x[0], x[2])):
                f = S.funcs[caller]
                for c, row in zip(f.calls, S.targets.get(caller, ())):
                    if c.line != line or j not in row or n >= len(c.args):
                        continue
                    how, k = arg_allows(c.args[n], f, sense)
                    if how == "yes":
                        return Step(f.name, f.file, line), c.args[n], sense
                    if how == "param" and (caller, k) not in seen:
                        seen.add((caller, k))
                        nxt.append((caller, k))
        frontier = nxt
    return None


def _add(A: _Analysis, found: dict[str, Finding], i: str, cls: str, h: Held, s: Sleep,
         name, caller: tuple[Step, str, str] | None) -> None:
    S = A.S
    f = S.funcs[i]
    steps = A.chain(i, s)
    leaf = steps[-1]
    if caller is not None and caller[2] == "gfp":
        s = Sleep(s.line, s.callee, s.op, caller[1], s.what, s.dropped, s.via)
    label = s.label()
    lock = h.lock.text if cls.startswith("@param") else name(cls)
    held_how = f"{h.kind} lock '{lock}'" + (" (trylock succeeded)" if h.try_ else "")
    ev = [Evidence(f.file, h.line, f"{held_how} acquired in {f.name}()"),
          Evidence(leaf.file, leaf.line, f"{label} may sleep, in {leaf.function}()",
                   tuple(st.label() for st in steps))]
    via = ""
    if caller is not None:
        step, arg, _sense = caller
        ev.append(Evidence(step.file, step.line, f"{step.function}() passes {arg}, "
                                                 f"which reaches {f.name}()"))
        via = f", with {arg} from {step.function}()"
    where = "" if leaf.function == f.name else f" in {leaf.function}() ({leaf.file}:{leaf.line})"
    hop = A.indirect_hop(i, s)
    may = f" (a may-path: through the indirect call {hop})" if hop else ""
    fnd = make("LG107", lock, ev, (lock, label), label=label, where=where, held_how=held_how,
               func=f.name, via=via, file=f.file, leaf=leaf.function, may=may,
               severity=Severity.WARNING if hop else None)
    found.setdefault(fnd.id, fnd)
