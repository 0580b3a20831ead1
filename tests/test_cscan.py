"""The C scanner on small kernel-like cases whose expected edges are written in the file.

Each `fixtures/csrc/cases/*.c` starts with `// EDGE: a -> b` / `// NOEDGE: a -> b` lines.
"""

from __future__ import annotations

import re

import pytest

from lockgraph.ingest.source.cparse import classify, parse_body, tokenize
from lockgraph.ingest.source.scan import scan_paths
from lockgraph.ingest.source.solve import solve

from conftest import FIXTURES

CASES = sorted((FIXTURES / "csrc" / "cases").glob("*.c"))
_HDR = re.compile(r"^// (EDGE|NOEDGE): (.+?) -> (.+?)\s*$", re.M)


def expectations(path):
    return [(m.group(1), m.group(2), m.group(3)) for m in _HDR.finditer(path.read_text())]


@pytest.mark.parametrize("case", CASES, ids=[c.stem for c in CASES])
def test_case_edges(case):
    files = scan_paths([case], case.parent, None)
    S = solve(files)
    assert all(f.structure in ("parsed", "not needed") for f in S.funcs.values())
    exp = expectations(case)
    assert exp, "a case without expectations cannot fail"
    for kind, a, b in exp:
        have = (a, b) in S.edges
        assert have == (kind == "EDGE"), f"{kind}: {a} -> {b}; edges: {sorted(S.edges)}"


def test_edge_evidence_names_the_call_chain():
    case = FIXTURES / "csrc" / "cases" / "interproc.c"
    S = solve(scan_paths([case], case.parent, None))
    e = S.edges[("big_mutex", "fs_reclaim")]
    step, via = e.evidence[0]
    line = case.read_text().splitlines().index("\tzalloc(8, GFP_KERNEL);") + 1
    assert (step.function, step.file, step.line) == ("big", "interproc.c", line)
    assert [s.function for s in via] == ["zalloc"]


@pytest.mark.parametrize("body", [
    "IO_COND(addr, return inb(port), return readb(addr));",
    "do { x++; } while_each_thread(a, b);",
    "scoped_cond_guard(mutex_intr, return -EINTR, &m) { f(); }",
    "list_for_each_entry(pos, head, list) if (pos) { a(); break; }",
    "switch (x) { case 1: a(); fallthrough; case 2 ... 3: b(); break; default: c(); }",
    "out: POSTAMBLE }",
    "struct { int a; } s = { .a = 1 }; x = y ? a : b; goto out; out: return;",
    "x = ({ int __r; if (a) __r = 1; else __r = 2; __r; });",
])
def test_grammar_accepts_kernel_macro_shapes(body):
    text = body if body.count("{") == body.count("}") else body.replace(" }", "")
    parse_body(text, 1)


def test_classifier_marks_macro_loops_and_blocks():
    toks = classify(tokenize("list_for_each_entry(p, h, l) { f(p); }", 1))
    assert toks[0].type == "MLOOP"
    assert [t.type for t in toks if t.text in "{}"] == ["LB", "RB"]


def test_wide_indirect_calls_are_blind_spots_not_edges():
    case = FIXTURES / "csrc" / "cases" / "interproc.c"
    S = solve(scan_paths([case], case.parent, None))
    assert any("indirect call" in b and "cb()" in b for b in S.reachable_blind("interproc.c:fan"))
    assert ("ops_mutex", "&d->lock") in S.edges  # a typed, narrow table is still followed
