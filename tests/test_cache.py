"""The fact cache: same answer cold, warm, with 1 or 2 workers; survives damage and races."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
from typer.testing import CliRunner

from lockgraph import cache as cache_mod
from lockgraph.cli import app
from lockgraph.static.facts.scan import scan_paths

from conftest import FIXTURES, ROOT

CASES = FIXTURES / "csrc"
runner = CliRunner()


def scan_json(*args):
    res = runner.invoke(app, ["scan", str(CASES), "--root", str(ROOT), "--format", "json", *args])
    assert res.exit_code == 0, res.stderr
    return res.stdout, res.stderr


def test_cold_warm_and_worker_count_give_byte_identical_output(tmp_path):
    c = tmp_path / "c"
    cold1, _ = scan_json("--cache", str(c), "--jobs", "1")
    warm1, _ = scan_json("--cache", str(c), "--jobs", "1")
    c2 = tmp_path / "c2"
    cold2, _ = scan_json("--cache", str(c2), "--jobs", "2")
    warm2, _ = scan_json("--cache", str(c2), "--jobs", "2")
    nocache, _ = scan_json("--no-cache", "--jobs", "2")
    assert cold1 == warm1 == cold2 == warm2 == nocache
    assert json.loads(cold1)["functions"]["total"] > 20


def test_warm_scan_parses_nothing(tmp_path):
    files = list(CASES.rglob("*.c"))
    scan_paths([CASES], ROOT, None, cache_dir=tmp_path)
    c = cache_mod.FactCache(tmp_path, "probe")  # a different key: nothing to hit
    assert c.get("x", "y") is None
    c.close()
    seen = []
    orig = cache_mod.FactCache.get

    def spy(self, path, dig):
        v = orig(self, path, dig)
        seen.append(v is not None)
        return v

    cache_mod.FactCache.get = spy
    try:
        scan_paths([CASES], ROOT, None, cache_dir=tmp_path)
    finally:
        cache_mod.FactCache.get = orig
    assert len(seen) == len(files) and all(seen)


@pytest.mark.parametrize("damage", ["garbage", "truncated", "empty", "wal-garbage"])
def test_damaged_cache_is_detected_rebuilt_and_warned(tmp_path, damage):
    c = tmp_path / "c"
    good, _ = scan_json("--cache", str(c))
    db = c / "facts.sqlite"
    if damage == "garbage":
        db.write_bytes(b"this is not sqlite" * 1000)
    elif damage == "truncated":
        data = db.read_bytes()
        db.write_bytes(data[: len(data) // 3])
    elif damage == "empty":
        db.write_bytes(b"")
    else:
        (c / "facts.sqlite-wal").write_bytes(os.urandom(4096))
    out, err = scan_json("--cache", str(c))
    assert out == good
    if damage in ("garbage", "truncated"):
        assert "fact cache" in err and "rebuilding" in err
    again, err2 = scan_json("--cache", str(c))
    assert again == good and "warning" not in err2


def test_version_upgrade_ignores_old_entries(tmp_path, monkeypatch):
    c = tmp_path / "c"
    good, _ = scan_json("--cache", str(c))
    monkeypatch.setattr(cache_mod, "FACT_SCHEMA", cache_mod.FACT_SCHEMA + 100)
    _rescan_misses_everything(c, good, monkeypatch)


def _rescan_misses_everything(c, good, monkeypatch):
    seen = []
    orig = cache_mod.FactCache.get
    monkeypatch.setattr(cache_mod.FactCache, "get",
                        lambda self, p, d: seen.append(orig(self, p, d)) or seen[-1])
    out, _ = scan_json("--cache", str(c))
    assert out == good and seen and all(v is None for v in seen)


def _scan_cmd(c):
    return [sys.executable, "-m", "lockgraph", "scan", str(CASES), "--root", str(ROOT),
            "--format", "json", "--cache", str(c), "--jobs", "2"]


def test_kill_9_mid_scan_leaves_a_usable_cache(tmp_path, linux_tree):
    c = tmp_path / "c"
    cmd = [sys.executable, "-m", "lockgraph", "scan", str(linux_tree / "mm"), "--cache", str(c),
           "--jobs", "2", "--format", "json", "-q"]
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                         start_new_session=True)
    deadline = time.time() + 60
    while time.time() < deadline and not (c / "facts.sqlite-wal").exists():
        time.sleep(0.05)
    time.sleep(1.0)
    os.killpg(p.pid, signal.SIGKILL)
    p.wait()
    out = subprocess.run(_scan_cmd(c), capture_output=True, text=True, cwd=ROOT)
    ref = subprocess.run(_scan_cmd(tmp_path / "fresh"), capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0 and out.stdout == ref.stdout


def test_two_scans_at_once_share_the_cache(tmp_path):
    c = tmp_path / "c"
    procs = [subprocess.Popen(_scan_cmd(c), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, cwd=ROOT) for _ in range(2)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), [e for _, e in outs]
    assert outs[0][0] == outs[1][0]
    assert "warning" not in outs[0][1] + outs[1][1]
    shutil.rmtree(c)


def _check(tree, cache, *extra):
    res = runner.invoke(app, ["check", "--src", str(tree), "--root", str(tree), "--cache",
                              str(cache), "--format", "json", *extra])
    assert res.exit_code in (0, 1), res.stderr
    return res.exit_code, res.stdout


def test_unchanged_tree_replays_the_result_without_solving(tmp_path, monkeypatch):
    tree = tmp_path / "tree"
    shutil.copytree(FIXTURES / "csrc" / "verdicts", tree)
    cold = _check(tree, tmp_path / "c")
    from lockgraph.static import solve as solve_mod

    def no_solve(files):
        raise AssertionError("an unchanged tree must not be re-solved")

    monkeypatch.setattr(solve_mod, "solve", no_solve)
    assert _check(tree, tmp_path / "c") == cold
    # other options are other results: the key covers them
    with pytest.raises(AssertionError, match="re-solved"):
        runner.invoke(app, ["check", "--src", str(tree), "--root", str(tree), "--cache",
                            str(tmp_path / "c"), "--dtor", "foo_account"], catch_exceptions=False)


def test_an_edit_is_seen_and_equals_a_run_without_cache(tmp_path):
    tree = tmp_path / "tree"
    shutil.copytree(FIXTURES / "csrc" / "verdicts", tree)
    before = _check(tree, tmp_path / "c")
    assert before[0] == 1  # splat.c predicts a deadlock
    proven = tree / "proven.c"
    # stats_lock stops being a leaf: the proven destructor becomes a violation
    proven.write_text(proven.read_text().replace(
        "\tnr_freed++;\n", "\tnr_freed++;\n\tspin_lock(&other_lock);\n\tspin_unlock(&other_lock);\n", 1)
        .replace("static unsigned long nr_freed;", "static unsigned long nr_freed;\nstatic DEFINE_SPINLOCK(other_lock);"))
    after = _check(tree, tmp_path / "c")
    assert after != before
    assert "'stats_lock' -> 'other_lock'" in after[1]
    assert after == _check(tree, tmp_path / "none", "--no-cache")
    # facts warm but the stored result gone: recomputed, same bytes
    import sqlite3

    db = sqlite3.connect(tmp_path / "c" / "facts.sqlite")
    db.execute("DELETE FROM results")
    db.commit()
    db.close()
    assert _check(tree, tmp_path / "c") == after


def test_edited_analyser_code_misses_facts_and_results(tmp_path, monkeypatch):
    """A checkout edited without a version bump must not replay the old code's answers."""
    c = tmp_path / "c"
    good, _ = scan_json("--cache", str(c))
    monkeypatch.setattr(cache_mod, "code_digest", lambda part="all": "edited")
    _rescan_misses_everything(c, good, monkeypatch)


