"""The C scanner on small kernel-like cases whose expected edges are written in the file.

Each `fixtures/csrc/cases/*.c` starts with `// EDGE: a -> b` / `// NOEDGE: a -> b` lines.
"""

from __future__ import annotations

import re

import pytest

from lockgraph.static.facts.cparse import classify, parse_body, tokenize
from lockgraph.static.facts.scan import scan_paths
from lockgraph.static.solve import solve

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


def test_spinning_lock_evidence_never_runs_through_a_sleep():
    """spin_b -> quick_lock is reached through schedule() (the earlier call) and through
    helper(); only the second may be its evidence."""
    case = FIXTURES / "csrc" / "cases" / "atomic_edges.c"
    S = solve(scan_paths([case], case.parent, None))
    _, via = S.edges[("spin_b", "quick_lock")].evidence[0]
    assert [s.function for s in via] == ["helper", "quick"]
    _, via = S.edges[("rcu_mutex2", "quick_lock")].evidence[0]  # inside rcu_read_lock()
    assert [s.function for s in via] == ["helper", "quick"]
    _, via = S.edges[("rcu_mutex3", "quick_lock")].evidence[0]  # a mutex, inside rcu
    assert [s.function for s in via] == ["wrap_both", "helper", "quick"]
    # what a function may take follows the same rule where the function itself is atomic:
    # spin_direct() calls schedule() under spin_b, so schedule()'s rq_lock is never taken
    # there, and quick_lock's evidence is the later helper() call
    fid = next(i for i in S.funcs if S.funcs[i].name == "spin_direct")
    line = next(c.line for c in S.funcs[fid].calls if c.name == "helper")
    via = S.search.chain(fid, "quick_lock")
    assert [(s.function, s.line) for s in via][:1] == [("spin_direct", line)]
    assert "rq_lock" not in S.takes[fid] and "quick_lock" in S.takes[fid]
    # without a spinning lock held, the sleep's locks are taken
    mutex = next(i for i in S.funcs if S.funcs[i].name == "mutex_holder")
    assert {"rq_lock", "inner_mutex", "quick_lock"} <= set(S.takes[mutex])
    # a callee's sleeping path under the caller's spinning lock: neither its mutex nor
    # what follows a sleep on every path is taken (sleeps_maybe's lock is)
    spin_d = next(i for i in S.funcs if S.funcs[i].name == "spin_d_holder")
    assert {"after_sleep_lock", "after_mutex_lock", "inner_mutex"}.isdisjoint(S.takes[spin_d])
    assert "after_maybe_lock" in S.takes[spin_d]
    # whether a function may sleep (a destructor's verdict says so) follows the same rule:
    # a sleep reached only under the function's own spinning lock is its LG107 bug
    sleeps = {S.funcs[i].name for i in S.sleeps}
    assert {"mutex_holder", "slow_then_quick", "wait_for_it", "rcu_holder"} <= sleeps
    assert not {"spin_direct", "spin_holder", "spin_d_holder"} & sleeps


def test_interrupts_off_passes_down_until_a_drop():
    """What a function takes follows the interrupts-off rule from where the context starts
    (fixtures/csrc/cases/irqs_off.c), and its evidence avoids what that context forbids."""
    case = FIXTURES / "csrc" / "cases" / "irqs_off.c"
    S = solve(scan_paths([case], case.parent, None))
    fid = {S.funcs[i].name: i for i in S.funcs}
    # plain_inside() on its own may run with interrupts on; under nested_holder()'s
    # spin_lock_irqsave() it cannot, so prog_put() only queues
    assert "deferred_lock" in S.takes[fid["plain_inside"]]
    assert "deferred_lock" not in S.takes[fid["nested_holder"]]
    assert "queue_lock" in S.takes[fid["nested_holder"]]
    # unlock_then_put() releases the caller's irq lock first: interrupts may be on again
    assert "deferred_lock" in S.takes[fid["dropper_holder"]]
    _, via = S.edges[("irq_x", "x_lock")].evidence[0]
    assert [s.function for s in via] == ["x_either", "later_x", "take_x"]
    _, via = S.edges[("outer_irq", "queue_lock")].evidence[0]
    assert [s.function for s in via] == ["kick", "wake_one", "prog_put", "queue_it"]
    via = S.search.chain(fid["x_holder"], "x_lock")
    assert [s.function for s in via] == ["x_holder", "x_either", "later_x", "take_x"]
    # dead code under the function's own irq lock is not taken, nor what it hands on
    assert {"body_lock", "param_lock", "fs_reclaim"}.isdisjoint(S.takes[fid["body_holder"]])
    assert "cb_lock" not in S.takes[fid["irq_cb_holder"]]
    assert "cb_lock" in S.takes[fid["plain_cb_holder"]]


