"""Whole-program solve: lockdep class names, call resolution, summaries, static edges.

Summaries ("locks F may take, transitively", "F may enter reclaim", "F may sleep") are
computed once per strongly connected component of the call graph in reverse topological
order — linear in the program, not a global fixpoint.  A summary is a bit set over lock
classes (fs_reclaim is bit 0), not a dict with a witness per class: on the whole tree most
functions reach the same few thousand core-kernel classes, and per-class entries for every
function do not fit in memory.  Witnesses are found when evidence is printed, as the
shortest call chain through callees whose summary holds the class.  Edges follow
lockdep's rule (docs/kernel-facts.md §1.0): from the newest held lock down to and including the
first non-trylock, never into a trylock, never from or to check=0 maps (RCU).  The rule
holds through calls too: a caller's lock gets an edge only to the classes a callee takes
at its top level (`top`: with none of its own non-try locks held) — what the callee takes
under its own lock B is B's edge, not the caller's.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass, field

from lockgraph.static.facts import kb
from lockgraph.static.facts.cparse import split_top
from lockgraph.static.facts.scan import FileFacts
from lockgraph.static.facts.walk import Acq, Alloc, FuncFacts, Held, LockExpr

FS_RECLAIM = "fs_reclaim"
#: An indirect call resolved by member name only (object type unknown) is followed when at
#: most this many functions are assigned to that member anywhere; beyond, it is a blind spot.
MAX_UNTYPED_TARGETS = 4
#: The same bound when the object's struct type is known.
MAX_TYPED_TARGETS = 8
#: How far up the call graph a "this path drops caller lock L first" record travels.
DROP_LEVELS = 3
#: Witnesses kept per static edge.
MAX_EVIDENCE = 5
#: Functions a witness search visits breadth-first (shortest chain) before it settles for
#: the first call that leads to the class (bounded work for classes far down the graph).
BFS_BUDGET = 200
#: Entries of the per-function witness-search memo before it is emptied.
MEMO_BOUND = 1_000_000
_NONE: tuple[str, ...] = ()
_EMPTY: frozenset[str] = frozenset()
_IDENT = re.compile(r"[A-Za-z_]\w*")
_LOCK_TYPES = ("spinlock_t", "raw_spinlock_t", "struct mutex", "rwlock_t", "struct rw_semaphore",
               "local_lock_t", "seqlock_t", "struct percpu_rw_semaphore", "struct lockdep_map",
               "struct srcu_struct", "wait_queue_head_t")


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


@dataclass(slots=True)
class Witness:
    line: int
    callee: str | None          # function id the lock comes through, None = taken here
    dropped: frozenset[str] = frozenset()
    note: str = ""
    via_param: int = -1         # for gfp-parameter witnesses: the callee's parameter
    try_: bool = False          # reached through a trylock (lockdep adds no edge into it)
    irq: bool = False           # the acquisition disables interrupts
    deep: bool = False          # under a non-try lock of the function's own: no caller edge

    @property
    def edge(self) -> bool:
        """A caller's held lock gets a lockdep edge through this witness."""
        return not (self.try_ or self.deep)


def prefer(table: dict, key, w: Witness) -> bool:
    """Keep w for key unless a witness is kept already; one that makes edges replaces one
    that does not.  True when the table changed."""
    old = table.get(key)
    if old is None or not old.edge and w.edge:
        table[key] = w
        return True
    return False


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

    def witness(self, k: int) -> tuple[Step, tuple[Step, ...]]:
        """Witness k with its call chain (searched now if it was not yet)."""
        step, via = self.raw[k]
        if isinstance(via, str):
            via = self.owner.chain(via, self.dst, edge=True, avoid=self.src)
            self.raw[k] = (step, via)
        return step, via

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


