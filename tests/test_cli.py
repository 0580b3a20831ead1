"""The command line as users and CI drive it: outputs, exit codes, one-line errors."""

from __future__ import annotations

import json
import os

import pytest
from typer.testing import CliRunner

from lockgraph.cli import app

from conftest import CORPUS, FIXTURES, ROOT

LOGS = FIXTURES / "logs"
SEED = LOGS / "seed-rfc-dtor-kswapd.log"
HUNG = LOGS / "seed-hung-dtor.log"
LEAF = LOGS / "seed-proc-lockdep-leaf.txt"
NONLEAF = LOGS / "seed-proc-lockdep-nonleaf.txt"

runner = CliRunner()


def run(*args: str, cwd=ROOT):
    old = os.getcwd()
    os.chdir(cwd)
    try:
        return runner.invoke(app, [str(a) for a in args])
    finally:
        os.chdir(old)


def rel(p):
    return str(p.relative_to(ROOT))


def check_json(*args):
    res = run("check", "--format", "json", *args)
    return res, json.loads(res.stdout)


def test_seed_rfc_dtor_is_a_violation_with_the_percpu_evidence():
    res, out = check_json(rel(SEED))
    assert res.exit_code == 1
    assert out["schema_version"] == 1
    assert out["verdict"]["status"] == "violated"
    dtor = [f for f in out["findings"] if f["rule"] == "LG101"]
    assert [f["lock"] for f in dtor] == ["pcpu_alloc_mutex"]
    f = dtor[0]
    assert f["severity"] == "error"
    assert f["path"] == ["mm_struct_dtor", "pcpu_alloc_mutex", "fs_reclaim"]
    edge_ev = [e for e in f["evidence"] if "'pcpu_alloc_mutex' -> 'fs_reclaim'" in e["what"]]
    assert edge_ev and edge_ev[0]["file"] == rel(SEED) and edge_ev[0]["line"] == 16
    assert "pcpu_populate_chunk" in edge_ev[0]["stack"]
    ctx = f["evidence"][0]
    assert "mm_struct_dtor" in ctx["stack"] and "slab destructor mm_struct_dtor()" in ctx["what"]
    rules = {x["rule"] for x in out["findings"]}
    # the reclaim re-entry pcpu_alloc_mutex --> fs_reclaim is the cycle fs_reclaim -->
    # pcpu_alloc_mutex --> fs_reclaim itself: one finding (LG103), the reclaim context
    # (taken under do_shrink_slab) among its evidence, no LG102 twin
    assert {"LG101", "LG103"} <= rules and "LG102" not in rules
    (cyc,) = [x for x in out["findings"] if x["rule"] == "LG103"]
    assert cyc["path"] == ["fs_reclaim", "pcpu_alloc_mutex"]
    whats = " | ".join(e["what"] for e in cyc["evidence"])
    assert "'pcpu_alloc_mutex' -> 'fs_reclaim'" in whats and "'fs_reclaim' -> 'pcpu_alloc_mutex'" in whats
    assert "acquired under do_shrink_slab()" in whats


def test_hung_task_listing_and_proc_lockdep_non_leaf_twin_fails():
    res, out = check_json(rel(HUNG), rel(NONLEAF))
    assert res.exit_code == 1
    (f,) = [f for f in out["findings"] if f["rule"] == "LG101"]
    assert f["lock"] == "&idrinfo->lock"
    assert f["path"] == ["tcf_action_dtor", "&idrinfo->lock", "pcpu_alloc_mutex", "fs_reclaim"]
    files = {e["file"] for e in f["evidence"]}
    assert files == {rel(HUNG), rel(NONLEAF)}
    assert out["dtor_locks"] == [{"lock": "&idrinfo->lock", "roots": ["tcf_action_dtor"],
                                  "leaf": False, "out": ["&idr->idr_lock", "pcpu_alloc_mutex"]}]


def test_hung_task_listing_and_proc_lockdep_leaf_twin_passes_but_is_not_proven():
    res, out = check_json(rel(HUNG), rel(LEAF))
    assert res.exit_code == 0, res.stdout
    assert out["findings"] == []
    assert out["dtor_locks"][0] == {"lock": "&idrinfo->lock", "roots": ["tcf_action_dtor"],
                                    "leaf": True, "out": []}
    assert out["verdict"]["status"] == "unproven"
    assert any("not covered" in b for b in out["verdict"]["blind_spots"])


def test_dtor_option_names_a_destructor():
    log = CORPUS / "ml-block-pcpu-elevator-1.log"
    res, out = check_json(rel(log))
    assert not [f for f in out["findings"] if f["rule"] == "LG101"]
    res, out = check_json(rel(log), "--dtor", "elevator_change")
    found = {f["lock"]: f for f in out["findings"] if f["rule"] == "LG101"}
    # elevator_change takes the elevator lock itself and pcpu_alloc_mutex further down.
    assert sorted(found) == ["&q->elevator_lock", "pcpu_alloc_mutex"]
    assert found["pcpu_alloc_mutex"]["path"] == ["elevator_change", "pcpu_alloc_mutex", "fs_reclaim"]
    assert res.exit_code == 1


