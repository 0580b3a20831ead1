"""Function-pointer parameters, resolved at each call site.

`kref_put(&x->ref, x_release)` calls `x_release` — that call, with that caller's locks
held, and no other release function.  Inside `kref_put` the call `release(kref)` goes through
a parameter, so the callee alone cannot know its target; resolving it by signature or by
"every function ever passed there" would join every subsystem that frees through kref.  The
caller knows: the argument is a function name.  So each call that passes a function to a
parameter the callee calls (directly, or by handing it to another such parameter) gains a
*callback call* to that function at the same line, with the caller's held locks plus the
locks the callee holds around the callback (`kref_put_mutex` runs `release` under the mutex
it was given).  The summaries then see the callback where it really runs.

A callback that is stored, not called (`call_rcu`, `queue_work`, timers) is not a parameter
the callee calls: it runs later, in another context, with none of the caller's locks, so it
is rightly no callee of the caller.
"""

from __future__ import annotations

import re
from dataclasses import replace

from lockgraph.static.constargs import closed, literal
from lockgraph.static.facts.walk import ARG_FALSE, ARG_TRUE, IRQS_ON, SLEPT, Call, FuncFacts, Held, LockExpr

#: A gate of the solver's own, on a callback call it hoisted (site_call): some function
#: between the call and the callback sleeps on every path first, so the call sleeps before
#: its target runs, as a kb.SLEEPING_CALLS call does (summaries.sleeping).  Not a test, like
#: walk.SLEPT.
SLEEPS_FIRST = "@sleeps_first"
#: Rounds of "a wrapper passes its own parameter on to a callback parameter".
WRAPPER_DEPTH = 4
_CAST = re.compile(r"^\(\s*(?:const\s+)?(?:struct\s+)?\w+\s*\**\s*\)\s*")
_IDENT = re.compile(r"[A-Za-z_]\w*")
_NO_CALLBACK = frozenset({"NULL", "0", "nullptr"})

#: Where a callee calls parameter k: (line, locks held there, memalloc scopes, the
#: arguments it passes, the flag-parameter gates it sits behind — and SLEEPS_FIRST when
#: some level on the way sleeps on every path before it, IRQS_ON when some level runs it
#: only with interrupts on —, the caller locks released before it on every path), in the
#: callee's own terms.
Site = tuple[int, tuple[Held, ...], frozenset[str], tuple[str, ...], frozenset[str],
             frozenset[str]]
#: An argument already resolved to its lock class (Resolver.classes reads it): a callback
#: that unlocks the lock it is handed (list_lru isolate functions) must drop the class the
#: walker holds, which the caller cannot name from its own variables.
RESOLVED = "="


def bare(arg: str) -> str:
    """An argument without address-of, casts and enclosing parentheses."""
    a = arg.strip()
    while True:
        b = _CAST.sub("", a.lstrip("&").strip())
        if b.startswith("(") and b.endswith(")"):
            b = b[1:-1].strip()
        if b == a:
            return a
        a = b


def param_indices(f: FuncFacts) -> dict[str, int]:
    """f's parameters by name (a nameless one, `void`, has none)."""
    return {n: k for k, (_, n) in enumerate(f.params) if n}


def callee_name(arg: str) -> str:
    """The function an argument names (`&f`, `(f)`, a cast of f), or ""."""
    a = bare(arg)
    return a if _IDENT.fullmatch(a) else ""


def _translate(held: tuple[Held, ...], callee: FuncFacts, call: Call, classes) -> tuple[Held, ...]:
    """The callee's held locks in the caller's terms: a lock parameter becomes the caller's
    argument; any other lock keeps the class it has in the callee."""
    out = []
    for h in held:
        for cls in classes(h.lock, callee):
            if cls.startswith("@param"):
                n = int(cls[6:].split("/")[0])
                if n < len(call.args):
                    out.append(Held(LockExpr.parse(call.args[n]), h.kind, h.mode, h.try_, h.line,
                                    h.subclass, irq=h.irq))
                continue
            out.append(Held(LockExpr(h.lock.text, fixed=cls), h.kind, h.mode, h.try_, h.line,
                            h.subclass, irq=h.irq))
    return tuple(out)


def _translate_args(args: tuple[str, ...], callee: FuncFacts, call: Call, classes) -> tuple[str, ...]:
    """The callee's arguments to its callback in the caller's terms: the callee's parameter
    becomes the caller's argument; a lock expression its class."""
    pidx = param_indices(callee)
    out = []
    for a in args:
        k = pidx.get(a.strip())
        if k is not None:
            out.append(call.args[k] if k < len(call.args) else "")
            continue
        cls = classes(LockExpr.parse(a), callee)
        if cls and cls[0].startswith("@param"):
            n = int(cls[0][6:].split("/")[0])
            out.append(call.args[n] if n < len(call.args) else "")
        else:
            out.append(RESOLVED + cls[0] if cls and not a.startswith(RESOLVED) else a)
    return tuple(out)


