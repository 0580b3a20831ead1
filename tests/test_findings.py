"""Findings as CI sees them: every lockdep report kind fails the run, one rule one check,
one root cause one finding, every cyclic component reported."""

from __future__ import annotations

import csv
import json

import networkx as nx
import pytest

from lockgraph.checks import CHECKS, REPORT_RULES
from lockgraph.graph import cycles
from lockgraph.rules import RULES

from conftest import CORPUS
from test_cli import check_json, rel, run

MANIFEST = list(csv.DictReader((CORPUS / "manifest.tsv").open(), delimiter="\t"))
BUG_KINDS = [(m["id"], m["kind"]) for m in MANIFEST if m["kind"] in REPORT_RULES]


def _log(corpus_id: str):
    (p,) = [p for p in CORPUS.glob(f"{corpus_id}.*") if p.suffix != ".json"]
    return p


def test_every_rule_has_exactly_one_check_and_every_check_a_rule():
    registered = [r for ids, _fn in CHECKS for r in ids]
    assert sorted(registered) == sorted(RULES)


@pytest.mark.parametrize("corpus_id,kind", BUG_KINDS, ids=[i for i, _ in BUG_KINDS])
def test_a_lockdep_report_of_a_bug_kind_fails_check_in_every_format(corpus_id, kind):
    log = rel(_log(corpus_id))
    rule = REPORT_RULES[kind][0]
    res, out = check_json(log)
    assert res.exit_code == 1, res.stdout
    assert out["verdict"]["status"] == "violated"
    mine = [f for f in out["findings"] if f["rule"] == rule]
    assert mine and all(f["severity"] == "error" for f in mine)
    f = mine[0]
    assert f["evidence"] and all(e["file"] == log and e["line"] > 0 for e in f["evidence"])
    assert f["lock"] != "(none)" or kind == "held_on_return_to_user"
    sarif = json.loads(run("check", "--format", "sarif", log).stdout)
    assert rule in {r["ruleId"] for r in sarif["runs"][0]["results"]}
    text = run("check", log).stdout
    assert f"error: {rule} {RULES[rule].slug}" in text


def test_recursive_locking_is_an_error_with_both_sites_not_an_inferred_cycle():
    res, out = check_json(rel(CORPUS / "ml-block-recursive-pktcdvd.log"))
    assert res.exit_code == 1
    (f,) = [f for f in out["findings"] if f["rule"] == "LG110"]
    assert f["lock"] == "&disk->open_mutex"
    held, again = f["evidence"][:2]
    assert "already held" in held["what"] and "taken again at bdev_open()" in again["what"]
    assert held["line"] != again["line"] and "pkt_open" in again["stack"]
    assert not [g for g in out["findings"] if g["rule"] == "LG103"]


def test_sleeping_function_called_from_invalid_context_is_an_error_at_its_site():
    res, out = check_json(rel(CORPUS.parent / "logs" / "sleep-in-dtor.log"))
    assert res.exit_code == 1
    (f,) = [f for f in out["findings"] if f["rule"] == "LG117"]
    assert f["message"].startswith("the kernel reported a sleeping function called from invalid context")
    assert f["lock"] == "&cache->list_lock"               # the spinning lock held at the time
    assert "kernel/locking/mutex.c:585" in f["evidence"][0]["what"]
    assert "foo_obj_dtor" in f["evidence"][0]["stack"]


def test_lockdep_turned_off_is_a_note_saying_the_rest_has_no_lock_evidence():
    log = next(rel(_log(m["id"])) for m in MANIFEST
               if "lockdep is turned off" in _log(m["id"]).read_text(errors="replace")
               and m["kind"] == "other")
    res, out = check_json(log)
    notes = [f for f in out["findings"] if f["rule"] == "LG118"]
    assert notes and notes[0]["severity"] == "note"
    assert "no lock evidence" in notes[0]["message"]


def _ring(n: int, tag: str) -> list[tuple[str, str]]:
    return [(f"{tag}{k}", f"{tag}{(k + 1) % n}") for k in range(n)]


def test_past_the_cap_every_cyclic_component_still_shows_a_cycle_and_the_count_is_exact():
    G = nx.DiGraph()
    # one dense component with far more short cycles than the cap, then three rings
    dense = [f"d{k}" for k in range(7)]
    G.add_edges_from((a, b) for a in dense for b in dense if a != b)
    for tag, n in (("r", 3), ("s", 4), ("t", 12)):
        G.add_edges_from(_ring(n, tag))
    found = cycles(G, cap=50)
    assert found.components == 4
    shown = {c[0][0] for c in found.cycles}
    assert shown == {"d", "r", "s", "t"}                 # at least one cycle per component
    assert found.partial == 4 and found.capped            # dense cut, rings past the cap
    assert "4 of 4 cyclic component(s) not searched to the end" in found.blind_spot()
    ring12 = [c for c in found.cycles if c[0][0] == "t"]
    assert ring12 == [tuple(f"t{k}" for k in range(12))]


