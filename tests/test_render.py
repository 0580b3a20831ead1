"""Review formats of `check`: checklist, DOT/SVG, SARIF, baseline, and stable finding ids."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET

import jsonschema
import pytest
from hypothesis import given
from hypothesis import strategies as st

from lockgraph.checks import CheckInput, CheckResult, run_checks
from lockgraph.rules import stable_name
from lockgraph.graph import build_graph
from lockgraph.model import Edge, Evidence, Report
from lockgraph.render.checklist import checklist_markdown, checklist_text
from lockgraph.render.dot import check_dot
from lockgraph.contexts import Context

from conftest import CORPUS, FIXTURES, ROOT
from test_cli import rel, run

LOGS = FIXTURES / "logs"
SEED = [LOGS / "seed-rfc-dtor-kswapd.log", LOGS / "seed-hung-dtor.log",
        LOGS / "seed-proc-lockdep-nonleaf.txt"]
VERDICTS = FIXTURES / "csrc" / "verdicts"
SCHEMA = json.loads((ROOT / "tests" / "data" / "sarif-2.1.0.json").read_text())
GOLDEN = ROOT / "tests" / "golden"


def ids(res) -> list[str]:
    return sorted(f["id"] for f in json.loads(res.stdout)["findings"])


# --- checklist ----------------------------------------------------------------------------

GOLDEN_CASES = {
    "seed-all": [rel(p) for p in SEED],
    "verdict-splat": ["--src", rel(VERDICTS / "splat.c"), "--root", "."],
}


@pytest.mark.parametrize("fmt,ext", [("markdown", "md"), ("checklist", "checklist.txt")])
@pytest.mark.parametrize("case", sorted(GOLDEN_CASES))
def test_checklist_matches_golden(case, fmt, ext, update_golden):
    res = run("check", "--format", fmt, *GOLDEN_CASES[case])
    assert res.exit_code == 1
    golden = GOLDEN / f"{case}.check.{ext}"
    if update_golden:
        golden.write_text(res.stdout)
        pytest.fail(f"golden file {golden.name} rewritten; review the diff")
    assert res.stdout == golden.read_text()


@pytest.mark.parametrize("case", sorted(GOLDEN_CASES))
def test_mail_checklist_is_wrapped_at_72_columns(case):
    out = run("check", "--format", "checklist", *GOLDEN_CASES[case]).stdout
    findings = json.loads(run("check", "--format", "json", *GOLDEN_CASES[case]).stdout)["findings"]
    splat = {"    " + ln for f in findings for ln in f.get("detail", "").splitlines()}
    prose = [ln for ln in out.splitlines() if ln not in splat]   # splats stay verbatim
    assert prose and len(prose) < len(out.splitlines()) or not splat
    for ln in prose:
        # only a word longer than a line (a long path) may overflow: it stands alone
        assert len(ln) <= 72 or len(ln.split()) <= 2, ln
    assert "[ ] " in out and "`" not in out and "→" not in out


def test_checklist_states_the_leaf_rule_with_the_edge_and_its_place():
    md = run("check", "--format", "markdown", *GOLDEN_CASES["verdict-splat"]).stdout
    assert "## Slab destructor `bar_dtor`" in md
    assert ("- [ ] `chunk_mutex` is a leaf — no, 2 outgoing dependencies:\n"
            "  - `chunk_mutex` → `free_lock` via `chunk_create` (fixtures/csrc/verdicts/splat.c:15)"
            ) in md
    assert "- [ ] `bar_dtor` takes only spinning locks — no:" in md
    assert "WARNING: possible circular locking dependency detected" in md   # the splat
    ok = run("check", "--format", "markdown", "--src", rel(VERDICTS / "proven.c"), "--root", ".")
    assert ok.exit_code == 0
    assert "- [x] `stats_lock` is a leaf" in ok.stdout
    assert "- [ ] " not in ok.stdout


def test_shrinker_gets_a_reclaim_root_section():
    res = run("check", "--format", "markdown", "--src", rel(VERDICTS / "shrinker.c"), "--root", ".")
    assert res.exit_code == 1
    md = res.stdout
    assert "## Reclaim root `foo_scan`" in md
    assert "- [ ] `cache_mutex` does not lead back into `fs_reclaim` — no:" in md
    assert "- [x] `lru_lock` does not lead back into `fs_reclaim`" in md
    assert "  - `cache_mutex` → `fs_reclaim` via `foo_fill` (fixtures/csrc/verdicts/shrinker.c:21)" in md
    assert "(runtime evidence)" not in md     # static contexts are not presented as seen in logs


# --- hostile names ------------------------------------------------------------------------

HOSTILE = ["tick`s", 'a"b', "x:y", "{br}", "a->b", "sp ace", "back\\slash", "new\nline",
           "<html>", "tail\\", "graph", "node", "A;B", "[x]", "&(&pool->lock)->rlock"]


def hostile_result() -> CheckResult:
    """A cycle through every hostile name, reached from a destructor with a hostile name."""
    edges = [Edge(a, b, True, "chain", "odd.log", k + 1)
             for k, (a, b) in enumerate(zip(HOSTILE, HOSTILE[1:] + HOSTILE[:1]))]
    G = build_graph([Report("odd.log", 1, "circular", edges=edges)])
    dtor = {HOSTILE[0]: [Context('dtor:"x"', Evidence("odd.log", 1, "taken"))]}
    return CheckResult(run_checks(CheckInput(G, [], dtor, {})), G, dtor, {}, False)


def test_dot_with_hostile_lock_names_renders_and_keeps_every_name():
    if shutil.which("dot") is None:
        pytest.skip("graphviz 'dot' not installed")
    text = check_dot(hostile_result())
    assert set(re.findall(r"^(\w+) \[", text, re.M)) <= {
        f"n{k}" for k in range(len(HOSTILE) + 1)} | {"node", "edge", "legend", "omitted"}
    proc = subprocess.run(["dot", "-Tsvg"], input=text.encode(), capture_output=True)
    assert proc.returncode == 0, proc.stderr.decode()
    svg = ET.fromstring(proc.stdout)
    shown = {t.text for t in svg.iter() if t.tag.endswith("text")}
    for name in HOSTILE:
        for part in name.split("\n"):
            assert part in shown, name
    assert 'dtor:"x"()' in shown


def test_dot_is_deterministic_with_ids_in_name_order():
    a, b = check_dot(hostile_result()), check_dot(hostile_result())
    assert a == b
    labels = re.findall(r'^n(\d+) \[label="((?:[^"\\]|\\.)*)"', a, re.M)
    assert [int(k) for k, _ in labels] == list(range(len(labels)))


def test_dot_collapses_what_is_not_on_a_violation_path():
    res = run("check", "--format", "dot", rel(CORPUS / "ml-syzbot-pcpu-elevator-change.log"))
    assert res.exit_code == 1
    assert 'label="4 locks / 4 dependencies\\nnot on a violation path omitted"' in res.stdout
    assert "&q->q_usage_counter(io)#55" in res.stdout


def test_hostile_names_survive_markdown_and_mail():
    res = hostile_result()
    md = checklist_markdown(res)
    assert "- [ ] ``tick`s`` is a leaf — no: ``tick`s`` → `a\"b` (odd.log:1)" in md
    assert "'tick\\`s' -> 'a\"b'" in md          # prose escapes the backtick
    assert "[ ] tick`s is a leaf -- no: tick`s -> a\"b (odd.log:1)" in checklist_text(res)


# --- SVG / PNG ----------------------------------------------------------------------------

@pytest.mark.parametrize("opt", ["--svg", "--png"])
def test_svg_and_png_are_written(tmp_path, opt):
    if shutil.which("dot") is None:
        pytest.skip("graphviz 'dot' not installed")
    out = tmp_path / f"g.{opt[2:]}"
    res = run("check", opt, out, rel(SEED[0]))
    assert res.exit_code == 1
    data = out.read_bytes()
    assert data.startswith(b"\x89PNG") if opt == "--png" else b"<svg" in data


def test_missing_dot_is_one_line_and_exit_2(tmp_path, monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda *_a, **_k: None)
    res = run("check", "--svg", tmp_path / "g.svg", rel(SEED[0]))
    assert res.exit_code == 2
    assert res.stdout == ""
    assert len(res.stderr.strip().splitlines()) == 1 and "graphviz" in res.stderr
    assert not (tmp_path / "g.svg").exists()


def test_unwritable_image_path_is_exit_2(tmp_path):
    if shutil.which("dot") is None:
        pytest.skip("graphviz 'dot' not installed")
    res = run("check", "--svg", tmp_path / "no" / "g.svg", rel(SEED[0]))
    assert res.exit_code == 2 and "cannot write" in res.stderr


# --- SARIF --------------------------------------------------------------------------------

SARIF_CASES = {
    "seed-rfc": [rel(SEED[0])],
    "hung-nonleaf": [rel(SEED[1]), rel(SEED[2])],
    "hung-leaf": [rel(SEED[1]), rel(LOGS / "seed-proc-lockdep-leaf.txt")],
    "corpus-circular": [rel(CORPUS / "ml-syzbot-pcpu-elevator-change.log")],
    **{f"src-{p.stem}": ["--src", rel(p), "--root", "."] for p in sorted(VERDICTS.glob("*.c"))},
    "src-and-log": ["--src", rel(VERDICTS / "splat.c"), "--root", ".", rel(SEED[0])],
}


@pytest.mark.parametrize("case", sorted(SARIF_CASES))
def test_sarif_validates_and_carries_every_finding(case):
    args = SARIF_CASES[case]
    sarif = run("check", "--format", "sarif", *args)
    plain = run("check", "--format", "json", *args)
    assert sarif.exit_code == plain.exit_code
    doc = json.loads(sarif.stdout)
    jsonschema.Draft4Validator(SCHEMA, format_checker=jsonschema.FormatChecker()).validate(doc)
    (run_,) = doc["runs"]
    rules = [r["id"] for r in run_["tool"]["driver"]["rules"]]
    findings = json.loads(plain.stdout)["findings"]
    assert [r["partialFingerprints"]["lockgraphFindingId/v1"] for r in run_["results"]] == [
        f["id"] for f in findings]
    logs = {a for a in args if a.endswith((".log", ".txt"))}
    for r, f in zip(run_["results"], findings):
        assert rules[r["ruleIndex"]] == r["ruleId"] == f["rule"]
        assert r["level"] == f["severity"]
        art = r["locations"][0]["physicalLocation"]["artifactLocation"]
        assert art["uriBaseId"] == ("LOGROOT" if art["uri"] in logs else "SRCROOT")
        assert not art["uri"].startswith("/")
        if any(e["stack"] for e in f["evidence"]):
            flows = r["codeFlows"][0]["threadFlows"]
            assert all(tf["locations"] for tf in flows)
    assert "Time" not in sarif.stdout        # no timestamps: two runs diff clean


def test_sarif_static_witness_steps_point_into_the_source():
    doc = json.loads(run("check", "--format", "sarif", *SARIF_CASES["src-splat"]).stdout)
    # the non-leaf lock closes a context cycle: one LG105 result carries its witness chain
    r = next(r for r in doc["runs"][0]["results"] if r["ruleId"] == "LG105")
    flow = next(t for t in r["codeFlows"][0]["threadFlows"] if "chunk_release" in json.dumps(t))
    steps = flow["locations"]
    assert [s["location"]["message"]["text"] for s in steps][:2] == ["bar_dtor", "chunk_release"]
    assert steps[0]["location"]["physicalLocation"]["region"]["startLine"] == 29


# --- baseline -----------------------------------------------------------------------------

def test_baseline_round_trip_hides_accepted_findings(tmp_path):
    base = tmp_path / "base.json"
    first = run("check", "--format", "json", "--write-baseline", base, rel(SEED[0]))
    assert first.exit_code == 1
    written = json.loads(base.read_text())
    assert [r["id"] for r in written["findings"]] == ids(first)
    assert all({"id", "rule", "lock", "message"} == set(r) for r in written["findings"])
    again = run("check", "--format", "json", "--baseline", base, rel(SEED[0]))
    assert again.exit_code == 0 and ids(again) == []
    assert f"{len(written['findings'])} finding(s) hidden by baseline" in again.stderr
    # Accept all but the destructor finding: only it is left, and it still fails the run.
    written["findings"] = [r for r in written["findings"] if r["rule"] != "LG101"]
    base.write_text(json.dumps(written))
    partial = run("check", "--format", "json", "--baseline", base, rel(SEED[0]))
    assert partial.exit_code == 1
    assert [f["rule"] for f in json.loads(partial.stdout)["findings"]] == ["LG101"]


@pytest.mark.parametrize("content", ["", "{x", "[]", '{"schema_version": 1}',
                                     '{"schema_version": 2, "findings": []}',
                                     '{"schema_version": 1, "findings": [{"rule": "LG101"}]}'])
def test_bad_baseline_is_one_line_and_exit_2(tmp_path, content):
    base = tmp_path / "base.json"
    base.write_text(content)
    res = run("check", "--baseline", base, rel(SEED[0]))
    assert res.exit_code == 2 and res.stdout == ""
    assert len(res.stderr.strip().splitlines()) == 1 and "error:" in res.stderr


def test_missing_baseline_is_exit_2(tmp_path):
    res = run("check", "--baseline", tmp_path / "nope.json", rel(SEED[0]))
    assert res.exit_code == 2 and "no such baseline file" in res.stderr


def _shift_lines(src, dst, every: int, filler: str):
    """Copy a file with a filler line inserted every `every` lines: every line number moves."""
    out = []
    for k, ln in enumerate(src.read_text().splitlines(keepends=True)):
        if k % every == 0:
            out.append(filler)
        out.append(ln)
    dst.write_text("".join(out))


def test_ids_survive_line_moves_in_a_log(tmp_path):
    moved = tmp_path / SEED[0].name
    _shift_lines(SEED[0], moved, 7, "[  812.400000] usb 1-1: new high-speed USB device\n")
    a = run("check", "--format", "json", rel(SEED[0]))
    b = run("check", "--format", "json", moved)
    assert ids(a) == ids(b) and ids(a)
    lines_a = {e["line"] for f in json.loads(a.stdout)["findings"] for e in f["evidence"]}
    lines_b = {e["line"] for f in json.loads(b.stdout)["findings"] for e in f["evidence"]}
    assert lines_a != lines_b


def test_ids_survive_line_moves_in_source(tmp_path):
    src = FIXTURES / "csrc" / "slab-dtor-rfc"
    moved = tmp_path / "slab-dtor-rfc"
    moved.mkdir()
    for f in sorted(src.iterdir()):
        _shift_lines(f, moved / f.name, 5, "/* moved */\n")
    a = run("check", "--format", "json", "--src", rel(src), "--root", rel(src))
    b = run("check", "--format", "json", "--src", moved, "--root", moved)
    assert {f["rule"] for f in json.loads(a.stdout)["findings"]} >= {"LG106"}
    assert ids(a) == ids(b)
    base = tmp_path / "base.json"
    run("check", "--write-baseline", base, "--src", rel(src), "--root", rel(src))
    res = run("check", "--baseline", base, "--src", moved, "--root", moved)
    assert res.exit_code == 0, res.stdout


# --- canonical cycle ids ------------------------------------------------------------------

def circular(prev: str, nxt: str, mid: str) -> str:
    """A lockdep circular report: holding `prev`, taking `nxt`; chain nxt -> mid -> prev."""
    def entry(k, name, fn):
        return f"-> #{k} ({name}){{+.+.}}-{{4:4}}:\n       lock_acquire+0x1/0x2\n       {fn}+0x1/0x2\n\n"
    return ("======================================================\n"
            "WARNING: possible circular locking dependency detected\n"
            "6.12.0 #1 Not tainted\n"
            "------------------------------------------------------\n"
            "t/1 is trying to acquire lock:\n"
            f"ffff0000 ({nxt}){{+.+.}}-{{4:4}}, at: take_next+0x1/0x2\n\n"
            "but task is already holding lock:\n"
            f"ffff0001 ({prev}){{+.+.}}-{{4:4}}, at: take_prev+0x1/0x2\n\n"
            "which lock already depends on the new lock.\n\n\n"
            "the existing dependency chain (in reverse order) is:\n\n"
            + entry(2, prev, "f_prev") + entry(1, mid, "f_mid") + entry(0, nxt, "f_next")
            + "other info that might help us debug this:\n\n"
            " *** DEADLOCK ***\n\n"
            "no locks held by t/1.\n\nstack backtrace:\nCall Trace:\n dump_stack+0x1/0x2\n")


def test_one_cycle_seen_from_two_edges_with_other_suffixes_has_one_id(tmp_path):
    one = tmp_path / "boot1.log"      # new dependency lock_c#7 -> lock_a
    two = tmp_path / "boot2.log"      # new dependency lock_a -> lock_b, lock_c numbered #3
    one.write_text(circular("lock_c#7", "lock_a", "lock_b"))
    two.write_text(circular("lock_a", "lock_b", "lock_c#3"))
    got = {}
    for log in (one, two):
        out = json.loads(run("check", "--format", "json", log).stdout)
        (cyc,) = [f for f in out["findings"] if f["rule"] == "LG103"]
        got[log.name] = cyc
    assert got["boot1.log"]["path"] == ["lock_a", "lock_b", "lock_c#7"]
    assert got["boot2.log"]["path"] == ["lock_a", "lock_b", "lock_c#3"]
    assert got["boot1.log"]["id"] == got["boot2.log"]["id"]
    # In one run the two numbers are two classes, so two cycles: they must not share an id.
    both = json.loads(run("check", "--format", "json", one, two).stdout)
    cyc = [f for f in both["findings"] if f["rule"] == "LG103"]
    assert len(cyc) == 2 and len({f["id"] for f in cyc}) == 2


def test_rotation_does_not_depend_on_suffix_numbers(tmp_path):
    # x#10 sorts before x#9 as text, so a rotation taken before stripping would differ.
    a, b = tmp_path / "a.log", tmp_path / "b.log"
    a.write_text(circular("x#9", "y", "z"))
    b.write_text(circular("x#10", "y", "z"))
    ida = [f["id"] for f in json.loads(run("check", "--format", "json", a).stdout)["findings"]
           if f["rule"] == "LG103"]
    idb = [f["id"] for f in json.loads(run("check", "--format", "json", b).stdout)["findings"]
           if f["rule"] == "LG103"]
    assert ida == idb and len(ida) == 1
    assert stable_name("&q->q_usage_counter(io)#55") == "&q->q_usage_counter(io)"


def test_same_cycle_in_two_corpus_reports_has_one_id():
    """Two real reports of the elevator/pcpu cycle, from different boots (#55 vs #6)."""
    def cycle_ids(name):
        out = json.loads(run("check", "--format", "json", rel(CORPUS / name)).stdout)
        return {tuple(stable_name(p) for p in f["path"]): f["id"]
                for f in out["findings"] if f["rule"] == "LG103"}
    a = cycle_ids("ml-syzbot-pcpu-elevator-change.log")
    b = cycle_ids("ml-block-pcpu-kswapd-mime.log")
    shared = set(a) & set(b)
    assert shared and all(a[k] == b[k] for k in shared)


@given(st.dictionaries(st.text(max_size=5), st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner, max_size=4),
    max_leaves=12), max_size=6))
def test_streamed_json_is_the_same_bytes(obj):
    """A whole-tree result is encoded item by item; the bytes must be those of one dumps()."""
    from lockgraph.render.json import Items, dumps, dumps_streamed

    lazy = {k: Items(lambda v=v: iter(v)) if isinstance(v, list) else v for k, v in obj.items()}
    assert dumps_streamed(lazy) == dumps(obj) == json.dumps(obj, indent=2, sort_keys=True,
                                                             ensure_ascii=False) + "\n"