@dataclass(slots=True)
class Solved:
    files: list[FileFacts]
    funcs: dict[str, FuncFacts]
    kinds: dict[str, str]                       # lock class -> kind (spin, mutex, ...)
    sleeps: dict[str, Witness]
    blind: dict[str, frozenset[str]]            # function id -> its own blind spots (not callees')
    edges: dict[tuple[str, str], StaticEdge]
    acquisitions: list[dict]
    unresolved: dict[str, list[tuple[str, int]]]  # callee text -> sites (file:line as str, line)
    by_name: dict[str, list[str]]
    member_targets: dict[str, set[str]]
    free_sites: list[tuple[str, str, int, tuple[str, ...]]]   # (cache var, fid, line, held classes)
    caches: dict[str, dict[str, str]]           # cache var -> {"ctor": f, "dtor": f}
    conds: dict[tuple[str, int], tuple[str, ...]]
    irq_classes: set[str] = field(default_factory=set)
    callers: dict[str, list[tuple[str, frozenset[str], int]]] = field(default_factory=dict)
    targets: dict[str, tuple[tuple[str, ...], ...]] = field(default_factory=dict)
    #: cache variable -> (order, function id, allocation) of its kmem_cache_alloc*() sites
    cache_allocs: dict[str, list[tuple[int, str, Alloc]]] = field(default_factory=dict)
    #: Summaries: bit sets over `classes` of what a function may take (any / at its top
    #: level through non-try acquisitions: a caller's held lock gets edges to these),
    #: lock-parameter entries, and the caller locks a path drops first.
    classes: "ClassIndex" = None  # type: ignore[assignment]
    anyb: dict[str, int] = field(default_factory=dict)
    top: dict[str, int] = field(default_factory=dict)
    pcls: dict[str, dict[str, Witness]] = field(default_factory=dict)
    drops: dict[str, dict[str, int]] = field(default_factory=dict)   # dropped lock -> classes
    param_reclaim: dict[str, dict[int, Witness]] = field(default_factory=dict)
    via_gfp: dict[str, int] = field(default_factory=dict)   # fs_reclaim through a gfp argument: call line
    local_acqs: dict[str, list[tuple[str, Acq]]] = field(default_factory=dict)
    resolver: "Resolver" = None  # type: ignore[assignment]
    _chains: dict[tuple[str, str, bool, str], tuple[Step, ...]] = field(default_factory=dict)
    _dropmemo: dict[tuple, frozenset[str]] = field(default_factory=dict)
    _hops: dict[tuple, tuple] = field(default_factory=dict)
    own: dict[str, frozenset[int]] = field(default_factory=dict)   # classes taken in the body
    #: function id -> (index of the call, blind-spot label) of its unresolved calls
    blind_calls: dict[str, tuple[tuple[int, str], ...]] = field(default_factory=dict)
    clean: dict[str, int] = field(default_factory=dict)   # top classes reached with nothing dropped

    @property
    def takes(self) -> "_Takes":
        """fid -> {class: Taken} — built per question, never stored for every function."""
        return _Takes(self)

    def chain(self, j: str, cls: str, edge: bool = False, limit: int = 40,
              avoid: str = "") -> tuple[Step, ...]:
        """The shortest call chain from j to a function that takes `cls` itself.

        Breadth-first over the callees whose summary holds the class (calls in source
        order, so ties go to the earlier call); `edge` follows only the paths that make a
        lockdep edge from a caller's lock (top-level calls, non-try acquisitions); `avoid`
        is the held lock of the edge being shown, so no path that drops it first is offered
        as its evidence.  Memoised: an edge's
        evidence asks for the same (callee, class) from every call site."""
        key = (j, cls, edge, avoid)
        got = self._chains.get(key)
        if got is None:
            got = self._chains[key] = self._bfs(j, cls, edge, limit, avoid)
        return got

    def _drops(self, f: FuncFacts, d: frozenset[str]) -> frozenset[str]:
        key = (f.file, f.name, d)
        got = self._dropmemo.get(key)
        if got is None:
            got = self._dropmemo[key] = dropped_classes(self.resolver, f, d)
        return got

    def _steps_from(self, cur: str, cls: str, b: int, edge: bool, avoid: str):
        """At function cur: (step, []) when cur itself takes the class, else (None, the
        (line, callee) hops to callees whose summary holds it, in source order)."""
        key = (cur, b, edge, avoid)
        got = self._hops.get(key)
        if got is None:
            if len(self._hops) >= MEMO_BOUND:  # bounded memory on whole-tree questions
                self._hops.clear()
            got = self._hops[key] = self._find_steps(cur, cls, b, edge, avoid)
        return got

    def _find_steps(self, cur: str, cls: str, b: int, edge: bool, avoid: str):
        f = self.funcs[cur]
        if b in self.own.get(cur, ()):
            line = self._local_line(cur, cls, edge, avoid)
            if line:
                return Step(f.name, f.file, line), []
        summ = self.top if edge else self.anyb
        bit = 1 << b
        drops, clean, pcls = self.drops, self.clean, self.pcls
        hops = []
        for c, row in zip(f.calls, self.targets.get(cur, ())):
            if not row or b == 0 and masked(c.scopes) or edge and not at_top(c.held, f):
                continue
            if avoid and c.dropped and avoid in self._drops(f, c.dropped):
                continue
            for jj in row:
                if avoid:
                    dj = drops.get(jj)
                    if dj and dj.get(avoid, 0) & bit and not clean.get(jj, 0) & bit:
                        continue
                if summ.get(jj, 0) & bit:
                    hops.append((c.line, jj))
                elif jj in pcls and self._through_param(f, c, jj, cls, edge):
                    return Step(f.name, f.file, c.line), []
        if not hops and b == 0 and cur in self.via_gfp:
            return Step(f.name, f.file, self.via_gfp[cur]), []
        return None, hops

    def _bfs(self, j: str, cls: str, edge: bool, limit: int, avoid: str) -> tuple[Step, ...]:
        if cls.startswith("@param"):
            w = self.pcls.get(j, {}).get(cls)
            if w is None:
                return ()
            f = self.funcs[j]
            return (Step(f.name, f.file, w.line),)
        b = self.classes.ids.get(cls)
        if b is None:
            return ()
        parent: dict[str, tuple[str, int] | None] = {j: None}
        frontier = [j]
        end: tuple[str, Step] | None = None
        for _depth in range(limit):
            nxt: list[str] = []
            for cur in frontier:
                last, hops = self._steps_from(cur, cls, b, edge, avoid)
                if last is not None:
                    end = (cur, last)
                    break
                for line, jj in hops:
                    if jj not in parent:
                        parent[jj] = (cur, line)
                        nxt.append(jj)
            if end or not nxt:
                break
            if len(parent) > BFS_BUDGET:  # far away: follow the first call that leads there
                return self._greedy(j, cls, b, edge, limit, avoid)
            frontier = nxt
        if end is None:
            return ()
        cur, last = end
        out = [last]
        while parent[cur] is not None:
            up, line = parent[cur]
            f = self.funcs[up]
            out.append(Step(f.name, f.file, line))
            cur = up
        return tuple(reversed(out))

    def _greedy(self, j: str, cls: str, b: int, edge: bool, limit: int,
                avoid: str) -> tuple[Step, ...]:
        out: list[Step] = []
        seen: set[str] = set()
        cur = j
        while len(out) < limit:
            seen.add(cur)
            last, hops = self._steps_from(cur, cls, b, edge, avoid)
            if last is not None:
                out.append(last)
                break
            hop = next(((line, jj) for line, jj in hops if jj not in seen), None)
            if hop is None:
                break
            f = self.funcs[cur]
            out.append(Step(f.name, f.file, hop[0]))
            cur = hop[1]
        return tuple(out)

    def _local_line(self, fid: str, cls: str, edge: bool, avoid: str = "") -> int:
        f = self.funcs[fid]
        if cls == FS_RECLAIM:
            for al in f.allocs:
                how, _ = gfp_reclaims(al.gfp, f)
                if not masked(al.scopes) and how in ("yes", "unknown") and not (
                        edge and not at_top(al.held, f)) and not (
                        avoid and al.dropped and avoid in self._drops(f, al.dropped)):
                    return al.line
            return 0
        for c, a in self.local_acqs.get(fid, ()):
            if c == cls and not (edge and (a.try_ or not at_top(a.held, f))) and not (
                    avoid and a.dropped and avoid in self._drops(f, a.dropped)):
                return a.line
        return 0

    def _through_param(self, f: FuncFacts, c, j: str, cls: str, edge: bool) -> bool:
        for pc, w in self.pcls[j].items():
            if edge and not w.edge:
                continue
            n = int(pc[6:].split("/")[0])
            if n < len(c.args) and cls in self.resolver.classes(LockExpr.parse(c.args[n]), f):
                return True
        return False

    def ranked_blind(self, fids) -> tuple[list[str], set[str]]:
        """Blind spots reachable from fids, most telling first (blind_rank), and those met
        while a lock is held — by the function making the call or by one on the way there:
        a call that may take anything under a held lock is where an edge can hide."""
        out: set[str] = set()
        locked: set[str] = set()
        state: dict[str, bool] = {}
        work = [(fid, False) for fid in fids]
        while work:
            i, lk = work.pop()
            if i in state and (state[i] or not lk):
                continue  # seen already, under a lock or as now
            state[i] = lk
            own = self.blind.get(i, _EMPTY)
            out |= own
            if lk:
                locked |= own
            calls = dict(self.blind_calls.get(i, ()))
            for k, (c, row) in enumerate(zip(self.funcs[i].calls, self.targets.get(i, ()))):
                here = lk or any(h.kind not in kb.NO_EDGE_KINDS for h in c.held)
                if here and k in calls:
                    locked.add(calls[k])
                for j in row:
                    work.append((j, here))
        return sorted(out, key=lambda b: blind_rank(b, b in locked)), locked

    def reachable_blind(self, fid: str) -> set[str]:
        """Blind spots of fid and of everything it may call.

        Computed per question rather than stored per function: propagated sets would
        repeat the same labels in hundreds of thousands of callers."""
        out: set[str] = set()
        seen = {fid}
        work = [fid]
        while work:
            i = work.pop()
            out |= self.blind.get(i, _EMPTY)
            for row in self.targets.get(i, ()):
                for j in row:
                    if j not in seen:
                        seen.add(j)
                        work.append(j)
        return out


