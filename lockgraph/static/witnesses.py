"""Evidence, searched when it is printed: the call chain from a function to where a lock
class is taken, the chain to an allocation whose gfp is a parameter, the locks callers hold
on entry, and the blind spots a function can reach.

Summaries keep bit sets, not a witness per class (they would not fit in memory on the whole
tree), so a chain is found afterwards — the shortest one through callees whose summary
holds the class — and only for the few hundred edges and roots a report shows.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from lockgraph.static.facts import kb
from lockgraph.static.facts.walk import SLEPT, FuncFacts, LockExpr
from lockgraph.static.gfp import FS_RECLAIM, gfp_reclaims, masked, scope_mask
from lockgraph.static.summaries import (ATOMIC, IRQS_OFF, PLAIN, Witness, acq_sleeps, at_top, context_at,
                                        dead, irqs_gated, irqs_on, sleeping)

if TYPE_CHECKING:
    from lockgraph.static.solve import Solved

#: Functions a witness search visits breadth-first (shortest chain) before it reads the
#: start's breadth-first tree of everything it reaches (a plain chain: _Tree) or goes depth
#: first through the first call that leads to the class (an edge's chain).
BFS_BUDGET = 200
#: Calls a first-call chain may grow to before that branch counts as a dead end.
DFS_DEPTH = 400
#: Breadth-first trees kept (_Tree): a check asks for one root's classes together.
TREES_KEPT = 2
#: Functions taking a class that a tree tries, nearest first, before the depth-first search.
TAKERS = 8
#: Entries of the per-function witness-search memo before it is emptied.
MEMO_BOUND = 1_000_000
_EMPTY: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class Step:
    """One hop of a witness: in `function` at file:line."""

    function: str
    file: str
    line: int

    def to_json(self) -> dict:
        return {"function": self.function, "file": self.file, "line": self.line}

    def label(self, file: str | None = None) -> str:
        """`function (file:line)`, the form evidence stacks show; `file` overrides the path."""
        return f"{self.function} ({file or self.file}:{self.line})"



class ChainSearch:
    """Call chains to a lock class over one solved program, memoised: an edge's evidence
    asks for the same (callee, class) from every call site."""

    def __init__(self, S: Solved) -> None:
        self.S = S
        self._chains: dict[tuple[str, str, bool, str, int], tuple[Step, ...]] = {}
        self._dropmemo: dict[tuple, frozenset[str]] = {}
        self._hops: dict[tuple, tuple] = {}
        self._callmemo: dict[tuple, list[tuple]] = {}
        self._callsize = 0
        self._blindmemo: dict[str, list[tuple[bool, str, tuple[str, ...]]]] = {}
        self._trees: dict[str, _Tree] = {}

    def chain(self, j: str, cls: str, edge: bool = False, limit: int = 40,
              avoid: str = "", atomic: int = PLAIN) -> tuple[Step, ...]:
        """The shortest call chain from j to a function that takes `cls` itself.

        Breadth-first over the callees whose summary holds the class (calls in source
        order, so ties go to the earlier call); `edge` follows only the paths that make a
        lockdep edge from a caller's lock (top-level calls, non-try acquisitions); `avoid`
        is the held lock of the edge being shown, so no path that drops it first is offered
        as its evidence; `atomic` (with `edge`: the context that lock makes,
        summaries.context_at) follows nothing that context forbids.  `limit`
        bounds the breadth-first levels of a near chain only: a far one (more than
        BFS_BUDGET functions away) is as long as it takes to reach the acquisition."""
        atomic = atomic if edge else PLAIN
        key = (j, cls, edge, avoid, atomic)
        got = self._chains.get(key)
        if got is None:
            got = self._chains[key] = self._bfs(j, cls, edge, limit, avoid, atomic)
        return got

    def _drops(self, f: FuncFacts, d: frozenset[str]) -> frozenset[str]:
        key = (f.file, f.name, d)
        got = self._dropmemo.get(key)
        if got is None:
            got = self._dropmemo[key] = self.S.resolver.dropped(f, d)
        return got

    def blind_walk(self, i: str) -> list[tuple[bool, str, tuple[str, ...]]]:
        """i's calls as ranked_blind walks them: (a lock is held at the call, its blind
        spot or "", its targets) — every root of a check walks most of the call graph."""
        got = self._blindmemo.get(i)
        if got is None:
            S = self.S
            label = dict(S.blind_calls.get(i, ()))
            got = self._blindmemo[i] = [
                (any(h.kind not in kb.NO_EDGE_KINDS for h in c.held), label.get(k, ""), row)
                for k, (c, row) in enumerate(zip(S.funcs[i].calls, S.targets.get(i, ())))
                if row or k in label]
        return got

    def _steps_from(self, cur: str, cls: str, b: int, edge: bool, avoid: str, atomic: int):
        """At function cur: (step, []) when cur itself takes the class, else (None, the
        (line, callee) hops to callees whose summary holds it, in source order)."""
        key = (cur, b, edge, avoid, atomic)
        got = self._hops.get(key)
        if got is None:
            if len(self._hops) >= MEMO_BOUND:  # bounded memory on whole-tree questions
                self._hops.clear()
            got = self._hops[key] = self._find_steps(cur, cls, b, edge, avoid, atomic)
        return got

    def _find_steps(self, cur: str, cls: str, b: int, edge: bool, avoid: str, atomic: int):
        S = self.S
        f = S.funcs[cur]
        if b in S.own.get(cur, ()):
            line = self._local_line(cur, cls, edge, avoid, atomic)
            if line:
                return Step(f.name, f.file, line), []
        bit = 1 << b
        pcls = S.pcls
        hops = []
        for line, jj, inner, got, dropped, masked_, c in self._calls(cur, edge, avoid, atomic):
            if masked_ & bit or dropped & bit:
                continue
            if got & bit:
                hops.append((line, jj, inner))
            elif jj in pcls and self._through_param(f, c, jj, cls, edge):
                return Step(f.name, f.file, line), []
        if not hops and b == 0 and cur in S.via_gfp:
            return Step(f.name, f.file, S.via_gfp[cur]), []
        return None, hops

    def _calls(self, cur: str, edge: bool, avoid: str, atomic: int) -> list[tuple]:
        """What _find_steps reads of cur's calls, whatever the class: (line, callee, atomic
        there, the callee's classes as this call reaches them, the classes whose every path
        there drops `avoid` first, the call masks reclaim, the call) — a chain search asks
        the same function for hundreds of classes."""
        key = (cur, edge, avoid, atomic)
        got = self._callmemo.get(key)
        if got is not None:
            return got
        if self._callsize >= MEMO_BOUND:  # entries, not keys: a key holds every call-target
            self._callmemo.clear()
            self._callsize = 0
        S = self.S
        f = S.funcs[cur]
        by_ctx = (S.top, S.atop, S.itop) if edge else (S.anyb, S.aany, S.iany)
        drops, clean = S.drops, S.clean
        out = []
        for c, row in zip(f.calls, S.targets.get(cur, ())):
            if not row or edge and not at_top(c.held, f):
                continue
            if avoid and c.dropped and avoid in self._drops(f, c.dropped):
                continue
            # atomic from here on: under a caller's spinning lock, or cur's rcu_read_lock();
            # with interrupts off: under a lock taken so (summaries.context_at)
            own = context_at(c.held)
            inner = max(atomic, own)
            if inner and sleeping(c) or atomic and SLEPT in c.gates:
                continue
            if own != IRQS_OFF and atomic == IRQS_OFF and c.dropped and self._drops(f, c.dropped):
                inner = ATOMIC  # a caller's lock is released first: interrupts may be on again
            elif inner == IRQS_OFF and irqs_on(c):
                continue
            masked_ = scope_mask(c.scopes)
            for jj in row:
                dropped = 0
                if avoid:
                    dj = drops.get(jj)
                    if dj:
                        dropped = dj.get(avoid, 0) & ~clean.get(jj, 0)
                bits = by_ctx[inner].get(jj, 0)
                if jj in S.restricted:  # what this call's constant arguments leave reachable
                    a, t, _, at = S.callee_bits(c, jj)
                    bits = bits & (at if inner else t) if edge else a & bits
                out.append((c.line, jj, inner, bits, dropped, masked_, c))
        self._callmemo[key] = out
        self._callsize += len(out) + 1
        return out

    def _bfs(self, j: str, cls: str, edge: bool, limit: int, avoid: str,
             atomic: int) -> tuple[Step, ...]:
        S = self.S
        if cls.startswith("@param"):
            w = S.pcls.get(j, {}).get(cls)
            if w is None:
                return ()
            f = S.funcs[j]
            return (Step(f.name, f.file, w.line),)
        b = S.classes.ids.get(cls)
        if b is None:
            return ()
        # a node is (function, its context there): one reached in atomic context follows no
        # sleep, one with interrupts off nothing behind !irqs_disabled() (summaries.context_at)
        Node = tuple[str, int]
        parent: dict[Node, tuple[Node, int] | None] = {(j, atomic): None}
        frontier: list[Node] = [(j, atomic)]
        end: tuple[Node, Step] | None = None
        for _depth in range(limit):
            nxt: list[Node] = []
            for cur in frontier:
                last, hops = self._steps_from(cur[0], cls, b, edge, avoid, cur[1])
                if last is not None:
                    end = (cur, last)
                    break
                for line, jj, at in hops:
                    if (jj, at) not in parent:
                        parent[(jj, at)] = (cur, line)
                        nxt.append((jj, at))
            if end or not nxt:
                break
            if len(parent) > BFS_BUDGET:  # far away: one search from j for all its classes
                if not edge and not avoid and not atomic:
                    got = self._from_tree(j, cls, b)
                    if got:
                        return got
                return self._first_calls(j, cls, b, edge, avoid, atomic)
            frontier = nxt
        if end is None:
            return ()
        cur, last = end
        out = [last]
        while parent[cur] is not None:
            up, line = parent[cur]
            f = S.funcs[up[0]]
            out.append(Step(f.name, f.file, line))
            cur = up
        return tuple(reversed(out))

    def reach(self, fid: str, atomic: int = PLAIN) -> list[tuple[int, str, int]]:
        """fid's calls as a plain chain follows them from a node (fid, context): (line,
        callee, its context) for each callee that takes anything from there —
        the call graph a root's lock list is drawn from (scripts/root-dominators)."""
        return [(line, jj, inner) for line, jj, inner, got, *_ in self._calls(fid, False, "", atomic)
                if got]

    def _from_tree(self, j: str, cls: str, b: int) -> tuple[Step, ...]:
        """The shortest chain from j to where `cls` is taken in j's own body or a callee's,
        read off one breadth-first tree of everything j reaches (_Tree): a root's hundreds
        of far classes cost one search, not one each.  Each hop is still checked against
        the callee's bits as the per-class search reads them; () sends the caller to the
        depth-first search."""
        tree = self._trees.get(j)
        if tree is None:
            if len(self._trees) >= TREES_KEPT:
                self._trees.pop(next(iter(self._trees)))
            tree = self._trees[j] = _Tree(self, j)
        for end in tree.takers.get(cls, ()):
            got = self._tree_chain(tree, end, cls, 1 << b)
            if got:
                return got
        return ()

    def _tree_chain(self, tree: _Tree, end: tuple[str, int], cls: str,
                    bit: int) -> tuple[Step, ...]:
        S = self.S
        out = []
        for (cur, at), k in tree.path(end)[:-1]:
            line, _, _, got, _, masked_, _ = self._calls(cur, False, "", at)[k]
            if not got & bit or masked_ & bit:
                return ()
            f = S.funcs[cur]
            out.append(Step(f.name, f.file, line))
        fid, at = end
        line = self._local_line(fid, cls, False, "", at)
        if not line:
            return ()
        f = S.funcs[fid]
        return tuple(out + [Step(f.name, f.file, line)])

    def _first_calls(self, j: str, cls: str, b: int, edge: bool, avoid: str,
                     atomic: int) -> tuple[Step, ...]:
        """Depth first through the first call that leads to the class, backing out of a
        call whose callees lead only back into the chain: a chain always ends where the
        class is taken (a chain that stops short shows nothing), however long it gets."""
        S = self.S
        start = (j, atomic)
        last, hops = self._steps_from(j, cls, b, edge, avoid, atomic)
        if last is not None:
            return (last,)
        seen = {start}
        # frames: (node, its remaining hops, the line of the call taken from it)
        frames: list[list] = [[start, iter(hops), 0]]
        while frames:
            top = frames[-1]
            for line, jj, at in top[1]:
                node = (jj, at)
                if node in seen:
                    continue
                seen.add(node)
                last, hops = self._steps_from(jj, cls, b, edge, avoid, at)
                top[2] = line
                if last is not None:
                    out = [Step(S.funcs[n[0]].name, S.funcs[n[0]].file, ln) for n, _, ln in frames]
                    return tuple(out + [last])
                if hops and len(frames) < DFS_DEPTH:
                    frames.append([node, iter(hops), 0])
                    break
            else:
                frames.pop()
        return ()

    def _local_line(self, fid: str, cls: str, edge: bool, avoid: str = "",
                    atomic: int = PLAIN) -> int:
        S = self.S
        f = S.funcs[fid]
        if cls == FS_RECLAIM:
            for al in f.allocs:
                how, _ = gfp_reclaims(al.gfp, f)
                if not masked(al.scopes) and how in ("yes", "unknown") and not dead(al) and not (
                        edge and not at_top(al.held, f)) and not (
                        avoid and al.dropped and avoid in self._drops(f, al.dropped)) and not (
                        atomic and SLEPT in al.gates) and not (
                        atomic == IRQS_OFF and self._irqs_gated(f, al)):
                    return al.line
            return 0
        for c, a in S.local_acqs.get(fid, ()):
            if c == cls and not dead(a) and not (edge and (a.try_ or not at_top(a.held, f))) and not (
                    avoid and a.dropped and avoid in self._drops(f, a.dropped)) and not (
                    atomic and acq_sleeps(a)) and not (
                    atomic == IRQS_OFF and self._irqs_gated(f, a)):
                return a.line
        return 0

    def _irqs_gated(self, f: FuncFacts, x) -> bool:
        """summaries.irqs_gated, with the caller locks x releases resolved (memoised)."""
        return irqs_gated(x, x.dropped and self._drops(f, x.dropped))

    def _through_param(self, f: FuncFacts, c, j: str, cls: str, edge: bool) -> bool:
        S = self.S
        for pc, w in S.pcls[j].items():
            if edge and not w.edge:
                continue
            n = int(pc[6:].split("/")[0])
            if n < len(c.args) and cls in S.resolver.classes(LockExpr.parse(c.args[n]), f):
                return True
        return False


