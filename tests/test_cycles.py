"""Cycle enumeration: bounded work, and the same answer in every process.

A whole-tree re-check once spent hours in networkx's bounded cycle search: it starts from
`next(iter(component))`, a set of names whose order follows the process's hash seed, and
a cap on cycles found does not bound the edges read between two of them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from itertools import permutations

import networkx as nx
from hypothesis import given, settings
from hypothesis import strategies as st

from lockgraph.graph import canonical_cycle, cycles

from conftest import ROOT

LOCKS = "abcdefgh"


def _all_orders_tree(tmp_path):
    """Eight spinlocks taken in every order: 16,064 cycles of at most 8 locks, so the
    enumeration is capped and which 500 it returns is what the test looks at."""
    out = [f"static DEFINE_SPINLOCK(lock_{n});" for n in LOCKS]
    for a, b in permutations(LOCKS, 2):
        out.append(f"void order_{a}_{b}(void)\n{{\n\tspin_lock(&lock_{a});\n\tspin_lock(&lock_{b});\n"
                   f"\tspin_unlock(&lock_{b});\n\tspin_unlock(&lock_{a});\n}}\n")
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "orders.c").write_text("\n".join(out))
    return tree


def test_capped_cycles_do_not_depend_on_the_hash_seed(tmp_path):
    tree = _all_orders_tree(tmp_path)
    outs = []
    for seed in ("1", "2", "4"):  # three different start nodes for networkx's search
        env = {**os.environ, "PYTHONHASHSEED": seed}
        res = subprocess.run([sys.executable, "-m", "lockgraph", "check", "--src", str(tree),
                              "--no-cache", "--format", "json"],
                             capture_output=True, text=True, cwd=ROOT, env=env)
        assert res.returncode == 1, res.stderr
        outs.append(res.stdout)
    assert outs[0] == outs[1] == outs[2]
    cyc = [f["path"] for f in json.loads(outs[0])["findings"] if f["rule"] == "LG103"]
    assert len(cyc) == 500
    # shortest first: every one of the 28 two-lock cycles (ABBA) is among them
    assert sum(len(c) == 2 for c in cyc) == 28


def _dense(n: int, prefix: str = "n") -> list[tuple[str, str]]:
    return [(f"{prefix}{i:02}", f"{prefix}{j:02}") for i in range(n) for j in range(n) if i != j]


def test_a_step_budget_stops_the_search_and_every_component_is_still_reported():
    edges = _dense(12) + [("z1", "z2"), ("z2", "z1"), ("z2", "z2")]
    res = cycles(nx.DiGraph(edges), cap=10_000, steps=3_000)
    found = res.cycles
    assert res.capped and 0 < len(found) < 10_000
    assert ("z1", "z2") in found
    # the budget ran out in the dense one; the two-lock one was searched to the end
    assert (res.components, res.partial) == (2, 1)
    # the same graph built in another order gives the same cycles
    again = cycles(nx.DiGraph(list(reversed(edges))), cap=10_000, steps=3_000)
    assert again.cycles == found


def test_a_component_without_a_short_cycle_reports_its_shortest():
    ring = [f"r{i:02}" for i in range(12)]
    G = nx.DiGraph(list(zip(ring, ring[1:] + ring[:1])) + [("r03", "r07"), ("r07", "r07")])
    res = cycles(G)
    assert res.cycles == [("r00", "r01", "r02", "r03", "r07", "r08", "r09", "r10", "r11")]
    assert not res.capped


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 9), st.integers(0, 9)), max_size=40))
def test_uncapped_cycles_are_all_short_cycles(pairs):
    """Below the cap: exactly networkx's cycles of at most 8 locks, self-loops left out;
    a strongly connected component with none of them still gives its shortest cycle."""
    G = nx.DiGraph([(f"L{a}", f"L{b}") for a, b in pairs])
    res = cycles(G, cap=10**9)
    found = res.cycles
    assert not res.capped
    want = {canonical_cycle(c) for c in nx.simple_cycles(G, length_bound=8) if len(c) > 1}
    assert set(found) >= want
    extra = set(found) - want
    for c in extra:  # only components with no short cycle
        assert len(c) > 8
    assert found == sorted(found, key=lambda c: (len(c), c))


def test_shortest_first_across_components_and_an_exact_partial_count():
    """Under the cap, every component's ABBA pairs come before any longer cycle, and a
    component whose cycles are all shown is not counted as cut."""
    dense = [(a, b) for a in "abcdef" for b in "abcdef" if a != b]
    tri = [(a, b) for a in ("x1", "x2", "x3") for b in ("x1", "x2", "x3") if a != b]
    res = cycles(nx.DiGraph(dense + tri), cap=100)
    assert {("x1", "x2"), ("x1", "x3"), ("x2", "x3")} <= set(res.cycles)
    assert max(map(len, res.cycles)) == 4 and len(res.cycles) == 100
    assert (res.components, res.partial) == (2, 1)     # x1..x3: all 5 of its cycles shown
    two = cycles(nx.DiGraph([("a", "b"), ("b", "a"), ("c", "d"), ("d", "c")]), cap=1)
    assert two.cycles == [("a", "b"), ("c", "d")] and two.partial == 0