_CALLEE = re.compile(r"(\w+)\(\)(?: in \w+\(\))?$")


def blind_rank(label: str, locked: bool) -> tuple[int, str]:
    """Sort key of a blind spot: under a held lock first, then the rest, and last the
    calls that hardly hide a lock (byte-order helpers, kb.NOISE_CALLS) however reached."""
    m = _CALLEE.search(label)
    noise = bool(m) and (m.group(1) in kb.NOISE_CALLS or bool(kb.BYTE_ORDER.fullmatch(m.group(1))))
    return (2 if noise else 0 if locked else 1), label


def _with_entry(f: FuncFacts, entry: tuple[Held, ...]) -> FuncFacts:
    """A view of f whose every event also holds the locks held on entry."""
    from copy import copy
    g = copy(f)
    g.acqs = [copy(a) for a in f.acqs]
    g.allocs = [copy(a) for a in f.allocs]
    g.calls = [copy(c) for c in f.calls]
    for ev in (*g.acqs, *g.allocs, *g.calls):
        ev.held = entry + ev.held
    return g


def entry_contexts(S: "Solved", fid: str, depth: int = 6) -> dict[str, str]:
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


class ClassIndex:
    """Lock class names <-> bit positions of the summaries."""

    def __init__(self, names: list[str]) -> None:
        self.names = list(names)
        self.ids = {n: k for k, n in enumerate(self.names)}

    def id(self, name: str) -> int:
        k = self.ids.get(name)
        if k is None:
            k = self.ids[name] = len(self.names)
            self.names.append(name)
        return k

    @staticmethod
    def bits(x: int) -> list[int]:
        """Set bit positions of x, lowest first (str.find skips the zeros in C)."""
        if not x:
            return []
        s = format(x, "b")[::-1]
        out = []
        k = s.find("1")
        while k >= 0:
            out.append(k)
            k = s.find("1", k + 1)
        return out


@dataclass(frozen=True, slots=True)
class Taken:
    edge: bool       # a caller's held lock gets a lockdep edge to it (see Solved.top)


class _Takes:
    def __init__(self, S: "Solved") -> None:
        self.S = S

    def get(self, fid: str, default=None):
        S = self.S
        if fid not in S.anyb:
            return default
        t = S.top[fid]
        out = {S.classes.names[b]: Taken(bool(t >> b & 1)) for b in S.classes.bits(S.anyb[fid])}
        for cls, w in S.pcls.get(fid, {}).items():
            out[cls] = Taken(w.edge)
        return out

    def __getitem__(self, fid: str):
        v = self.get(fid)
        if v is None:
            raise KeyError(fid)
        return v

    def __contains__(self, fid: str) -> bool:
        return fid in self.S.anyb


def at_top(held: tuple[Held, ...], f: FuncFacts) -> bool:
    """No non-try lock of f's own is surely held here (lockdep's edge walk from the newest
    held lock stops at the first non-try one; a lock held on one path only counts as not
    held, which keeps the caller's edges).  A lock f received as a parameter does not
    count either: its class is the caller's argument, and no edge from it is made here, so
    stopping at it would leave what f takes under it with no incoming edge at all."""
    for h in held:
        if not h.try_ and not h.cond and h.kind not in kb.NO_EDGE_KINDS:
            lk = h.lock
            if not lk.path and not lk.percpu and not lk.fixed and any(
                    n == lk.root for _, n in f.params):
                continue
            return False
    return True


def dropped_classes(res: "Resolver", f: FuncFacts, d: frozenset[str]) -> frozenset[str]:
    """Class names of the caller locks (as written in f) a path dropped."""
    if not d:
        return _EMPTY
    return frozenset(c for text in d for c in res.classes(LockExpr.parse(text), f))


def fid(f: FuncFacts) -> str:
    return f"{f.file}:{f.name}"