def test_edited_solver_keeps_facts_but_not_results(tmp_path, monkeypatch):
    """The solver and renderers decide results only: editing them re-solves from the cached
    facts (no file parsed again) and never replays the old result."""
    tree = tmp_path / "tree"
    shutil.copytree(FIXTURES / "csrc" / "verdicts", tree)
    cold = _check(tree, tmp_path / "c")
    facts = cache_mod.code_digest("facts")
    monkeypatch.setattr(cache_mod, "code_digest",
                        lambda part="all": facts if part == "facts" else "solver-edited")
    from lockgraph.static.facts import scan as scan_mod
    from lockgraph.static import solve as solve_mod

    solved = []
    monkeypatch.setattr(scan_mod, "scan_file", lambda *a: pytest.fail("a file was parsed again"))
    orig = solve_mod.solve
    monkeypatch.setattr(solve_mod, "solve", lambda files: solved.append(1) or orig(files))
    assert _check(tree, tmp_path / "c") == cold
    assert solved == [1]


def test_facts_digest_covers_the_scanner_not_the_solver():
    facts, whole = cache_mod.code_digest("facts"), cache_mod.code_digest()
    assert facts != whole
    pkg = cache_mod.Path(cache_mod.__file__).resolve().parent
    static = {f.relative_to(pkg).as_posix() for f in (pkg / "static").rglob("*.py")}
    assert "static/facts/walk.py" in static and "static/solve.py" in static
    scanner = {s for s in static if s.startswith(cache_mod.FACT_CODE)}
    assert "static/facts/walk.py" in scanner
    assert not {"static/solve.py", "static/slab_roots.py"} & scanner