def callback_params(funcs: dict[str, FuncFacts], targets: dict[str, tuple[tuple[str, ...], ...]],
                    classes) -> dict[str, dict[int, Site]]:
    """Per function, the parameters it calls as functions, with where and under what."""
    sites: dict[str, dict[int, Site]] = {}
    params: dict[str, dict[str, int]] = {}
    for i, f in funcs.items():
        if not f.params:
            continue
        pidx = params[i] = param_indices(f)
        for c in f.calls:
            k = pidx.get(c.name)
            if k is not None and not c.member and c.name not in f.locals:
                add_site(sites.setdefault(i, {}), k, own_site(c))
    # wrappers: a parameter handed to a callee's callback parameter is a callback parameter
    passing = []
    for i, pidx in params.items():
        f = funcs[i]
        for c, row in zip(f.calls, targets[i]):
            if row and any(callee_name(a) in pidx for a in c.args):
                passing.append((i, c, row))
    for _ in range(WRAPPER_DEPTH):
        grew = False
        for i, c, row in passing:
            pidx = params[i]
            for j in row:
                for k, site in sites.get(j, {}).items():
                    if k >= len(c.args) or not open_at(site, funcs[j], c):
                        continue
                    mine = pidx.get(callee_name(c.args[k]))
                    if mine is None:
                        continue
                    if add_site(sites.setdefault(i, {}), mine,
                                caller_site(c, funcs[i], funcs[j], site, classes)):
                        grew = True
        if not grew:
            break
    return sites


def add_callback_calls(funcs: dict[str, FuncFacts], targets: dict[str, tuple[tuple[str, ...], ...]],
                       sites: dict[str, dict[int, Site]], resolve, classes,
                       unresolved: dict[str, list[tuple[str, int]]],
                       blind: dict[str, frozenset[str]]) -> None:
    """Give each call that passes a function to a callback parameter a callback call to it
    (funcs and targets are updated; the facts the scan made are not touched).  An argument
    that names no function is a blind spot of the caller."""
    for i, f in list(funcs.items()):
        extra: list[Call] = []
        rows: list[tuple[str, ...]] = []
        labels: set[str] = set()
        pnames = {n for _, n in f.params}
        for c, row in zip(f.calls, targets[i]):
            for j in row:
                for k, site in sorted(sites.get(j, {}).items()):
                    if k >= len(c.args) or not open_at(site, funcs[j], c):
                        continue
                    name = callee_name(c.args[k])
                    if name in pnames or name in _NO_CALLBACK:
                        continue  # the caller's own callback parameter: resolved at its callers
                    got = tuple(resolve(f, name, False)) if name and name not in f.locals else ()
                    if not got:
                        label = (f"callback {c.args[k].strip()} passed to {funcs[j].name}() "
                                 f"in {f.name}()")
                        labels.add(label)
                        unresolved.setdefault(label, []).append((f.file, c.line))
                        continue
                    extra.append(site_call(name, c, f, funcs[j], site, classes))
                    rows.append(got)
        if extra:
            append_calls(funcs, targets, i, extra, rows)
        if labels:
            blind[i] = blind.get(i, frozenset()) | labels


def append_calls(funcs: dict[str, FuncFacts], targets, i: str, calls: list[Call],
                 rows: list[tuple[str, ...]]) -> None:
    """Calls the solver adds to function i, with their targets (the facts the scan made
    are not touched: i's entry becomes a copy)."""
    funcs[i] = replace(funcs[i], calls=funcs[i].calls + calls)
    targets[i] = targets[i] + tuple(rows)


def caller_site(c: Call, caller: FuncFacts, callee: FuncFacts, site: Site, classes) -> Site:
    """The callee's `site` as the caller sees it through call c: at c's line, the caller's
    locks and the callee's around it, the callee's arguments in the caller's terms."""
    _, held, scopes, args, _, dropped = site
    gone = _translate_dropped(dropped, callee, c, classes)
    # a lock the callee released on every path before the site (regcache_maple_sync_block()
    # drops the rcu_read_lock() its caller holds around it) is not held there; one released
    # on some paths only still is
    kept = c.held + _translate(held, callee, c, classes)
    if gone:
        kept = tuple(h for h in kept if h.lock.text not in gone and not any(
            RESOLVED + k in gone for k in ([h.lock.fixed] if h.lock.fixed else
                                           classes(h.lock, caller))))
    return (c.line, kept, c.scopes | scopes, _translate_args(args, callee, c, classes),
            _arg_gates(c.gates) | _sleeps_first(c.gates, site[4]) | ((c.gates | site[4]) & _IRQS),
            c.must | gone)