class Resolver:
    """Maps lock expressions at a site to lockdep class names (docs/kernel-facts.md §2)."""

    def __init__(self, files: list[FileFacts], funcs: dict[str, FuncFacts]) -> None:
        self.static: dict[str, set[str]] = defaultdict(set)       # ident -> names
        self.field: dict[tuple[str, str], set[str]] = defaultdict(set)
        self.globals: dict[str, str] = {}
        self.kind_of_static: dict[str, str] = {}
        for ff in files:
            self.globals.update(ff.globals)
            for ident, kind, _ in ff.defines:
                self.static[ident].add(ident)
                self.kind_of_static[ident] = kind
            for d in ff.desig:
                m = re.match(r"(\w+)\s*\(\s*(.*?)\s*\)$", d.value)
                if m and m.group(1) in kb.MEMBER_INITS and d.type:
                    self.field[(d.type, d.member)].add(m.group(2))
        for f in funcs.values():
            overrides: dict[tuple, set[str]] = defaultdict(set)
            inits: dict[tuple, set[str]] = defaultdict(set)
            for prim, lk, name, _line in f.inits:
                key = self.key_of(lk, f)
                if key is None:
                    continue
                (overrides if prim.startswith("lockdep_set_class") else inits)[key].add(name)
            for key, names in inits.items():
                chosen = overrides.get(key) or names
                self._add(key, chosen)
            for key, names in overrides.items():
                if key not in inits:
                    self._add(key, names)

    def _add(self, key: tuple, names: set[str]) -> None:
        if key[0] == "static":
            self.static[key[1]] = (self.static[key[1]] - {key[1]}) | names
        else:
            self.field[key].update(names)

    def type_of(self, var: str, f: FuncFacts) -> str:
        for typ, name in f.params:
            if name == var:
                return typ
        return f.locals.get(var) or self.globals.get(var, "")

    @staticmethod
    def _struct(typ: str) -> str:
        t = typ.replace("*", "").strip()
        return t[7:] if t.startswith("struct ") else t

    def key_of(self, lk: LockExpr, f: FuncFacts) -> tuple | None:
        if lk.fixed or not lk.root:
            return None
        if lk.percpu or (not lk.path and self._is_static(lk.root, f)):
            return ("static", lk.root)
        typ = self.type_of(lk.root, f)
        if typ and lk.path:
            return (self._struct(typ), lk.path)
        return None

    def _is_static(self, root: str, f: FuncFacts) -> bool:
        if any(n == root for _, n in f.params) or root in f.locals:
            return False
        return root in self.static or root in self.globals or root not in f.aliases

    def classes(self, lk: LockExpr, f: FuncFacts, depth: int = 0) -> list[str]:
        """Class names for a lock expression in function f; '@paramN' for a lock parameter."""
        if lk.fixed:
            return [lk.fixed]
        if not lk.root:
            return [_norm(lk.text)]
        for k, (typ, name) in enumerate(f.params):
            if name == lk.root and not lk.path and not lk.percpu:
                return [f"@param{k}"]
        if lk.root in f.aliases and not lk.percpu and depth < 3 and lk.root not in self.static:
            alias = LockExpr.parse(f.aliases[lk.root])
            if alias.root and alias.root != lk.root:
                if not lk.path:
                    return self.classes(alias, f, depth + 1)
        key = self.key_of(lk, f)
        if key is not None:
            if key[0] == "static":
                names = self.static.get(key[1])
                return sorted(names) if names else [key[1]]
            names = self.field.get(key)
            if names:
                return sorted(names)
        return [_norm(lk.text)]

    def kind_hint(self, name: str) -> str:
        k = self.kind_of_static.get(name, "")
        return k.split(":", 1)[-1]


def _norm(text: str) -> str:
    return text.replace(" ", "") if "," not in text else re.sub(r"\s+", " ", text)


# ---------------------------------------------------------------------------------------
# GFP evaluation (docs/kernel-facts.md §3.2-3.3)


class _Dyn(Exception):
    pass


def _gfp_bits(text: str) -> frozenset[str]:
    toks = re.findall(r"[A-Za-z_]\w*|\d+|[|&~()]", text)
    pos = 0

    def atom() -> frozenset[str]:
        nonlocal pos
        if pos >= len(toks):
            raise _Dyn("")
        t = toks[pos]
        pos += 1
        if t == "~":
            return frozenset({"~"}) | frozenset("~" + b for b in atom())
        if t == "(":
            v = expr()
            pos += 1
            return v
        if t in kb.GFP:
            return kb.GFP[t]
        if t.isdigit():
            return frozenset()
        if t.startswith(kb.GFP_NEUTRAL_PREFIX):
            return frozenset()
        raise _Dyn(t)

    def term() -> frozenset[str]:
        nonlocal pos
        v = atom()
        while pos < len(toks) and toks[pos] == "&":
            pos += 1
            w = atom()
            if "~" in w:
                v = v - {b[1:] for b in w if b.startswith("~")}
            else:
                v = v & w
        return v

    def expr() -> frozenset[str]:
        nonlocal pos
        v = term()
        while pos < len(toks) and toks[pos] == "|":
            pos += 1
            v = v | term()
        return v

    return expr()


def gfp_reclaims(text: str, f: FuncFacts) -> tuple[str, int]:
    """('yes'|'no'|'param'|'unknown', param index): does an allocation's gfp in f take
    fs_reclaim (direct reclaim with __GFP_FS, lockdep not told to look away)?"""
    return _gfp_test(text, f, _takes_fs_reclaim)


def gfp_blocks(text: str, f: FuncFacts) -> tuple[str, int]:
    """The same answer for "may this allocation sleep": direct reclaim alone decides
    (gfpflags_allow_blocking()); GFP_NOFS and GFP_NOIO sleep, GFP_ATOMIC/GFP_NOWAIT do not."""
    return _gfp_test(text, f, _direct_reclaim)


def _takes_fs_reclaim(bits: frozenset[str]) -> bool:
    return "DIRECT_RECLAIM" in bits and "FS" in bits and "NOLOCKDEP" not in bits


def _direct_reclaim(bits: frozenset[str]) -> bool:
    return "DIRECT_RECLAIM" in bits


_ALL_BITS = "(__GFP_RECLAIM|__GFP_IO|__GFP_FS)"   # what a gfp parameter may carry at most


def _gfp_test(text: str, f: FuncFacts, test, depth: int = 0) -> tuple[str, int]:
    if not text:
        return "yes", -1
    names = set(_IDENT.findall(text))
    for k, (typ, name) in enumerate(f.params):
        if name in names and "gfp" in typ:
            # `gfp & ~__GFP_DIRECT_RECLAIM` never passes, whatever the caller gives
            try:
                widest = _gfp_bits(re.sub(rf"\b{name}\b", _ALL_BITS, text))
            except _Dyn:
                return "param", k
            return ("param", k) if test(widest) else ("no", -1)
    if depth < 3:
        for n in names:
            if n in f.aliases and n not in kb.GFP:
                sub = re.sub(rf"\b{n}\b", f"({f.aliases[n]})", text)
                return _gfp_test(sub, f, test, depth + 1)
    try:
        bits = _gfp_bits(text)
    except _Dyn:
        return "unknown", -1
    return ("yes" if test(bits) else "no"), -1


