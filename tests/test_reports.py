"""The shipped example reports are what the current code produces (scripts/regen-reports)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from conftest import ROOT

pytestmark = pytest.mark.kernel

RFC = ROOT / "reports" / "slab-dtor-rfc"


@pytest.fixture(scope="module")
def regenerated(linux_tree, tmp_path_factory):
    """Run the regeneration script on a copy of the reports and return the new files."""
    before = {p.name: p.read_text() for p in RFC.iterdir()}
    env = dict(os.environ, LOCKGRAPH_LINUX=str(linux_tree), PYTHON=sys.executable)
    subprocess.run([str(ROOT / "scripts" / "regen-reports")], cwd=ROOT, env=env, check=True,
                   capture_output=True)
    after = {p.name: p.read_text() for p in RFC.iterdir()}
    for name, text in before.items():   # leave the tree as it was; the diff is the result
        (RFC / name).write_text(text)
    return before, after


def test_rfc_example_reports_are_current(regenerated):
    before, after = regenerated
    assert sorted(before) == ["report.json", "report.txt"]
    assert before == after, "reports/slab-dtor-rfc/ is stale: run scripts/regen-reports"


def test_rfc_example_shows_the_strict_leaf_violations_and_the_dtor_safe_reasoning():
    out = json.loads((RFC / "report.json").read_text())
    roots = {(r["kind"], r["function"]): r for r in out["roots"]}
    mm = roots[("dtor", "mm_struct_dtor")]
    tc = roots[("dtor", "tcf_action_dtor")]
    for r in (mm, tc):
        viol = {(v["lock"], v["to"]) for v in r["strict_leaf"]["violations"]}
        assert ("pcpu_lock", "stock_lock") in viol
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
