"""The rule table: one row per check, ids never reused (README's rule table is made from it)."""

from __future__ import annotations

from dataclasses import dataclass

from lockgraph.model import Severity


@dataclass(frozen=True, slots=True)
class Rule:
    id: str
    slug: str
    severity: Severity
    summary: str


RULES: dict[str, Rule] = {r.id: r for r in (
    Rule("LG101", "non-leaf-lock-in-slab-dtor", Severity.ERROR,
         "a lock taken in a slab destructor has an outgoing dependency (it is not a leaf); "
         "destructors run under arbitrary caller locks and inside reclaim"),
    Rule("LG102", "reclaim-reentry", Severity.ERROR,
         "a lock taken in memory-reclaim context can reach fs_reclaim again: "
         "a cycle through reclaim"),
    Rule("LG103", "lock-cycle", Severity.ERROR,
         "a cycle in the merged lock graph (a possible ABBA deadlock); warning when it rests "
         "on edges inferred from held-lock listings only"),
    Rule("LG104", "non-leaf-lock-in-reclaim", Severity.NOTE,
         "a lock taken in reclaim context is not a leaf, but closes no cycle through reclaim"),
    Rule("LG105", "dtor-context-cycle", Severity.ERROR,
         "a slab destructor takes a lock in a context (reclaim, a lock held where its cache is "
         "freed) from which that context is already reachable: a predicted lockdep splat"),
    Rule("LG106", "ctor-sleeps-in-atomic-alloc", Severity.ERROR,
         "a slab constructor sleeps or allocates with reclaim, and its cache is allocated from "
         "in atomic context (GFP_ATOMIC/GFP_NOWAIT or under a spinning lock)"),
    Rule("LG107", "sleep-in-atomic", Severity.ERROR,
         "an operation that may sleep (a blocking lock, a GFP_KERNEL-like allocation, msleep(), "
         "might_sleep()...) is reached while a spinning lock (spin, raw spin, rwlock, local_lock) "
         "is held: \"sleeping function called from invalid context\""),
)}
