"""An ops implementation dispatches back into its own table.

inotify's event handler frees an event it could not queue with fsnotify_destroy_event(group,
event), which calls `group->ops->free_event()`.  Matched by type, that reaches fanotify's
free_event too, which puts a path: dput() -> every filesystem's iput ops -> NFS commit, AFS
silly-unlink, rxrpc, UDP...  That one step glued most of the kernel's free paths into one
call component (issue 11).  The group inotify's handler was given is an inotify group: its
ops are inotify_fsnotify_ops, the table the handler itself sits in.

The rule: in a function F that is a member of ops tables (its *own* tables), a member call
`x->...->m()` resolved by type, on an object F reached through its own parameters (`group`
where `group = mark->group` and `mark` is F's parameter; not `vlan->real_dev`, not a
callee's result), reaches only what F's own tables put in `.m` — when that is among the
targets by type at all (so a table of another struct type, or one without `.m`, changes
nothing).  It is not applied when:

* F's own tables name F itself as `.m` (a stacked filesystem or a virtual device calls the
  same operation on the object below it: another implementation);
* a function of another table of the same struct type calls F directly or through helpers
  (a generic helper such as usb_serial_generic_open(), called by pl2303_open() on a pl2303
  port): F then serves objects of other implementations;
* the object is a member of a parameter of its own struct type (`below = group->lower`:
  the object below, not the one F was handed);
* no table of F is of the struct type the call dispatches on (the type every target's
  tables share): a member of the same name in another struct's table is no target.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from collections import defaultdict

from lockgraph.static.facts.walk import FuncFacts
from lockgraph.static.opsparams import CHAIN

_IDENT = re.compile(r"[A-Za-z_]\w*")

#: a table: (file, variable)
Table = tuple[str, str]
#: how many calls up, and how many callers at most, _shared looks for another implementation
SHARED_DEPTH = 3
SHARED_VISITS = 256


class OwnTables:
    """Each function's own ops tables and what they hold, and the functions the rule is
    not applied in."""

    def __init__(self, files, funcs: dict[str, FuncFacts], named, targets) -> None:
        self.funcs = funcs
        starts: dict[str, list[FuncFacts]] = defaultdict(list)
        for f in funcs.values():
            starts[f.file].append(f)
        lines: dict[str, list[int]] = {}
        for path, fs in starts.items():
            fs.sort(key=lambda f: f.line)
            lines[path] = [f.line for f in fs]
        #: table -> member -> functions;  table -> struct type
        self.members: dict[Table, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
        self.type: dict[Table, str] = {}
        #: function -> its own tables
        self.own: dict[str, set[Table]] = defaultdict(set)
        for ff in files:
            for d in ff.desig:
                if not d.var or not d.type or d.outer or _local(d, starts.get(ff.path, ()),
                                                                  lines.get(ff.path, ())):
                    continue
                v = d.value.lstrip("&").strip()
                if not _IDENT.fullmatch(v):
                    continue
                t = (ff.path, d.var)
                self.type[t] = d.type
                for j in named(v, ff.path):
                    self.members[t][d.member].add(j)
                    self.own[j].add(t)
        #: function -> the struct types of its own tables
        self.types: dict[str, frozenset[str]] = {
            j: frozenset(self.type[t] for t in ts) for j, ts in self.own.items()}
        self.shared = self._shared(funcs, targets)

    def _shared(self, funcs: dict[str, FuncFacts], targets) -> set[str]:
        """The functions another implementation of one of their types calls directly, or
        through helpers (SHARED_DEPTH calls up): they serve other implementations' objects
        (usb_serial_generic_open(), called by pl2303_open() on a pl2303 port)."""
        callers: dict[str, set[str]] = defaultdict(set)
        for i, f in funcs.items():
            for c, row in zip(f.calls, targets[i]):
                if not c.member:
                    for j in row:
                        callers[j].add(i)
        out: set[str] = set()
        for j, theirs in self.own.items():
            mine = self.types[j]
            seen, frontier = {j}, [j]
            for _ in range(SHARED_DEPTH):
                nxt = []
                for x in frontier:
                    for g in sorted(callers.get(x, ())):
                        if g in seen or len(seen) > SHARED_VISITS:
                            continue
                        seen.add(g)
                        if any(self.type[t] in mine for t in self.own.get(g, set()) - theirs):
                            out.add(j)
                            break
                        nxt.append(g)
                    if j in out:
                        break
                if j in out or not nxt:
                    break
                frontier = nxt
        return out

    def narrow(self, i: str, base: str, member: str, row: tuple[str, ...]) -> tuple[str, ...]:
        """The targets of call `base->member()` in function i under the rule."""
        if len(row) < 2 or i in self.shared:
            return row
        tables = self.own.get(i)
        if not tables or not self._same_object(base, self.funcs[i]):
            return row
        # the struct type the call dispatches on: the one every target's tables share (a
        # member name of another struct type in i's own tables is no call of this one)
        kinds = frozenset.intersection(*(self.types.get(j, frozenset()) for j in row))
        mine: set[str] = set()
        for t in tables:
            if self.type[t] in kinds:
                mine |= self.members[t].get(member, set())
        if not mine or i in mine:
            return row
        kept = tuple(j for j in row if j in mine)
        return kept or row

    @staticmethod
    def _same_object(base: str, f: FuncFacts) -> bool:
        """The call's object is reached from one of f's parameters through members only."""
        m = _IDENT.match(base.strip().lstrip("&*( ").strip())
        if not m:
            return False
        root = m.group(0)
        params = {n: _struct(t) for t, n in f.params}
        if root in params:
            return True
        alias = f.aliases.get(root, "").strip().lstrip("&").strip()
        if not (alias and CHAIN.match(alias)):
            return False
        owner = _IDENT.match(alias).group(0)
        # `group = mark->group`: the group that owns the mark f was handed; not so
        # `below = group->lower`, another object of the parameter's own type (stacking)
        return owner in params and params[owner] != _struct(f.locals.get(root, ""))


def _struct(typ: str) -> str:
    """`const struct fsnotify_group *` -> `fsnotify_group`."""
    words = [w for w in typ.replace("*", " ").split() if w not in ("const", "volatile", "struct")]
    return " ".join(words)


def _local(d, funcs_in_file: list[FuncFacts], lines: list[int]) -> bool:
    """A designated initialiser of a function's local struct (not an ops table)."""
    k = bisect_right(lines, d.line)
    return k > 0 and d.var in funcs_in_file[k - 1].locals
