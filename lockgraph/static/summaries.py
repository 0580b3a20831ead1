"""Per-function summaries, bottom-up: the lock classes a function may take (any, and at
its top level), whether it may enter reclaim or sleep, the lock and gfp parameters whose
argument decides that, and the caller locks a path drops first.

Computed once per strongly connected component of the call graph in reverse topological
order — linear in the program, not a global fixpoint.  A summary is a bit set over lock
classes (fs_reclaim is bit 0), not a dict with a witness per class: on the whole tree most
functions reach the same few thousand core-kernel classes, and per-class entries for every
function do not fit in memory.  `top` follows lockdep's edge rule through calls: a caller's
lock gets an edge only to the classes a callee takes with none of its own non-try locks
held — what the callee takes under its own lock B is B's edge, not the caller's.

`atop` is `top` for a caller holding a spinning lock: without what is reached only through
a sleep (a blocking lock, a kb.SLEEPING_CALLS call) or after one on every path
(walk.SLEPT).  Sleeping under a spinning lock is a bug of its own (LG107 reports it), so in
a correct kernel those paths never run with the spinning lock held and make no edge from
it.  Through schedule() (sched_submit_work() →
blk_flush_plug()), synchronize_rcu() and flush_work() every spinlock of the kernel reached
the block layer and the workqueues.

`aany` is `any` on the same terms, and a call made where the caller is atomic (a spinning
lock or rcu_read_lock() held on every path) adds only the callee's `aany` to the caller's
`any`: the same rule for "may take" as for "makes an edge".  Without it free_percpu() took
1,695 classes: schedule_work() -> __queue_work() holds pool->lock (a raw spinlock) across
kick_pool() -> wake_up_process() -> ... -> migrate_task_rq_dl() -> put_task_struct() ->
free_task(), and from there every subsystem through paths that sleep (migrate_enable() ->
wait_for_completion(), dput(), mutexes).

`itop` and `iany` are `atop` and `aany` for a caller that holds a lock taken with
interrupts disabled (spin_lock_irqsave() and kin): also without what lies behind
`if (!irqs_disabled())` (walk.IRQS_ON), which cannot run there.  free_percpu() ->
pcpu_schedule_balance_work() -> schedule_work() wakes the worker: try_to_wake_up() takes
p->pi_lock with raw_spin_lock_irqsave(), and past it __bpf_prog_put() calls
bpf_prog_put_deferred() only when interrupts are on (else it queues a work item); 476 of
the 501 classes free_percpu() still took lay behind that call.  A !PREEMPT_RT kernel is
assumed: on PREEMPT_RT spin_lock_irqsave() leaves interrupts on (raw_spin_lock_irqsave()
does not).  Code behind such a test under the function's own irq lock never runs at all
(`dead`): it is neither taken nor an edge.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from lockgraph.static.callbacks import SLEEPS_FIRST
from lockgraph.static.constargs import arg_gates, forwarded, narrowed, with_value
from lockgraph.static.facts import kb
from lockgraph.static.facts.walk import IRQS_ON, SLEPT, Acq, FuncFacts, Held
from lockgraph.static.gfp import FAULT_CLASS, FS_RECLAIM, gfp_reclaims, masked, scope_mask
from lockgraph.static.resolution import HeldNames, Resolver

if TYPE_CHECKING:
    from lockgraph.static.solve import Solved

#: How far up the call graph a "this path drops caller lock L first" record travels.
DROP_LEVELS = 3
_EMPTY: frozenset[str] = frozenset()


@dataclass(slots=True)
class Witness:
    """Where a summary entry comes from, kept only where entries are few (lock and gfp
    parameters, the first sleep): a lock class reached is a bit, its chain is searched
    when printed."""

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


class Takes:
    """fid -> {class: Taken}, read off the bit sets per question (never stored for every
    function)."""

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


#: The context code runs in, each forbidding more than the one before: PLAIN; ATOMIC — a
#: spinning lock or rcu_read_lock() held, no sleep; IRQS_OFF — one of them taken with
#: interrupts disabled, no sleep and nothing behind `if (!irqs_disabled())`.
PLAIN, ATOMIC, IRQS_OFF = 0, 1, 2


def context_at(held: tuple[Held, ...]) -> int:
    """The context the locks held on every path make here: ATOMIC where sleeping is a bug
    (a lock of kb.ATOMIC_KINDS: a caller's locks under rcu_read_lock() get no edge through
    a callee's sleeping paths either), IRQS_OFF where one was taken with interrupts off."""
    level = PLAIN
    for h in held:
        if h.kind in kb.ATOMIC_KINDS and not h.cond:
            if h.irq:
                return IRQS_OFF
            level = ATOMIC
    return level


def irqs_on(x) -> bool:
    """Call or acquisition x runs only with interrupts enabled (walk.IRQS_ON)."""
    return IRQS_ON in x.gates


def irqs_gated(x, dropped) -> bool:
    """Entered with interrupts off, x never runs: it lies behind `!irqs_disabled()` and
    no caller lock is released before it (`dropped`: those it releases; one released may
    have turned interrupts on again).  The rule of `iany`/`itop` and of their chains."""
    return IRQS_ON in x.gates and not dropped


def dead(x) -> bool:
    """Acquisition, allocation or call x lies behind `if (!irqs_disabled())` under a lock
    its own function took with interrupts off: it never runs."""
    return irqs_on(x) and context_at(x.held) == IRQS_OFF


def sleeping(c) -> bool:
    """Call c sleeps before its target runs: a kb.SLEEPING_CALLS call, or a callback the
    solver hoisted through a function that sleeps first (callbacks.SLEEPS_FIRST)."""
    return c.name in kb.SLEEPING_CALLS or SLEEPS_FIRST in c.gates


def after_sleep(c) -> bool:
    """Call c sleeps, or follows a sleep on every path of its function (walk.SLEPT): under
    a caller's spinning lock it never runs."""
    return sleeping(c) or SLEPT in c.gates


def acq_sleeps(a: Acq) -> bool:
    """Acquisition a blocks, or follows a sleep on every path of its function (walk.SLEPT):
    atomic context never makes it (after_sleep's rule for an acquisition)."""
    return a.kind in kb.BLOCKING_KINDS or SLEPT in a.gates


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




def own_acquisitions(funcs: dict[str, FuncFacts], targets: dict[str, tuple[tuple[str, ...], ...]],
                     res: Resolver) -> tuple[dict[str, list[tuple[str, Acq]]], ClassIndex]:
    """Each function's own acquisitions with their class names, and the bit of each class.

    Classes taken by much-called functions get the low bits, so the many summaries that
    reach them stay short integers."""
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
    U = ClassIndex([FS_RECLAIM, FAULT_CLASS] + sorted(
        (c for c in weight if not c.startswith("@param") and c not in (FS_RECLAIM, FAULT_CLASS)),
        key=lambda c: (-weight[c], c)))
    return local_acqs, U


class Summaries:
    """The summaries of every function, and the lock kinds, interrupt-disabling classes and
    sleeps met on the way: the state `local` seeds and `pull` grows."""

    def __init__(self, funcs: dict[str, FuncFacts], targets: dict[str, tuple[tuple[str, ...], ...]],
                 res: Resolver, held_names: HeldNames) -> None:
        self.funcs, self.targets, self.res, self.held_names = funcs, targets, res, held_names
        self.local_acqs, self.classes = own_acquisitions(funcs, targets, res)
        self.kinds: dict[str, str] = {FS_RECLAIM: "map"}   # lock class -> kind (spin, mutex, ...)
        self.irq_classes: set[str] = set()
        self.sleeps: dict[str, Witness] = {}
        self.anyb: dict[str, int] = {}
        self.top: dict[str, int] = {}
        self.atop: dict[str, int] = {}   # top through no sleep (see the module docstring)
        self.aany: dict[str, int] = {}   # any through no sleep (see the module docstring)
        self.itop: dict[str, int] = {}   # atop with interrupts off (see the module docstring)
        self.iany: dict[str, int] = {}   # aany with interrupts off (see the module docstring)
        #: top-level classes reached through some path that drops no caller lock (a class
        #: reached cleanly only under the callee's own lock makes no edge from the caller's
        #: lock either)
        self.clean: dict[str, int] = {}
        self.own: dict[str, frozenset[int]] = {}   # classes taken in the body
        self.pcls: dict[str, dict[str, Witness]] = {}
        self.param_reclaim: dict[str, dict[int, Witness]] = {}
        self.via_gfp: dict[str, int] = {}   # fs_reclaim through a gfp argument: call line
        #: per level (calls below the function): dropped caller lock -> classes reached
        self.drop_levels: list[dict[str, dict[str, int]]] = [{} for _ in range(DROP_LEVELS)]
        self._singles: dict[str, frozenset[str]] = {}
        #: per function with flag-parameter gates: gate -> (any, top, clean, atop) without
        #: the events behind that gate (static/constargs.py); final once the function's
        #: component is solved, a live view of its clones while it is (_component)
        self.restricted: dict[str, Mapping[str, tuple[int, int, int, int]]] = {}

    def run(self) -> None:
        """Callees before callers, so a function's summary is final before any caller
        pulls it, except inside a cycle of calls."""
        for i in self.funcs:
            self.local(i)
        funcs, targets, pull = self.funcs, self.targets, self.pull
        for scc in sccs(targets):
            if len(scc) == 1 and not any(scc[0] in row for row in targets[scc[0]]):
                i = scc[0]
                f = funcs[i]
                for c, row in zip(f.calls, targets[i]):
                    for j in row:
                        pull(i, f, c, j)
                gates = arg_gates(f) | self._forwarded(i)
                if gates:
                    self.restricted[i] = {g: self._without(i, g) for g in sorted(gates)}
            else:
                self._component(scc)

    def _forwarded(self, j: str, gates: dict[str, frozenset[str]] | None = None
                   ) -> frozenset[str]:
        """Gates j gets from handing its own flag parameter to a callee's gated one:
        sched_submit_work() calls blk_flush_plug(plug, true), which passes `async` on as
        __blk_flush_plug()'s and blk_mq_flush_plug_list()'s `from_schedule`, whose
        `!from_schedule` branch dispatches to the drivers.  Callees outside j's component
        are restricted first (components in reverse topological order), those inside it are
        read from `gates`, so this carries any number of levels."""
        f = self.funcs[j]
        mine = {n for _, n in f.params if n}
        out: set[str] = set()
        for c, row in zip(f.calls, self.targets[j]):
            if not c.args:
                continue
            for k in row:
                known = gates[k] if gates is not None and k in gates else self.restricted.get(k, ())
                for g in known:
                    a = forwarded(g, self.funcs[k], c.args, mine)
                    if a:
                        out.add(a)
        return frozenset(out)

    def _clone(self, j: str, gate: str) -> str:
        """A scratch function: j as if the events behind `gate` did not exist, its calls
        passing on the value the gate implies for a flag parameter they hand on (see
        _forwarded).  Seeded, not yet pulled; _unclone removes it again."""
        f = self.funcs[j]
        keep = [k for k, c in enumerate(f.calls) if gate not in c.gates]
        g = replace(f, acqs=[a for a in f.acqs if gate not in a.gates],
                    allocs=[a for a in f.allocs if gate not in a.gates],
                    calls=[with_value(f.calls[k], gate) for k in keep])
        v = f"{j}#{gate}"
        self.funcs[v] = g
        self.targets[v] = tuple(self.targets[j][k] for k in keep)
        self.local_acqs[v] = [(cls, a) for cls, a in self.local_acqs[j] if gate not in a.gates]
        self.local(v)
        return v

    def _unclone(self, v: str) -> tuple[int, int, int, int]:
        out = (self.anyb.pop(v), self.top.pop(v), self.clean.pop(v), self.atop.pop(v))
        self.aany.pop(v)
        self.iany.pop(v)
        self.itop.pop(v)
        for table in (self.funcs, self.targets, self.local_acqs, self.own, self.pcls,
                      self.param_reclaim, self.sleeps, self.via_gfp, *self.drop_levels):
            table.pop(v, None)
        return out

    def _without(self, j: str, gate: str) -> tuple[int, int, int, int]:
        """j's summary without the events behind `gate`, once j's summary is final."""
        v = self._clone(j, gate)
        g = self.funcs[v]
        for c, row in zip(g.calls, self.targets[v]):
            for j2 in row:
                self.pull(v, g, c, j2)
        return self._unclone(v)

    def _component(self, scc: list[str]) -> None:
        """Inside a component: rounds until no summary grows.

        A member with flag gates (its own or forwarded) is solved together with one clone
        per gate — the member without that gate's events — and a call that closes a gate
        reads the clone (through `restricted`, as calls to functions outside the component
        do).  So a constant prunes a path inside a cycle of calls too: schedule() ->
        sched_submit_work() -> blk_flush_plug(plug, true) does not reach blk-mq's dispatch
        to the drivers, all of them one component of the whole kernel.  Once solved, the
        clones' summaries are the members' restricted ones and the clones are dropped."""
        funcs, targets, pull = self.funcs, self.targets, self.pull
        inside = set(scc)
        gates = {j: arg_gates(funcs[j]) for j in scc}
        grew = True
        while grew:  # a forwarded gate may come from a member later in the order
            grew = False
            for j in scc:
                g = gates[j] | self._forwarded(j, gates)
                if g != gates[j]:
                    gates[j], grew = g, True
        clones: dict[str, dict[str, str]] = {}
        origin: dict[str, str] = {}
        for j in scc:
            if gates[j]:
                clones[j] = {g: self._clone(j, g) for g in sorted(gates[j])}
                for v in clones[j].values():
                    origin[v] = j
                self.restricted[j] = _Live(self, clones[j])
        members = scc + sorted(origin)
        for i in members:
            f = funcs[i]
            for c, row in zip(f.calls, targets[i]):
                for j in row:
                    if j not in inside:  # callees outside the component are final: absorbed once
                        pull(i, f, c, j)
        # Rounds over the members, callees before callers (DFS postorder of the calls
        # inside the component): one round carries every summary down-to-up along the
        # order, and only calls against it (the back edges of the recursion) need another.
        # Versions: a member pulls again only from the callees that changed since it last
        # looked (members of the kernel's big component have dozens of callees inside it).
        # A worklist re-queued every caller of every member that grew by one class at a
        # time: minutes on the whole kernel's 20,000-function component.  A clone that
        # grows counts as its member growing: the callers that close its gate read it.
        version = dict.fromkeys(scc, 0)
        seen: dict[tuple[str, str], int] = {}
        inner = {i: [(c, j) for c, row in zip(funcs[i].calls, targets[i]) for j in row if j in inside]
                 for i in members}
        order = []
        for i in _postorder(scc, inner):
            order.extend(clones.get(i, {}).values())  # a clone calls what its member calls
            order.append(i)
        changed = True
        while changed:
            changed = False
            for i in order:
                pairs = inner[i]
                fresh = {j: version[j] for _, j in pairs if seen.get((i, j)) != version[j]}
                if not fresh:
                    continue
                f = funcs[i]
                grew = False
                for c, j in pairs:
                    if j in fresh and pull(i, f, c, j):
                        grew = True
                for j, v in fresh.items():
                    seen[(i, j)] = v
                if grew:
                    version[origin.get(i, i)] += 1
                    changed = True
        for j, per in clones.items():
            self.restricted[j] = {g: self._unclone(v) for g, v in per.items()}

    def drops(self) -> dict[str, dict[str, int]]:
        """Dropped caller lock -> classes, whatever the level."""
        out: dict[str, dict[str, int]] = {}
        for level in self.drop_levels:
            for fid, per in level.items():
                dst = out.setdefault(fid, {})
                for lk, bits in per.items():
                    dst[lk] = dst.get(lk, 0) | bits
        return out

    def local(self, i: str) -> None:
        """Seed i's summary with what its own body takes, allocates and sleeps on."""
        f = self.funcs[i]
        res, U, kinds, irq_classes = self.res, self.classes, self.kinds, self.irq_classes
        a_bits = t_bits = c_bits = s_bits = n_bits = i_bits = it_bits = 0
        pc: dict[str, Witness] = {}
        dr: dict[str, int] = {}
        pr: dict[int, Witness] = {}
        for cls, a in self.local_acqs[i]:
            kinds.setdefault(cls, a.kind)
            if a.irq:
                irq_classes.add(cls)
            if dead(a):
                continue
            if cls.startswith("@param"):
                prefer(pc, cls, Witness(a.line, None, res.dropped(f, a.dropped), try_=a.try_,
                                        irq=a.irq, deep=not at_top(a.held, f)))
                continue
            b = 1 << U.id(cls)
            d = res.dropped(f, a.dropped)
            for lk in d:
                dr[lk] = dr.get(lk, 0) | b
            a_bits |= b
            nosleep = not acq_sleeps(a)
            irqoff = nosleep and not irqs_gated(a, d)
            if nosleep:
                n_bits |= b
            if irqoff:
                i_bits |= b
            if not a.try_ and at_top(a.held, f):
                t_bits |= b
                if nosleep:
                    s_bits |= b
                if irqoff:
                    it_bits |= b
                if not d:
                    c_bits |= b
        for al in f.allocs:
            how, k = gfp_reclaims(al.gfp, f)
            if masked(al.scopes) or how == "no" or dead(al):
                continue
            if how == "param":
                prefer(pr, k, Witness(al.line, None, res.dropped(f, al.dropped), f"{al.api}()",
                                      deep=not at_top(al.held, f)))
            else:
                d = res.dropped(f, al.dropped)
                for lk in d:
                    dr[lk] = dr.get(lk, 0) | 1
                a_bits |= 1
                nosleep = SLEPT not in al.gates
                irqoff = nosleep and not irqs_gated(al, d)
                if nosleep:
                    n_bits |= 1
                if irqoff:
                    i_bits |= 1
                if at_top(al.held, f):
                    t_bits |= 1
                    if nosleep:
                        s_bits |= 1
                    if irqoff:
                        it_bits |= 1
                    if not d:
                        c_bits |= 1
        self.anyb[i], self.top[i], self.clean[i], self.atop[i] = a_bits, t_bits, c_bits, s_bits
        self.aany[i], self.iany[i], self.itop[i] = n_bits, i_bits, it_bits
        if a_bits:
            self.own[i] = frozenset(U.bits(a_bits))
        if pc:
            self.pcls[i] = pc
        if dr:
            self.drop_levels[0][i] = dr
        if pr:
            self.param_reclaim[i] = pr
        if f.sleeps:
            # a sleep inside f's own spinning section is a bug of f's (LG107), not a sleep
            # its callers see: the rule of `aany`
            free = {a.line for a in f.acqs if not context_at(a.held)}
            free.update(c.line for c in f.calls if not context_at(c.held))
            first = next(((n, line) for n, line in f.sleeps if line in free), None)
            if first is not None:
                self.sleeps[i] = Witness(first[1], None, note=first[0] + "()")

    def _single(self, lk: str) -> frozenset[str]:
        got = self._singles.get(lk)
        if got is None:
            got = self._singles[lk] = frozenset((lk,))
        return got

    def set_drop(self, i: str, bits: int, d: frozenset[str], level: int = 0) -> bool:
        """Classes `bits` are reached in i through a path that first drops each lock of d,
        `level` calls below i (0: i drops it itself)."""
        grew = False
        dr = self.drop_levels[level].setdefault(i, {})
        for lk in d:
            old = dr.get(lk, 0)
            if old | bits != old:
                dr[lk] = old | bits
                grew = True
        return grew

    def pull(self, i: str, f: FuncFacts, c, j: str) -> bool:
        """Absorb callee j's summary through call c of i; True when i's summary grew.

        Millions of calls on the whole tree: the state is bound to locals once per call."""
        anyb, top, clean, atop, set_drop = self.anyb, self.top, self.clean, self.atop, self.set_drop
        aany, iany, itop = self.aany, self.iany, self.itop
        m = ~scope_mask(c.scopes)
        before = (anyb[i], top[i], clean[i], atop[i], aany[i], iany[i], itop[i])
        ctop = at_top(c.held, f)
        drop = self.res.dropped(f, c.dropped) if c.dropped else _EMPTY
        if j in self.restricted:
            aj, tj, cj, sj = narrowed(c, j, self.funcs, anyb, top, clean, atop, self.restricted)
        else:
            aj, tj, cj, sj = anyb[j], top[j], clean[j], atop[j]
        nj, ij, itj = aany[j] & aj, iany[j] & aj, itop[j] & sj
        ctx = context_at(c.held) if c.held else PLAIN
        never = False   # the call cannot run here: it adds nothing, parameters included
        if ctx == IRQS_OFF:  # i holds a lock taken with interrupts off: j runs so
            if sleeping(c) or irqs_on(c):
                aj = tj = cj = sj = nj = ij = itj = 0
                never = True
            else:
                aj, tj, cj, nj, sj = ij, itj, cj & itj, ij, itj
        elif ctx == ATOMIC:  # i is atomic here (rcu_read_lock()): j cannot sleep
            if sleeping(c):
                aj = tj = cj = sj = nj = ij = itj = 0
                never = True
            else:
                aj, tj, cj = nj, sj, cj & sj
        slept = after_sleep(c)
        gated = slept or irqs_gated(c, drop)   # adds nothing to iany/itop
        if drop and not slept:
            ij, itj = nj, sj
        # the common call (nothing dropped, no lock or gfp parameter) is these unions
        acc = [before[0] | (aj & m), before[1], before[2], before[3],
               before[4] if slept else before[4] | (nj & m),
               before[5] if gated else before[5] | (ij & m), before[6]]
        if ctop:
            acc[1] |= tj & m
            if not slept:
                acc[3] |= sj & m
            if not gated:
                acc[6] |= itj & m
            if not drop:
                acc[2] |= cj & m
        # Per dropped caller lock, the classes reached through a path that drops it first;
        # a class also reached cleanly (no drop at all) is judged by `clean` at use.  A
        # record travels up at most DROP_LEVELS - 1 calls (the lock a callee drops is its
        # caller's, or a wrapper's caller's) and stops at a call that holds that lock.
        dgrew = set_drop(i, aj & m, drop) if drop else False
        held_here = None
        drop_levels = self.drop_levels
        for level in range(DROP_LEVELS - 1):
            dj = drop_levels[level].get(j)
            if not dj:
                continue
            if held_here is None:
                held_here = self.held_names(c, f) if c.held else _EMPTY
            for key, bits in dj.items():
                for lk in self.res.at_call(key, c, f) if key[0] == "@" else (key,):
                    if lk not in held_here and set_drop(i, bits & m, self._single(lk), level + 1):
                        dgrew = True
        pj = self.pcls.get(j)
        if pj and not never and self._lock_params(i, f, c, j, pj, drop, ctop, slept, gated, acc):
            dgrew = True
        pj = self.param_reclaim.get(j)
        if pj and not never and self._gfp_params(i, f, c, j, pj, m, drop, ctop, slept, gated, acc):
            dgrew = True
        anyb[i], top[i], clean[i], atop[i], aany[i], iany[i], itop[i] = acc
        changed = dgrew or tuple(acc) != before
        sleeps = self.sleeps
        if j in sleeps and i not in sleeps and not ctx:  # atomic here: j's sleep is a bug
            sleeps[i] = Witness(c.line, j)
            changed = True
        return changed

    def _lock_params(self, i: str, f: FuncFacts, c, j: str, pj: dict[str, Witness],
                     drop: frozenset[str], ctop: bool, slept: bool, gated: bool,
                     acc: list[int]) -> bool:
        """The classes j takes through its lock parameters are the arguments of call c:
        added to i's (any, top, clean, atop, aany, iany, itop) bits in `acc`; True when a
        drop record or i's own lock-parameter entries grew.  `slept`, `gated`: the call
        adds nothing in atomic context, with interrupts off (pull)."""
        U, kinds, irq_classes = self.classes, self.kinds, self.irq_classes
        grew = False
        for cls, w in pj.items():
            for real in self.res.at_call(cls, c, f):
                if w.irq:
                    irq_classes.add(real)
                kinds.setdefault(real, kinds.get(cls, "spin"))
                if real.startswith("@param"):
                    if prefer(self.pcls.setdefault(i, {}), real,
                              Witness(c.line, j, drop | w.dropped, try_=w.try_, irq=w.irq,
                                      deep=w.deep or not ctop)):
                        grew = True  # a caller in the component must look again
                    continue
                b = 1 << U.id(real)
                if drop or w.dropped:
                    if self.set_drop(i, b, drop | w.dropped):
                        grew = True
                acc[0] |= b
                nosleep = not slept and kinds.get(real) not in kb.BLOCKING_KINDS
                irqoff = nosleep and not gated
                if nosleep:
                    acc[4] |= b
                if irqoff:
                    acc[5] |= b
                if ctop and w.edge:
                    acc[1] |= b
                    if nosleep:
                        acc[3] |= b
                    if irqoff:
                        acc[6] |= b
                    if not (drop or w.dropped):
                        acc[2] |= b
        return grew

    def _gfp_params(self, i: str, f: FuncFacts, c, j: str, pj: dict[int, Witness], m: int,
                    drop: frozenset[str], ctop: bool, slept: bool, gated: bool,
                    acc: list[int]) -> bool:
        """Whether j reclaims through a gfp parameter is decided by call c's argument: it
        reclaims (i's fs_reclaim bit in `acc`, as _lock_params adds classes), or the
        question passes on to i's own parameter.  True when a drop record or i's own
        gfp-parameter entries grew."""
        grew = False
        pr = self.param_reclaim.setdefault(i, {})
        for n, w in pj.items():
            if not m & 1 or n >= len(c.args):   # a memalloc scope masks fs_reclaim (gfp.scope_mask)
                continue
            how, k2 = gfp_reclaims(c.args[n], f)
            if how == "param":
                if prefer(pr, k2, Witness(c.line, j, drop | w.dropped, via_param=n,
                                          deep=w.deep or not ctop)):
                    grew = True
            elif how in ("yes", "unknown"):
                if (drop or w.dropped) and self.set_drop(i, 1, drop | w.dropped):
                    grew = True
                edge = ctop and w.edge
                if not acc[0] & 1 or edge and not acc[1] & 1:
                    self.via_gfp[i] = c.line  # where a witness search for fs_reclaim ends
                acc[0] |= 1
                if not slept:
                    acc[4] |= 1
                if not gated:
                    acc[5] |= 1
                if edge:
                    acc[1] |= 1
                    if not slept:
                        acc[3] |= 1
                    if not gated:
                        acc[6] |= 1
                    if not (drop or w.dropped):
                        acc[2] |= 1
        return grew


class _Live(Mapping):
    """`restricted[j]` while j's component is solved: each gate's summary is its clone's
    current one (constargs.narrowed reads it like a final entry)."""

    __slots__ = ("s", "per")

    def __init__(self, s: Summaries, per: dict[str, str]) -> None:
        self.s, self.per = s, per

    def __getitem__(self, g: str) -> tuple[int, int, int, int]:
        v, s = self.per[g], self.s
        return s.anyb[v], s.top[v], s.clean[v], s.atop[v]

    def __iter__(self):
        return iter(self.per)

    def __len__(self) -> int:
        return len(self.per)


def _postorder(scc: list[str], inner: dict[str, list]) -> list[str]:
    """The members of a component in DFS postorder of its inner calls (from the members in
    name order): a callee comes before the callers that reach it first."""
    done: set[str] = set()
    out: list[str] = []
    for root in scc:  # scc is sorted
        if root in done:
            continue
        done.add(root)
        stack = [(root, iter(inner[root]))]
        while stack:
            v, it = stack[-1]
            for _, j in it:
                if j not in done:
                    done.add(j)
                    stack.append((j, iter(inner[j])))
                    break
            else:
                stack.pop()
                out.append(v)
    return out


def sccs(targets: dict[str, tuple[tuple[str, ...], ...]]) -> list[list[str]]:
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
