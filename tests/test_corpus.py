"""Every real lockdep log of the development corpus parses to its expected facts."""

from __future__ import annotations

import json

import pytest

from lockgraph.ingest.logs import parse_log
from lockgraph.ingest.logs.primary import primary_facts

from conftest import CORPUS

LOGS = sorted(CORPUS.glob("*.log"))


def expected(log):
    return json.loads((CORPUS / "expected" / (log.stem + ".json")).read_text())


@pytest.mark.parametrize("log", LOGS, ids=[p.stem for p in LOGS])
def test_corpus_log_matches_expected_facts(log):
    exp = expected(log)
    got = primary_facts(parse_log(log).reports)
    assert got["kind"] == exp["kind"]
    assert got["new_lock"] == exp["new_lock"]
    assert got["held_lock"] == exp["held_lock"]
    assert set(map(tuple, got["edges"])) == set(map(tuple, exp["edges"]))


@pytest.mark.parametrize("log", LOGS, ids=[p.stem for p in LOGS])
def test_corpus_task_and_held_locks(log):
    exp = expected(log)
    got = primary_facts(parse_log(log).reports)
    assert got["task"] == exp["task"]
    assert got["held_locks"] == exp["held_locks"]
    if exp["kind"] == "other":
        assert got["other_kind"] == exp.get("other_kind", [])


def test_corpus_is_complete():
    assert len(LOGS) == 97


# -- every report kind: its kind, subject lock(s), file:line and stack in the Report ---------

LOGS_DIR = CORPUS.parent / "logs"

#: (log, line of the report, kind, {field: expected}, a frame its backtrace must show).
#: Lock fields are (name, at); `other_kind`/`held_locks` lists; the rest plain values.
KIND_CASES = [
    # arm32 CONFIG_BACKTRACE_VERBOSE trace: `[<pc>] (func) from [<lr>] (caller+off/len)`
    ("syzkaller-553.log", 2, "inconsistent_state",
     {"task": "swapper/0/0", "new_lock": ("&file_data->lock", "io_file_data_ref_zero"),
      "usage_transition": "{SOFTIRQ-ON-W} -> {IN-SOFTIRQ-W}"}, "percpu_ref_switch_to_atomic_rcu"),
    ("ml-block-iwc-sx8.log", 2, "invalid_wait_context",
     {"task": "kworker/5:1/68", "new_lock": ("&entry->access", "carm_queue_rq"),
      "context": "context-{4:4}"}, "blk_mq_dispatch_rq_list"),
    # decode_stacktrace.sh output: `func (file.c:line)`, no offsets
    ("ml-cgroups-bub-callerid.log", 1, "bad_unlock_balance",
     {"task": "kworker/u9:1/45", "subject_lock": ("rcu_read_lock", "rcu_read_unlock")},
     "lruvec_unlock_irqrestore"),
    ("syzkaller-150.log", 2, "held_lock_freed",
     {"task": "syzkaller065230/3505", "subject_lock": ("sk_lock-AF_INET6", "sctp_wait_for_sndbuf")},
     "kmem_cache_free"),
    ("ml-xfs-held-return-user.log", 2, "held_on_return_to_user",
     {"task": "chgrp/47006", "held_locks": ["&xfs_nondir_ilock_class"]}, None),
    # AA: both acquisition sites of the one class
    ("ml-syzbot-xfs-icwalk-recursive.log", 2, "recursive",
     {"task": "syz.0.0/5359", "new_lock": ("&xfs_nondir_ilock_class", "xfs_reclaim_inode"),
      "held_lock": ("&xfs_nondir_ilock_class", "xfs_bmap_punch_delalloc_range")},
     "xfs_icwalk_ag"),
    ("syzkaller-375.log", 1, "sleep_in_invalid_context",
     {"task": "kworker/0:2/464", "site": "kernel/locking/mutex.c:908",
      "context": "in_atomic(): 1, irqs_disabled(): 0",
      "held_locks": ["(wq_completion)usb_hub_wq", "(work_completion)(&hub->events)", "&dev->mutex",
                     "&dev->mutex", "(&toneport->timer)"]}, "line6_pcm_acquire"),
    ("syzkaller-75.log", 2, "other", {"other_kind": ["lockdep_off"]}, None),
    # arm32 trace without CONFIG_BACKTRACE_VERBOSE: ` func from caller+off/len`
    ("../logs/arm32-recursive-dtor.log", 2, "recursive",
     {"task": "kworker/1:2/123", "new_lock": ("&pool->lock", "foo_detach"),
      "held_lock": ("&pool->lock", "foo_pool_shrink")}, "foo_obj_release"),
    ("../logs/sleep-in-dtor.log", 1, "sleep_in_invalid_context",
     {"task": "kworker/0:3/2214", "site": "kernel/locking/mutex.c:585",
      "context": "in_atomic(): 1, irqs_disabled(): 0, non_block: 0",
      "held_locks": ["(wq_completion)events", "(work_completion)(&cache->reap_work)",
                     "&cache->list_lock"]}, "foo_obj_dtor"),
]


@pytest.mark.parametrize("log,line,kind,fields,frame", KIND_CASES,
                         ids=[f"{c[2]}-{c[0].rsplit('/', 1)[-1]}" for c in KIND_CASES])
def test_each_report_kind_is_recognised_with_its_locks_site_and_stack(log, line, kind, fields,
                                                                       frame):
    reports = parse_log(CORPUS / log, shown="x.log").reports
    (r,) = [r for r in reports if r.line == line]
    assert (r.file, r.kind) == ("x.log", kind)
    for name, want in fields.items():
        got = getattr(r, name)
        if isinstance(want, tuple):
            got = (got.name, got.at) if got else None
        assert got == want, name
    if frame is None:
        assert r.backtrace == ()  # these reports print no stack
    else:
        assert frame in r.backtrace
        # the stack is the reporting task's own, innermost first, ending at its entry
        assert r.backtrace[0] in ("dump_stack", "dump_stack_lvl", "dump_backtrace",
                                  "unwind_backtrace"), r.backtrace


def test_sleeping_function_report_ends_the_report_before_it():
    """A sleeping-function BUG after a lockdep splat is its own report, not the splat's tail."""
    reports = parse_log(CORPUS / "syzkaller-203.log").reports
    assert [(r.kind, r.line) for r in reports] == [("other", 2), ("sleep_in_invalid_context", 96)]
    assert reports[1].task == "syz-executor1/6886" and reports[1].site == "mm/slab.h:420"
    assert reports[0].held_locks == reports[1].held_locks == ["rcu_read_lock"]
