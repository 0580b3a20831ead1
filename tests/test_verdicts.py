"""Root verdicts on small C cases: proven, unproven (blind spots), violated with a splat."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from lockgraph.cli import app

from conftest import FIXTURES, ROOT

CASES = FIXTURES / "csrc" / "verdicts"
runner = CliRunner()


def check(name, *extra):
    res = runner.invoke(app, ["check", "--src", str(CASES / f"{name}.c"), "--root", str(ROOT),
                              "--format", "json", *extra])
    return res.exit_code, json.loads(res.stdout)


def root(out, fn):
    (r,) = [r for r in out["roots"] if r["function"] == fn]
    return r


def test_leaf_irq_safe_dtor_with_every_callee_defined_is_proven():
    code, out = check("proven")
    assert code == 0
    r = root(out, "foo_dtor")
    assert r["strict_leaf"] == {"verdict": "proven", "violations": []}
    assert r["dtor_safe"]["verdict"] == "proven"
    assert r["blind_spots"] == []
    assert [lk["lock"] for lk in r["locks"]] == ["stats_lock"]
    assert [s["function"] for s in r["locks"][0]["witness"]] == ["foo_dtor", "foo_account"]
    assert out["verdict"]["status"] == "proven"


def test_a_missing_definition_makes_the_verdict_unproven_not_proven():
    code, out = check("unresolved")
    assert code == 0
    r = root(out, "foo_dtor")
    assert r["strict_leaf"]["verdict"] == "unproven"
    assert r["dtor_safe"]["verdict"] == "unproven"
    assert r["blind_spots"] == ["missing definition of foo_unknown_hook()"]
    assert out["verdict"]["status"] == "unproven"


def test_dtor_context_closing_a_cycle_is_a_predicted_splat():
    code, out = check("splat")
    assert code == 1
    r = root(out, "bar_dtor")
    assert r["strict_leaf"]["verdict"] == "violated"
    assert {(v["lock"], v["to"]) for v in r["strict_leaf"]["violations"]} == {
        ("chunk_mutex", "fs_reclaim"), ("chunk_mutex", "free_lock")}
    assert r["dtor_safe"]["verdict"] == "violated"
    # one lock, two contexts it closes a cycle with: one finding, two predicted splats
    (f,) = [f for f in out["findings"] if f["rule"] == "LG105"]
    assert f["lock"] == "chunk_mutex" and f["root"] == "bar_dtor"
    assert "'fs_reclaim'" in f["message"] and "'free_lock'" in f["message"]
    assert not [g for g in out["findings"] if g["rule"] == "LG101" and g.get("root") == "bar_dtor"]
    assert f["detail"].count("WARNING: possible circular locking dependency detected") == 2
    text = f["detail"].split("\n\n======")[0]
    assert "WARNING: possible circular locking dependency detected" in text
    lines = text.splitlines()
    scen = lines[lines.index("       ----                    ----") + 1:][:4]
    assert [ln.strip() for ln in scen] == ["lock(fs_reclaim);", "lock(chunk_mutex);",
                                           "lock(fs_reclaim);", "lock(chunk_mutex);"]
    assert "-> #1 (fs_reclaim):" in lines and "-> #0 (chunk_mutex):" in lines


def test_dtor_option_on_source_names_a_root():
    code, out = check("proven", "--dtor", "foo_account")
    assert {r["function"] for r in out["roots"] if r["kind"] == "dtor"} == {"foo_dtor", "foo_account"}
    code, out = check("proven", "--dtor", "no_such_fn")
    r = root(out, "no_such_fn")
    assert r["defined"] is False and r["strict_leaf"]["verdict"] == "unproven"


def test_only_slab_cache_dtors_and_ctors_are_roots(tmp_path):
    """`.dtor =` in other structs (nouveau's subdev tables, ...) is not a slab destructor;
    a struct of another type passed to kmem_cache_create() still is."""
    (tmp_path / "x.c").write_text("""\
static DEFINE_SPINLOCK(a_lock);
static void fb_dtor(void *p) { spin_lock(&a_lock); spin_unlock(&a_lock); }
static void slab_dtor(void *p) { spin_lock(&a_lock); spin_unlock(&a_lock); }
static void passed_dtor(void *p) { spin_lock(&a_lock); spin_unlock(&a_lock); }
static const struct nvkm_fb_func gf100_fb = {
	.dtor = fb_dtor,
};
static struct kmem_cache *c1, *c2;
static void init(void)
{
	struct kmem_cache_args args = { .dtor = slab_dtor, };
	struct my_slab_args other = { .dtor = passed_dtor, };

	c1 = kmem_cache_create("c1", 64, &args, 0);
	c2 = kmem_cache_create("c2", 64, &other, 0);
}
""")
    res = runner.invoke(app, ["check", "--src", str(tmp_path / "x.c"), "--root", str(tmp_path),
                              "--format", "json", "--no-cache"])
    out = json.loads(res.stdout)
    assert sorted(r["function"] for r in out["roots"] if r["kind"] == "dtor") == [
        "passed_dtor", "slab_dtor"]


def test_a_constructor_that_sleeps_without_reclaim_shows_the_chain_to_the_sleep(tmp_path):
    """LG106's evidence is what the finding says: the call chain to the sleep, not the
    chain to whichever lock the constructor takes first."""
    (tmp_path / "ctor.c").write_text(
        "static DEFINE_SPINLOCK(count_lock);\n"
        "static struct kmem_cache *qux_cache;\n"
        "static void qux_wait(void)\n{\n\tmsleep(1);\n}\n"
        "static void qux_ctor(void *obj)\n{\n\tspin_lock(&count_lock);\n"
        "\tspin_unlock(&count_lock);\n\tqux_wait();\n}\n"
        "static int __init qux_init(void)\n{\n"
        "\tqux_cache = kmem_cache_create(\"qux\", 64, 0, 0, qux_ctor);\n\treturn 0;\n}\n"
        "void *qux_get(void)\n{\n\treturn kmem_cache_alloc(qux_cache, GFP_ATOMIC);\n}\n")
    res = runner.invoke(app, ["check", "--src", str(tmp_path), "--root", str(tmp_path),
                              "--no-cache", "--format", "json"])
    out = json.loads(res.stdout)
    (f,) = [f for f in out["findings"] if f["rule"] == "LG106"]
    ctor_ev = f["evidence"][1]
    assert ctor_ev["what"] == "constructor qux_ctor() may sleep"
    assert ctor_ev["stack"] == ["qux_ctor (ctor.c:11)", "qux_wait (ctor.c:5)"]