def indirect_hop(S: Solved, steps: tuple[Step, ...]) -> str:
    """The first hop of a chain made through an ops-table member resolved by the member's
    name and type, not by the object it is called on (the function's own `ops->m()`, or one
    opsparams.py hoisted to a call site that passes no known table), as `base->m() at
    file:line`; "" when every hop calls its callee by name or through a table or callback
    known at the call.  Such a hop is a may-path: the pointer may never hold that function
    there."""
    for cur, nxt in zip(steps, steps[1:]):
        member = None
        for i in S.by_name.get(cur.function, ()):
            f = S.funcs[i]
            if f.file != cur.file:
                continue
            for c in f.calls:
                if c.line != cur.line:
                    continue
                if not c.member and not c.base and c.name == nxt.function:
                    member = None
                    break
                if (c.member or c.base) and member is None:
                    member = c
            else:
                continue
            break
        if member is not None:
            call = f"{member.base}->{member.name}()" if member.base else f"{member.name}()"
            return f"{call} at {cur.file}:{cur.line}"
    return ""


def param_chain(j: str, n: int, funcs: dict[str, FuncFacts],
                pr: dict[str, dict[int, Witness]], limit: int = 40) -> tuple[Step, ...]:
    """Call chain from j to the allocation whose gfp is j's parameter n."""
    out: list[Step] = []
    seen: set[tuple[str, int]] = set()
    cur: str | None = j
    while cur is not None and (cur, n) not in seen and len(out) < limit:
        seen.add((cur, n))
        w = pr.get(cur, {}).get(n)
        if w is None:
            break
        f = funcs[cur]
        out.append(Step(f.name, f.file, w.line))
        cur, n = w.callee, w.via_param
    return tuple(out)


