"""The call-list front end (static/facts/fastpath.py) gives exactly the slow path's facts.

The slow path for a body without structure is cparse.flat_atoms followed by the walker
(scan_file(fast=False)); the fast path must agree byte for byte on every pickled FileFacts,
on the C fixtures (all of fixtures/csrc, and fixtures/csrc/fastpath written for it) and on
generated bodies.  scripts/compare-fastpath runs the same check over a kernel tree.
"""

from __future__ import annotations

import pickle
import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lockgraph.static.facts import kb
from lockgraph.static.facts.cparse import flat_atoms
from lockgraph.static.facts.fastpath import TRIGGERS, call_facts, structure_matters
from lockgraph.static.facts.scan import scan_file
from lockgraph.static.facts.walk import GATE_WORDS, FuncFacts, ScanContext, walk_function

from conftest import FIXTURES

SOURCES = sorted((FIXTURES / "csrc").rglob("*.c"))
FASTPATH = FIXTURES / "csrc" / "fastpath"


def _scan(path, fast):
    return scan_file(path.name, path.read_text(), ScanContext(), fast=fast)


@pytest.mark.parametrize("src", SOURCES, ids=[str(s.relative_to(FIXTURES / "csrc")) for s in SOURCES])
def test_fast_and_slow_facts_are_identical(src):
    assert pickle.dumps(_scan(src, True)) == pickle.dumps(_scan(src, False))


def test_the_fixture_bodies_take_the_paths_they_were_written_for():
    calls = {f.name: f for f in _scan(FASTPATH / "calls.c", True).functions}
    assert set(calls) == {"nested", "assigns", "allocs", "shapes"}
    assert all(f.structure == "not needed" for f in calls.values())
    a = calls["allocs"]
    assert [x.api for x in a.allocs] == ["kmalloc", "kmalloc", "kmem_cache_alloc", "alloc_percpu",
                                         "vmalloc"]
    assert [c.name for c in a.calls][:2] == ["pcpu_alloc_noprof", "__percpu_counter_init_many"]
    assert [i[0] for i in a.inits] == ["spin_lock_init", "mutex_init", "lockdep_set_class"]
    assert ("t", "ops", "thing_ops", 21) in calls["assigns"].assigns
    member = [c for c in calls["nested"].calls if c.member]
    assert [(c.name, c.base) for c in member] == [("free", "ops")]
    declines = {f.name: f for f in _scan(FASTPATH / "declines.c", True).functions}
    assert declines["split_primitive"].structure == "not needed"
    assert [q.lock.text for q in declines["split_primitive"].acqs] == ["l"]  # the slow path's
    assert declines["gated"].structure == "parsed"
    assert declines["noprof_scope"].structure == "parsed"
    assert declines["sleeps"].structure == "parsed"
    assert declines["flag_test"].structure == "parsed"
    assert [sorted(c.gates) for c in declines["flag_test"].calls] == [["@!arg:from_schedule"], []]
    assert [s[0] for s in declines["sleeps"].sleeps] == ["msleep", "might_sleep"]
    from lockgraph.static.facts.walk import SLEPT
    assert [SLEPT in c.gates for c in declines["sleeps"].calls] == [False, False, True]


def test_a_primitive_the_text_scan_misses_is_declined():
    body = "\tspin_lock \\\n\t\t(l);\n\twork();\n"
    assert not structure_matters(body)
    facts = FuncFacts("f", "f.c", 1, True, [])
    assert call_facts(body, 2, facts, ScanContext()) is False
    assert facts == FuncFacts("f", "f.c", 1, True, [])


_CALLED = re.compile(r"\b([A-Za-z_]\w*)\s*\(")


def _structure_by_definition(body: str) -> bool:
    """The definition structure_matters implements: a gate word anywhere, or a trigger
    (or its _noprof form) as a called name."""
    if any(w in body for w in GATE_WORDS):
        return True
    return any(n in TRIGGERS or (n.endswith("_noprof") and n[:-7] in TRIGGERS)
               for n in _CALLED.findall(body))


# Generated bodies: the pieces the two front ends treat differently, in any order.
_NAMES = ["a", "b", "p", "ops", "x_t", "flags", "gfp", "kfree", "work", "msleep", "vmalloc",
          "kmalloc", "kmalloc_noprof", "kmem_cache_alloc", "alloc_percpu", "spin_lock_init",
          "lockdep_set_class", "percpu_counter_init", "list_for_each_entry", "for_each_cpu",
          "if", "return", "sizeof", "struct", "GFP_KERNEL", "spin_lock", "mutex_unlock",
          "guard", "memalloc_nofs_save", "rcu_read_lock_noprof", "preemptible", "BUG"]
_PUNCT = ["(", ")", "(", ")", ",", ";", "{", "}", "->", ".", "=", "&", "*", "!", "?", ":",
          "+=", "==", "[", "]", "1", "0x10", '"s"', "'c'", "\\", "\n", " ", "\t", "@", "#"]
_PIECES = st.lists(st.sampled_from(_NAMES + _PUNCT), max_size=60)
SETTINGS = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(pieces=_PIECES, sep=st.sampled_from(["", " ", "\n"]))
def test_call_facts_equal_flat_atoms_and_the_walker_on_any_body(pieces, sep):
    body = sep.join(pieces)
    assert structure_matters(body) == _structure_by_definition(body)
    if structure_matters(body):
        return
    slow = walk_function(FuncFacts("f", "f.c", 1, False, [("int", "gfp")]), flat_atoms(body, 3),
                         ScanContext())
    fast = FuncFacts("f", "f.c", 1, False, [("int", "gfp")])
    if call_facts(body, 3, fast, ScanContext()):
        assert pickle.dumps(fast) == pickle.dumps(slow)
    else:  # declined: only for a call the text scan cannot see
        assert fast == FuncFacts("f", "f.c", 1, False, [("int", "gfp")])
        assert "\\" in body and any(n in kb.PRIMITIVES or n in kb.SCOPES or n == "guard"
                                    or n in kb.SLEEPING_CALLS or n in kb.NORETURN
                                    for n in _NAMES if n in body)
