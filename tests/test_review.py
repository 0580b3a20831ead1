"""`lockgraph review` on a small kernel-like git repo: a series that breaks a destructor's leaf
lock, the same series reversed, the same series as an mbox, and a series that does not apply.

The repo is built once per module (git is the slow part); every test that runs a review
also checks that the user's repo, its HEAD and its files are exactly as before.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from lockgraph.cli import app

from conftest import FIXTURES

runner = CliRunner()

# The destructor of fixtures/csrc/verdicts/proven.c: one leaf, irq-safe spinning lock.
FOO_BASE = (FIXTURES / "csrc" / "verdicts" / "proven.c").read_text()

# Patch 1: list_lock nested under stats_lock -- stats_lock is no longer a leaf.
FOO_NESTED = FOO_BASE.replace("\tnr_freed++;\n", "\tnr_freed++;\n\tspin_lock(&list_lock);\n"
                              "\tspin_unlock(&list_lock);\n").replace(
    "static DEFINE_SPINLOCK(stats_lock);\n",
    "static DEFINE_SPINLOCK(stats_lock);\nstatic DEFINE_SPINLOCK(list_lock);\n")
# Patch 2: a GFP_KERNEL allocation in a new file, called under stats_lock.
FOO_HEAD = FOO_NESTED.replace("\tspin_unlock(&list_lock);\n",
                              "\tspin_unlock(&list_lock);\n\tfoo_log_free();\n").replace(
    "static void foo_account", "void foo_log_free(void);\n\nstatic void foo_account")
FOO_LOG = """\
// Records of freed objects, allocated as they come.
static LIST_HEAD(foo_log);

void foo_log_free(void)
{
	struct foo_rec *rec = kmalloc(sizeof(*rec), GFP_KERNEL);

	if (rec)
		list_add(&rec->node, &foo_log);
}
"""
OTHER = """\
static DEFINE_MUTEX(other_mutex);