def entry_contexts(S: Solved, fid: str, depth: int = 6) -> dict[str, str]:
    """Locks held by callers (transitively) when fid runs: lock -> where it is held."""
    out: dict[str, str] = {}
    seen = {fid}
    frontier = [fid]
    for _ in range(depth):
        nxt = []
        for callee in frontier:
            for caller, held, line in S.callers.get(callee, ()):
                f = S.funcs[caller]
                for h in sorted(held):
                    out.setdefault(h, f"held in {f.name}() calling {S.funcs[callee].name}() ({f.file}:{line})")
                if caller not in seen:
                    seen.add(caller)
                    nxt.append(caller)
        frontier = nxt
    return out


_CALLEE = re.compile(r"(\w+)\(\)(?: in \w+\(\))?$")


def blind_rank(label: str, locked: bool) -> tuple[int, str]:
    """Sort key of a blind spot: under a held lock first, then the rest, and last the
    calls that hardly hide a lock (byte-order helpers, kb.NOISE_CALLS) however reached."""
    m = _CALLEE.search(label)
    noise = bool(m) and (m.group(1) in kb.NOISE_CALLS or bool(kb.BYTE_ORDER.fullmatch(m.group(1))))
    return (2 if noise else 0 if locked else 1), label


def ranked_blind(S: Solved, fids) -> tuple[list[str], set[str]]:
    """Blind spots reachable from fids, most telling first (blind_rank), and those met
    while a lock is held — by the function making the call or by one on the way there:
    a call that may take anything under a held lock is where an edge can hide."""
    out: set[str] = set()
    locked: set[str] = set()
    state: dict[str, bool] = {}
    calls = S.search.blind_walk
    work = [(fid, False) for fid in fids]
    while work:
        i, lk = work.pop()
        if i in state and (state[i] or not lk):
            continue  # seen already, under a lock or as now
        state[i] = lk
        own = S.blind.get(i, _EMPTY)
        out |= own
        if lk:
            locked |= own
        for held, label, row in calls(i):
            here = lk or held
            if here and label:
                locked.add(label)
            for j in row:
                seen = state.get(j)
                if seen is None or here and not seen:
                    work.append((j, here))
    return sorted(out, key=lambda b: blind_rank(b, b in locked)), locked