_RECURSIVE = """\
static DEFINE_SPINLOCK(t_lock);
void start_fn(int x);
static void helper_a(int x) { start_fn(x - 1); }
static void take_t(void) { spin_lock(&t_lock); spin_unlock(&t_lock); }
void start_fn(int x)
{
\tif (x)
\t\thelper_a(x);
\ttake_t();
}
"""


def test_far_chain_backs_out_of_a_call_that_leads_back(tmp_path, monkeypatch):
    """A search too wide for breadth first follows the first call that leads to the class;
    helper_a() leads there only through start_fn() again, so the chain backs out of it and
    ends where the lock is taken, never short of it."""
    import lockgraph.static.witnesses as W

    src = tmp_path / "recursive.c"
    src.write_text(_RECURSIVE)
    S = solve(scan_paths([src], tmp_path, None))
    fid = next(i for i in S.funcs if S.funcs[i].name == "start_fn")
    monkeypatch.setattr(W, "BFS_BUDGET", 0)
    via = S.search.chain(fid, "t_lock")
    lines = _RECURSIVE.splitlines()
    want = [("start_fn", lines.index("\ttake_t();") + 1),
            ("take_t", lines.index("static void take_t(void) { spin_lock(&t_lock); spin_unlock(&t_lock); }") + 1)]
    assert [(s.function, s.line) for s in via] == want
    # an edge's evidence (depth first through the first call) backs out of helper_a()
    S.search._chains.clear()
    assert [(s.function, s.line) for s in S.search.chain(fid, "t_lock", edge=True)] == want


@pytest.mark.parametrize("case", CASES, ids=[c.stem for c in CASES])
def test_far_chains_are_the_shortest_and_end_at_the_lock(case, monkeypatch):
    """Without the breadth-first budget every chain comes from the per-root tree or the
    depth-first search: it ends where the class is taken and is no longer than the
    per-class breadth-first chain."""
    import lockgraph.static.witnesses as W

    S = solve(scan_paths([case], case.parent, None))
    want = {}
    for fid in sorted(S.funcs):
        for cls in sorted(S.takes.get(fid, {})):
            if not cls.startswith("@param"):
                want[(fid, cls)] = S.search.chain(fid, cls)
    monkeypatch.setattr(W, "BFS_BUDGET", 0)
    S.search = W.ChainSearch(S)
    for (fid, cls), near in want.items():
        got = S.search.chain(fid, cls)
        assert bool(got) == bool(near), (fid, cls)
        if got:
            assert len(got) == len(near), (fid, cls, got, near)
            assert got[0].function == S.funcs[fid].name
            end = got[-1]
            if cls != "fs_reclaim":
                assert any(c == cls and a.line == end.line for i in S.by_name[end.function]
                           for c, a in S.local_acqs.get(i, ())) or len(got) == 1, (fid, cls, got)




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


def test_one_call_site_is_one_piece_of_evidence(tmp_path):
    """A call through an ops table reaching the lock via two targets is one place."""
    from lockgraph import pipeline

    (tmp_path / "ops.c").write_text("""\
static DEFINE_SPINLOCK(a_lock);
static DEFINE_SPINLOCK(c_lock);
struct runner { void (*run)(void); };
static void h1(void) { spin_lock(&c_lock); spin_unlock(&c_lock); }
static void h2(void) { spin_lock(&c_lock); spin_unlock(&c_lock); }
static const struct runner r1 = { .run = h1 };
static const struct runner r2 = { .run = h2 };
static void go(struct runner *o)
{
	spin_lock(&a_lock);
	o->run();
	spin_unlock(&a_lock);
}
""")
    S = solve(scan_paths([tmp_path], tmp_path, None))
    assert len(S.edges[("a_lock", "c_lock")].raw) == 2        # two chains kept for `scan`
    st = pipeline.StaticScan(S, tmp_path, None, 1)
    res = pipeline.run([], (), st)
    ev = res.graph["a_lock"]["c_lock"]["evidence"]
    assert len(ev) == 1 and (ev[0].file, ev[0].line) == ("ops.c", 11)
    assert ev[0].stack[0] == "go (ops.c:11)"


