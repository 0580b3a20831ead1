"""Which acquisitions happened in a slab destructor and which inside memory reclaim.

A destructor runs wherever SLUB frees a slab page — under any caller lock and inside
reclaim — so a lock it takes must be a leaf (seed review).  From runtime evidence we can
only judge acquisitions whose stack we saw: the chain-entry traces, the current stack of a
report, a hung task's stack, and held-list `at:` sites.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from lockgraph.graph import FS_RECLAIM
from lockgraph.model import Evidence, Report, trim_stack

#: SLUB's slab-freeing path; the frame printed just above one of these is the destructor.
SLAB_FREE_FRAMES = frozenset({"__free_slab", "free_slab", "discard_slab", "rcu_free_slab"})
#: Frames that mean "this runs inside memory reclaim" (docs/kernel-facts.md §3.3, §5).
RECLAIM_FRAMES = frozenset({
    "kswapd", "balance_pgdat", "shrink_node", "shrink_node_memcgs", "shrink_zones",
    "shrink_slab", "shrink_slab_memcg", "do_shrink_slab", "shrink_lruvec", "shrink_one",
    "lru_gen_shrink_node", "shrink_folio_list", "__perform_reclaim",
    "__alloc_pages_direct_reclaim", "try_to_free_pages", "do_try_to_free_pages",
    "__node_reclaim", "node_reclaim", "shrink_all_memory", "try_to_free_mem_cgroup_pages",
    "mem_cgroup_shrink_node", "drop_slab", "drop_slab_node",
})


@dataclass(frozen=True, slots=True)
class Acquisition:
    """A lock and the stack (innermost first) that acquired it, with where we saw it."""

    lock: str
    stack: tuple[str, ...]
    file: str
    line: int
    how: str


@dataclass(frozen=True, slots=True)
class Context:
    """Why a lock is in a context: the root function and the evidence line."""

    root: str
    evidence: Evidence


def dtor_of(stack: tuple[str, ...], dtors: frozenset[str]) -> tuple[str, int] | None:
    """(destructor, its frame index) when the stack runs inside a slab destructor."""
    for i, f in enumerate(stack):
        if f in dtors:
            return f, i
        if f in SLAB_FREE_FRAMES and i > 0 and stack[i - 1] not in SLAB_FREE_FRAMES:
            return stack[i - 1], i - 1
    return None


def reclaim_of(stack: tuple[str, ...]) -> tuple[str, int] | None:
    for i, f in enumerate(stack):
        if f in RECLAIM_FRAMES:
            return f, i
    return None


def acquisitions(reports: Iterable[Report]) -> list[Acquisition]:
    """Every acquisition whose stack (or `at:` site) the reports show."""
    out: list[Acquisition] = []
    for r in reports:
        if r.duplicate_of is not None:
            continue
        for e in r.edges:
            if e.stack and e.source in ("chain", "new", "path", "safe_path", "unsafe_path"):
                out.append(Acquisition(e.dst, e.stack, e.file, e.line, e.source))
        if r.new_lock and r.backtrace:
            out.append(Acquisition(r.new_lock.name, r.backtrace, r.file, r.new_lock.line, "current"))
        stacks = dict(r.task_stacks)
        if r.task and r.backtrace:
            stacks.setdefault(r.task, r.backtrace)
        for hl in r.held_lists:
            stack = stacks.get(hl.task, ())
            for lk in hl.locks:
                if not lk.at:
                    continue
                # The held lock was taken by `at`; if `at` is on the task's current stack,
                # everything below it on that stack is the acquisition's calling context.
                full = stack[stack.index(lk.at):] if lk.at in stack else (lk.at,)
                out.append(Acquisition(lk.name, full, r.file, lk.line, "held"))
    return out


def mark_contexts(reports: list[Report], dtors: Iterable[str] = ()) -> tuple[
        dict[str, list[Context]], dict[str, list[Context]]]:
    """(dtor-acquired locks, reclaim-context locks) with the evidence for each."""
    dset = frozenset(dtors)
    dtor: dict[str, list[Context]] = {}
    reclaim: dict[str, list[Context]] = {}
    seen: set[tuple[str, str, tuple[str, ...]]] = set()
    for a in acquisitions(reports):
        key = (a.file, a.lock, trim_stack(a.stack))
        if key in seen:  # the same acquisition printed twice (chain #0 and backtrace)
            continue
        seen.add(key)
        d = dtor_of(a.stack, dset)
        if d:
            ev = Evidence(a.file, a.line, f"'{a.lock}' acquired in slab destructor {d[0]}()",
                          trim_stack(a.stack[: d[1] + 2]))
            dtor.setdefault(a.lock, []).append(Context(d[0], ev))
        rc = reclaim_of(a.stack)
        if rc and a.lock != FS_RECLAIM:
            ev = Evidence(a.file, a.line, f"'{a.lock}' acquired under {rc[0]}()",
                          trim_stack(a.stack[: rc[1] + 1]))
            reclaim.setdefault(a.lock, []).append(Context(rc[0], ev))
    for r in reports:
        if r.duplicate_of is not None:
            continue
        for e in r.edges:
            if e.src == FS_RECLAIM and e.dst != FS_RECLAIM:
                ev = Evidence(e.file, e.line, f"'{e.dst}' acquired while holding fs_reclaim"
                              f" ({e.source})", e.stack)
                reclaim.setdefault(e.dst, []).append(Context(FS_RECLAIM, ev))
        for hl in r.held_lists:
            names = [lk for lk in hl.locks]
            for k, lk in enumerate(names):
                if lk.name == FS_RECLAIM:
                    for later in names[k + 1:]:
                        if later.name != FS_RECLAIM:
                            ev = Evidence(r.file, later.line,
                                          f"'{later.name}' held above fs_reclaim by {hl.task}",
                                          (later.at,) if later.at else ())
                            reclaim.setdefault(later.name, []).append(Context(FS_RECLAIM, ev))
    for ctxs in (*dtor.values(), *reclaim.values()):
        ctxs.sort(key=lambda c: (c.evidence.file, c.evidence.line, c.root))
    return dtor, reclaim
