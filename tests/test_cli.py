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


# -- paste formats, standard input, -h --------------------------------------------------------

ARM = LOGS / "arm32-recursive-dtor.log"
SLEEP = LOGS / "sleep-in-dtor.log"


def run_stdin(data: bytes, *args: str):
    old = os.getcwd()
    os.chdir(ROOT)
    try:
        return runner.invoke(app, [str(a) for a in args], input=data)
    finally:
        os.chdir(old)


@pytest.mark.parametrize("log", [SEED, CORPUS / "ml-block-pcpu-elevator-1.log"],
                         ids=lambda p: p.stem)
def test_check_dash_reads_standard_input_and_names_it_stdin(log):
    piped = run_stdin(log.read_bytes(), "check", "--format", "json", "-")
    from_file = run("check", "--format", "json", rel(log))
    assert piped.exit_code == from_file.exit_code
    got, want = json.loads(piped.stdout), json.loads(from_file.stdout)
    assert got["inputs"] == [{"file": "<stdin>", "reports": want["inputs"][0]["reports"]}]
    # the same findings, with every piece of evidence naming <stdin>
    assert json.dumps(got["findings"]) == json.dumps(want["findings"]).replace(
        json.dumps(rel(log))[1:-1], "<stdin>")
    files = {e["file"] for f in got["findings"] for e in f["evidence"]}
    assert files <= {"<stdin>"}


def test_parse_dash_reads_standard_input_alongside_files():
    res = run_stdin(HUNG.read_bytes(), "parse", rel(SEED), "-")
    assert res.exit_code == 0
    assert f"{rel(SEED)}:2: circular" in res.stdout and "<stdin>:1: hung_task_locks" in res.stdout


@pytest.mark.parametrize("data,why", [(b"", "empty input"), (b" \n\n", "empty input"),
                                      (bytes(range(256)) * 64, "binary data"),
                                      (b"[    1.0] usb 1-1: new device\n", "no lockdep output")])
def test_unusable_standard_input_exits_2_with_one_line(data, why):
    res = run_stdin(data, "check", "-")
    assert res.exit_code == 2
    (line,) = [ln for ln in res.stderr.splitlines() if "error:" in ln]
    assert line.startswith("<stdin>") and why in line
    assert "Traceback" not in res.stderr + res.stdout


def test_standard_input_given_twice_is_a_usage_error():
    res = run_stdin(SEED.read_bytes(), "check", "-", "-")
    assert res.exit_code == 2 and "more than once" in res.stderr


def test_a_mail_quoted_dmesg_T_splat_on_stdin_gives_the_findings_of_the_log():
    import re

    text = SEED.read_text()
    human = re.sub(r"\[\s*(\d+)\.\d+\]", lambda m: f"[Sun Dec  6 17:{int(m.group(1)) % 60:02d}:01 2026]",
                   text)
    mail = "On Sun, Dec 6, someone wrote:\n" + "".join(f"> {ln}\n" for ln in human.splitlines())
    piped, direct = run_stdin(mail.encode(), "check", "--format", "json", "-"), check_json(rel(SEED))[1]
    assert piped.exit_code == 1
    got = json.loads(piped.stdout)
    assert [f["id"] for f in got["findings"]] == [f["id"] for f in direct["findings"]]
    lines = {(e["what"], e["line"] - 1) for f in got["findings"] for e in f["evidence"]}
    assert lines == {(e["what"], e["line"]) for f in direct["findings"] for e in f["evidence"]}


@pytest.mark.parametrize("args", [[], ["check"], ["parse"], ["scan"], ["review"]])
def test_dash_h_is_help(args):
    short, long = run(*args, "-h"), run(*args, "--help")
    assert short.exit_code == long.exit_code == 0
    assert short.stdout == long.stdout and "Usage:" in short.stdout


# -- --dtor that matches nothing ---------------------------------------------------------------


def test_dtor_found_only_on_an_arm32_backtrace_marks_its_lock():
    res, out = check_json(rel(ARM), "--dtor", "foo_obj_release")
    assert "warning" not in res.stderr
    assert out["dtor_locks"] == [{"leaf": True, "lock": "&pool->lock", "out": [],
                                  "roots": ["foo_obj_release"]}]


def test_dtor_matching_nothing_is_a_warning_and_marks_nothing():
    res = run("check", rel(ARM), "--dtor", "foo_obj_relase", "--dtor", "foo_obj_release")
    warn = [ln for ln in res.stderr.splitlines() if "warning" in ln]
    assert warn == ["lockgraph: warning: --dtor foo_obj_relase matches no function on any stack "
                    "in the logs; it marks nothing"]
    # the warning does not change the exit code (the log is an AA report: LG110, exit 1)
    assert res.exit_code == run("check", rel(ARM), "--dtor", "foo_obj_release").exit_code == 1


def test_dtor_warning_looks_in_the_sources_too_and_survives_a_replayed_result(tmp_path):
    src = FIXTURES / "csrc" / "verdicts" / "proven.c"
    args = ["check", "--src", rel(src), "--root", ".", "--cache", str(tmp_path / "c"),
            "--dtor", "foo_account", "--dtor", "no_such_dtor"]
    first, again = run(*args), run(*args)
    want = ["lockgraph: warning: --dtor no_such_dtor matches no function among the scanned "
            "sources' functions; it marks nothing"]
    for res in (first, again):
        assert [ln for ln in res.stderr.splitlines() if "warning" in ln] == want
    assert again.stdout == first.stdout and again.exit_code == first.exit_code


# -- parse text shows what the JSON has ----------------------------------------------------------


