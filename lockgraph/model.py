"""The data every stage hands to the next: reports, edges, findings.

Parsers produce these, the graph and checks consume them, renderers only format them — so
no stage needs to know how another one got its facts.
"""

from __future__ import annotations

import re

from dataclasses import asdict, dataclass, field
from enum import Enum
from typing import Any


class Severity(str, Enum):
    ERROR = "error"
    WARNING = "warning"
    NOTE = "note"


#: Report kinds of the JSON contract (`kind`); finer names of "other" go to `other_kind`.
REPORT_KINDS = (
    "circular", "recursive", "inconsistent_state", "irq_inversion", "irq_safe_unsafe",
    "invalid_wait_context", "bad_unlock_balance", "held_lock_freed", "held_on_return_to_user",
    "sleep_in_invalid_context", "hung_task_locks", "other",
)

#: RCU pseudo-locks: held with check=0, so lockdep records no dependency for them.
RCU_PSEUDO_LOCKS = frozenset({
    "rcu_read_lock", "rcu_read_lock_bh", "rcu_read_lock_sched", "rcu_callback",
    "rcu_read_lock_trace",
})


#: Locking primitives skipped when naming where a chain entry was acquired, and when a
#: stack is shown from the code that took the lock (log parser, checks and renderers)
#: (the anchored list of the corpus rules; clone suffixes are removed first).
PRIMITIVES = re.compile(
    r"^(?:lock_acquire|__lock_acquire|lock_acquired|lock_contended|lock_sync|lock_release"
    r"|check_prevs?_add|check_noncircular|validate_chain|mark_lock|mark_usage|lockdep_\w*|__lockdep_\w*"
    r"|_raw_\w*lock\w*|__raw_\w*lock\w*|do_raw_\w*lock\w*|raw_spin_rq_lock\w*|spin_lock\w*|read_lock\w*"
    r"|write_lock\w*|rt_spin_lock\w*|rt_mutex\w*|rwbase_\w*|mutex_lock\w*|__mutex_lock\w*|mutex_trylock\w*"
    r"|ww_mutex_lock\w*|down|down_\w*|__down_\w*|percpu_down_\w*|percpu_rwsem_\w*|rwsem_\w*"
    r"|fs_reclaim_acquire|__fs_reclaim_acquire|lock_map_acquire\w*|might_sleep|__might_sleep"
    r"|__might_resched|might_fault|__might_fault|seqcount_lockdep_reader_access|lock_sock_nested"
    r"|__lock_sock|touch_wq_lockdep_map|touch_work_lockdep_map|rcu_lock_acquire|srcu_lock_acquire)$"
)


#: lockdep's own reporting machinery at the top of a `stack backtrace:` (dump_stack()).
REPORTING = re.compile(
    r"^(?:_*dump_stack\w*|show_stack|print_\w+|check_\w+|validate_chain|valid_state|mark_\w+"
    r"|lock_is_held_type|__lock_is_held|lockdep_\w+|__warn|report_bug|warn_slowpath\w*"
    r"|debug_check_no_locks_freed|debug_show_\w+|hlock_\w+)$"
)


def trim_stack(stack: tuple[str, ...]) -> tuple[str, ...]:
    """Drop lockdep's and the lock primitives' own frames: start at the acquiring code."""
    k = 0
    while k < len(stack) - 1 and (PRIMITIVES.match(stack[k]) or REPORTING.match(stack[k])):
        k += 1
    return stack[k:]


@dataclass(frozen=True, slots=True)
class Diagnostic:
    """Something the user should know about their input: file:line, level, message."""

    path: str
    line: int
    level: str
    message: str

    def format(self) -> str:
        return f"{self.path}:{self.line}: {self.level}: {self.message}"


@dataclass(frozen=True, slots=True)
class LockRef:
    """A lock as a report prints it: class name plus the details lockdep shows with it."""

    name: str
    line: int
    usage: str | None = None
    wait: str | None = None
    at: str | None = None
    index: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}


