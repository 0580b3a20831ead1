"""The rule table: one row per check, ids never reused (README's rule table is made from it).

A rule is also the one constructor of its findings: the message is its template filled with
the finding's fields, and the id is made from the fields its id policy names — never from
line numbers or `#N` registration suffixes, so an id survives edits above the code and the
next boot, and a baseline keeps matching.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any

from lockgraph.model import Evidence, Finding, Severity

_VERSION = re.compile(r"#\d+")


def stable_name(lock: str) -> str:
    """A lock class name without lockdep's `#N` registration suffix — for ids only.

    Within one boot `#N` tells apart distinct classes that share a name (two
    `&type->s_umount_key` of two file system types), so the graph keeps it: they are two
    nodes.  But N is the order of registration, which differs from boot to boot, so an id
    that kept it would turn one cycle into a new finding every boot (syzkaller #5558).

    >>> stable_name("&q->q_usage_counter(io)#55")
    '&q->q_usage_counter(io)'
    """
    return _VERSION.sub("", lock)


def finding_id(rule: str, *parts: str) -> str:
    """Stable id of a finding: survives line moves, differs when its lock or path does."""
    stable = (stable_name(p) for p in parts)
    h = hashlib.sha1("\x1f".join((rule, *stable)).encode()).hexdigest()[:12]
    return f"{rule}-{h}"


def exact_id(rule: str, *parts: str) -> str:
    """The id with `#N` kept: only for findings whose stable ids would collide in one run."""
    h = hashlib.sha1("\x1f".join((rule, *parts)).encode()).hexdigest()[:12]
    return f"{rule}-{h}"


@dataclass(frozen=True, slots=True)
class Rule:
    id: str
    slug: str
    severity: Severity
    summary: str
    #: str.format template over the finding's fields (`lock` always among them).
    message: str
    #: The fields whose values make the finding's id (each a string or a tuple of them).
    key: tuple[str, ...]
    #: Other wordings of the same rule, by name (`make(..., variant=NAME)`).
    variants: tuple[tuple[str, str], ...] = ()

    def finding(self, lock: str, evidence: list[Evidence] | tuple[Evidence, ...],
                path: tuple[str, ...] = (), *, severity: Severity | None = None,
                detail: str = "", variant: str = "", **fields: Any) -> Finding:
        fields["lock"] = lock
        template = dict(self.variants)[variant] if variant else self.message
        parts: list[str] = []
        for k in self.key:
            v = fields[k]
            parts.extend(v if isinstance(v, tuple) else (str(v),))
        return Finding(self.id, self.slug, severity or self.severity, lock,
                       template.format(**fields), tuple(evidence), tuple(path),
                       finding_id(self.id, *parts), detail, fields.get("root", ""))


def make(rule_id: str, lock: str, evidence, path: tuple[str, ...] = (), **kw: Any) -> Finding:
    """A finding of `rule_id`, worded and identified by its rule."""
    return RULES[rule_id].finding(lock, evidence, path, **kw)


_REPORT = "lockdep reported {what}{where}{task}"

RULES: dict[str, Rule] = {r.id: r for r in (
    Rule("LG101", "non-leaf-lock-in-slab-dtor", Severity.ERROR,
         "a lock taken in a slab destructor has an outgoing dependency (it is not a leaf); "
         "destructors run under arbitrary caller locks and inside reclaim",
         "'{lock}' is taken in slab destructor {roots} but is not a leaf: {edges}{tail}",
         ("root", "lock"),
         (("enters_reclaim", "slab destructor {root}() enters memory reclaim (an allocation that "
           "may reclaim, at {site}): it runs under its callers' locks and inside reclaim"),)),
    Rule("LG102", "reclaim-reentry", Severity.ERROR,
         "a lock taken in memory-reclaim context can reach fs_reclaim again: "
         "a cycle through reclaim",
         "'{lock}' is taken in reclaim context and reaches fs_reclaim again: {chain}",
         ("lock", "route")),
    Rule("LG103", "lock-cycle", Severity.ERROR,
         "a cycle in the merged lock graph (a possible ABBA deadlock); warning when it rests "
         "on edges inferred from held-lock listings only, or on a static witness that goes "
         "through an ops-table call (a may-path)",
         "lock cycle: {chain}{inferred}", ("start", "cycle")),
    Rule("LG104", "non-leaf-lock-in-reclaim", Severity.NOTE,
         "a lock taken in reclaim context is not a leaf, but closes no cycle through reclaim",
         "'{lock}' is taken in reclaim context and is not a leaf ('{lock}' -> '{to}'), "
         "but closes no cycle through fs_reclaim", ("lock", "route")),
    Rule("LG105", "dtor-context-cycle", Severity.ERROR,
         "a slab destructor takes a lock in a context (reclaim, a lock held where its cache is "
         "freed) from which that context is already reachable: a predicted lockdep splat",
         "slab destructor {root}() {takes} in a context holding {contexts}, and {paths} "
         "already exists", ("root", "lock")),
    Rule("LG106", "ctor-sleeps-in-atomic-alloc", Severity.ERROR,
         "a slab constructor sleeps or allocates with reclaim, and its cache is allocated from "
         "in atomic context (GFP_ATOMIC/GFP_NOWAIT or under a spinning lock)",
         "constructor {lock}() {why} but runs inside kmem_cache_alloc() at {site} ({context})",
         ("lock", "file", "function", "nth")),
    Rule("LG107", "sleep-in-atomic", Severity.ERROR,
         "an operation that may sleep (a blocking lock, a GFP_KERNEL-like allocation, msleep(), "
         "might_sleep()...) is reached while a spinning lock (spin, raw spin, rwlock, local_lock) "
         "is held or inside rcu_read_lock(): \"sleeping function called from invalid context\"; "
         "a warning when the path "
         "goes through an indirect call (a may-path)",
         "{label}{where} may sleep while {held_how} is held in {func}(){via}: "
         "sleeping function called from invalid context{may}", ("file", "func", "lock", "leaf", "label")),
    Rule("LG110", "recursive-locking", Severity.ERROR,
         "lockdep reported recursive locking: a task takes a lock class it already holds "
         "(an AA deadlock unless the class is annotated for nesting)",
         _REPORT, ("lock", "frame")),
    Rule("LG111", "inconsistent-lock-state", Severity.ERROR,
         "lockdep reported an inconsistent lock state: a lock taken in interrupt context is "
         "also taken with that interrupt enabled (it can interrupt itself)",
         _REPORT, ("lock", "transition")),
    Rule("LG112", "irq-lock-inversion", Severity.ERROR,
         "lockdep reported an irq lock inversion or an irq-safe -> irq-unsafe order: an "
         "interrupt can deadlock against a lock taken with interrupts enabled",
         _REPORT, ("kind", "lock", "other")),
    Rule("LG113", "invalid-wait-context", Severity.ERROR,
         "lockdep reported an invalid wait context: a lock that may sleep (or a spinlock on "
         "PREEMPT_RT) taken where waiting is not allowed",
         _REPORT, ("lock", "frame")),
    Rule("LG114", "bad-unlock-balance", Severity.ERROR,
         "lockdep reported a bad unlock balance: a lock released that the task does not hold",
         _REPORT, ("lock", "frame")),
    Rule("LG115", "held-lock-freed", Severity.ERROR,
         "lockdep reported a held lock freed: memory holding a lock is freed while the lock "
         "is held",
         _REPORT, ("lock", "frame")),
    Rule("LG116", "lock-held-returning-to-user", Severity.ERROR,
         "lockdep reported a lock still held when returning to user space",
         _REPORT, ("lock", "frame")),
    Rule("LG117", "sleep-in-atomic-observed", Severity.ERROR,
         "the kernel reported a sleeping function called from invalid context (atomic, under "
         "a spinning lock or with interrupts disabled)",
         "the kernel reported {what}{where}{task}", ("lock", "frame")),
    Rule("LG118", "lockdep-turned-off", Severity.NOTE,
         "lockdep turned itself off (after its first report, or a limit): the log after it "
         "carries no lock evidence",
         "lockdep is turned off from here on{where}: the log after it has no lock evidence",
         ()),
)}
