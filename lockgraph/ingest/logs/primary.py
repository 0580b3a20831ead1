"""The "primary report" view of a log, as lockdep corpus expectations describe one.

A log often holds several blocks; reviewers and bug trackers name it after the first
report header (syzkaller does the same).  `check` uses every block; this view exists only
for comparing against the corpus expectations (tests/test_corpus.py, scripts/bench-logs).
"""

from __future__ import annotations

from typing import Any

from lockgraph.model import Report


def primary_facts(reports: list[Report]) -> dict[str, Any]:
    live = [r for r in reports if r.duplicate_of is None]
    # The corpus counts a sleeping-function BUG as a non-lockdep report around a listing.
    headed = [r for r in live if r.kind not in ("hung_task_locks", "other", "sleep_in_invalid_context")
              or (r.kind == "other" and r.other_kind and r.other_kind[0] not in
                  ("proc_lockdep", "proc_lockdep_chains", "proc_lockdep_stats"))]
    dumps = [r for r in live if r.kind == "hung_task_locks"]
    if headed and headed[0].kind != "other":
        prim = headed[0]
        return {"kind": prim.kind, "task": prim.task,
                "new_lock": prim.new_lock.name if prim.new_lock else None,
                "held_lock": prim.held_lock.name if prim.held_lock else None,
                "edges": [(e.src, e.dst) for e in prim.edges], "held_locks": prim.held_locks,
                "other_kind": []}
    if dumps and not headed:
        prim = dumps[0]
        return {"kind": "hung_task_locks", "task": prim.task, "new_lock": None,
                "held_lock": None, "edges": [(e.src, e.dst) for e in prim.edges],
                "held_locks": prim.held_locks, "other_kind": []}
    markers = [m for r in live for m in r.other_kind]
    listed = next((r for r in live if r.held_lists), None)
    edges = [(e.src, e.dst) for r in live for e in r.edges if r is listed or not r.held_lists]
    return {"kind": "other", "task": listed.task if listed else None, "new_lock": None,
            "held_lock": None, "edges": edges,
            "held_locks": listed.held_locks if listed else [], "other_kind": markers}