def test_text_output_reads_like_lockdep():
    res = run("check", rel(SEED))
    assert res.exit_code == 1
    assert "error: LG101 non-leaf-lock-in-slab-dtor: 'pcpu_alloc_mutex'" in res.stdout
    assert "pcpu_alloc_mutex --> fs_reclaim" in res.stdout
    assert f"{rel(SEED)}:16: 'pcpu_alloc_mutex' -> 'fs_reclaim'" in res.stdout
    assert "verdict: violated" in res.stdout


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_check_output_matches_golden(fmt, update_golden):
    res = run("check", "--format", fmt, rel(SEED), rel(HUNG), rel(NONLEAF))
    golden = ROOT / "tests" / "golden" / f"seed-all.check.{'txt' if fmt == 'text' else 'json'}"
    if update_golden:
        golden.write_text(res.stdout)
        pytest.fail(f"golden file {golden.name} rewritten; review the diff")
    assert res.stdout == golden.read_text()


def test_output_is_deterministic_and_independent_of_argument_order():
    a = run("check", "--format", "json", rel(SEED), rel(HUNG), rel(NONLEAF)).stdout
    b = run("check", "--format", "json", rel(SEED), rel(HUNG), rel(NONLEAF)).stdout
    c = json.loads(run("check", "--format", "json", rel(NONLEAF), rel(HUNG), rel(SEED)).stdout)
    assert a == b
    assert [f["id"] for f in json.loads(a)["findings"]] == [f["id"] for f in c["findings"]]


def test_parse_json_contract():
    res = run("parse", "--format", "json", rel(SEED))
    assert res.exit_code == 0
    out = json.loads(res.stdout)
    assert out["schema_version"] == 1 and out["diagnostics"] == []
    (r,) = out["reports"]
    assert (r["file"], r["line"], r["kind"], r["task"]) == (rel(SEED), 2, "circular", "kswapd0/91")
    assert r["new_lock"] == "pcpu_alloc_mutex" and r["held_lock"] == "fs_reclaim"
    assert r["held_locks"] == ["fs_reclaim"]
    edges = {(e["from"], e["to"], e["certain"]) for e in r["edges"]}
    assert ("pcpu_alloc_mutex", "fs_reclaim", True) in edges
    assert ("fs_reclaim", "pcpu_alloc_mutex", True) in edges
    assert all({"from", "to", "certain", "file", "line"} <= set(e) for e in r["edges"])


def test_parse_text_lists_reports_and_edges():
    res = run("parse", rel(HUNG))
    assert res.exit_code == 0
    assert f"{rel(HUNG)}:1: hung_task_locks" in res.stdout
    assert "edge (wq_completion)events_unbound -> (work_completion)(&tcf_cleanup_work) [held]" in res.stdout


@pytest.mark.parametrize("case", ["missing", "directory", "empty", "binary", "no-lockdep"])
def test_unusable_input_exits_2_with_one_line(tmp_path, case):
    target = tmp_path / "in.log"
    if case == "directory":
        target.mkdir()
    elif case == "empty":
        target.write_text("")
    elif case == "binary":
        target.write_bytes(bytes(range(256)) * 64)
    elif case == "no-lockdep":
        target.write_text("[    0.000000] Linux version 6.12.0\n[    1.0] usb 1-1: new device\n")
    res = run("check", target, cwd=tmp_path)
    assert res.exit_code == 2
    lines = [ln for ln in res.stderr.splitlines() if "error:" in ln]
    assert len(lines) == 1 and lines[0].startswith("in.log")
    assert "Traceback" not in res.stderr + res.stdout


def test_usage_error_exits_2():
    assert run("check").exit_code == 2
    assert run("check", "--format", "xml", rel(SEED)).exit_code == 2


def test_input_files_are_not_modified(tmp_path):
    copy = tmp_path / "seed.log"
    copy.write_bytes(SEED.read_bytes())
    before = copy.stat().st_mtime_ns, copy.read_bytes()
    run("check", copy, cwd=tmp_path)
    assert (copy.stat().st_mtime_ns, copy.read_bytes()) == before


def test_cut_off_report_is_parsed_with_a_file_line_diagnostic():
    log = CORPUS / "syzkaller-98.log"
    res = run("parse", "--format", "json", rel(log))
    assert res.exit_code == 0
    out = json.loads(res.stdout)
    assert out["reports"][0]["kind"] == "circular"
    (d,) = out["diagnostics"]
    assert (d["file"], d["line"], d["level"]) == (rel(log), 2, "warning")
    assert "before its stack backtrace" in d["message"]
    assert f"{rel(log)}:2: warning:" in res.stderr


def test_parse_json_primary_view_matches_corpus_shape():
    log = CORPUS / "ml-block-pcpu-elevator-1.log"
    out = json.loads(run("parse", "--format", "json", rel(log)).stdout)
    (p,) = out["primary"]
    exp = json.loads((CORPUS / "expected" / "ml-block-pcpu-elevator-1.json").read_text())
    assert p["file"] == rel(log)
    assert (p["kind"], p["task"], p["new_lock"], p["held_lock"]) == (
        exp["kind"], exp["task"], exp["new_lock"], exp["held_lock"])
    assert p["edges"] == exp["edges"]


def test_a_log_only_check_reads_each_log_once(monkeypatch):
    """Logs are hashed only for a result that can be cached, i.e. when sources are scanned."""
    import lockgraph.cli as cli

    monkeypatch.setattr(cli, "_file_digest", lambda p: pytest.fail(f"{p} read again to hash it"))
    res = runner.invoke(app, ["check", str(LOGS / "seed-rfc-dtor-kswapd.log"), "--format", "json"])
    assert res.exit_code == 1 and json.loads(res.stdout)["findings"]
