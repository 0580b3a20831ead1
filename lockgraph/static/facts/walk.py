"""Per-function walk: the held-lock set through the statement structure.

Follows docs/kernel-facts.md §1: scope-based release at block end (`guard`), `scoped_guard`
bodies, goto unwinding (held sets flow to their label), early returns, conditional
acquisition (`if (mutex_trylock(&m))`, `if (!mutex_lock_interruptible(&m))`), memalloc
scopes.  Held sets are "may be held" sets: at a join, the union of the paths that reach it.
The walk records events with the held set at each; lock *class names* are resolved later,
by the solver (`static/resolution.py`, `Resolver`), when every file's init sites are known.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from itertools import product
from math import prod

from lockgraph.static.facts.config import Config
from lockgraph.static.facts.cparse import atom_text, split_args, split_top
from lockgraph.static.facts.kb import (ALLOCS, BLOCKING_KINDS, BUILTIN_GUARDS, CALL_ALIASES,
                                        FAULTING, INIT_PRIMS, LOCKDEP_OFF, NOFAULT, PRIMITIVES, SCOPES, SLEEPING_CALLS,
                                        NORETURN, TERMINAL, Prim,
                                        base_name)

_LOCKEXPR = re.compile(r"^&?\s*\(?\s*\*?(?P<root>[A-Za-z_]\w*)\s*\)?(?P<path>(?:\s*(?:->|\.)\s*\w+|\s*\[[^\]]*\])*)$")
_PERCPU = re.compile(r"^&?\s*(?:per_cpu_ptr|this_cpu_ptr|raw_cpu_ptr|per_cpu)\s*\(\s*&?\s*(?P<root>\w+)\s*[,)]")


@dataclass(frozen=True, slots=True)
class LockExpr:
    """A lock as written at a site, with what is needed to name its class later."""

    text: str
    root: str = ""
    path: str = ""        # field path, "a.b", "" for the root itself
    percpu: bool = False  # per_cpu_ptr(&x, cpu) and friends: the static per-CPU lock x
    fixed: str = ""       # primitives with a fixed class (rtnl_lock(): rtnl_mutex)

    @staticmethod
    def parse(text: str) -> "LockExpr":
        m = _PERCPU.match(text)
        if m:
            return LockExpr(text, m.group("root"), "", True)
        m = _LOCKEXPR.match(text)
        if m:
            path = re.sub(r"\s*\[[^\]]*\]", "", m.group("path"))
            path = re.sub(r"\s*(->|\.)\s*", ".", path).strip(".")
            return LockExpr(text, m.group("root"), path)
        return LockExpr(text)


@dataclass(frozen=True, slots=True)
class Held:
    lock: LockExpr
    kind: str
    mode: str
    try_: bool
    line: int
    subclass: int = 0
    guard: int = 0      # guard frame id (0 = released explicitly)
    cond: str = ""      # held only when this branch condition holds ("" = on every path)
    restores: bool = False  # re-taking a caller's lock this function had dropped
    irq: bool = False       # taken with interrupts disabled (_irq/_irqsave forms)


@dataclass(slots=True)
class Acq:
    lock: LockExpr
    kind: str
    mode: str
    line: int
    held: tuple[Held, ...]
    try_: bool
    subclass: int = 0
    scopes: frozenset[str] = frozenset()
    dropped: frozenset[str] = frozenset()
    irq: bool = False       # taken with interrupts disabled (_irq/_irqsave forms)
    gates: frozenset[str] = frozenset()   # see _State.gates


@dataclass(slots=True)
class Alloc:
    api: str
    gfp: str            # gfp expression text ("" = implicit GFP_KERNEL)
    line: int
    held: tuple[Held, ...]
    scopes: frozenset[str]
    dropped: frozenset[str] = frozenset()
    target: str = ""    # first argument (the cache of kmem_cache_alloc)
    gates: frozenset[str] = frozenset()


@dataclass(slots=True)
class Call:
    name: str
    member: bool
    line: int
    held: tuple[Held, ...]
    scopes: frozenset[str]
    args: list[str]
    base: str = ""      # for member calls: the object expression (`ops` in ops->free())
    dropped: frozenset[str] = frozenset()
    gates: frozenset[str] = frozenset()
    must: frozenset[str] = frozenset()    # caller locks released on every path (_State.must)


@dataclass(slots=True)
class FuncFacts:
    name: str
    file: str
    line: int
    static: bool
    params: list[tuple[str, str]]          # (type text, name)
    locals: dict[str, str] = field(default_factory=dict)  # name -> type
    aliases: dict[str, str] = field(default_factory=dict)  # local = expr text
    acqs: list[Acq] = field(default_factory=list)
    allocs: list[Alloc] = field(default_factory=list)
    calls: list[Call] = field(default_factory=list)
    asserted: list[tuple[LockExpr, int]] = field(default_factory=list)
    inits: list[tuple[str, LockExpr, str, int]] = field(default_factory=list)  # (prim, lock, name text, line)
    assigns: list[tuple[str, str, str, int]] = field(default_factory=list)  # (base, member, value, line)
    exit_held: list[Held] = field(default_factory=list)
    released_unheld: list[tuple[LockExpr, int]] = field(default_factory=list)
    releases: list[LockExpr] = field(default_factory=list)  # caller locks dropped on every path
    holds: list[Held] = field(default_factory=list)         # locks held at every return
    sleeps: list[tuple[str, int]] = field(default_factory=list)
    structure: str = "parsed"
    annotations: tuple[str, ...] = ()


_NAME = re.compile(r"[A-Za-z_]\w*$")


def _chain(atoms: list[tuple], dot: int) -> str:
    """The object expression before the `->`/`.` at atoms[dot], as a member chain
    (`dev->netdev_ops` in `dev->netdev_ops->ndo_open()`): the solver types each step.
    "" when the object is no plain chain of names (a call, a cast, an index)."""
    if dot < 1 or atoms[dot][0] != "tok" or atoms[dot][1] not in ("->", "."):
        return ""
    parts: list[str] = []
    k = dot - 1
    while k >= 0 and atoms[k][0] == "tok" and _NAME.match(atoms[k][1]):
        parts.append(atoms[k][1])
        if k >= 2 and atoms[k - 1][0] == "tok" and atoms[k - 1][1] in ("->", "."):
            parts.append(atoms[k - 1][1])
            k -= 2
            continue
        break
    if not parts or not _NAME.match(parts[-1]):
        return ""
    return "".join(reversed(parts))


#: A gfp variable's values reaching a point: one text per way it may have been set.
GfpValues = tuple[tuple[str, tuple[str, ...]], ...]


class _State:
    """Held locks, memalloc scopes, and caller locks this function has released so far.

    `gates`: the tests of "may this task block" every path here passed — a gfp expression
    that gfpflags_allow_blocking() (or `& __GFP_DIRECT_RECLAIM`) found true, or PREEMPTIBLE
    for preemptible()/!in_atomic().  A sleep behind `if (gfpflags_allow_blocking(gfp))`
    happens only for callers whose gfp may block, never under a spinning lock.

    `gfp`: the values the reassigned gfp variables (Walker.tracked) may have here, sorted by
    name; a local not yet assigned on any path is absent."""

    __slots__ = ("held", "scopes", "dropped", "gates", "gfp", "must")

    def __init__(self, held: tuple[Held, ...] = (), scopes: tuple[tuple[str, int], ...] = (),
                 dropped: frozenset[str] = frozenset(), gates: frozenset[str] = frozenset(),
                 gfp: GfpValues = (), must: frozenset[str] = frozenset()):
        self.held = held
        self.scopes = scopes
        self.dropped = dropped
        self.gates = gates
        self.gfp = gfp
        #: caller locks released on *every* path so far (`dropped` is on some path): what
        #: the function's callers may stop holding after the call (FuncFacts.releases)
        self.must = must

    def copy(self) -> "_State":
        return _State(self.held, self.scopes, self.dropped, self.gates, self.gfp, self.must)

    def with_held(self, held: tuple[Held, ...]) -> "_State":
        return _State(held, self.scopes, self.dropped, self.gates, self.gfp, self.must)

    def with_gates(self, gates: frozenset[str]) -> "_State":
        return _State(self.held, self.scopes, self.dropped, self.gates | gates, self.gfp,
                      self.must) if gates else self

    def with_gfp(self, var: str, values: tuple[str, ...]) -> "_State":
        d = dict(self.gfp)
        d[var] = values
        return _State(self.held, self.scopes, self.dropped, self.gates, tuple(sorted(d.items())),
                      self.must)

    def scope_set(self) -> frozenset[str]:
        return frozenset(k for k, v in self.scopes if v > 0)


def _lockdep_off(st: _State) -> bool:
    """lockdep records nothing here (kb.SCOPES: lockdep_off, debug_locks_off)."""
    return bool(st.scopes) and LOCKDEP_OFF in st.scope_set()


def _join(a: _State | None, b: _State | None, cond: str = "") -> _State | None:
    """Merge two paths; a lock held on only one side becomes conditional on `cond`."""
    if a is None:
        return b.copy() if b else None
    if b is None:
        return a
    kb = {(h.lock.text, h.guard) for h in b.held}
    ka = {(h.lock.text, h.guard) for h in a.held}
    held = []
    for h in a.held:
        if (h.lock.text, h.guard) not in kb and cond and not h.cond:
            h = Held(h.lock, h.kind, h.mode, h.try_, h.line, h.subclass, h.guard, cond, h.restores,
                     h.irq)
        held.append(h)
    for h in b.held:
        if (h.lock.text, h.guard) not in ka:
            if cond and not h.cond:
                h = Held(h.lock, h.kind, h.mode, h.try_, h.line, h.subclass, h.guard, "!" + cond,
                         h.restores, h.irq)
            held.append(h)
    sa, sb = dict(a.scopes), dict(b.scopes)
    # a memalloc scope holds where some path opened it (it only removes reclaim); a user
    # access is faultless only where every path disabled page faults (`if (atomic)
    # pagefault_disable();` leaves the other path faulting)
    scopes = tuple(sorted((k, (min if k == NOFAULT else max)(sa.get(k, 0), sb.get(k, 0)))
                          for k in set(sa) | set(sb)))
    return _State(tuple(held), scopes, a.dropped | b.dropped, a.gates & b.gates,
                  _join_gfp(a.gfp, b.gfp) if a.gfp != b.gfp else a.gfp, a.must & b.must)


def _join_gfp(a: GfpValues, b: GfpValues) -> GfpValues:
    """May-values at a join: a variable has any value it may have on either side."""
    da, db = dict(a), dict(b)
    return tuple(sorted((v, _union(da.get(v, ()), db.get(v, ()))) for v in set(da) | set(db)))


#: Values kept per gfp variable; past this (a mask re-applied through nested loops, say)
#: the variable stands for itself again, evaluated as before flow tracking (the caller's
#: gfp for a parameter, the first assignment for a local).
MAX_GFP_VALUES = 8


def _union(a: tuple[str, ...], b: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(sorted(set(a) | set(b)))


def _assume(st: _State, cond: str) -> _State:
    """Enter a branch: locks conditional on `cond` are held, those on its negation are not."""
    neg = cond[1:] if cond.startswith("!") else "!" + cond
    if not any(h.cond for h in st.held):
        return st
    held = tuple(Held(h.lock, h.kind, h.mode, h.try_, h.line, h.subclass, h.guard, "", h.restores,
                      h.irq) if h.cond == cond else h for h in st.held if h.cond != neg)
    return st.with_held(held)


def cond_key(atoms: list[tuple]) -> str:
    return atom_text(atoms).replace(" ", "")


#: Gates of tests that name no gfp: only a preemptible task passes (preemptible(),
#: !in_atomic()); interrupts are enabled (!irqs_disabled()) — not enough under a plain
#: spin_lock(), enough under spin_lock_irqsave(); a flag parameter is true / false.
PREEMPTIBLE = "@preemptible"
IRQS_ON = "@irqs_on"
ARG_TRUE = "@arg:"
ARG_FALSE = "@!arg:"
#: Not a test: every path here has already done what atomic context forbids (a blocking
#: lock, a kb.SLEEPING_CALLS call).  Gates meet by intersection at joins, so it marks a
#: must-sleep prefix; a caller's spinning lock gets no edge from what follows it
#: (summaries.atop).
SLEPT = "@slept"
_SLEPT = frozenset({SLEPT})
#: Words whose presence in a body makes its statement structure matter for sleep gates.
GATE_WORDS = ("gfpflags_allow_blocking", "__GFP_DIRECT_RECLAIM", "preemptible", "in_atomic",
              "irqs_disabled")
_ALLOW_BLOCKING = re.compile(r"^gfpflags_allow_blocking\((.+)\)$")
_DIRECT_BIT = re.compile(r"^(.+)&__GFP_DIRECT_RECLAIM$|^__GFP_DIRECT_RECLAIM&(.+)$")
_IDENT_ONLY = re.compile(r"[A-Za-z_]\w*")


def _unwrap(t: str) -> tuple[str, bool]:
    """Leading negations and enclosing parentheses off: (inner text, negated)."""
    neg = False
    while True:
        if t.startswith("!"):
            neg, t = not neg, t[1:]
        elif t.startswith("(") and _closes_at_end(t):
            t = t[1:-1]
        else:
            return t, neg


def _closes_at_end(t: str) -> bool:
    """The parenthesis opening t closes at its last character."""
    depth = 0
    for k, c in enumerate(t):
        depth += c == "("
        depth -= c == ")"
        if depth == 0:
            return k == len(t) - 1
    return False


def split_op(t: str, op: str) -> list[str]:
    """t split at a binary `&&` or `||` outside parentheses."""
    out, depth, start, k = [], 0, 0, 0
    while k < len(t):
        c = t[k]
        if c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
        elif depth == 0 and t.startswith(op, k):
            out.append(t[start:k])
            start = k = k + 2
            continue
        k += 1
    out.append(t[start:])
    return out


def blocking_gate(text: str, aliases: dict[str, str], params: frozenset[str] = frozenset(),
                  depth: int = 0) -> tuple[str, bool] | None:
    """(gate, when): `text` tests whether the task may block, and the gate holds where the
    test's value is `when`.  Follows a local flag (`is_atomic = !gfpflags_allow_blocking(gfp)`);
    a parameter tested as a flag is gate ARG_TRUE + its name."""
    t, neg = _unwrap(text.replace(" ", ""))
    if len(split_op(t, "&&")) > 1 or len(split_op(t, "||")) > 1:
        return None  # a compound test: branch_gates looks at its parts
    if t == "preemptible()":
        return PREEMPTIBLE, not neg
    if t == "in_atomic()":
        return PREEMPTIBLE, neg
    if t == "irqs_disabled()":
        return IRQS_ON, neg
    m = _ALLOW_BLOCKING.match(t)
    if m:
        return m.group(1), not neg
    m = _DIRECT_BIT.match(t)
    if m:
        return _unwrap(m.group(1) or m.group(2))[0], not neg
    if _IDENT_ONLY.fullmatch(t):
        if depth < 3 and t in aliases:
            g = blocking_gate(aliases[t], aliases, params, depth + 1)
            if g is not None:
                return g[0], g[1] != neg
        elif t in params:
            return ARG_TRUE + t, not neg
    return None


def _on(gate: tuple[str, bool], value: bool) -> str | None:
    """The gate that holds where the tested expression has `value`."""
    g, when = gate
    if g.startswith(ARG_TRUE):
        return g if when == value else ARG_FALSE + g[len(ARG_TRUE):]
    return g if when == value else None


def branch_gates(text: str, aliases: dict[str, str],
                 params: frozenset[str] = frozenset()) -> tuple[frozenset[str], frozenset[str]]:
    """Gates of an `if`'s true and false branch: the whole test, or the conjuncts of a
    top-level `&&` (true branch) / the disjuncts of a `||` (false branch)."""
    whole = blocking_gate(text, aliases, params)
    if whole is not None:
        return (frozenset(filter(None, [_on(whole, True)])),
                frozenset(filter(None, [_on(whole, False)])))
    t = text.replace(" ", "")
    on_true = {_on(g, True) for g in filter(None, (blocking_gate(x, aliases, params)
                                                   for x in split_op(t, "&&")))} if "&&" in t else set()
    on_false = {_on(g, False) for g in filter(None, (blocking_gate(x, aliases, params)
                                                     for x in split_op(t, "||")))} if "||" in t else set()
    return frozenset(on_true - {None}), frozenset(on_false - {None})


_DECL = re.compile(r"\b(struct\s+\w+|\w+)(\s*\*+\s*|\s+)(?:const\s+)?(\w+)\s*(?:\[[^\]]*\])?\s*$")


#: `void (*release)(struct kref *)`: a function-pointer parameter or local, named `release`.
_FNPTR = re.compile(r"\(\s*\*\s*(?:const\s+)?(\w+)\s*\)\s*\(")
FNPTR = "fnptr"


def parse_params(params: str) -> list[tuple[str, str]]:
    out = []
    for p in split_top(params):
        p = re.sub(r"\b(const|volatile|__percpu|__user|__rcu|__iomem|__force|__maybe_unused|restrict)\b", " ", p)
        fp = _FNPTR.search(p)
        if fp:
            out.append((FNPTR, fp.group(1)))
            continue
        m = _DECL.search(p.strip())
        if m and m.group(3) not in ("void",):
            typ = " ".join(m.group(1).split())
            out.append((typ + m.group(2).strip(), m.group(3)))
        else:
            out.append(("", ""))
    return out


#: A declaration starts after a line end or one of `;{}` (local_types searches "\n" + body,
#: so the body's start counts too): a leading character class lets `re` skip to the
#: candidates in C, where `^|[;{}]` tried every offset.
_LOCAL_DECL = re.compile(r"[;{}\n][ \t\n]*(?:(?:static|const)[ \t]+)*(struct[ \t]+\w+|\w+_t)\b([^;{}]*);")
#: `void (*fn)(void *);` / `int (*g)(int) = h;` (the `;`/`=` is not consumed: the next
#: declaration starts at it).
_FNPTR_LOCAL = re.compile(r"[;{}\n]\s*(?:(?:static|const|struct|enum|unsigned)\s+)*\w+[\s*]*"
                          r"\(\s*\*\s*(?:const\s+)?(\w+)\s*\)\s*\([^;{}]*\)\s*(?=[;=])")


def local_types(body: str) -> dict[str, str]:
    """Types of local variables declared in a body (struct and *_t types only), and the
    names of function-pointer locals (a call through one is indirect, not to a function
    of that name)."""
    out: dict[str, str] = {}
    if "(*" in body:
        for m in _FNPTR_LOCAL.finditer("\n" + body):
            out.setdefault(m.group(1), FNPTR)
    for m in _LOCAL_DECL.finditer("\n" + body):
        typ = " ".join(m.group(1).split())
        for p in split_top(m.group(2)):
            nm = re.match(r"\s*(\*?)\s*(?:const\s+)?(\w+)\s*(?:\[[^\]]*\])?\s*(?:=|$)", p)
            if nm:
                out.setdefault(nm.group(2), typ + nm.group(1))
    return out


#: `gfp = …`, `gfp &= …`, `gfp |= …` on a variable, not on a struct member.
_GFP_ASSIGN = re.compile(r"(?<![.>\w])([A-Za-z_]\w*)\s*[&|]?=(?!=)")


def reassigned_gfp(body: str, params: list[tuple[str, str]], local: dict[str, str]) -> frozenset[str]:
    """The gfp variables whose value a body changes: a gfp parameter assigned at all, a
    gfp_t local assigned more than once (one initialisation is what `aliases` records
    anyway).  Their uses are evaluated with the values reaching each point (Walker.tracked),
    so `flags &= ~__GFP_DIRECT_RECLAIM` before a call makes that call's gfp non-reclaiming
    and one after it does not; these bodies need their statement structure."""
    par = {n for t, n in params if n and "gfp" in t}
    names = par | {n for n, t in local.items() if t == "gfp_t"}
    if not names:
        return frozenset()
    count: dict[str, int] = {}
    for n in _GFP_ASSIGN.findall(body):
        if n in names:
            count[n] = count.get(n, 0) + 1
    return frozenset(n for n, k in count.items() if k > (n not in par))


def _wrap(t: str) -> str:
    """t as an operand: parenthesised unless it is one already (a name, a parenthesised
    expression, either complemented)."""
    u = t[1:] if t.startswith("~") else t
    if _IDENT_ONLY.fullmatch(u) or (u.startswith("(") and _closes_at_end(u)):
        return t
    return f"({t})"


def _values(text: str, gfp: GfpValues) -> tuple[str, ...] | None:
    """The texts `text` may stand for: every tracked variable in it replaced, all at once,
    by each value it may have (one text per combination).  At once: a value that names a
    parameter means the caller's gfp, not the parameter's value here.  None past
    MAX_GFP_VALUES combinations."""
    d = dict(gfp)
    pat = re.compile(r"(?<![.>\w])(" + "|".join(d) + r")\b")
    names = sorted(set(pat.findall(text))) if d else []
    if not names:
        return (text,)
    if pat.fullmatch(text):
        return d[text]
    if prod(len(d[n]) for n in names) > MAX_GFP_VALUES:
        return None
    out = set()
    for combo in product(*(d[n] for n in names)):
        pick = dict(zip(names, combo))
        out.add(pat.sub(lambda m: _wrap(pick[m.group(1)]), text))
    return tuple(sorted(out))


def effective_gfp(text: str, gfp: GfpValues) -> str:
    """An argument as evaluated at this point: the alternatives it may be, joined by `||`
    (static/gfp.py evaluates each; no gfp expression of the kernel contains `||`).  Past
    MAX_GFP_VALUES the text as written."""
    vals = _values(text, gfp) if gfp else None
    return " || ".join(vals) if vals else text


def _assigns(atoms: list[tuple], tracked: frozenset[str]) -> list[tuple[str, str, str]]:
    """Assignments to tracked variables at the top level of an expression, in order:
    (variable, "" | "&" | "|", right-hand side up to the next top-level `,` or `;`)."""
    out = []
    for k, a in enumerate(atoms):
        if a[0] != "tok" or a[1] != "=" or k == 0:
            continue
        op, j = "", k - 1
        if atoms[j][0] == "tok" and atoms[j][1] in ("&", "|"):
            op, j = atoms[j][1], j - 1
        if j < 0 or atoms[j][0] != "tok" or atoms[j][1] not in tracked or (
                j > 0 and atoms[j - 1][0] == "tok" and atoms[j - 1][1] in ("->", ".")):
            continue
        end = next((m for m in range(k + 1, len(atoms))
                    if atoms[m][0] == "tok" and atoms[m][1] in (",", ";")), len(atoms))
        out.append((atoms[j][1], op, atom_text(atoms[k + 1:end])))
    return out


def _stmt_items(s: tuple | None, tracked: frozenset[str]):
    """Labels, gotos and tracked assignments of a statement, in source order."""
    if s is None:
        return
    kind = s[0]
    if kind in ("label", "goto"):
        yield kind, s[1]
    elif kind in ("expr", "return"):
        yield from _atom_items(s[1], tracked)
    elif kind == "block":
        for x in s[1]:
            yield from _stmt_items(x, tracked)
    elif kind == "if":
        yield from _atom_items(s[1], tracked)
        yield from _stmt_items(s[2], tracked)
        yield from _stmt_items(s[3], tracked)
    elif kind == "loop":
        yield from _atom_items(s[2], tracked)
        yield from _stmt_items(s[3], tracked)
    elif kind == "switch":
        yield from _atom_items(s[1], tracked)
        yield from _stmt_items(s[2], tracked)


def _atom_items(atoms: list[tuple], tracked: frozenset[str]):
    for var, op, rhs in _assigns(atoms, tracked):
        yield "assign", (var, op, rhs)
    for a in atoms:
        if a[0] == "call":
            for arg in a[2]:
                yield from _atom_items(arg, tracked)
        elif a[0] == "group":
            yield from _atom_items(a[1], tracked)
        elif a[0] == "block_expr":
            for x in a[1]:
                yield from _stmt_items(x, tracked)


def _back_regions(stmts: Sequence[tuple], tracked: frozenset[str]) -> dict[str, list]:
    """label -> the tracked assignments between it and the last `goto` back to it."""
    items = [it for s in stmts for it in _stmt_items(s, tracked)]
    out: dict[str, list] = {}
    for i, (kind, x) in enumerate(items):
        if kind != "label":
            continue
        last = max((j for j in range(i + 1, len(items)) if items[j] == ("goto", x)), default=-1)
        region = [a for k, a in items[i + 1:last] if k == "assign"]
        if region:
            out[x] = region
    return out


@dataclass(frozen=True, slots=True)
class ScanContext:
    """What one scan knows besides a file's text: the .config and the guard types of the
    tree (the headers' built-in ones plus the tree's own DEFINE_GUARDs).  Passed down, not
    kept in a module table, so two scans in one process (review's base and head) never see
    each other's guards."""

    config: Config | None = None
    guards: Mapping[str, str] = field(default_factory=lambda: BUILTIN_GUARDS)


class Walker:
    """`tracked`: the gfp variables the body reassigns (reassigned_gfp); an event's gfp
    argument naming one is recorded as the values it may have there (effective_gfp).
    Empty for a body walked without its structure (flat_atoms, the call-list front end):
    without branches, a mask would apply to paths that never pass it."""

    def __init__(self, facts: FuncFacts, ctx: ScanContext, stmts: Sequence[tuple] = (),
                 tracked: frozenset[str] = frozenset(), effects: LockEffects | None = None) -> None:
        self.f = facts
        self.effects = effects or {}
        self.exit_must: frozenset[str] | None = None   # must-released at every exit so far
        self.exit_holds: dict[str, Held] | None = None  # held at every exit so far
        self.wrapped = False    # a lock-taking callee was called (see call())
        self.unlocked = False   # an unlocking callee was called (see call())
        self.guards = ctx.guards
        self.gotos: dict[str, _State] = {}
        self.breaks: list[list[_State]] = []
        self.guard_frames: list[int] = []
        self.next_guard = 1
        self.dropped_ever: set[str] = set()   # caller locks this function releases
        self.params = frozenset(n for _, n in facts.params if n)
        self.tracked = tracked
        self.back = _back_regions(stmts, tracked) if tracked else {}

    # -- statements -------------------------------------------------------------
    def stmts(self, stmts: list[tuple], st: _State | None) -> _State | None:
        for s in stmts:
            st = self.stmt(s, st)
        return st

    def stmt(self, s: tuple, st: _State | None) -> _State | None:
        kind = s[0]
        if kind == "label":
            st = _join(st, self.gotos.get(s[1]))
            return self.widen(st, self.back[s[1]]) if s[1] in self.back and st else st
        if st is None:
            if kind in ("block",):
                # a label inside a dead block can revive it
                return self.block(s, None)
            return None
        if kind == "expr":
            st = self.expr(s[1], st)
            if st is not None and _noreturn(s[1]):
                return None   # BUG(), panic(), do_exit(): the path ends here
            return st
        if kind == "block":
            return self.block(s, st)
        if kind == "if":
            return self.if_(s, st)
        if kind == "loop":
            return self.loop(s, st)
        if kind == "switch":
            return self.switch(s, st)
        if kind == "return":
            st = self.expr(s[1], st)
            if st is not None:
                self.exit(st)
            return None
        if kind == "goto":
            self.gotos[s[1]] = _join(self.gotos.get(s[1]), self.release_guards_all(st))  # type: ignore[assignment]
            return None
        if kind == "break":
            if self.breaks:
                self.breaks[-1].append(st)
            return None
        if kind == "continue":
            return None
        if kind == "case":
            return st
        return st

    def exit(self, st: _State) -> None:
        """A path leaves the function: what it still holds, what it surely released."""
        self.f.exit_held.extend(h for h in st.held
                                if h.guard == 0 and not h.cond and not h.restores
                                and h not in self.f.exit_held)
        self.exit_must = st.must if self.exit_must is None else self.exit_must & st.must
        holds = {h.lock.text: h for h in st.held
                 if h.guard == 0 and not h.cond and not h.restores and not h.try_}
        self.exit_holds = holds if self.exit_holds is None else {
            t: h for t, h in self.exit_holds.items() if t in holds}

    def block(self, s: tuple, st: _State | None) -> _State | None:
        gid = self.next_guard
        self.next_guard += 1
        self.guard_frames.append(gid)
        st = self.stmts(s[1], st)
        self.guard_frames.pop()
        if st is not None:
            st = st.with_held(tuple(h for h in st.held if h.guard != gid))
        return st

    def release_guards_all(self, st: _State) -> _State:
        """Leaving by goto runs the destructors of guards in the blocks being left."""
        inner = set(self.guard_frames)
        return st.with_held(tuple(h for h in st.held if h.guard not in inner or h.guard == 0))

    def if_(self, s: tuple, st: _State) -> _State | None:
        _, cond, then, els, line = s
        on_true, on_false, rest = self._conditional(cond)
        st = self.expr(rest, st) or st
        key = cond_key(cond) if not (on_true or on_false) else ""
        t_state = _assume(st, key) if key else st.copy()
        f_state = _assume(st, "!" + key) if key else st.copy()
        g_true, g_false = branch_gates(key or cond_key(cond), self.f.aliases, self.params)
        if st.gfp:
            g_true, g_false = (frozenset(g if g.startswith("@") else effective_gfp(g, st.gfp)
                                         for g in gs) for gs in (g_true, g_false))
        t_state, f_state = t_state.with_gates(g_true), f_state.with_gates(g_false)
        for call, prim in on_true:
            t_state = self.acquire(call, prim, t_state)
        for call, prim in on_false:
            f_state = self.acquire(call, prim, f_state)
        t_end = self.stmt(then, t_state)
        f_end = self.stmt(els, f_state) if els is not None else f_state
        if key.startswith("!"):
            return _join(f_end, t_end, key[1:])
        return _join(t_end, f_end, key)

    def _conditional(self, cond: list[tuple]) -> tuple[list, list, list]:
        """Split a condition's try-acquisitions by the branch in which the lock is held."""
        on_true: list = []
        on_false: list = []
        rest: list[tuple] = []
        negate = False
        for a in cond:
            if a[0] == "tok" and a[1] == "!":
                negate = not negate
                continue
            if a[0] == "group" and len(a[1]) == 1 and a[1][0][0] == "call":
                a = a[1][0]
            if a[0] == "call":
                prim = PRIMITIVES.get(a[1])
                if prim and prim.op in ("try", "try0", "cond"):
                    held_when_true = (prim.op != "try0") != negate
                    (on_true if held_when_true else on_false).append((a, prim))
                    negate = False
                    continue
            negate = False
            rest.append(a)
        return on_true, on_false, rest

    def loop(self, s: tuple, st: _State) -> _State | None:
        _, kind, head, body, line = s
        name = kind[6:] if kind.startswith("macro:") else ""
        if name in ("scoped_guard", "scoped_cond_guard"):
            return self.scoped_guard(name, head, body, st, line)
        if self.tracked:
            st = self.widen(st, [x for k, x in _stmt_items(s, self.tracked) if k == "assign"])
        st = self.expr(head, st) or st
        self.breaks.append([])
        end = self.stmt(body, st.copy())
        exits = self.breaks.pop()
        out: _State | None = _join(st, end)
        for e in exits:
            out = _join(out, e)
        return out

    def scoped_guard(self, name: str, head: list[tuple], body: tuple, st: _State, line: int):
        args = split_args(head)
        if not args:
            return self.stmt(body, st)
        gtype = atom_text(args[0])
        lock_args = args[2:] if name == "scoped_cond_guard" else args[1:]
        prim_name = self.guards.get(gtype)
        gid = self.next_guard
        self.next_guard += 1
        inner = st.copy()
        if prim_name and lock_args:
            prim = PRIMITIVES[prim_name]
            fake = ("call", prim_name, lock_args, line, False)
            inner = self.acquire(fake, prim, inner, guard=gid)
        self.breaks.append([])
        self.guard_frames.append(gid)
        end = self.stmt(body, inner)
        self.guard_frames.pop()
        exits = self.breaks.pop()
        out = end
        for e in exits:
            out = _join(out, e)
        if out is not None:
            out = out.with_held(tuple(h for h in out.held if h.guard != gid))
        if name == "scoped_cond_guard":
            out = _join(out, st)
        return out

    def switch(self, s: tuple, st: _State) -> _State | None:
        _, head, body, line = s
        st = self.expr(head, st) or st
        self.breaks.append([])
        entry = st.copy()
        stmts = body[1] if body[0] == "block" else [body]
        cur: _State | None = st.copy()
        has_default = False
        for x in stmts:
            if x[0] == "case":
                has_default = has_default or (len(x) > 2 and x[2])
                cur = _join(cur, entry)
                continue
            cur = self.stmt(x, cur)
        exits = self.breaks.pop()
        out = cur
        for e in exits:
            out = _join(out, e)
        if not has_default:
            out = _join(out, entry)
        return out

    # -- expressions ----------------------------------------------------------
    def expr(self, atoms: list[tuple], st: _State | None) -> _State | None:
        if st is None:
            return None
        self._track_assign(atoms)
        before = st
        i = 0
        n = len(atoms)
        while i < n:
            a = atoms[i]
            if a[0] == "call":
                # arguments are evaluated before the call
                for arg in a[2]:
                    st = self.expr(arg, st) or st
                if a[1] == "guard" and i + 1 < n and atoms[i + 1][0] == "group":
                    st = self.guard(a, atoms[i + 1], st)
                    i += 2
                    continue
                base = _chain(atoms, i - 1) if a[4] else ""
                st = self.call(a, st, base)
            elif a[0] == "group":
                st = self.expr(a[1], st) or st
            elif a[0] == "block_expr":
                st = self.stmts(a[1], st) or st
            i += 1
        if self.tracked and st is not None:
            for var, op, rhs in _assigns(atoms, self.tracked):
                st = st.with_gfp(var, self.assigned(var, op, rhs, before))
        return st

    def assigned(self, var: str, op: str, rhs: str, st: _State) -> tuple[str, ...]:
        """The values var may have after `var op= rhs`, evaluated where the right-hand side
        is (`st`: before the expression's calls ran)."""
        text = rhs if not op else f"{var} {op} {_wrap(rhs)}"
        return _values(text, st.gfp) or (var,)

    def widen(self, st: _State, assigns: list[tuple[str, str, str]]) -> _State:
        """Entering a loop, or a label a later goto jumps back to: a value given further on
        may reach here too (`gfp_temp = gfp_mask; goto repeat_alloc;` in mempool_alloc).
        Two rounds, so a value built from another reassigned variable sees its widening."""
        for _ in range(2):
            for var, op, rhs in assigns:
                cur = dict(st.gfp).get(var, ())
                vals = _union(cur, self.assigned(var, op, rhs, st))
                st = st.with_gfp(var, vals if len(vals) <= MAX_GFP_VALUES else (var,))
        return st

    def _track_assign(self, atoms: list[tuple]) -> None:
        for k, a in enumerate(atoms):
            if a[0] == "tok" and a[1] == "=" and k > 0 and atoms[k - 1][0] == "tok":
                lhs = atoms[k - 1][1]
                rhs = atoms[k + 1:]
                text = atom_text(rhs)
                if k >= 3 and atoms[k - 2][0] == "tok" and atoms[k - 2][1] in ("->", "."):
                    base = _chain(atoms, k - 2)
                    if rhs and rhs[-1][0] == "tok" and (
                            len(rhs) == 1 or (len(rhs) == 2 and rhs[0][0] == "tok" and rhs[0][1] == "&")):
                        self.f.assigns.append((base, lhs, rhs[-1][1], rhs[-1][2]))
                elif re.match(r"^[A-Za-z_]\w*$", lhs):
                    self.f.aliases.setdefault(lhs, text)
                break

    def guard(self, call: tuple, group: tuple, st: _State) -> _State:
        gtype = atom_text(call[2][0]) if call[2] else ""
        prim_name = self.guards.get(gtype)
        if not prim_name:
            return st
        prim = PRIMITIVES[prim_name]
        args = split_args(group[1])
        fake = ("call", prim_name, args, call[3], False)
        gid = self.guard_frames[-1] if self.guard_frames else -1
        return self.acquire(fake, prim, st, guard=gid)

    def call(self, a: tuple, st: _State, base: str) -> _State:
        name = a[1]
        bname = base_name(name)
        prim = PRIMITIVES.get(name)
        f = self.f
        if prim is not None:
            if prim.op in ("acquire", "try", "try0", "cond"):
                return self.acquire(a, prim, st)
            if prim.op == "release":
                return self.release(a, prim, st)
            if prim.op == "assert":
                lk = self.lock_of(a, prim)
                if lk is not None:
                    f.asserted.append((lk, a[3]))
                return st
            if prim.op == "might":
                if not (name in FAULTING and NOFAULT in st.scope_set()):
                    self.acquire(a, prim, st)
                return st
            return st
        if name in SCOPES:
            scope, delta = SCOPES[name]
            d = dict(st.scopes)
            d[scope] = d.get(scope, 0) + delta
            if scope == NOFAULT and d[scope] < 0:   # an enable a min-join left unmatched
                d[scope] = 0
            return _State(st.held, tuple(sorted(d.items())), st.dropped, st.gates, st.gfp, st.must)
        if name in TERMINAL or _lockdep_off(st):
            return st
        if bname in CALL_ALIASES:
            target, mapping = CALL_ALIASES[bname]
            args = [effective_gfp(atom_text(a[2][m]), st.gfp) if isinstance(m, int) and m < len(a[2])
                    else str(m) for m in mapping]
            f.calls.append(Call(target, False, a[3], st.held, st.scope_set(), args, "",
                                st.dropped, st.gates, st.must))
        if bname in ALLOCS:
            idx = ALLOCS[bname]
            gfp = effective_gfp(atom_text(a[2][idx]), st.gfp) if idx is not None and idx < len(a[2]) else ""
            f.allocs.append(Alloc(bname, gfp, a[3], st.held, st.scope_set(), st.dropped,
                                  atom_text(a[2][0]) if a[2] else "", st.gates))
            return st
        if bname in CALL_ALIASES:
            return st
        if name in INIT_PRIMS and INIT_PRIMS[name] < len(a[2]):
            text = atom_text(a[2][INIT_PRIMS[name]])
            f.inits.append((name, LockExpr.parse(text), text, a[3]))
            return st
        if name in ("lockdep_set_class", "lockdep_set_class_and_subclass") and len(a[2]) >= 2:
            f.inits.append((name, LockExpr.parse(atom_text(a[2][0])), atom_text(a[2][1]), a[3]))
            return st
        args = [effective_gfp(atom_text(x), st.gfp) for x in a[2]]
        f.calls.append(Call(name, bool(a[4]), a[3], st.held, st.scope_set(), args, base,
                            st.dropped, st.gates, st.must))
        if name in SLEEPING_CALLS:
            f.sleeps.append((name, a[3]))
            st = st.with_gates(_SLEPT)
        if not a[4] and name in self.effects:
            return self.callee_effects(name, args, a[3], st)
        if _RELOCKS.search(name) and "unlock" not in name:
            # lock_timer(), task_rq_lock(), console_list_lock(): a callee that returns
            # holding a lock is not followed by the walker, so a release after it may pair
            # with it, and one before it may be re-taken: from here nothing counts as
            # surely released for the callers
            self.wrapped = True
            if st.must:
                return _State(st.held, st.scopes, st.dropped, st.gates, st.gfp)
        elif "unlock" in name:
            self.unlocked = True   # an unlock helper not followed: nothing surely held at exit
        return st

    def lock_of(self, a: tuple, prim: Prim) -> LockExpr | None:
        if prim.arg < 0:
            return LockExpr(prim.name, fixed=prim.name)
        if prim.arg >= len(a[2]):
            return None
        text = atom_text(a[2][prim.arg])
        if prim.template != "{}":
            text = prim.template.format(text)
        return LockExpr.parse(text)

    def acquire(self, a: tuple, prim: Prim, st: _State, guard: int = 0) -> _State:
        lk = self.lock_of(a, prim)
        if lk is None or _lockdep_off(st):
            return st
        sub = 0
        if prim.subclass_arg >= 0 and prim.subclass_arg < len(a[2]):
            t = atom_text(a[2][prim.subclass_arg])
            sub = 1 if t == "SINGLE_DEPTH_NESTING" else (int(t) if t.isdigit() else 0)
        is_try = prim.op == "try"  # interruptible forms block: not trylocks for lockdep
        self.f.acqs.append(Acq(lk, prim.kind, prim.mode, a[3], st.held, prim.op == "try",
                               sub, st.scope_set(), st.dropped, "irq" in a[1], st.gates))
        if prim.kind in BLOCKING_KINDS and prim.op != "try":  # a trylock never waits
            self.f.sleeps.append((a[1], a[3]))
            if prim.op in ("acquire", "try0"):  # not cond: it blocks on some paths only
                st = st.with_gates(_SLEPT)
        return self.hold(Held(lk, prim.kind, prim.mode, is_try, a[3], sub, guard,
                              restores=lk.text in self.dropped_ever, irq="irq" in a[1]), st)

    def hold(self, h: Held, st: _State) -> _State:
        """From here h is held; a caller lock released before is no longer released."""
        t = h.lock.text
        return _State(st.held + (h,), st.scopes, st.dropped - {t}, st.gates, st.gfp, st.must - {t})

    def release(self, a: tuple, prim: Prim, st: _State) -> _State:
        lk = self.lock_of(a, prim)
        if lk is None or _lockdep_off(st):
            return st
        return self.drop(lk, a[3], st)

    def drop(self, lk: LockExpr, line: int, st: _State, loose: bool = False) -> _State:
        """Release lk: the innermost held lock it names (`loose`: by root and field path, for
        a callee's lock in the caller's terms), else a lock of the caller's, which this
        function now releases for it."""
        held = list(st.held)
        for k in range(len(held) - 1, -1, -1):
            if held[k].lock.text == lk.text or loose and same_lock(held[k].lock, lk):
                restored = held[k].restores
                text = held[k].lock.text
                del held[k]
                if restored:  # the caller's lock, re-taken and now dropped again
                    return _State(tuple(held), st.scopes, st.dropped | {text}, st.gates,
                                  st.gfp, st.must | {text})
                return st.with_held(tuple(held))
        self.f.released_unheld.append((lk, line))
        self.dropped_ever.add(lk.text)
        return _State(st.held, st.scopes, st.dropped | {lk.text}, st.gates, st.gfp,
                      st.must if self.wrapped else st.must | {lk.text})

    def callee_effects(self, name: str, args: list[str], line: int, st: _State) -> _State:
        """A same-file callee's effect on its caller's locks.  One that releases a caller
        lock on every path (handed `pi_state`, it drops `&pi_state->pi_mutex.wait_lock`, as
        wake_futex_pi() does) ends it at the call: what the caller takes next gets no edge
        from it.  One that returns holding a lock on every path (a lock wrapper,
        console_list_lock()) starts it at the call: what the caller takes next is taken
        under it.  Only must-effects count; a lock released or taken on some paths only
        stays as it was."""
        params, releases, holds = self.effects[name]
        for lk in releases:
            at = at_call(lk, params, args)
            if at is not None:
                st = self.drop(at, line, st, loose=True)
        for h in holds:
            at = at_call(h.lock, params, args)
            if at is not None:
                st = self.hold(Held(at, h.kind, h.mode, False, line, h.subclass,
                                    restores=at.text in self.dropped_ever, irq=h.irq), st)
        return st



def _noreturn(atoms: list[tuple]) -> bool:
    """An expression statement that is a call of a kb.NORETURN function (by name, not
    through a pointer or member)."""
    a = atoms[0] if len(atoms) == 1 else None
    return a is not None and a[0] == "call" and not a[4] and a[1] in NORETURN


def walk_function(facts: FuncFacts, stmts: list[tuple], ctx: ScanContext = ScanContext(),
                  tracked: frozenset[str] = frozenset(),
                  effects: LockEffects | None = None) -> FuncFacts:
    w = Walker(facts, ctx, stmts, tracked, effects)
    # a tracked parameter starts as the caller's gfp
    entry = _State(gfp=tuple(sorted((n, (n,)) for _, n in facts.params if n in tracked)))
    end = w.stmts(stmts, entry)
    if end is not None:
        w.exit(end)
    if w.exit_must:
        seen: set[str] = set()
        for lk, _ in facts.released_unheld:
            if lk.text in w.exit_must and lk.text not in seen:
                seen.add(lk.text)
                facts.releases.append(lk)
    if w.exit_holds and not w.unlocked:
        facts.holds.extend(w.exit_holds[t] for t in sorted(w.exit_holds))
    return facts


_RELOCKS = re.compile(r"(?:^|_)(?:re)?lock(?:_|$)")

#: function name -> (its parameter names, the caller locks it releases on every path, the
#: locks it returns holding on every path)
LockEffects = Mapping[str, tuple[tuple[str, ...], tuple[LockExpr, ...], tuple[Held, ...]]]


def at_call(lk: LockExpr, params: tuple[str, ...], args: list[str]) -> LockExpr | None:
    """The callee's lock expression in the caller's terms: a parameter root is replaced by
    the argument passed (`&p->lock` with `p` = `&x` is `x.lock`); a lock of fixed class or
    a file-level lock is the same lock (scan.lock_effects keeps no callee-local root)."""
    if lk.fixed or lk.root not in params:
        return lk
    if lk.percpu:
        return None
    k = params.index(lk.root)
    if k >= len(args):
        return None
    text = args[k].strip()
    arg = LockExpr.parse(text)
    if not arg.root or arg.fixed or arg.percpu:
        return None
    if not lk.path:   # the lock is the parameter itself: mutex_lock_double(a, b)
        return arg
    # written as the caller would write it, so its own unlock matches by text
    sub = text if _NAME.fullmatch(text) else f"({text})"
    written = re.sub(rf"(?<![\w.>]){lk.root}\b", lambda _: sub, lk.text, count=1)
    return LockExpr(written, arg.root, ".".join(p for p in (arg.path, lk.path) if p))


def same_lock(held: LockExpr, lk: LockExpr) -> bool:
    """Held lock and translated release name one lock: compared by root and field path,
    since `&a->b.c` and `&(a)->b.c` are one lock written two ways."""
    if lk.fixed or held.fixed:
        return lk.fixed == held.fixed
    if not (lk.root and held.root):   # an expression LockExpr.parse could not split
        return lk.text == held.text
    return (held.root, held.path, held.percpu) == (lk.root, lk.path, lk.percpu)
