"""Every configuration by default, one build with `--config` (issue 12).

Without a .config a `#if` on CONFIG_* options is a choice between its branches; a .config
narrows the scan to the build it describes; a malformed .config line is a warning.
"""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lockgraph.static.facts.config import load_config
from lockgraph.static.facts.prepass import config_only, prepare
from lockgraph.static.facts.scan import scan_file, scan_paths
from lockgraph.static.facts.walk import ScanContext
from lockgraph.static.solve import solve

from conftest import FIXTURES
from test_cli import run

SLUB = FIXTURES / "csrc" / "configs" / "slub"


def acquisitions(config):
    files = scan_paths([SLUB / "slub.c"], SLUB, load_config(config) if config else None)
    return solve(files).acquisitions


@pytest.mark.parametrize("config, taken", [(None, True), (SLUB / "tiny.config", False)],
                         ids=["every-configuration", "slub-tiny"])
def test_deactivate_slab_takes_the_node_lock_unless_slub_tiny(config, taken):
    got = {(a["function"], a["lock"]) for a in acquisitions(config)}
    assert (("deactivate_slab", "&n->list_lock") in got) == taken, got


def test_scan_json_names_the_conditions_of_an_acquisition():
    res = run("scan", "--format", "json", SLUB / "slub.c")
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    acq = [a for a in data["acquisitions"] if a["function"] == "deactivate_slab"]
    assert acq and all(a["configs"] == ["!defined(CONFIG_SLUB_TINY)"] for a in acq), acq
    assert data["conditionals"] == {"choices": 3, "misaligned": 0}


@pytest.mark.parametrize("expr, choice", [
    ("defined(CONFIG_SMP)", True), ("IS_ENABLED(CONFIG_A) && !defined(CONFIG_B)", True),
    ("CONFIG_NR_CPUS > 1", True), ("defined(MODULE)", False), ("0", False),
    ("defined(CONFIG_A) || BITS_PER_LONG == 64", False),
])
def test_only_conditions_on_config_options_are_choices(expr, choice):
    assert config_only(expr) == choice


def test_a_conditional_inside_an_expression_takes_one_branch_and_is_counted():
    src = ("void f(int a)\n{\n\tif (a\n#ifdef CONFIG_X\n\t    || g()\n#endif\n\t    )\n"
           "\t\th();\n}\n")
    ft = prepare("x.c", src, None)
    assert (ft.cond.misaligned, ft.cond.choices) == (1, 0)
    assert "g()" in ft.text and "__lockgraph_config" not in ft.text


#: A body of calls c0(), c1(), ... with properly nested CONFIG groups around some of them.
_body = st.recursive(
    st.just("call"),
    lambda inner: st.tuples(st.sampled_from(["ifdef", "ifndef", "if"]),
                            st.lists(inner, max_size=3), st.lists(inner, max_size=3),
                            st.booleans()),
    max_leaves=12).map(lambda x: [x]) | st.lists(st.just("call"), max_size=3)


def _render(items, out, calls):
    for it in items:
        if it == "call":
            calls.append(f"c{len(calls)}")
            out.append(f"\t{calls[-1]}();")
            continue
        kind, then, els, has_else = it
        n = len(out)
        out.append(f"#if IS_ENABLED(CONFIG_O{n})" if kind == "if" else f"#{kind} CONFIG_O{n}")
        _render(then, out, calls)
        if has_else:
            out.append("#else")
            _render(els, out, calls)
        out.append("#endif")


@settings(max_examples=60, deadline=None)
@given(st.lists(_body, max_size=4))
def test_every_branch_of_config_groups_in_a_body_is_walked(parts):
    out, calls = ["void f(void)", "{"], []
    for p in parts:
        _render(p, out, calls)
    out.append("}")
    src = "\n".join(out) + "\n"
    ft = prepare("p.c", src, None)
    assert ft.text.count("\n") == src.count("\n")   # every line stays where it was
    assert ft.cond.misaligned == 0
    ff = scan_file("p.c", src, ScanContext())
    (f,) = ff.functions
    assert [c.name for c in f.calls] == calls
    for c in f.calls:   # each call on the line it is written on
        assert src.split("\n")[c.line - 1].strip() == f"{c.name}();"


def test_a_malformed_config_line_is_a_warning_with_its_place(tmp_path):
    cfg = tmp_path / "bad.config"
    cfg.write_text("CONFIG_SMP=y\nCONFIG_SLUB_TINY yes\n# CONFIG_X is not set\n")
    res = run("scan", "--config", cfg, SLUB / "slub.c")
    assert res.exit_code == 0, res.output
    assert f"{cfg}:2: warning: not a .config line" in res.stderr
    assert "Traceback" not in res.output


def test_a_config_without_options_says_so(tmp_path):
    cfg = tmp_path / "empty.config"
    cfg.write_bytes(b"\x00\x01binary\n")
    res = run("scan", "--config", cfg, SLUB / "slub.c")
    assert res.exit_code == 0
    assert "no CONFIG_ option in this .config" in res.stderr
    assert "Traceback" not in res.output