def test_walking_dot_and_a_file_in_it_lists_the_file_once(tmp_path, monkeypatch):
    from pathlib import Path

    from lockgraph.static.sources import iter_sources

    (tmp_path / "mm").mkdir()
    (tmp_path / "mm" / "a.c").write_text("int x;\n")
    monkeypatch.chdir(tmp_path)
    assert iter_sources([Path("."), Path("mm/a.c")]) == [Path("mm/a.c")]


ATOMIC = FIXTURES / "csrc" / "atomic" / "sleep_in_atomic.c"
_SLEEP = re.compile(r"^// (SLEEP|NOSLEEP): (\w+) (\S+) (.+?)\s*$", re.M)


def test_sleep_in_atomic_findings_are_the_ones_the_case_names():
    """LG107 on a case whose expected findings (holder, spinning lock, sleeping operation)
    are written in the file: direct, through a helper, through a gfp parameter, in a
    trylock's success branch, under raw/rw/local locks, behind a flag parameter the caller
    sets, behind !irqs_disabled() under a lock that leaves interrupts on; none for
    GFP_ATOMIC/GFP_NOWAIT, a callee that drops the lock (its own or the one passed to it)
    first, a gfp parameter masked before the allocation (not after it), a local reassigned
    a non-blocking gfp under the lock, a sleep behind gfpflags_allow_blocking() or a flag
    passed false, trylocks, SRCU readers, under spin_lock_irqsave() behind
    !irqs_disabled(), past panic(), after pte_unmap_unlock(), and none at the outer end of
    a chain whose inner function already holds a spinning lock around the sleep."""
    from lockgraph.static.atomic import sleep_in_atomic

    S = solve(scan_paths([ATOMIC], ATOMIC.parent, None))
    got = {(f.message.split(" is held in ")[1].split("()")[0], f.lock, f.path[1])
           for f in sleep_in_atomic(S)}
    exp = [(m.group(1), (m.group(2), m.group(3), m.group(4))) for m in _SLEEP.finditer(ATOMIC.read_text())]
    assert exp
    for kind, (holder, lock, op) in exp:
        if kind == "SLEEP":
            assert (holder, lock, op) in got, f"{kind}: {holder} {lock} {op}; findings: {sorted(got)}"
        else:
            assert not [g for g in got if (g[0], g[2]) == (holder, op)], f"{kind}: {holder} {op}"
    assert len(got) == sum(kind == "SLEEP" for kind, _ in exp), sorted(got)


def test_sleep_in_atomic_evidence_and_stable_id():
    """Evidence: where the spinning lock is taken, then the call chain to the sleep; the id
    keys on names, so moving the code does not change it."""
    from lockgraph.static.atomic import sleep_in_atomic

    def findings(text, tmp):
        p = tmp / "a.c"
        p.write_text(text)
        return {f.path: f for f in sleep_in_atomic(solve(scan_paths([p], tmp, None)))}

    import tempfile
    from pathlib import Path

    text = ATOMIC.read_text()
    with tempfile.TemporaryDirectory() as d:
        one = findings(text, Path(d))
    with tempfile.TemporaryDirectory() as d:
        moved = findings("\n\n\n" + text, Path(d))
    f = one[("list_lock", "kzalloc(GFP_KERNEL)")]
    lines = text.splitlines()
    at = lines.index("\tspin_lock_irq(&list_lock);") + 1
    assert (f.evidence[0].file, f.evidence[0].line) == ("a.c", at)
    assert f.evidence[1].stack == (f"via_helper (a.c:{at + 1})",
                                   f"zalloc (a.c:{lines.index('	return kzalloc(size, gfp);') + 1})")
    assert {k: v.id for k, v in one.items()} == {k: v.id for k, v in moved.items()}
    assert moved[("list_lock", "kzalloc(GFP_KERNEL)")].evidence[0].line == at + 3


def test_trylocks_do_not_sleep_srcu_readers_neither():
    """A mutex_trylock() never waits and srcu_read_lock() only counts readers: neither
    makes its function one that may sleep (kb.BLOCKING_KINDS)."""
    S = solve(scan_paths([ATOMIC], ATOMIC.parent, None))
    assert "sleep_in_atomic.c:trylock_mutex" not in S.sleeps
    assert "sleep_in_atomic.c:srcu_reader" not in S.sleeps
    assert S.sleeps["sleep_in_atomic.c:take_big"].note == "mutex_lock()"


