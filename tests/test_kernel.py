"""Facts the real Linux 6.12 tree must yield (docs/kernel-facts.md §6), on the real files."""

from __future__ import annotations

import pytest

from lockgraph.static.facts.scan import scan_paths
from lockgraph.static.solve import solve

pytestmark = pytest.mark.kernel

PERCPU_FILES = ["mm/percpu.c", "mm/percpu-vm.c", "lib/percpu_counter.c", "mm/memcontrol.c",
                "kernel/cgroup/rstat.c", "kernel/workqueue.c", "include/linux/workqueue.h",
                "include/linux/memcontrol.h"]


@pytest.fixture(scope="module")
def solved(linux_tree):
    return solve(scan_paths([linux_tree / f for f in PERCPU_FILES], linux_tree, None))


def vias(S, a, b):
    return [[step.function] + [s.function for s in via] for step, via in S.edges[(a, b)].evidence]


def test_pcpu_alloc_mutex_reaches_fs_reclaim_through_chunk_creation_and_population(solved):
    paths = vias(solved, "pcpu_alloc_mutex", "fs_reclaim")
    assert any(p[:2] == ["pcpu_alloc_noprof", "pcpu_create_chunk"] for p in paths), paths
    assert any(p[:2] == ["pcpu_alloc_noprof", "pcpu_populate_chunk"] for p in paths), paths
    step, _ = solved.edges[("pcpu_alloc_mutex", "fs_reclaim")].evidence[0]
    assert step.file == "mm/percpu.c"


def test_pcpu_alloc_mutex_then_pcpu_lock(solved):
    assert ("pcpu_alloc_mutex", "pcpu_lock") in solved.edges


def test_free_percpu_takes_pcpu_lock(solved):
    acq = [a for a in solved.acquisitions if a["function"] == "free_percpu"]
    assert [(a["lock"], a["file"], a["kind"], a["irq"]) for a in acq] == [
        ("pcpu_lock", "mm/percpu.c", "spin", True)]


def test_pcpu_lock_reaches_memcg_locks_through_the_free_hook(solved):
    e = solved.edges[("pcpu_lock", "stock_lock")]
    step, via = e.evidence[0]
    assert (step.function, step.file) == ("free_percpu", "mm/percpu.c")
    assert via[0].function == "pcpu_memcg_free_hook"
    assert "defined(CONFIG_MEMCG)" in e.configs
    # the rstat lock is taken twice on this path: under stock_lock (refill_obj_stock ->
    # drain), so lockdep records stock_lock -> it there; and after stock_lock is released,
    # by the free hook's own mod_memcg_state() (an inline in memcontrol.h) with only
    # pcpu_lock held: pcpu_lock -> it directly
    rstat = "per_cpu_ptr(&cgroup_rstat_cpu_lock, cpu)"
    assert ("stock_lock", rstat) in solved.edges
    assert ["free_percpu", "pcpu_memcg_free_hook", "mod_memcg_state", "__mod_memcg_state",
            "memcg_rstat_updated", "__cgroup_rstat_updated"] in vias(solved, "pcpu_lock", rstat)


def test_no_pool_lock_edge_from_pcpu_lock(solved):
    fid = "mm/percpu.c:pcpu_schedule_balance_work"
    assert "&pool->lock" in solved.takes[fid]      # it does take it...
    assert ("pcpu_lock", "&pool->lock") not in solved.edges  # ...after pcpu_lock is dropped


def test_percpu_counters_lock_then_the_per_counter_class(solved):
    assert ("percpu_counters_lock", "key") in solved.edges


def test_balance_workfn_noio_scope_adds_no_fs_reclaim_edge(solved):
    for (a, b), e in solved.edges.items():
        if b != "fs_reclaim":
            continue
        for step, via in e.evidence:
            assert "pcpu_balance_workfn" not in [step.function] + [s.function for s in via]
    f = solved.funcs["mm/percpu.c:pcpu_balance_workfn"]
    assert any("noio" in c.scopes for c in f.calls)


def test_check_of_percpu_c_alone_follows_its_include_of_percpu_vm_c(linux_tree):
    """`check --src mm/percpu.c`: the file includes percpu-vm.c (and percpu-km.c), whose
    pcpu_populate_chunk() allocates under pcpu_alloc_mutex — the RFC's key edge."""
    from lockgraph import pipeline

    f = linux_tree / "mm" / "percpu.c"
    srcs = pipeline.collect_sources([f])
    assert {p.name for p in srcs.files.files} == {"percpu.c", "percpu-vm.c", "percpu-km.c"}
    res = pipeline.run([], (), pipeline.scan([f], sources=srcs))
    ev = res.graph["pcpu_alloc_mutex"]["fs_reclaim"]["evidence"]
    assert any("mm/percpu-vm.c" in frame for e in ev for frame in e.stack), [e.stack for e in ev]


@pytest.mark.parametrize("tiny", [False, True], ids=["every-configuration", "slub-tiny"])
def test_deactivate_slab_takes_the_node_list_lock_unless_slub_tiny(linux_tree, tmp_path, tiny):
    """mm/slub.c keeps deactivate_slab() under `#ifndef CONFIG_SLUB_TINY` (issue 12)."""
    from lockgraph.static.facts.config import load_config

    cfg = None
    if tiny:
        (tmp_path / ".config").write_text("CONFIG_SLUB=y\nCONFIG_SLUB_TINY=y\nCONFIG_SMP=y\n")
        cfg = load_config(tmp_path / ".config")
    S = solve(scan_paths([linux_tree / "mm" / "slub.c"], linux_tree, cfg))
    got = {a["lock"] for a in S.acquisitions if a["function"] == "deactivate_slab"}
    assert ("&n->list_lock" in got) != tiny, got


def test_a_lock_parameter_is_listed_with_its_callers_classes(linux_tree):
    """compact_lock_irqsave(lock, ...) takes what isolate_*() pass it (issue 12): the lru
    lock and the zone lock (named by the text of its site: mm/compaction.c alone has no
    init site for it)."""
    S = solve(scan_paths([linux_tree / "mm" / "compaction.c"], linux_tree, None))
    got = {a["lock"] for a in S.acquisitions if a["function"] == "compact_lock_irqsave"}
    assert {"&lruvec->lru_lock", "&cc->zone->lock"} <= got, got


@pytest.mark.parametrize("kmemleak", [False, True], ids=["debian-like", "kmemleak"])
def test_a_config_without_kmemleak_does_not_scan_mm_kmemleak_c(linux_tree, tmp_path, kmemleak):
    """mm/Makefile builds kmemleak.o only with CONFIG_DEBUG_KMEMLEAK: without it, kfree()'s
    kmemleak_free() call reaches no kmemleak lock (the header's empty stub is what links)."""
    from lockgraph.pipeline import collect_sources

    cfg = tmp_path / ".config"
    cfg.write_text("CONFIG_MMU=y\nCONFIG_SLUB=y\n"
                   + ("CONFIG_DEBUG_KMEMLEAK=y\n" if kmemleak else "# CONFIG_DEBUG_KMEMLEAK is not set\n"))
    src = collect_sources([linux_tree / "mm"], cfg)
    assert ("mm/kmemleak.c" in src.excluded) != kmemleak
    assert "mm/slub.c" not in src.excluded