def test_case_labels_under_a_conditional_stay_in_their_switch():
    """`#ifdef CONFIG_KSM` around `case PR_SET_MEMORY_MERGE:` (kernel/sys.c): inside an
    `if` the labels would be unreachable and the lock under them lost."""
    src = ("void f(int op)\n{\n\tswitch (op) {\n\tcase 1:\n\t\tbreak;\n#ifdef CONFIG_KSM\n"
           "\tcase 2:\n\t\tmutex_lock(&m);\n\t\tmutex_unlock(&m);\n\t\tbreak;\n#endif\n\t}\n}\n")
    ff = scan_file("s.c", src, ScanContext())
    assert [a.line for a in ff.functions[0].acqs] == [8]
    assert ff.misaligned == 1


KBUILD = FIXTURES / "csrc" / "kbuild-tree"


@pytest.mark.parametrize("config, skipped", [
    ("leaks-off.config", ["mm/kasan", "mm/leakcheck.c", "mm/leaks.c", "mm/nocheck.c",
                          "mm/nommu.c", "mm/pool_stats.c", "mm/selftests/mock_slab.c",
                          "mm/selftests/slab_test.c", "mm/slab_nommu.c"]),
    ("leaks-on.config", ["mm/nocheck.c", "mm/pool_core.c", "mm/pool_stats.c", "mm/poolcheck.c",
                         "mm/selftests/mock_slab.c", "mm/selftests/slab_test.c", "mm/slab_mmu.c",
                         "mm/vmalloc.c"]),
])
def test_a_config_skips_what_its_makefiles_never_build(config, skipped):
    """obj-$(CONFIG_X), composite objects, directories, `ifdef`/`else ifeq` on options and a
    list replaced by a later `:=` follow the .config; a rule under a test of anything else
    (`ifeq ($(SRCARCH),x86)`), a file no rule names and nothing includes, and a continued
    line keep their files.  A file no rule names goes with the `#if`/`#ifdef`/`#else` branch
    that includes it (selftests/ under an unset CONFIG_SLAB_SELFTEST, and what only they
    include), and stays under a test of anything else (`#if SLAB_DEBUG_LEVEL > 2`)."""
    from lockgraph.static.kbuild import Kbuild

    out = Kbuild(load_config(KBUILD / config)).unbuilt([KBUILD])
    assert sorted(str(p.relative_to(KBUILD)) for p in out) == skipped


def kbuild_edges(config) -> str:
    args = ["scan", "--format", "edges", "--no-cache", KBUILD]
    if config:
        args += ["--config", KBUILD / config]
    res = run(*args)
    assert res.exit_code == 0, res.output
    return res.output


@pytest.mark.parametrize("config, edge", [(None, True), ("leaks-on.config", True),
                                          ("leaks-off.config", False)])
def test_a_file_the_build_does_not_compile_answers_no_call(config, edge):
    """kfree() -> kmemleak_free() reaches mm/kmemleak.c only in builds that compile it."""
    assert ("slab_lock\tleak_lock" in kbuild_edges(config)) == edge


def test_scan_json_lists_the_unbuilt_files_as_not_scanned():
    res = run("scan", "--format", "json", "--no-cache", KBUILD, "--config", KBUILD / "leaks-off.config")
    got = json.loads(res.output)
    assert {"mm/leaks.c", "mm/kasan", "mm/pool_stats.c", "mm/nommu.c"} <= set(got["not_scanned"])
    # slab, pool_core (a module), guarded (an unknown test), poolcheck (else ifeq), vmalloc
    # (the list that replaced nommu.o), unnamed (no rule), slab_mmu (#ifdef CONFIG_MMU),
    # slab_debug (an unknown #if), lib's two
    assert got["files"] == 10


@pytest.mark.parametrize("config, nommu, vmalloc", [(None, True, True),
                                                    ("leaks-off.config", False, True),
                                                    ("leaks-on.config", True, False)])
def test_one_build_links_the_list_a_later_assignment_left(config, nommu, vmalloc):
    """mm/Makefile's `mmu-y := nommu.o` is replaced by `mmu-$(CONFIG_MMU) := ...`: an MMU
    kernel's vfree() is vmalloc.c's only, and a !MMU one's is nommu.c's."""
    out = kbuild_edges(config)
    assert ("kv_lock\tnommu_region_sem" in out, "kv_lock\tvmap_area_lock" in out) == (nommu, vmalloc)


@pytest.mark.parametrize("config, edge", [(None, True), ("leaks-on.config", False)])
def test_one_build_links_the_strong_definition_not_the_weak_default(config, edge):
    """The linker replaces a __weak default by another file's definition: in one build
    (--config) a call reaches the override only; across configurations, both."""
    assert ("slab_lock\tweak_lock" in kbuild_edges(config)) == edge


def test_a_module_option_is_not_defined_for_the_preprocessor():
    """autoconf.h defines CONFIG_X_MODULE for an option set to m, not CONFIG_X: `#ifdef
    CONFIG_X` and `#if CONFIG_X` are false for a module, IS_ENABLED(CONFIG_X) is true."""
    from lockgraph.static.facts.config import eval_condition

    cfg = load_config(KBUILD / "leaks-off.config")   # CONFIG_POOL=m, CONFIG_MMU=y
    assert eval_condition("defined(CONFIG_POOL)", cfg) is False
    assert eval_condition("CONFIG_POOL", cfg) is False
    assert eval_condition("IS_ENABLED(CONFIG_POOL)", cfg) is True
    assert eval_condition("IS_MODULE(CONFIG_POOL)", cfg) is True
    assert eval_condition("defined(CONFIG_POOL_MODULE)", cfg) is True
    assert eval_condition("defined(CONFIG_MMU) && !defined(CONFIG_POOL)", cfg) is True