def test_a_file_given_alone_brings_the_c_files_it_includes(tmp_path):
    """`#include "x.c"` makes one translation unit: scanning the includer alone follows the
    include (relative to its directory, recursively, once each, not when commented out)."""
    from pathlib import Path

    from lockgraph.static.sources import iter_sources

    (tmp_path / "mm" / "sub").mkdir(parents=True)
    (tmp_path / "mm" / "main.c").write_text("""\
static DEFINE_MUTEX(alloc_mutex);
// #include "gone.c"
#ifdef CONFIG_KM
#include "km.c"
#else
#include "vm.c"
#endif
void *alloc_it(void)
{
	mutex_lock(&alloc_mutex);
	populate();
	mutex_unlock(&alloc_mutex);
}
""")
    (tmp_path / "mm" / "vm.c").write_text('#include "sub/helper.c"\n#include "main.c"\n'
                                          "static void populate(void) { helper(); }\n")
    (tmp_path / "mm" / "km.c").write_text("static void populate(void) { }\n")
    (tmp_path / "mm" / "sub" / "helper.c").write_text(
        "static void helper(void) { kzalloc(8, GFP_KERNEL); }\n")
    (tmp_path / "mm" / "gone.c").write_text("static void gone(void) { }\n")
    main = tmp_path / "mm" / "main.c"
    assert iter_sources([main]) == [Path(str(tmp_path / "mm" / n)) for n in
                                    ("km.c", "main.c", "sub/helper.c", "vm.c")]
    S = solve(scan_paths([main], tmp_path, None))
    (step, via), = S.edges[("alloc_mutex", "fs_reclaim")].evidence
    assert [step.function, *(s.function for s in via)] == ["alloc_it", "populate", "helper"]


BLIND = """\
static DEFINE_SPINLOCK(table_lock);

static void update(struct entry *e)
{
	e->hash = cpu_to_le32(e->key);
	mystery_hook(e);
	kfree(e->old);
}

void table_insert(struct entry *e)
{
	spin_lock(&table_lock);
	update(e);
	spin_unlock(&table_lock);
	other_call(e);
	be64_to_cpu(e->stamp);
}
"""


def test_blind_spots_under_a_lock_come_first_frees_and_byte_order_last(tmp_path):
    """Ranking: a call reached under a held lock (here through update(), called with
    table_lock held) first, then the rest, then byte-order helpers and kfree whatever
    their context — in the solver's ranking, `scan` text and the JSON `under_lock` flag."""
    from typer.testing import CliRunner

    from lockgraph.cli import app

    (tmp_path / "t.c").write_text(BLIND)
    S = solve(scan_paths([tmp_path / "t.c"], tmp_path, None))
    ranked, locked = S.ranked_blind(["t.c:table_insert"])
    assert ranked == ["missing definition of mystery_hook()", "missing definition of other_call()",
                      "missing definition of be64_to_cpu()", "missing definition of cpu_to_le32()",
                      "missing definition of kfree()"]
    assert locked == {"missing definition of mystery_hook()", "missing definition of cpu_to_le32()",
                      "missing definition of kfree()"}
    res = CliRunner().invoke(app, ["scan", str(tmp_path / "t.c"), "--no-cache", "-q"])
    listed = [ln.split("  ")[1] for ln in res.stdout.splitlines() if ln.startswith("  missing")]
    assert listed == [b.removeprefix("missing definition of ") and b for b in ranked]
    assert "blind spots: 5 unresolved callee(s), 3 called under a held lock" in res.stdout
    res = CliRunner().invoke(app, ["scan", str(tmp_path / "t.c"), "--no-cache", "-q", "-f", "json"])
    import json
    flags = {u["call"]: u["under_lock"] for u in json.loads(res.stdout)["unresolved_calls"]}
    assert flags == {b: b in locked for b in ranked}