def test_below_the_cap_nothing_is_partial():
    G = nx.DiGraph(_ring(3, "a") + _ring(2, "b"))
    found = cycles(G)
    assert (found.components, found.partial, found.capped) == (2, 0, False)
    assert len(found.cycles) == 2


def test_a_new_lock_to_fs_reclaim_edge_under_a_destructor_is_one_finding():
    """The destructor allocates with GFP_KERNEL under its own mutex: non-leaf lock, the
    destructor entering reclaim and the context cycle through reclaim are one root cause."""
    src = rel(CORPUS.parent / "csrc" / "grouping")
    res, out = check_json("--src", src, "--root", ".")
    assert res.exit_code == 1
    (f,) = out["findings"]
    assert (f["rule"], f["lock"], f["root"]) == ("LG105", "pool_mutex", "baz_dtor")
    whats = [e["what"] for e in f["evidence"]]
    assert "'pool_mutex' -> 'fs_reclaim' (static analysis)" in whats
    assert any("baz_dtor() enters memory reclaim" in w for w in whats)
    assert f["detail"].count("WARNING: possible circular locking dependency detected") == 1
    text = run("check", "--src", src, "--root", ".").stdout
    assert text.count("WARNING: possible circular locking dependency detected") == 1
    assert "'fs_reclaim' is taken in slab destructor" not in text


def test_the_same_bug_from_two_boots_is_one_finding_under_its_stable_id(tmp_path):
    """`X#3` in one boot is `X#7` in the next: combining the logs must not split the finding
    into two boot-dependent ids (a baseline would stop matching)."""
    text = (CORPUS / "ml-block-recursive-crypto.log").read_text()
    for name, n in (("a.log", 3), ("b.log", 7)):
        (tmp_path / name).write_text(text.replace("&profile->lock", f"&profile->lock#{n}"))
    alone = check_json(str(tmp_path / "a.log"))[1]["findings"]
    both = check_json(str(tmp_path / "a.log"), str(tmp_path / "b.log"))[1]["findings"]
    assert [f["id"] for f in both] == [f["id"] for f in alone]
    assert {e["file"] for e in both[0]["evidence"]} == {str(tmp_path / "a.log"), str(tmp_path / "b.log")}


def test_a_destructor_seen_entering_reclaim_in_a_log_is_said_so():
    """fs_reclaim acquired under a destructor frame: a finding worded as entering reclaim,
    never as 'fs_reclaim is taken in slab destructor'."""
    from lockgraph.checks import CheckInput, run_checks
    from lockgraph.contexts import Context
    from lockgraph.model import Evidence

    ev = Evidence("x.log", 5, "'fs_reclaim' acquired in slab destructor foo_dtor()",
                  ("kmalloc", "foo_dtor", "__free_slab"))
    G = nx.DiGraph([("fs_reclaim", "&zone->lock")])
    for e in G.edges:
        G.edges[e].update(evidence=[], certain=True)
    (f,) = run_checks(CheckInput(G, [], {"fs_reclaim": [Context("foo_dtor", ev)]}, {}))
    assert (f.rule, f.lock, f.root) == ("LG101", "fs_reclaim", "foo_dtor")
    assert f.message.startswith("slab destructor foo_dtor() enters memory reclaim")
    assert "x.log:5" in f.message and "is taken in slab destructor" not in f.message


def test_grouping_compares_cycles_in_order_not_as_sets_of_locks():
    from lockgraph.checks import group_root_causes
    from lockgraph.model import Evidence
    from lockgraph.rules import make

    ev = [Evidence("x.log", 1, "e")]
    reentry = make("LG102", "a", ev, ("a", "b", "fs_reclaim"), chain="", route=("a", "b", "fs_reclaim"))
    same = make("LG103", "a", ev, ("a", "b", "fs_reclaim"), chain="", cycle=("a", "b", "fs_reclaim"),
                start="a", inferred="")
    other = make("LG103", "a", ev, ("a", "fs_reclaim", "b"), chain="", cycle=("a", "fs_reclaim", "b"),
                 start="a", inferred="")
    assert [f.rule for f in group_root_causes([reentry, same])] == ["LG103"]
    assert sorted(f.rule for f in group_root_causes([reentry, other])) == ["LG102", "LG103"]