_MASKING = frozenset({"nofs", "noio", "noreclaim"})


def masked(scopes: frozenset[str]) -> bool:
    """A memalloc scope that removes __GFP_FS (or all reclaim) is active."""
    return not _MASKING.isdisjoint(scopes)


# ---------------------------------------------------------------------------------------


def solve(files: list[FileFacts]) -> Solved:
    funcs: dict[str, FuncFacts] = {}
    by_name: dict[str, list[str]] = defaultdict(list)
    conds: dict[tuple[str, int], tuple[str, ...]] = {}
    for ff in files:
        for f in ff.functions:
            i = fid(f)
            if i in funcs:
                i = f"{i}@{f.line}"
            funcs[i] = f
            by_name[f.name].append(i)
        for line, c in ff.conds.items():
            conds[(ff.path, line)] = c
    res = Resolver(files, funcs)
    unit = _translation_units(files)

    member_targets: dict[str, set[str]] = defaultdict(set)
    typed_targets: dict[tuple[str, str], set[str]] = defaultdict(set)
    caches: dict[str, dict[str, str]] = defaultdict(dict)
    arg_structs: dict[tuple[str, str], dict[str, str]] = defaultdict(dict)
    for ff in files:
        for d in ff.desig:
            v = d.value.lstrip("&").strip()
            if _IDENT.fullmatch(v) and v in by_name:
                member_targets[d.member].add(v)
                if d.type:
                    typed_targets[(d.type, d.member)].add(v)
            if d.member in ("ctor", "dtor") and _IDENT.fullmatch(v):
                arg_structs[(ff.path, d.var)][d.member] = v
    for f in funcs.values():
        for base, member, value, _ in f.assigns:
            if value in by_name:
                member_targets[member].add(value)
        for var, text in f.aliases.items():
            m = re.match(r"kmem_cache_create\w*\s*\((.*)\)$", text)
            if not m:
                continue
            args = [a.strip() for a in split_top(m.group(1))]
            for a in args:
                if a.startswith("&") and (f.file, a[1:]) in arg_structs:
                    caches[var].update(arg_structs[(f.file, a[1:])])
            ctor_at = 6 if text.startswith("kmem_cache_create_usercopy") else 4
            if len(args) > ctor_at and _IDENT.fullmatch(args[ctor_at]) and args[ctor_at] in by_name:
                caches[var]["ctor"] = args[ctor_at]

    def resolve_call(caller: FuncFacts, name: str, member: bool, base: str = "") -> list[str]:
        if member:
            names = member_targets.get(name, set())
            typed = False
            if base:  # where the object's struct type is known, only that type's tables
                typ = Resolver._struct(res.type_of(base, caller))
                if typ and typed_targets.get((typ, name)):
                    names = typed_targets[(typ, name)]
                    typed = True
            if len(names) > (MAX_TYPED_TARGETS if typed else MAX_UNTYPED_TARGETS):
                # a generic callback (notifier, file operations...): following every table
                # would make everything take everything; it is a blind spot instead
                return []
            return sorted(i for n in names for i in by_name.get(n, ()))
        if any(n == name for _, n in caller.params) or name in caller.locals:
            return []  # a call through a function-pointer variable
        cands = by_name.get(name) or by_name.get(name + "_noprof", [])  # alloc_hooks() wrappers
        if not cands:
            return []
        same = [i for i in cands if funcs[i].file == caller.file]
        if same:
            return same
        tu = unit.get(caller.file)
        if tu is not None:  # a static function of a file the caller's includes (or is included by)
            mine = [i for i in cands if unit.get(funcs[i].file) == tu]
            if mine:
                return mine
        public = [i for i in cands if not funcs[i].static]
        if public:
            return public
        d = caller.file.rsplit("/", 1)[0]
        # a static function elsewhere is reachable from its own directory (#include "x.c")
        # or, when a header defines it (static inline), from anywhere
        return [i for i in cands if funcs[i].file.endswith(".h")
                or funcs[i].file.rsplit("/", 1)[0] == d]

    # call graph: targets[i][k] = the functions call k of i may reach
    targets: dict[str, tuple[tuple[str, ...], ...]] = {}
    unresolved: dict[str, list[tuple[str, int]]] = defaultdict(list)
    blind: dict[str, frozenset[str]] = {}
    blind_calls: dict[str, tuple[tuple[int, str], ...]] = {}
    for i, f in funcs.items():
        row = []
        local_blind: set[str] = set()
        mine: list[tuple[int, str]] = []
        for k, c in enumerate(f.calls):
            t = tuple(resolve_call(f, c.name, c.member, c.base)) or _NONE
            row.append(t)
            if not t and c.name not in kb.LOCK_FREE and c.name not in kb.SLEEPING_CALLS \
                    and not c.name.isupper() and not c.name.startswith(("trace_", "__builtin")):
                pointer = c.member or any(n == c.name for _, n in f.params) or c.name in f.locals
                what = f"{c.base}->{c.name}()" if c.member and c.base else f"{c.name}()"
                label = (f"unresolved indirect call {what} in {f.name}()" if pointer
                         else f"missing definition of {what}")
                local_blind.add(label)
                unresolved[label].append((f.file, c.line))
                mine.append((k, label))
        if f.structure.startswith("unknown"):
            local_blind.add(f"structure unknown in {f.name}() ({f.file}:{f.line})")
        targets[i] = tuple(row)
        if mine:
            blind_calls[i] = tuple(mine)
        if local_blind:
            blind[i] = frozenset(local_blind)

    def held_classes(f: FuncFacts, held: tuple[Held, ...]) -> list[tuple[str, Held]]:
        out = []
        for h in held:
            for c in res.classes(h.lock, f):
                out.append((c + (f"/{h.subclass}" if h.subclass else ""), h))
        return out

    kinds: dict[str, str] = {FS_RECLAIM: "map"}
    irq_classes: set[str] = set()
    param_reclaim: dict[str, dict[int, Witness]] = {}
    sleeps: dict[str, Witness] = {}

    def _dropped(d: frozenset[str], f: FuncFacts) -> frozenset[str]:
        return dropped_classes(res, f, d)

    # Lock classes become bit positions.  Classes taken by much-called functions get the low
    # bits, so the many summaries that reach them stay short integers.
    indeg: dict[str, int] = defaultdict(int)
    for row in targets.values():
        for t in row:
            for j in t:
                indeg[j] += 1
    weight: dict[str, int] = defaultdict(int)
    local_acqs: dict[str, list[tuple[str, Acq]]] = {}
    for i, f in funcs.items():
        got = []
        for a in f.acqs:
            for cls in res.classes(a.lock, f):
                cls = cls + (f"/{a.subclass}" if a.subclass else "")
                got.append((cls, a))
                weight[cls] += 1 + indeg.get(i, 0)
        local_acqs[i] = got
    U = ClassIndex([FS_RECLAIM] + sorted((c for c in weight if not c.startswith("@param")
                                          and c != FS_RECLAIM), key=lambda c: (-weight[c], c)))
    anyb: dict[str, int] = {}
    top: dict[str, int] = {}
    pcls: dict[str, dict[str, Witness]] = {}
    drop_levels: list[dict[str, dict[str, int]]] = [{} for _ in range(DROP_LEVELS)]
    drops: dict[str, dict[str, int]] = drop_levels[0]
    own: dict[str, frozenset[int]] = {}
    # top-level classes reached through some path that drops no caller lock (a class reached
    # cleanly only under the callee's own lock makes no edge from the caller's lock either)
    clean: dict[str, int] = {}

    def local(i: str) -> None:
        f = funcs[i]
        a_bits = t_bits = c_bits = 0
        pc: dict[str, Witness] = {}
        dr: dict[str, int] = {}
        pr: dict[int, Witness] = {}
        for cls, a in local_acqs[i]:
            kinds.setdefault(cls, a.kind)
            if a.irq:
                irq_classes.add(cls)
            if cls.startswith("@param"):
                prefer(pc, cls, Witness(a.line, None, _dropped(a.dropped, f), try_=a.try_,
                                        irq=a.irq, deep=not at_top(a.held, f)))
                continue
            b = 1 << U.id(cls)
            d = _dropped(a.dropped, f)
            for lk in d:
                dr[lk] = dr.get(lk, 0) | b
            a_bits |= b
            if not a.try_ and at_top(a.held, f):
                t_bits |= b
                if not d:
                    c_bits |= b
        for al in f.allocs:
            how, k = gfp_reclaims(al.gfp, f)
            if masked(al.scopes) or how == "no":
                continue
            if how == "param":
                prefer(pr, k, Witness(al.line, None, _dropped(al.dropped, f), f"{al.api}()",
                                      deep=not at_top(al.held, f)))
            else:
                d = _dropped(al.dropped, f)
                for lk in d:
                    dr[lk] = dr.get(lk, 0) | 1
                a_bits |= 1
                if at_top(al.held, f):
                    t_bits |= 1
                    if not d:
                        c_bits |= 1
        anyb[i], top[i], clean[i] = a_bits, t_bits, c_bits
        if a_bits:
            own[i] = frozenset(U.bits(a_bits))
        if pc:
            pcls[i] = pc
        if dr:
            drops[i] = dr
        if pr:
            param_reclaim[i] = pr
        if f.sleeps:
            sleeps[i] = Witness(f.sleeps[0][1], None, note=f.sleeps[0][0] + "()")

    _held_memo: dict[int, frozenset[str]] = {}

    def held_names(c, f: FuncFacts) -> frozenset[str]:
        got = _held_memo.get(id(c))
        if got is None:
            got = _held_memo[id(c)] = frozenset(x for x, _ in held_classes(f, c.held))
        return got

    _singles: dict[str, frozenset[str]] = {}

    def _single(lk: str) -> frozenset[str]:
        got = _singles.get(lk)
        if got is None:
            got = _singles[lk] = frozenset((lk,))
        return got

    def set_drop(i: str, bits: int, d: frozenset[str], level: int = 0) -> bool:
        """Classes `bits` are reached in i through a path that first drops each lock of d,
        `level` calls below i (0: i drops it itself)."""
        grew = False
        dr = drop_levels[level].setdefault(i, {})
        for lk in d:
            old = dr.get(lk, 0)
            if old | bits != old:
                dr[lk] = old | bits
                grew = True
        return grew

    def pull(i: str, f: FuncFacts, c, j: str) -> bool:
        """Absorb callee j's summary through call c of i; True when i's summary grew."""
        m = ~1 if masked(c.scopes) else -1
        before_a, before_t, before_c = anyb[i], top[i], clean[i]
        ctop = at_top(c.held, f)
        drop = _dropped(c.dropped, f) if c.dropped else _EMPTY
        # the common call (nothing dropped, no lock or gfp parameter) is these three unions
        a_bits = before_a | (anyb[j] & m)
        t_bits, c_bits = before_t, before_c
        if ctop:
            t_bits |= top[j] & m
            if not drop:
                c_bits |= clean[j] & m
        # Per dropped caller lock, the classes reached through a path that drops it first;
        # a class also reached cleanly (no drop at all) is judged by `clean` at use.  A
        # record travels up at most DROP_LEVELS - 1 calls (the lock a callee drops is its
        # caller's, or a wrapper's caller's) and stops at a call that holds that lock.
        dgrew = set_drop(i, anyb[j] & m, drop) if drop else False
        held_here = None
        for level in range(DROP_LEVELS - 1):
            dj = drop_levels[level].get(j)
            if not dj:
                continue
            if held_here is None:
                held_here = held_names(c, f) if c.held else _EMPTY
            for lk, bits in dj.items():
                if lk not in held_here and set_drop(i, bits & m, _single(lk), level + 1):
                    dgrew = True
        pj = pcls.get(j)
        if pj:
            for cls, w in pj.items():
                n = int(cls[6:].split("/")[0])
                if n >= len(c.args):
                    continue
                for real in res.classes(LockExpr.parse(c.args[n]), f):
                    if w.irq:
                        irq_classes.add(real)
                    kinds.setdefault(real, kinds.get(cls, "spin"))
                    if real.startswith("@param"):
                        if prefer(pcls.setdefault(i, {}), real,
                                  Witness(c.line, j, drop | w.dropped, try_=w.try_, irq=w.irq,
                                          deep=w.deep or not ctop)):
                            dgrew = True  # a caller in the component must look again
                        continue
                    b = 1 << U.id(real)
                    if drop or w.dropped:
                        if set_drop(i, b, drop | w.dropped):
                            dgrew = True
                    a_bits |= b
                    if ctop and w.edge:
                        t_bits |= b
                        if not (drop or w.dropped):
                            c_bits |= b
        changed = dgrew or a_bits != before_a or t_bits != before_t or c_bits != before_c
        anyb[i], top[i], clean[i] = a_bits, t_bits, c_bits
        pj = param_reclaim.get(j)
        if pj:
            pr = param_reclaim.setdefault(i, {})
            for n, w in pj.items():
                if m != -1 or n >= len(c.args):
                    continue
                how, k2 = gfp_reclaims(c.args[n], f)
                if how == "param":
                    if prefer(pr, k2, Witness(c.line, j, drop | w.dropped, via_param=n,
                                              deep=w.deep or not ctop)):
                        changed = True
                elif how in ("yes", "unknown"):
                    was = (anyb[i] & 1, top[i] & 1, clean[i] & 1)
                    if (drop or w.dropped) and set_drop(i, 1, drop | w.dropped):
                        changed = True
                    edge = ctop and w.edge
                    if not anyb[i] & 1 or edge and not top[i] & 1:
                        via_gfp[i] = c.line  # where a witness search for fs_reclaim ends
                    anyb[i] |= 1
                    if edge:
                        top[i] |= 1
                        if not (drop or w.dropped):
                            clean[i] |= 1
                    changed = changed or was != (anyb[i] & 1, top[i] & 1, clean[i] & 1)
        if j in sleeps and i not in sleeps:
            sleeps[i] = Witness(c.line, j)
            changed = True
        return changed

    via_gfp: dict[str, int] = {}
    for i in funcs:
        local(i)
    for scc in _sccs(targets):
        if len(scc) == 1 and not any(scc[0] in row for row in targets[scc[0]]):
            i = scc[0]
            f = funcs[i]
            for c, row in zip(f.calls, targets[i]):
                for j in row:
                    pull(i, f, c, j)
            continue
        # Inside a component: a worklist; a member is revisited only when a callee grew.
        inside = set(scc)
        callers_in: dict[str, set[str]] = defaultdict(set)
        for i in scc:
            f = funcs[i]
            for c, row in zip(f.calls, targets[i]):
                for j in row:
                    if j in inside:
                        callers_in[j].add(i)
                    else:  # callees outside the component are final: absorbed once
                        pull(i, f, c, j)
        # Versions: a dequeued member pulls again only from the callees that changed since
        # it last looked, not from all of them (members of the kernel's big component
        # have dozens of callees inside it).
        version = dict.fromkeys(scc, 0)
        seen: dict[tuple[str, str], int] = {}
        inner = {i: [(c, j) for c, row in zip(funcs[i].calls, targets[i]) for j in row if j in inside]
                 for i in scc}
        queue = sorted(scc, reverse=True)
        queued = set(queue)
        while queue:
            i = queue.pop()
            queued.discard(i)
            f = funcs[i]
            grew = False
            pairs = inner[i]
            fresh = {j: version[j] for _, j in pairs if seen.get((i, j)) != version[j]}
            for c, j in pairs:
                if j in fresh and pull(i, f, c, j):
                    grew = True
            for j, v in fresh.items():
                seen[(i, j)] = v
            if grew:
                version[i] += 1
                for c in sorted(callers_in.get(i, ()), reverse=True):
                    if c not in queued:
                        queued.add(c)
                        queue.append(c)

    drops = _merge_levels(drop_levels)
    S = Solved(files, funcs, kinds, sleeps, blind, {}, [], dict(unresolved), dict(by_name),
               dict(member_targets), [], dict(caches), conds, irq_classes, {}, targets, {},
               U, anyb, top, pcls, drops, param_reclaim, via_gfp,
               {i: v for i, v in local_acqs.items() if v}, res)
    S.own = own
    S.clean = clean
    S.blind_calls = blind_calls
    noedge = 0
    for cls, k in kinds.items():
        if k in kb.NO_EDGE_KINDS and cls in U.ids:
            noedge |= 1 << U.ids[cls]
    full: dict[str, int] = {}   # source class -> bits of its edges whose evidence is complete

    # static edges
    edges: dict[tuple[str, str], StaticEdge] = S.edges
    acquisitions: list[dict] = []

    def sources(f: FuncFacts, held: tuple[Held, ...]) -> list[str]:
        out = []
        for c, h in reversed(held_classes(f, held)):
            if h.kind in kb.NO_EDGE_KINDS or c.startswith("@param"):
                continue
            out.append(c)
            if not h.try_:
                break
        return out

    def add(src: str, dst: str, step: Step, via: tuple[Step, ...] | str) -> bool:
        """Record an edge's witness (`via` a callee id: chain searched when read); True
        once the edge keeps MAX_EVIDENCE of them."""
        if src == dst:
            return False
        e = edges.get((src, dst))
        if e is None:
            e = edges[(src, dst)] = StaticEdge(src, dst, [], S)
        if len(e.raw) < MAX_EVIDENCE:
            e.raw.append((step, via))
        return len(e.raw) >= MAX_EVIDENCE

    # edges that exist only when a gfp parameter allows reclaim: (function, param) -> edges
    param_flow: dict[tuple[str, int], set[tuple[str, int]]] = defaultdict(set)
    param_seeds: dict[tuple[str, int], Step] = {}
    for i, f in funcs.items():
        for c, row in zip(f.calls, targets[i]):
            for j in row:
                for n in param_reclaim.get(j, {}):
                    if masked(c.scopes) or n >= len(c.args):
                        continue
                    how, k2 = gfp_reclaims(c.args[n], f)
                    if how == "param":
                        param_flow[(i, k2)].add((j, n))
                    elif how in ("yes", "unknown"):
                        param_seeds.setdefault((j, n), Step(f.name, f.file, c.line))
    reclaiming: dict[tuple[str, int], Step] = dict(param_seeds)
    work = list(param_seeds)
    while work:
        key = work.pop()
        for nxt in param_flow.get(key, ()):
            if nxt not in reclaiming:
                reclaiming[nxt] = reclaiming[key]
                work.append(nxt)

    callers: dict[str, list[tuple[str, frozenset[str], int]]] = defaultdict(list)
    for i, f in funcs.items():
        for c, row in zip(f.calls, targets[i]):
            if not row:
                continue
            held = held_names(c, f) if c.held else _EMPTY
            for j in row:
                callers[j].append((i, held, c.line))

    for i, f in funcs.items():
        entry: tuple[Held, ...] = ()
        if not callers.get(i):
            # No caller in the scanned code: an asserted lock (lockdep_assert_held,
            # __must_hold) is the callers' contract, so it is held on entry.
            entry = tuple(Held(lk, "asserted", "X", False, line) for lk, line in f.asserted)
            entry += tuple(Held(LockExpr.parse(a[len("__must_hold("):-1]), "asserted", "X", False, f.line)
                           for a in f.annotations if a.startswith("__must_hold("))
        if entry:
            f = _with_entry(f, entry)
        for a in f.acqs:
            for cls in res.classes(a.lock, f):
                cls = cls + (f"/{a.subclass}" if a.subclass else "")
                acquisitions.append({"function": f.name, "lock": cls, "file": f.file,
                                     "line": a.line, "mode": a.mode, "kind": a.kind,
                                     "try": a.try_, "irq": a.irq})
                if a.try_ or a.kind in kb.NO_EDGE_KINDS or cls.startswith("@param"):
                    continue
                for s in sources(f, a.held):
                    add(s, cls, Step(f.name, f.file, a.line), ())
        for al in f.allocs:
            how, pk = gfp_reclaims(al.gfp, f)
            if masked(al.scopes):
                continue
            if how in ("yes", "unknown"):
                for s in sources(f, al.held):
                    add(s, FS_RECLAIM, Step(f.name, f.file, al.line), ())
            elif how == "param" and (i, pk) in reclaiming:
                caller = reclaiming[(i, pk)]
                for s in sources(f, al.held):
                    add(s, FS_RECLAIM, Step(f.name, f.file, al.line), (caller,))
        for c, row in zip(f.calls, targets[i]):
            if not c.held or not row:
                continue
            srcs = sources(f, c.held)
            if not srcs:
                continue
            here = Step(f.name, f.file, c.line)
            m = ~noedge & (~1 if masked(c.scopes) else -1)
            for j in row:
                bits = top[j] & m
                dj = drops.get(j)
                for s in srcs:
                    need = bits & ~full.get(s, 0)
                    if dj and s in dj:  # reached only through paths that drop s first
                        need &= ~(dj[s] & ~clean[j])
                    for b in U.bits(need):
                        cls = U.names[b]
                        if cls == s:
                            full[s] = full.get(s, 0) | (1 << b)
                            continue
                        if add(s, cls, here, j):
                            full[s] = full.get(s, 0) | (1 << b)
                for n, w in param_reclaim.get(j, {}).items():
                    # not w.edge: the allocation runs under the callee's own lock
                    if not w.edge or masked(c.scopes) or n >= len(c.args):
                        continue
                    how, k2 = gfp_reclaims(c.args[n], f)
                    via = param_chain(j, n, funcs, param_reclaim)
                    if how == "param":
                        if (i, k2) not in reclaiming:
                            continue
                        via = via + (reclaiming[(i, k2)],)
                    elif how not in ("yes", "unknown"):
                        continue
                    for s in srcs:
                        if s not in w.dropped:
                            add(s, FS_RECLAIM, Step(f.name, f.file, c.line), via)

    free_sites = []
    cache_allocs: dict[str, list[tuple[int, str, Alloc]]] = defaultdict(list)
    seq = 0
    for i, f in funcs.items():
        for al in f.allocs:
            if al.api in kb.CACHE_ALLOCS:
                seq += 1
                cache_allocs[al.target.split("->")[-1].split(".")[-1]].append((seq, i, al))
        for c in f.calls:
            if c.name in ("kmem_cache_free", "kmem_cache_destroy", "kmem_cache_shrink") and c.args:
                var = _IDENT.findall(c.args[0])
                if var:
                    free_sites.append((var[-1], i, c.line,
                                       tuple(x for x, _ in held_classes(f, c.held))))
    S.acquisitions = acquisitions
    S.free_sites = free_sites
    S.callers = dict(callers)
    S.cache_allocs = dict(cache_allocs)
    return S