void other_work(void)
{
	mutex_lock(&other_mutex);
	mutex_unlock(&other_mutex);
}
"""


def git(repo: Path, *args: str) -> str:
    env = dict(os.environ, GIT_AUTHOR_DATE="2026-01-01T00:00:00Z",
               GIT_COMMITTER_DATE="2026-01-01T00:00:00Z", GIT_CONFIG_GLOBAL="/dev/null")
    return subprocess.run(["git", "-C", str(repo), "-c", "user.name=Rev Iewer",
                           "-c", "user.email=r@example.org", *args], check=True,
                          capture_output=True, text=True, env=env).stdout


def line_of(text: str, needle: str) -> int:
    return next(i for i, ln in enumerate(text.splitlines(), 1) if needle in ln)


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    r = tmp_path_factory.mktemp("review") / "linux"
    r.mkdir()
    git(r, "init", "-q", "-b", "master")
    (r / "Kconfig").write_text("# kernel-like tree\n")
    (r / "MAINTAINERS").write_text("FOO\n")
    (r / "mm").mkdir()
    (r / "mm" / "foo.c").write_text(FOO_BASE)
    (r / "kernel").mkdir()
    (r / "kernel" / "other.c").write_text(OTHER)
    git(r, "add", "-A")
    git(r, "commit", "-q", "-m", "base")
    git(r, "tag", "base")
    (r / "mm" / "foo.c").write_text(FOO_NESTED)
    git(r, "commit", "-q", "-a", "-m", "mm/foo: count list updates under stats_lock")
    (r / "mm" / "foo.c").write_text(FOO_HEAD)
    (r / "mm" / "foo_log.c").write_text(FOO_LOG)
    (r / "Documentation").mkdir()
    (r / "Documentation" / "foo.rst").write_text("Freed objects are logged.\n")
    git(r, "add", "-A")
    git(r, "commit", "-q", "-m", "mm/foo: log freed objects")
    git(r, "tag", "head")
    return r


@pytest.fixture(scope="module")
def mbox(repo: Path, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("series") / "series.mbox"
    out.write_text(git(repo, "format-patch", "--stdout", "base..head"))
    return out


@pytest.fixture(scope="module")
def base_checkout(repo: Path, tmp_path_factory) -> Path:
    """A separate checkout of base, to which the mbox is applied (the user's `--src ~/linux`)."""
    co = tmp_path_factory.mktemp("co") / "linux"
    subprocess.run(["git", "clone", "-q", str(repo), str(co)], check=True)
    git(co, "checkout", "-q", "base")
    return co


def snapshot(*roots: Path) -> dict[str, tuple[int, int, bytes]]:
    """Every file below the roots (the .git directory included) with mtime, ctime (a hard
    link made and removed changes it, and git then re-reads the file) and content."""
    out = {}
    for root in roots:
        for p in sorted(root.rglob("*")) if root.is_dir() else [root]:
            if p.is_file() and not p.is_symlink():
                st = p.stat()
                out[str(p)] = (st.st_mtime_ns, st.st_ctime_ns, p.read_bytes())
    return out


@pytest.fixture
def untouched(repo: Path, mbox: Path, base_checkout: Path):
    """The user's repo, checkout and mbox are exactly as before the test's reviews."""
    before = snapshot(repo, mbox, base_checkout)
    heads = git(repo, "rev-parse", "HEAD"), git(base_checkout, "rev-parse", "HEAD")
    yield
    assert snapshot(repo, mbox, base_checkout) == before
    assert (git(repo, "rev-parse", "HEAD"), git(base_checkout, "rev-parse", "HEAD")) == heads
    assert git(repo, "status", "--porcelain", "--untracked-files=all") == ""
    assert git(base_checkout, "status", "--porcelain", "--untracked-files=all") == ""


def review(*args, cwd: Path):
    """Run in `cwd` (the repo's parent), so the tree is named relatively, as users do."""
    old = os.getcwd()
    os.chdir(cwd)
    try:
        return runner.invoke(app, ["review", *map(str, args)])
    finally:
        os.chdir(old)


def review_json(*args, cwd: Path):
    res = review(*args, "--format", "json", cwd=cwd)
    assert "Traceback" not in res.stdout + res.stderr
    return res, (json.loads(res.stdout) if res.stdout else None)


def edges(out: dict, side: str) -> set[tuple[str, str, str, int]]:
    return {(e["from"], e["to"], e["file"], e["line"]) for e in out["edges"][side]}


NESTED_LINE = line_of(FOO_HEAD, "spin_lock(&list_lock)")
ALLOC_LINE = line_of(FOO_HEAD, "foo_log_free();")
NEW_EDGES = {("stats_lock", "list_lock", "mm/foo.c", NESTED_LINE),
             ("stats_lock", "fs_reclaim", "mm/foo.c", ALLOC_LINE)}


def test_range_that_breaks_the_leaf_lock_exits_1_and_names_the_new_edges(repo, untouched):
    res, out = review_json("--src", repo.name, "base..head", cwd=repo.parent)
    assert res.exit_code == 1, res.stderr
    assert edges(out, "added") == NEW_EDGES
    assert edges(out, "removed") == set()
    assert {(c["status"], c["path"], c["analysed"]) for c in out["changed_files"]} == {
        ("M", "mm/foo.c", True), ("A", "mm/foo_log.c", True),
        ("A", "Documentation/foo.rst", False)}
    assert out["verdict"] == {"base": "proven", "head": "violated"}
    new = {(f["rule"], f["lock"]) for f in out["findings"]["new"]}
    # stats_lock's non-leaf edges close a context cycle: one finding, the cycle (LG105)
    assert ("LG105", "stats_lock") in new and ("LG101", "stats_lock") not in new
    assert out["findings"]["fixed"] == []
    assert out["summary"]["new_errors"] >= 1 and out["summary"]["new_splats"] == 1
    assert "WARNING: possible circular locking dependency" in out["splats"]["new"][0]["text"]
    assert out["locks"]["dtor"]["added"] == {"fs_reclaim": ["foo_dtor"], "list_lock": ["foo_dtor"]}
    (changed,) = out["roots"]["changed"]
    assert changed["function"] == "foo_dtor"
    assert changed["base"]["strict_leaf"] == "proven" and changed["head"]["strict_leaf"] == "violated"
    assert "defined in a changed file: mm/foo.c" in changed["changes"]
    text = review("--src", repo.name, "base..head", cwd=repo.parent).stdout
    assert f"stats_lock --> list_lock  mm/foo.c:{NESTED_LINE}" in text
    assert f"stats_lock --> fs_reclaim  mm/foo.c:{ALLOC_LINE}" in text
    assert "lockgraph-review-" not in text + json.dumps(out)  # no temporary paths leak


def test_reverse_range_exits_0_and_reports_the_violation_fixed(repo, untouched):
    res, out = review_json("--src", repo.name, "head..base", cwd=repo.parent)
    assert res.exit_code == 0, res.stderr
    assert out["findings"]["new"] == []
    assert ("LG105", "stats_lock") in {(f["rule"], f["lock"]) for f in out["findings"]["fixed"]}
    assert edges(out, "added") == set()
    assert {(a, b) for a, b, _f, _l in edges(out, "removed")} == {(a, b) for a, b, _f, _l in NEW_EDGES}
    assert out["verdict"] == {"base": "violated", "head": "proven"}
    assert {c["status"] for c in out["changed_files"] if c["path"] == "mm/foo_log.c"} == {"D"}


def test_mbox_applied_to_a_checkout_of_base_gives_the_same_answer(repo, mbox, base_checkout,
                                                                  untouched):
    _r, by_range = review_json("--src", repo.name, "base..head", cwd=repo.parent)
    res, by_mbox = review_json("--src", base_checkout, mbox, cwd=repo.parent)
    assert res.exit_code == 1, res.stderr
    for key in ("edges", "findings", "locks", "roots", "splats", "cycles", "verdict", "summary",
                "changed_files", "head_roots"):
        assert by_mbox[key] == by_range[key], key
    assert by_mbox["series"] == str(mbox)


def test_a_patch_that_does_not_apply_is_named_exit_2(repo, mbox, untouched):
    # The user's checkout is at head: the series is already in, its first patch cannot apply.
    res = review("--src", repo, mbox, cwd=repo.parent)
    assert res.exit_code == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in res.stderr
    assert str(mbox) in lines[0] and "patch 1/2" in lines[0]
    assert "'mm/foo: count list updates under stats_lock'" in lines[0]
    assert "does not apply" in lines[0]


def test_plain_diff_and_non_patch_files(repo, base_checkout, tmp_path, untouched):
    plain = tmp_path / "fix.patch"
    plain.write_text(git(repo, "diff", "base", "head"))
    _r, by_range = review_json("--src", repo.name, "base..head", cwd=repo.parent)
    res, out = review_json("--src", base_checkout, plain, cwd=repo.parent)
    assert res.exit_code == 1 and out["findings"] == by_range["findings"]
    note = tmp_path / "notes.txt"
    note.write_text("just prose\n")
    res = review("--src", base_checkout, note, cwd=repo.parent)
    assert res.exit_code == 2 and res.stderr.strip().endswith("error: not a patch: no diff in it")


@pytest.mark.parametrize("args, says", [
    (["base..nosuch"], "'nosuch' is not a commit"),
    (["base"], "neither a patch file nor a git range"),
    (["--path", "drivers", "base..head"], "--path drivers"),
    (["--path", "../etc", "base..head"], "must be relative"),
], ids=["bad-rev", "not-a-series", "missing-path", "path-escapes"])
def test_bad_series_or_paths_are_one_line_errors(repo, untouched, args, says):
    res = review("--src", repo.name, *args, cwd=repo.parent)
    assert res.exit_code == 2
    assert len(res.stderr.strip().splitlines()) == 1 and says in res.stderr, res.stderr


def test_range_needs_a_git_checkout(tmp_path):
    plain = tmp_path / "tree"
    (plain / "mm").mkdir(parents=True)
    (plain / "mm" / "foo.c").write_text(FOO_BASE)
    res = review("--src", plain, "base..head", cwd=tmp_path)
    assert res.exit_code == 2 and "not a git checkout" in res.stderr


def test_output_is_byte_identical_across_runs_and_cache_states(repo, untouched):
    args = ("--src", repo.name, "base..head")
    first = review(*args, cwd=repo.parent).stdout
    assert review(*args, cwd=repo.parent).stdout == first
    assert review(*args, "--no-cache", cwd=repo.parent).stdout == first
    md = review(*args, "--format", "markdown", cwd=repo.parent).stdout
    assert md == review(*args, "--format", "markdown", cwd=repo.parent).stdout
    assert md.startswith("## lockgraph review of `base..head`")


def test_path_subset_scans_it_and_the_changed_files_and_says_what_is_blind(repo, untouched):
    res, out = review_json("--src", repo.name, "--path", "kernel", "base..head", cwd=repo.parent)
    assert res.exit_code == 1
    assert edges(out, "added") == NEW_EDGES  # the changed files are scanned anyway
    assert out["scanned"] == {"paths": ["kernel"], "files": {"base": 2, "head": 3}}
    assert any("callers and locks elsewhere in the tree are not seen" in b
               for b in out["blind_spots"])


def test_three_dot_range_reviews_from_the_merge_base(repo, untouched):
    _r, two = review_json("--src", repo.name, "base..head", cwd=repo.parent)
    res, three = review_json("--src", repo.name, "base...head", cwd=repo.parent)
    assert res.exit_code == 1
    assert {k: v for k, v in three.items() if k != "series"} == {
        k: v for k, v in two.items() if k != "series"}


PERCPU_BASE = """\
static DEFINE_SPINLOCK(pcpu_lock);

void free_percpu(void __percpu *ptr)
{
	unsigned long flags;

	spin_lock_irqsave(&pcpu_lock, flags);
	pcpu_free_area(ptr);
	spin_unlock_irqrestore(&pcpu_lock, flags);
}
"""
# The patch under review: a record allocated with GFP_KERNEL inside the pcpu_lock section.
PERCPU_HEAD = PERCPU_BASE.replace("\tpcpu_free_area(ptr);\n",
                                  "\tpcpu_free_area(ptr);\n\trec = kmalloc(sizeof(*rec), GFP_KERNEL);\n")


def test_patch_allocating_with_gfp_kernel_under_pcpu_lock_exits_1(tmp_path):
    """LG107 through `review`: the series adds kmalloc(GFP_KERNEL) inside
    spin_lock_irqsave(&pcpu_lock): a new error naming the lock, the allocation and both
    lines; the series without it (base against itself) is clean."""
    r = tmp_path / "linux"
    (r / "mm").mkdir(parents=True)
    (r / "Kconfig").write_text("# kernel-like tree\n")
    (r / "MAINTAINERS").write_text("PERCPU\n")
    (r / "mm" / "percpu.c").write_text(PERCPU_BASE)
    git(r, "init", "-q", "-b", "master")
    git(r, "add", "-A")
    git(r, "commit", "-q", "-m", "base")
    git(r, "tag", "base")
    (r / "mm" / "percpu.c").write_text(PERCPU_HEAD)
    git(r, "commit", "-q", "-a", "-m", "mm/percpu: record frees")
    res, out = review_json("--src", r.name, "base..HEAD", "--no-cache", cwd=tmp_path)
    assert res.exit_code == 1, res.stdout + res.stderr
    (f,) = [f for f in out["findings"]["new"] if f["rule"] == "LG107"]
    assert f["lock"] == "pcpu_lock" and f["severity"] == "error"
    assert "kmalloc(GFP_KERNEL)" in f["message"] and "free_percpu()" in f["message"]
    lines = PERCPU_HEAD.splitlines()
    assert [(e["file"], e["line"]) for e in f["evidence"]] == [
        ("mm/percpu.c", lines.index("\tspin_lock_irqsave(&pcpu_lock, flags);") + 1),
        ("mm/percpu.c", lines.index("\trec = kmalloc(sizeof(*rec), GFP_KERNEL);") + 1)]
    clean, _ = review_json("--src", r.name, "base..base", "--no-cache", cwd=tmp_path)
    assert clean.exit_code == 0, clean.stdout