def _translate_dropped(dropped: frozenset[str], callee: FuncFacts, call: Call,
                       classes) -> frozenset[str]:
    """Caller locks the callee released, in the caller's terms: its lock parameter is the
    caller's argument, any other lock its class."""
    out: set[str] = set()
    for t in dropped:
        for cls in classes(LockExpr.parse(t), callee):
            if cls.startswith("@param"):
                n = int(cls[6:].split("/")[0])
                if n < len(call.args):
                    out.add(call.args[n].strip())
            else:
                out.add(cls if cls.startswith(RESOLVED) else RESOLVED + cls)
    return frozenset(out)


def own_site(c: Call) -> Site:
    """Call c as a site of its own function."""
    return (c.line, c.held, c.scopes, tuple(c.args),
            _arg_gates(c.gates) | _sleeps_first(c.gates) | (c.gates & _IRQS), c.must)


def add_site(table: dict, key, site: Site) -> bool:
    """Record a site under key: the first occurrence's place, behind only the gates every
    occurrence sits behind (a call site must close all of them to skip the callback), and
    with an argument no occurrence's constant decides where they differ (hda's
    snd_hda_codec_write() hands exec_verb() a NULL response pointer, snd_hda_codec_read()
    its own: a caller of both must not prune the read's bus reset).  True when the table
    changed."""
    old = table.get(key)
    if old is None:
        table[key] = site
        return True
    args = _merged_args(old[3], site[3])
    if old[4] <= site[4] and old[5] <= site[5] and args == old[3]:
        return False
    # only what every occurrence sits behind, or drops first, counts
    table[key] = old[:3] + (args, old[4] & site[4], old[5] & site[5])
    return True


#: An argument that differs between the occurrences of a site, both of them constants.
UNDECIDED = "(undecided)"


def _merged_args(a: tuple[str, ...], b: tuple[str, ...]) -> tuple[str, ...]:
    """Position by position: the same argument, or one that is no constant (a constant of
    one occurrence would prune a path the other takes)."""
    if a == b:
        return a
    out = []
    for k in range(max(len(a), len(b))):
        x = a[k] if k < len(a) else ""
        y = b[k] if k < len(b) else ""
        if x == y or literal(x) is None:
            out.append(x)
        else:
            out.append(y if literal(y) is None else UNDECIDED)
    return tuple(out)


def open_at(site: Site, callee: FuncFacts, c: Call) -> bool:
    """Whether call c of the callee can reach its site: `__irq_put_desc_unlock(desc, flags,
    false)` never runs the `if (bus) chip_bus_sync_unlock(desc)` behind its bus flag."""
    return not any(closed(g, callee, c.args) for g in site[4] if g not in _MARKS)


def _arg_gates(gates: frozenset[str]) -> frozenset[str]:
    return frozenset(g for g in gates if g.startswith((ARG_TRUE, ARG_FALSE)))


_FIRST = frozenset({SLEEPS_FIRST})
#: A site behind `!irqs_disabled()` at any level runs only with interrupts on: its hoisted
#: call keeps the gate (a caller lock released on the way leaves the caller's held set, so
#: interrupts-off is then not assumed there: summaries.context_at).
_IRQS = frozenset({IRQS_ON})
_MARKS = _FIRST | _IRQS


def _sleeps_first(gates: frozenset[str], below: frozenset[str] = frozenset()) -> frozenset[str]:
    """SLEEPS_FIRST for a site seen from the function's callers, when the function sleeps
    on every path before it (SLEPT at its call there) or a level below it does: dput()
    calls might_sleep() first, so the `d_iput` it reaches, hoisted to file_free()'s call
    of path_put(), is a call that sleeps before it runs (summaries.sleeping)."""
    return _FIRST if SLEPT in gates or SLEEPS_FIRST in below else frozenset()


def site_call(name: str, c: Call, caller: FuncFacts, callee: FuncFacts, site: Site,
              classes, base: str = "") -> Call:
    """The call the callee makes at `site`, as a call of c's caller to `name`.  `base`:
    for an ops member still resolved by type (opsparams.py: the caller passes no known
    table), the object expression in the caller's terms — the call stays a may-path
    (witnesses.indirect_hop), though it is no member call of the caller's own."""
    line, held, scopes, args, _, must = caller_site(c, caller, callee, site, classes)
    return Call(name, False, line, held, scopes, list(args), base, c.dropped | must,
                c.gates | (site[4] & _MARKS),
                must)