def test_facts_of_old_analyser_keys_are_pruned(tmp_path, monkeypatch):
    """Each upgrade or edit of lockgraph is a new key: only the newest KEYS_KEPT keep facts."""
    import sqlite3

    c = tmp_path / "c"
    for n in range(cache_mod.KEYS_KEPT + 2):
        monkeypatch.setattr(cache_mod, "code_digest", lambda part="all", n=n: f"version-{n}")
        scan_paths([CASES], ROOT, None, cache_dir=c)
    db = sqlite3.connect(c / "facts.sqlite")
    kept = db.execute("SELECT count(DISTINCT key) FROM facts").fetchone()[0]
    db.close()
    assert kept == cache_mod.KEYS_KEPT


def _settle(tree, age=3600):
    """Back-date every file, as an untouched checkout is (the stat cache trusts only files
    that had not changed for a while before they were hashed)."""
    past = time.time() - age
    for p in tree.rglob("*"):
        os.utime(p, (past, past))


def test_settled_files_are_not_read_again(tmp_path, monkeypatch):
    from pathlib import Path

    from lockgraph.static.facts.scan import source_set

    tree = tmp_path / "tree"
    shutil.copytree(FIXTURES / "csrc" / "verdicts", tree)
    _settle(tree)
    first = source_set([tree], tree, cache_dir=tmp_path / "c")
    reads = []
    orig = Path.read_bytes
    monkeypatch.setattr(Path, "read_bytes", lambda self: reads.append(self) or orig(self))
    again = source_set([tree], tree, cache_dir=tmp_path / "c")
    assert reads == [] and again.digests == first.digests and again.sizes == first.sizes
    assert again.key() == first.key()


@pytest.mark.parametrize("how", ["edit", "same-mtime", "fresh"])
def test_a_changed_file_is_hashed_again(tmp_path, monkeypatch, how):
    """A new mtime, or (content rewritten with the old mtime put back) a new ctime, or a
    file written too recently to trust its signature: the content is read and hashed."""
    from lockgraph.static.facts.scan import source_set

    tree = tmp_path / "tree"
    shutil.copytree(FIXTURES / "csrc" / "verdicts", tree)
    _settle(tree)
    p = tree / "proven.c"
    if how == "fresh":
        os.utime(p, None)  # written just now: not recorded
    first = source_set([tree], tree, cache_dir=tmp_path / "c")
    st = p.stat()
    time.sleep(0.05)  # past the kernel's coarse timestamp tick: the rewrite gets a new ctime
    p.write_text(p.read_text() + "\n/* edited */\n")
    if how != "edit":
        os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns))
    after = source_set([tree], tree, cache_dir=tmp_path / "c")
    nocache = source_set([tree], tree)
    assert after.digests == nocache.digests
    assert after.digests["proven.c"] != first.digests["proven.c"]


def test_stat_cache_keeps_only_recent_trees(tmp_path):
    import sqlite3

    from lockgraph.static.facts.scan import source_set

    for n in range(cache_mod.TREES_KEPT + 2):
        tree = tmp_path / f"tree{n}"
        shutil.copytree(FIXTURES / "csrc" / "verdicts", tree)
        _settle(tree)
        source_set([tree], tree, cache_dir=tmp_path / "c")
    db = sqlite3.connect(tmp_path / "c" / "facts.sqlite")
    trees = {t.split("\0")[0] for (t,) in db.execute("SELECT DISTINCT tree FROM stats")}
    db.close()
    assert trees == {str((tmp_path / f"tree{n}").resolve())
                     for n in range(2, cache_mod.TREES_KEPT + 2)}


def test_stat_signatures_are_per_scanner_version(tmp_path, monkeypatch):
    """A file's recorded guard table came from the scanner's code: another scanner reads
    the files again instead of trusting it."""
    from pathlib import Path

    from lockgraph.static.facts.scan import source_set

    tree = tmp_path / "tree"
    shutil.copytree(FIXTURES / "csrc" / "verdicts", tree)
    _settle(tree)
    source_set([tree], tree, cache_dir=tmp_path / "c")
    monkeypatch.setattr(cache_mod, "code_digest", lambda part="all": f"other-{part}")
    reads = []
    orig = Path.read_bytes
    monkeypatch.setattr(Path, "read_bytes", lambda self: reads.append(self) or orig(self))
    source_set([tree], tree, cache_dir=tmp_path / "c")
    assert len(reads) == len(list(tree.glob("*.c")))