def test_a_tree_s_own_guard_types_stay_in_its_scan(tmp_path):
    """Guard types a tree declares (DEFINE_GUARD) live in that scan's ScanContext: a second
    scan in the same process (review's base and head sides) must not inherit them."""
    from lockgraph.static.facts import kb

    declares = tmp_path / "a"
    declares.mkdir()
    (declares / "g.c").write_text(
        "DEFINE_GUARD(foo, struct mutex *, mutex_lock(_T), mutex_unlock(_T))\n"
        "static DEFINE_MUTEX(m);\n"
        "void f(void) { guard(mutex)(&m); }\n")
    uses = tmp_path / "b"
    uses.mkdir()
    (uses / "u.c").write_text("static DEFINE_SPINLOCK(s);\n"
                              "void g(struct foo_dev *d) { guard(foo)(&d->lock); spin_lock(&s); spin_unlock(&s); }\n")
    before = dict(kb.BUILTIN_GUARDS)
    first = scan_paths([declares], tmp_path, None)
    assert any("foo" in f.guards for f in first)
    second = solve(scan_paths([uses], tmp_path, None))
    assert dict(kb.BUILTIN_GUARDS) == before
    assert {a["kind"] for a in second.acquisitions if a["function"] == "g"} == {"spin"}
    # the same tree with its declaration: the guard takes the mutex
    both = solve(scan_paths([declares, uses], tmp_path, None))
    assert "mutex" in {a["kind"] for a in both.acquisitions if a["function"] == "g"}
    with pytest.raises(TypeError):
        kb.BUILTIN_GUARDS["foo"] = "spin_lock"  # type: ignore[index]


def test_a_sleep_reached_only_through_an_indirect_call_is_a_warning(tmp_path):
    """Through a function pointer the target is a may-target (resolved by member name): the
    whole-kernel call graph makes thousands of such paths, so they are warnings, not errors."""
    import json

    from typer.testing import CliRunner

    from lockgraph.cli import app

    (tmp_path / "ops.c").write_text(
        "struct foo_ops { void (*go)(void); };\n"
        "static DEFINE_SPINLOCK(l);\n"
        "static void sleeper(void) { msleep(1); }\n"
        "static struct foo_ops my_ops = { .go = sleeper };\n"
        "void direct(void) { spin_lock(&l); sleeper(); spin_unlock(&l); }\n"
        "void indirect(struct foo_ops *o) { spin_lock(&l); o->go(); spin_unlock(&l); }\n")
    res = CliRunner().invoke(app, ["check", "--src", str(tmp_path), "--root", str(tmp_path),
                                   "--no-cache", "--format", "json"])
    got = {f["evidence"][0]["what"].split(" in ")[-1]: f for f in json.loads(res.stdout)["findings"]
           if f["rule"] == "LG107"}
    assert got["direct()"]["severity"] == "error" and "may-path" not in got["direct()"]["message"]
    assert got["indirect()"]["severity"] == "warning"
    assert "through the indirect call o->go() at ops.c:6" in got["indirect()"]["message"]
    assert res.exit_code == 1


def test_same_named_static_locks_of_two_files_are_two_classes(tmp_path):
    """DEFINE_MUTEX(lock) in two files are two lockdep classes that share a name; merged by
    name, their edges would close a cycle that cannot happen."""
    (tmp_path / "a.c").write_text("static DEFINE_MUTEX(lock);\nDEFINE_SPINLOCK(x);\n"
                                  "void fa(void) { mutex_lock(&lock); spin_lock(&x); spin_unlock(&x);"
                                  " mutex_unlock(&lock); }\n")
    (tmp_path / "b.c").write_text("static DEFINE_MUTEX(lock);\nextern spinlock_t x;\n"
                                  "void fb(void) { spin_lock(&x); mutex_lock(&lock); mutex_unlock(&lock);"
                                  " spin_unlock(&x); }\n")
    S = solve(scan_paths([tmp_path], tmp_path, None))
    assert ("lock (a.c)", "x") in S.edges and ("x", "lock (b.c)") in S.edges
    assert ("x", "lock (a.c)") not in S.edges and ("lock", "x") not in S.edges


def test_a_witness_chain_never_goes_through_a_call_its_constant_closes():
    """chain_put_maybe(flag) reaches notify_lock through __chain_put; the witness of an edge
    from a caller passing `true` must not be searched through that call."""
    case = FIXTURES / "csrc" / "cases" / "const_args.c"
    S = solve(scan_paths([case], case.parent, None))
    by = {f.name: i for i, f in S.funcs.items()}
    assert S.chain(by["chain_put"], "notify_lock")
    assert not S.chain(by["chain_put_by_act"], "notify_lock")