def _translation_units(files: list[FileFacts]) -> dict[str, str]:
    """Files joined by `#include "x.c"` -> one name per translation unit (the smallest path
    in it); files that include no .c and are not included are absent."""
    parent: dict[str, str] = {}

    def find(x: str) -> str:
        while parent.setdefault(x, x) != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    present = {ff.path for ff in files}
    for ff in files:
        for inc in ff.includes:
            if inc in present:
                a, b = find(ff.path), find(inc)
                if a != b:
                    parent[max(a, b)] = min(a, b)
    return {x: find(x) for x in parent}


def _merge_levels(levels: list[dict[str, dict[str, int]]]) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for level in levels:
        for fid, per in level.items():
            dst = out.setdefault(fid, {})
            for lk, bits in per.items():
                dst[lk] = dst.get(lk, 0) | bits
    return out


def _sccs(targets: dict[str, tuple[tuple[str, ...], ...]]) -> list[list[str]]:
    """Strongly connected components, callees before callers (Tarjan, iterative).

    Hand-written rather than networkx: on the whole tree the call graph has ~700k nodes and
    millions of edges, and a DiGraph of it costs more memory than every summary together."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on: set[str] = set()
    stack: list[str] = []
    out: list[list[str]] = []
    counter = 0
    for start in targets:
        if start in index:
            continue
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on.add(start)
        work = [(start, iter([j for row in targets[start] for j in row]))]
        while work:
            v, it = work[-1]
            pushed = False
            for w in it:
                if w not in index:
                    index[w] = low[w] = counter
                    counter += 1
                    stack.append(w)
                    on.add(w)
                    work.append((w, iter([j for row in targets[w] for j in row])))
                    pushed = True
                    break
                if w in on and index[w] < low[v]:
                    low[v] = index[w]
            if pushed:
                continue
            work.pop()
            if work:
                u = work[-1][0]
                if low[v] < low[u]:
                    low[u] = low[v]
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop()
                    on.discard(w)
                    comp.append(w)
                    if w == v:
                        break
                comp.sort()
                out.append(comp)
    return out


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


