"""The shipped example reports are what the current code produces (scripts/regen-reports)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest

from conftest import ROOT

pytestmark = pytest.mark.kernel

RFC = ROOT / "reports" / "slab-dtor-rfc"
CIRCULAR = ROOT / "reports" / "syzbot-pcpu-elevator-change"
EXAMPLES = (RFC, CIRCULAR)
FILES = ["graph.dot", "graph.svg", "report.json", "report.md", "report.txt"]


def kernel_release(tree) -> str:
    """VERSION.PATCHLEVEL.SUBLEVEL from the tree's Makefile."""
    head = dict(re.findall(r"^(VERSION|PATCHLEVEL|SUBLEVEL) = (\d+)$", (tree / "Makefile").read_text(),
                           re.M))
    return f"{head['VERSION']}.{head['PATCHLEVEL']}.{head['SUBLEVEL']}"


@pytest.fixture(scope="module")
def regenerated(linux_tree):
    """Run the regeneration script and return {dir: (before, after)}, leaving files as they were.

    The examples cite file:line of one kernel release (reports/KERNEL); against another
    release every line number moves, so they are compared only on the release they cite."""
    made_on = (ROOT / "reports" / "KERNEL").read_text().strip()
    if kernel_release(linux_tree) != made_on:
        pytest.skip(f"the examples cite Linux {made_on}; the tree here is {kernel_release(linux_tree)}")
    before = {d: {p.name: p.read_bytes() for p in d.iterdir()} for d in EXAMPLES}
    env = dict(os.environ, LOCKGRAPH_LINUX=str(linux_tree), PYTHON=sys.executable)
    try:
        subprocess.run([str(ROOT / "scripts" / "regen-reports")], cwd=ROOT, env=env, check=True,
                       capture_output=True)
        after = {d: {p.name: p.read_bytes() for p in d.iterdir()} for d in EXAMPLES}
    finally:
        for d, files in before.items():   # leave the tree as it was; the diff is the result
            for name, data in files.items():
                (d / name).write_bytes(data)
    return {d: (before[d], after[d]) for d in EXAMPLES}


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda d: d.name)
def test_example_reports_are_current(regenerated, example):
    before, after = regenerated[example]
    assert sorted(before) == FILES
    # SVG bytes depend on the graphviz version: the DOT it is drawn from is compared instead.
    for name in FILES:
        if name != "graph.svg":
            assert before[name] == after[name], f"{example.name}/{name} is stale: run scripts/regen-reports"
    svg = ET.fromstring(after["graph.svg"])
    assert svg.tag.endswith("svg")


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda d: d.name)
def test_example_svg_draws_the_committed_dot(example):
    texts = {t.text for t in ET.parse(example / "graph.svg").iter() if t.tag.endswith("text")}
    dot = (example / "graph.dot").read_text()
    assert "fs_reclaim" in texts and 'label="fs_reclaim"' in dot
    assert any("not on a violation path omitted" in (t or "") for t in texts)


def test_rfc_example_shows_the_strict_leaf_violations_and_the_dtor_safe_reasoning():
    out = json.loads((RFC / "report.json").read_text())
    roots = {(r["kind"], r["function"]): r for r in out["roots"]}
    mm = roots[("dtor", "mm_struct_dtor")]
    tc = roots[("dtor", "tcf_action_dtor")]
    for r in (mm, tc):
        viol = {(v["lock"], v["to"]) for v in r["strict_leaf"]["violations"]}
        assert ("pcpu_lock", "stock_lock") in viol
        # the rstat lock is taken under stock_lock (stock_lock's edge) and, by the free
        # hook's mod_memcg_state() (include/linux/memcontrol.h), right under pcpu_lock
        assert ("stock_lock", "per_cpu_ptr(&cgroup_rstat_cpu_lock, cpu)") in viol
        assert ("pcpu_lock", "per_cpu_ptr(&cgroup_rstat_cpu_lock, cpu)") in viol
        assert r["strict_leaf"]["verdict"] == "violated"
        assert r["dtor_safe"]["verdict"] == "unproven"          # blind spots remain
        assert any("spinning" in why for why in r["dtor_safe"]["reasons"])
        assert r["blind_spots"]
    assert ("percpu_counters_lock", "key") in {(v["lock"], v["to"]) for v in mm["strict_leaf"]["violations"]}
    w = next(lk for lk in tc["locks"] if lk["lock"] == "pcpu_lock")["witness"]
    assert [s["function"] for s in w] == ["tcf_action_dtor", "free_percpu"]
    assert w[-1]["file"] == "mm/percpu.c"
    ctor = roots[("ctor", "tcf_action_ctor")]
    assert ctor["ctor_context"]["atomic_sites"][0]["function"] == "tcf_action_clone_atomic"
    assert any(f["rule"] == "LG106" for f in out["findings"])


def test_rfc_checklist_names_the_percpu_edge_with_its_place():
    md = (RFC / "report.md").read_text()
    assert "## Slab destructor `tcf_action_dtor`" in md
    assert ("- [ ] `pcpu_lock` is a leaf — no, 2 outgoing dependencies:\n"
            "  - `pcpu_lock` → `per_cpu_ptr(&cgroup_rstat_cpu_lock, cpu)` via `free_percpu` → "
            "`pcpu_memcg_free_hook` → … → `__cgroup_rstat_updated` (mm/percpu.c:2257)\n"
            "  - `pcpu_lock` → `stock_lock` via `free_percpu` → "
            "`pcpu_memcg_free_hook` → … → `refill_obj_stock` (mm/percpu.c:2257)") in md
    assert "(mm/percpu.c:2257)" in md
    assert "- [x] `tcf_action_dtor` takes only spinning locks" in md


def test_circular_example_shows_the_cycle_in_bold_and_fs_reclaim_apart():
    dot = (CIRCULAR / "graph.dot").read_text()
    assert 'label="fs_reclaim", shape=doubleoctagon' in dot
    assert dot.count("penwidth=2.4") == 6      # cycles of 4 and 5 edges sharing 3
    md = (CIRCULAR / "report.md").read_text()
    assert "LG103 lock-cycle (error)" in md
    assert ("ml-syzbot-pcpu-elevator-change.log:95: '&q->q_usage_counter(io)#55' -> "
            "'&q->elevator_lock' (new, certain)") in md