@dataclass(frozen=True, slots=True)
class HeldList:
    """One `N locks held by comm/pid:` listing, in acquisition order (#0 outermost)."""

    task: str
    count: int
    line: int
    locks: tuple[LockRef, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {"task": self.task, "count": self.count, "line": self.line,
                "locks": [lk.to_json() for lk in self.locks]}


@dataclass(frozen=True, slots=True)
class ChainEntry:
    """`-> #N (name)` of a circular report, with the stack that recorded it."""

    index: int
    lock: str
    line: int
    acquired_at: str | None
    stack: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {"index": self.index, "lock": self.lock, "line": self.line,
                "acquired_at": self.acquired_at, "stack": list(self.stack)}


@dataclass(frozen=True, slots=True)
class Edge:
    """A dependency A -> B (B acquired while A held) and the evidence that states it.

    `certain` is True when a report or /proc dump states the dependency, False when it is
    only inferred from neighbours in a held-lock listing (lockdep format spec §5).
    """

    src: str
    dst: str
    certain: bool
    source: str
    file: str
    line: int
    report: int = -1
    stack: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {"from": self.src, "to": self.dst, "certain": self.certain,
                "source": self.source, "file": self.file, "line": self.line,
                "stack": list(self.stack)}


@dataclass(slots=True)
class Report:
    """One lockdep block of a log (a report, a hung-task dump, a /proc dump or a marker)."""

    file: str
    line: int
    kind: str
    other_kind: list[str] = field(default_factory=list)
    task: str | None = None
    new_lock: LockRef | None = None
    held_lock: LockRef | None = None
    subject_lock: LockRef | None = None
    other_lock: str | None = None
    direction: str | None = None
    irq_class: str | None = None
    usage_transition: str | None = None
    context: str | None = None
    #: The kernel source location a report names (`… invalid context at FILE:LINE`).
    site: str | None = None
    chain: list[ChainEntry] = field(default_factory=list)
    chain_exists_of: list[str] = field(default_factory=list)
    scenario: list[list[str]] = field(default_factory=list)
    paths: dict[str, list[str]] = field(default_factory=dict)
    held_lists: list[HeldList] = field(default_factory=list)
    edges: list[Edge] = field(default_factory=list)
    backtrace: tuple[str, ...] = ()
    #: Current stacks of other tasks (hung-task messages), innermost frame first.
    task_stacks: dict[str, tuple[str, ...]] = field(default_factory=dict)
    classes: list[dict[str, Any]] = field(default_factory=list)
    chains: list[dict[str, Any]] = field(default_factory=list)
    stats: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    duplicate_of: int | None = None

    @property
    def held_locks(self) -> list[str]:
        return [lk.name for hl in self.held_lists for lk in hl.locks]

    def functions(self) -> set[str]:
        """Every function the report shows on a stack or as an acquisition site."""
        out = set(self.backtrace)
        for stack in self.task_stacks.values():
            out.update(stack)
        for c in self.chain:
            out.update(c.stack)
        for e in self.edges:
            out.update(e.stack)
        refs = [self.new_lock, self.held_lock, self.subject_lock,
                *(lk for hl in self.held_lists for lk in hl.locks)]
        out.update(lk.at for lk in refs if lk is not None and lk.at)
        return out

    def to_json(self) -> dict[str, Any]:
        def ref(lk: LockRef | None) -> str | None:
            return lk.name if lk else None

        out: dict[str, Any] = {
            "file": self.file, "line": self.line, "kind": self.kind,
            "other_kind": self.other_kind, "task": self.task,
            "new_lock": ref(self.new_lock), "new_lock_at": self.new_lock.at if self.new_lock else None,
            "held_lock": ref(self.held_lock),
            "held_lock_at": self.held_lock.at if self.held_lock else None,
            "subject_lock": ref(self.subject_lock), "other_lock": self.other_lock,
            "direction": self.direction, "irq_class": self.irq_class,
            "usage_transition": self.usage_transition, "context": self.context,
            "chain": [c.to_json() for c in self.chain],
            "chain_exists_of": self.chain_exists_of, "scenario": self.scenario,
            "paths": self.paths,
            "edges": [e.to_json() for e in self.edges],
            "held_locks": self.held_locks,
            "held_lists": [h.to_json() for h in self.held_lists],
            "backtrace": list(self.backtrace),
            "notes": self.notes,
        }
        if self.site:
            out["site"] = self.site
        if self.classes:
            out["classes"] = self.classes
        if self.chains:
            out["chains"] = self.chains
        if self.stats:
            out["stats"] = self.stats
        return out


@dataclass(frozen=True, slots=True)
class Evidence:
    """Where a fact was seen: a log line (with its stack) or a source line."""

    file: str
    line: int
    what: str
    stack: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {"file": self.file, "line": self.line, "what": self.what,
                "stack": list(self.stack)}


@dataclass(frozen=True, slots=True)
class Finding:
    """A verdict the user acts on; never without evidence."""

    rule: str
    slug: str
    severity: Severity
    lock: str
    message: str
    evidence: tuple[Evidence, ...]
    path: tuple[str, ...] = ()
    id: str = ""
    detail: str = ""    # multi-line text such as a predicted lockdep splat
    root: str = ""      # the slab destructor/constructor the finding is about, if any

    def to_json(self) -> dict[str, Any]:
        out = {"id": self.id, "rule": self.rule, "slug": self.slug,
               "severity": self.severity.value, "lock": self.lock, "message": self.message,
               "path": list(self.path), "evidence": [e.to_json() for e in self.evidence]}
        if self.root:
            out["root"] = self.root
        if self.detail:
            out["detail"] = self.detail
        return out