def reachable_blind(S: Solved, fid: str) -> set[str]:
    """Blind spots of fid and of everything it may call.

    Computed per question rather than stored per function: propagated sets would
    repeat the same labels in hundreds of thousands of callers."""
    out: set[str] = set()
    seen = {fid}
    work = [fid]
    while work:
        i = work.pop()
        out |= S.blind.get(i, _EMPTY)
        for row in S.targets.get(i, ()):
            for j in row:
                if j not in seen:
                    seen.add(j)
                    work.append(j)
    return out


class _Tree:
    """Everything one function reaches, breadth first in source order (the per-class
    search's own order), and for each class the first TAKERS functions on it that take the
    class in their body.  Only calls that reach the callee's whole summary are followed, so
    every function on a path reaches each class a function below it takes.  A node is
    (function, its context there); `parent` leads back to the root as (node, index of the call
    in ChainSearch._calls of that node)."""

    __slots__ = ("parent", "takers")

    def __init__(self, cs: ChainSearch, j: str) -> None:
        S = cs.S
        by_ctx = (S.anyb, S.aany, S.iany)
        root = (j, PLAIN)
        parent: dict[tuple[str, int], tuple[tuple[str, int], int] | None] = {root: None}
        takers: dict[str, list[tuple[str, int]]] = {}
        frontier = [root]
        while frontier:
            nxt = []
            for node in frontier:
                fid, at = node
                for cls, a in S.local_acqs.get(fid, ()):
                    if not dead(a) and not (at and acq_sleeps(a)) and not (
                            at == IRQS_OFF and cs._irqs_gated(S.funcs[fid], a)):
                        seen = takers.setdefault(cls, [])
                        if len(seen) < TAKERS and (not seen or seen[-1] != node):
                            seen.append(node)
                for k, (_, jj, inner, got, _, _, _) in enumerate(cs._calls(fid, False, "", at)):
                    # not through a call whose constant arguments narrow the callee: what
                    # lies behind it is not reached for every class its summary holds
                    if got and (jj, inner) not in parent and got == by_ctx[inner][jj]:
                        parent[(jj, inner)] = (node, k)
                        nxt.append((jj, inner))
            frontier = nxt
        self.parent, self.takers = parent, takers

    def path(self, end: tuple[str, int]) -> list[tuple[tuple[str, int], int]]:
        """Root to `end`: each node with the index of the call taken from it (-1 at end)."""
        out = [(end, -1)]
        node = end
        while self.parent[node] is not None:
            node, k = self.parent[node]
            out.append((node, k))
        out.reverse()
        return out