@pytest.mark.parametrize("log,lines", [
    (CORPUS / "ml-syzbot-irqinv-cgroup-free.log",
     ["  subject lock: css_set_lock at put_css_set", "  other lock: &sighand->siglock",
      "  direction: forwards", "  irq class: SOFTIRQ", "  path: &sighand->siglock -> css_set_lock"]),
    (CORPUS / "syzkaller-117.log", ["  subject lock: mrt_lock at ipmr_mfc_seq_stop"]),
    (CORPUS / "syzkaller-150.log", ["  subject lock: sk_lock-AF_INET6 at sctp_wait_for_sndbuf"]),
    (CORPUS / "syzkaller-553.log", ["  usage transition: {SOFTIRQ-ON-W} -> {IN-SOFTIRQ-W}",
                                    "  stack backtrace:", "       io_file_data_ref_zero"]),
    (CORPUS / "ml-block-iwc-sx8.log", ["  context: context-{4:4}"]),
    (SLEEP, ["fixtures/logs/sleep-in-dtor.log:1: sleep_in_invalid_context",
             "  site: kernel/locking/mutex.c:585",
             "  context: in_atomic(): 1, irqs_disabled(): 0, non_block: 0", "       foo_obj_dtor"]),
], ids=lambda x: x.stem if hasattr(x, "stem") else "")
def test_parse_text_shows_the_facts_of_the_json(log, lines):
    text = run("parse", rel(log)).stdout.splitlines()
    for ln in lines:
        assert ln in text
    (r, *_) = json.loads(run("parse", "--format", "json", rel(log)).stdout)["reports"]
    for key in ("subject_lock", "other_lock", "direction", "irq_class", "usage_transition",
                "context"):
        if r[key]:
            assert any(ln.endswith(r[key]) or f" {r[key]} at " in ln for ln in text), key


def test_scan_edges_format_is_one_line_per_edge_matching_the_json():
    src = rel(FIXTURES / "csrc" / "cases")
    res = run("scan", src, "--format", "edges", "--no-cache")
    assert res.exit_code == 0
    lines = res.stdout.splitlines()
    data = json.loads(run("scan", src, "--format", "json", "--no-cache").stdout)
    want = [f"{e['from']}\t{e['to']}\t{e['evidence'][0]['file']}:{e['evidence'][0]['line']}"
            f"\t{e['evidence'][0]['function']}" for e in data["edges"]]
    assert lines == want and len(lines) > 20
    assert all(len(ln.split("\t")) == 4 for ln in lines)
    assert "big_mutex\tfs_reclaim\t" in res.stdout


_OPS_CYCLE = """\
struct widget_ops {
\tvoid (*poke)(void);
};
static DEFINE_MUTEX(a_lock);
static DEFINE_MUTEX(b_lock);
static DEFINE_MUTEX(c_lock);

static void take_a(void)
{
\tmutex_lock(&a_lock);
\tmutex_unlock(&a_lock);
}

static void poke_a(void)
{
\ttake_a();
}

static const struct widget_ops ops_a = {
\t.poke = poke_a,
};

void b_then_ops(struct widget_ops *ops)
{
\tmutex_lock(&b_lock);
\tops->poke();
\tmutex_unlock(&b_lock);
}

void a_then_b(void)
{
\tmutex_lock(&a_lock);
\tmutex_lock(&b_lock);
\tmutex_unlock(&b_lock);
\tmutex_unlock(&a_lock);
}

void c_then_a(void)
{
\tmutex_lock(&c_lock);
\ttake_a();
\tmutex_unlock(&c_lock);
}

void a_then_c(void)
{
\tmutex_lock(&a_lock);
\tmutex_lock(&c_lock);
\tmutex_unlock(&c_lock);
\tmutex_unlock(&a_lock);
}

static DEFINE_MUTEX(d_lock);
struct widget_ops *get_ops(void);

static void poke_via(struct widget_ops *ops)
{
\tops->poke();
}

void d_then_helper(void)
{
\tstruct widget_ops *o = get_ops();

\tmutex_lock(&d_lock);
\tpoke_via(o);
\tmutex_unlock(&d_lock);
}

void a_then_d(void)
{
\tmutex_lock(&a_lock);
\tmutex_lock(&d_lock);
\tmutex_unlock(&d_lock);
\tmutex_unlock(&a_lock);
}
"""


def test_a_static_cycle_through_an_ops_call_is_a_may_path_warning(tmp_path):
    """A cycle whose static witness reaches a lock only through an ops-table member (bound
    by its name, not by the object) is a warning naming that call; one through direct
    calls stays an error."""
    (tmp_path / "w.c").write_text(_OPS_CYCLE)
    res, out = check_json("--src", tmp_path, "--root", tmp_path, "--no-cache")
    assert res.exit_code == 1
    cyc = {tuple(f["path"]): f for f in out["findings"] if f["rule"] == "LG103"}
    assert set(cyc) == {("a_lock", "b_lock"), ("a_lock", "c_lock"), ("a_lock", "d_lock")}
    may, direct = cyc[("a_lock", "b_lock")], cyc[("a_lock", "c_lock")]
    assert may["severity"] == "warning"
    assert "(a may-path: through the indirect call ops->poke() at w.c:26)" in may["message"]
    assert direct["severity"] == "error" and "may-path" not in direct["message"]
    # the member call of a helper, made at a call site that passes no known table
    hoisted = cyc[("a_lock", "d_lock")]
    assert hoisted["severity"] == "warning"
    assert "(a may-path: through the indirect call o->poke() at w.c:66)" in hoisted["message"]
