"""The fact cache: same answer cold, warm, with 1 or 2 workers; survives damage and races."""

from __future__ import annotations

import json
import os
import shutil
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


def _spy_gets(monkeypatch):
    """What every FactCache.get returns from now on."""
    got = []
    orig = cache_mod.FactCache.get
    monkeypatch.setattr(cache_mod.FactCache, "get",
                        lambda self, p, d: got.append(orig(self, p, d)) or got[-1])
    return got


def test_warm_scan_parses_nothing(tmp_path, monkeypatch):
    files = list(CASES.rglob("*.c"))
    scan_paths([CASES], ROOT, None, cache_dir=tmp_path)
    c = cache_mod.FactCache(tmp_path, "probe")  # a different key: nothing to hit
    assert c.get("x", "y") is None
    c.close()
    seen = _spy_gets(monkeypatch)
    scan_paths([CASES], ROOT, None, cache_dir=tmp_path)
    assert len(seen) == len(files) and all(v is not None for v in seen)


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
    if damage in ("garbage", "truncated"):  # one warning, though the run opens it three times
        assert err.count("warning") == 1 and "fact cache" in err and "rebuilding" in err
    else:  # an empty file is an empty database; SQLite ignores a WAL that is not its own
        assert "warning" not in err
    again, err2 = scan_json("--cache", str(c))
    assert again == good and "warning" not in err2


def test_version_upgrade_ignores_old_entries(tmp_path, monkeypatch):
    c = tmp_path / "c"
    good, _ = scan_json("--cache", str(c))
    monkeypatch.setattr(cache_mod, "FACT_SCHEMA", cache_mod.FACT_SCHEMA + 100)
    _rescan_misses_everything(c, good, monkeypatch)


def _rescan_misses_everything(c, good, monkeypatch):
    seen = _spy_gets(monkeypatch)
    out, _ = scan_json("--cache", str(c))
    assert out == good and seen and all(v is None for v in seen)


# A scan killed in the middle of a write transaction whose pages had begun to spill into
# the WAL: the child commits half of its facts, writes garbage rows for the other half in a
# transaction it never commits, says how many it committed, and waits to be killed.
_KILLED_MID_WRITE = r"""
import os, sys
from pathlib import Path
from lockgraph import cache as cm
from lockgraph.static.facts.scan import scan_paths

real = cm.FactCache.put_many

def put_many(self, rows):
    half = len(rows) // 2
    real(self, rows[:half])
    self.db.execute("PRAGMA cache_size=1")
    self.db.execute("BEGIN IMMEDIATE")
    self.db.executemany("INSERT OR REPLACE INTO facts VALUES (?, ?, ?, ?)",
                        [(p, d, self.key, os.urandom(50000)) for p, d, _ in rows[half:]])
    print(half, flush=True)
    sys.stdin.read()

cm.FactCache.put_many = put_many
scan_paths([Path(sys.argv[1])], Path(sys.argv[2]), None, cache_dir=Path(sys.argv[3]))
"""


def test_kill_9_mid_write_leaves_a_usable_cache(tmp_path, monkeypatch):
    c = tmp_path / "c"
    p = subprocess.Popen([sys.executable, "-c", _KILLED_MID_WRITE, str(CASES), str(ROOT), str(c)],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT)
    committed = int(p.stdout.readline())  # the child is now inside the open transaction
    assert (c / "facts.sqlite-wal").stat().st_size > 50000  # uncommitted frames in the WAL
    p.kill()
    p.wait()
    p.stdin.close()
    p.stdout.close()
    got = _spy_gets(monkeypatch)
    out, err = scan_json("--cache", str(c), "--jobs", "2")
    hits = sum(v is not None for v in got)
    assert out == scan_json("--no-cache")[0] and "warning" not in err
    assert committed > 0 and hits == committed  # the committed facts kept, the torn batch not


# Four cold scans of one new cache at once, ten times over.  Each round forks four processes
# from one that has lockgraph loaded (a fresh interpreter per scan would take half a minute
# on two loaded cores), and each runs the real command line: main(), its own stdout/stderr.
# The cold race is at the first open of the new file (the switch to WAL), so every process's
# first connection waits there for the others.
_CONCURRENT_SCANS = r"""
import json, multiprocessing, os, sqlite3, sys, traceback
from typer.testing import CliRunner
from lockgraph.cli import app, main

src, root, base, rounds, n = *sys.argv[1:4], int(sys.argv[4]), int(sys.argv[5])
argv = ["scan", src, "--root", root, "--format", "json", "--jobs", "1"]
report = {"ref": CliRunner().invoke(app, [*argv, "--no-cache"]).stdout, "rounds": []}
for r in range(rounds):
    cache = os.path.join(base, f"cache{r}")
    meet = multiprocessing.get_context("fork").Barrier(n)
    pids = []
    for i in range(n):
        pid = os.fork()
        if pid == 0:
            code = 70
            try:
                for fd, ext in ((1, "out"), (2, "err")):
                    os.dup2(os.open(f"{base}/{r}-{i}.{ext}", os.O_WRONLY | os.O_CREAT, 0o644), fd)
                real = sqlite3.connect

                def connect(*a, **k):
                    sqlite3.connect = real
                    meet.wait()
                    return real(*a, **k)

                sqlite3.connect = connect
                sys.argv = ["lockgraph", *argv, "--cache", cache]
                leave = os._exit  # main() leaves by os._exit: this child still has to report

                def no_exit(c):
                    raise SystemExit(c)

                os._exit = no_exit
                try:
                    main()
                except SystemExit as e:
                    code = e.code if isinstance(e.code, int) else 1
                finally:
                    os._exit = leave
                sys.stdout.flush()
                sys.stderr.flush()
                with open(f"{base}/{r}-{i}.ino", "w") as f:
                    f.write(str(os.stat(os.path.join(cache, "facts.sqlite")).st_ino))
            except BaseException:
                traceback.print_exc()
            finally:
                meet.abort()  # a process that never got to its first open fails the others
                os._exit(code)
        pids.append(pid)
    codes = [os.waitstatus_to_exitcode(os.waitpid(p, 0)[1]) for p in pids]

    def read(i, ext):
        path = f"{base}/{r}-{i}.{ext}"
        return open(path).read() if os.path.exists(path) else ""

    report["rounds"].append({"codes": codes, "out": [read(i, "out") for i in range(n)],
                             "err": [read(i, "err") for i in range(n)],
                             "ino": [read(i, "ino") for i in range(n)],
                             "end": str(os.stat(os.path.join(cache, "facts.sqlite")).st_ino)})
json.dump(report, sys.stdout)
"""


@pytest.mark.slow
def test_concurrent_cold_scans_under_load_share_one_cache(tmp_path):
    """Busy is not damaged: no warning, the same output, the cache file never replaced."""
    burners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(2)]
    try:
        res = subprocess.run([sys.executable, "-c", _CONCURRENT_SCANS, str(CASES), str(ROOT),
                              str(tmp_path), "10", "4"], capture_output=True, text=True, cwd=ROOT)
    finally:
        for b in burners:
            b.kill()
            b.wait()
    assert res.returncode == 0, res.stderr
    report = json.loads(res.stdout)
    assert json.loads(report["ref"])["functions"]["total"] > 20
    for r in report["rounds"]:
        assert r["codes"] == [0] * 4 and r["err"] == [""] * 4, r["err"]
        assert r["out"] == [report["ref"]] * 4
        assert r["ino"] == [r["end"]] * 4


def _warnings():
    seen: list[str] = []
    return seen, seen.append


def _locked(db_path, readers_too=True):
    """Another connection in a write transaction; in exclusive locking mode (which only a
    database nobody else has open can enter) it locks out readers, new connections, too."""
    import sqlite3

    holder = sqlite3.connect(db_path, isolation_level=None)
    if readers_too:
        holder.execute("PRAGMA locking_mode=EXCLUSIVE")
    holder.execute("BEGIN EXCLUSIVE")
    holder.execute("INSERT INTO keys VALUES ('holder', 0)")
    return holder


def _no_sqlite_wait(monkeypatch):
    """SQLite reports busy at once, so every wait is the cache's own retry loop."""
    import sqlite3

    real = sqlite3.connect
    monkeypatch.setattr(sqlite3, "connect", lambda *a, **k: real(*a, **{**k, "timeout": 0}))


@pytest.mark.parametrize("where", ["open", "write"])
def test_a_locked_cache_is_waited_for_not_rebuilt(tmp_path, monkeypatch, where):
    c = cache_mod.FactCache(tmp_path, "k")
    c.put_many([("a.c", "d1", {"kept": 1})])
    c.close()
    db = tmp_path / "facts.sqlite"
    inode = db.stat().st_ino
    warned, warn = _warnings()
    _no_sqlite_wait(monkeypatch)
    if where == "write":
        c = cache_mod.FactCache(tmp_path, "k", warn)
    holder = _locked(db, readers_too=where == "open")
    waits = []

    def sleep(s):  # the lock goes away while the cache waits for it
        waits.append(s)
        if len(waits) == 1:
            holder.execute("COMMIT")
            holder.close()

    monkeypatch.setattr(cache_mod, "_sleep", sleep, raising=False)
    if where == "open":
        c = cache_mod.FactCache(tmp_path, "k", warn)
    c.put_many([("b.c", "d2", {"new": 2})])
    assert waits and warned == []
    assert c.get("a.c", "d1") == {"kept": 1} and c.get("b.c", "d2") == {"new": 2}
    c.close()
    assert db.stat().st_ino == inode


def test_a_cache_busy_to_the_end_is_left_alone(tmp_path, monkeypatch):
    c = cache_mod.FactCache(tmp_path, "k")
    c.put_many([("a.c", "d1", {"kept": 1})])
    c.close()
    holder = _locked(tmp_path / "facts.sqlite")
    _no_sqlite_wait(monkeypatch)
    monkeypatch.setattr(cache_mod, "BUSY_WAIT_S", 0, raising=False)
    warned, warn = _warnings()
    c = cache_mod.FactCache(tmp_path, "k", warn)
    assert c.get("a.c", "d1") is None
    c.put_many([("b.c", "d2", {"lost": 2})])
    c.close()
    assert len(warned) == 1 and "busy" in warned[0] and "rebuild" not in warned[0]
    holder.execute("COMMIT")
    holder.close()
    c = cache_mod.FactCache(tmp_path, "k", warn)
    assert c.get("a.c", "d1") == {"kept": 1} and len(warned) == 1
    c.close()


_HOLD_OPEN = r"""
import sys
from pathlib import Path
from lockgraph.cache import FactCache
c = FactCache(Path(sys.argv[1]), "")
print("open", flush=True)
sys.stdin.read()
c.close()
"""


def test_a_damaged_cache_another_process_has_open_is_not_removed(tmp_path):
    cache_mod.FactCache(tmp_path, "k").close()
    p = subprocess.Popen([sys.executable, "-c", _HOLD_OPEN, str(tmp_path)], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, text=True, cwd=ROOT)
    warned, warn = _warnings()
    try:
        assert p.stdout.readline() == "open\n"
        db = tmp_path / "facts.sqlite"
        garbage = b"this is not sqlite" * 1000
        db.write_bytes(garbage)
        c = cache_mod.FactCache(tmp_path, "k", warn)
        c.put_many([("a.c", "d1", {"x": 1})])
        assert c.get("a.c", "d1") is None
        c.close()
        assert db.read_bytes() == garbage  # the other process's file is left alone
        assert len(warned) == 1 and "another process is using it" in warned[0]
    finally:
        p.communicate("")
    assert p.returncode == 0
    c = cache_mod.FactCache(tmp_path, "k", warn)  # nobody else has it now: rebuilt
    c.put_many([("a.c", "d1", {"x": 1})])
    assert c.get("a.c", "d1") == {"x": 1}
    c.close()
    assert len(warned) == 2 and "rebuilding" in warned[1]


def test_a_rebuild_reconnects_the_other_caches_of_the_process(tmp_path):
    """A damaged row found by one FactCache rebuilds the file; another one open in the same
    process (the CLI keeps one for whole results) writes to the new file, not the old one."""
    import sqlite3

    warned, warn = _warnings()
    a = cache_mod.FactCache(tmp_path, "k", warn)
    b = cache_mod.FactCache(tmp_path, "", warn)
    a.put_many([("a.c", "d1", {"x": 1})])
    raw = sqlite3.connect(tmp_path / "facts.sqlite")
    raw.execute("UPDATE facts SET blob = x'00'")
    raw.commit()
    raw.close()
    assert a.get("a.c", "d1") is None
    b.put_result("r", {"exit": 1}, b"kept")
    a.close()
    meta, out = b.get_result("r")
    assert meta == {"exit": 1} and b"".join(out) == b"kept"
    b.close()
    c = cache_mod.FactCache(tmp_path, "", warn)
    meta, out = c.get_result("r")
    assert meta == {"exit": 1} and b"".join(out) == b"kept"
    c.close()
    assert len(warned) == 1 and "rebuilding" in warned[0]


def test_a_damaged_stored_result_is_never_half_replayed(tmp_path):
    """The output of a stored result is checked whole before any of it is handed out: a
    row damaged in its last bytes is a miss (and a rebuild), not a truncated report."""
    import sqlite3

    warned, warn = _warnings()
    db = cache_mod.FactCache(tmp_path, "", warn)
    out = "".join(f"line {k}\n" for k in range(1_000_000)).encode()
    db.put_result("r", {"exit": 0}, out)
    meta, chunks = db.get_result("r")
    pieces = list(chunks)
    assert b"".join(pieces) == out and max(map(len, pieces)) <= cache_mod._CHUNK
    db.close()
    raw = sqlite3.connect(tmp_path / "facts.sqlite")
    blob = raw.execute("SELECT blob FROM results").fetchone()[0]
    raw.execute("UPDATE results SET blob = ?", (blob[:-9] + bytes(b ^ 0xFF for b in blob[-9:]),))
    raw.commit()
    raw.close()
    db = cache_mod.FactCache(tmp_path, "", warn)
    assert db.get_result("r") is None
    db.put_result("r", {"exit": 1}, out)   # the rebuilt cache stores again
    db.close()
    assert len(warned) == 1 and "rebuilding" in warned[0]
    # damage in the metadata is caught before it is unpickled
    raw = sqlite3.connect(tmp_path / "facts.sqlite")
    blob = raw.execute("SELECT blob FROM results").fetchone()[0]
    raw.execute("UPDATE results SET blob = ?", (blob[:14] + b"\xff" + blob[15:],))
    raw.commit()
    raw.close()
    db = cache_mod.FactCache(tmp_path, "", warn)
    assert db.get_result("r") is None
    db.close()
    assert len(warned) == 2


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

    def no_solve(files, one_build=False):
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
    # (two fixture files define a stats_lock: two classes, named with their file)
    assert "'stats_lock (proven.c)' -> 'other_lock'" in after[1]
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
    monkeypatch.setattr(solve_mod, "solve", lambda files, **kw: solved.append(1) or orig(files, **kw))
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


def test_sources_are_named_from_the_real_tree_whatever_path_reaches_it(tmp_path):
    """A tree reached through a symlink gives the same relative paths as the tree itself
    (fact and result caches key on them); a symlinked directory inside it is not walked,
    and an excluded directory named through the link is still left out."""
    from lockgraph.static.sources import source_set

    real = tmp_path / "real"
    (real / "mm").mkdir(parents=True)
    (real / "kernel").mkdir()
    (real / "mm" / "a.c").write_text("void a(void) {}\n")
    (real / "mm" / "a.h").write_text("")
    (real / "mm" / "notes.txt").write_text("")
    (real / "kernel" / "k.c").write_text("")
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "x.c").write_text("")
    (real / "link").symlink_to(tmp_path / "elsewhere")
    (tmp_path / "alias").symlink_to(real)
    alias = tmp_path / "alias"
    assert sorted(source_set([alias], real).digests) == ["kernel/k.c", "mm/a.c", "mm/a.h"]
    assert sorted(source_set([alias / "mm"], alias).digests) == ["mm/a.c", "mm/a.h"]
    assert sorted(source_set([real], real, exclude=[alias / "mm"]).digests) == ["kernel/k.c"]
    assert sorted(source_set([alias], real, exclude=[real / "mm" / "a.c"]).digests) == [
        "kernel/k.c", "mm/a.h"]


def test_settled_files_are_not_read_again(tmp_path, monkeypatch):
    from pathlib import Path

    from lockgraph.static.sources import source_set

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
    from lockgraph.static.sources import source_set

    tree = tmp_path / "tree"
    shutil.copytree(FIXTURES / "csrc" / "verdicts", tree)
    _settle(tree)
    p = tree / "proven.c"
    if how == "fresh":  # a future mtime is recent however late the scan starts: never trusted
        future = time.time() + 3600
        os.utime(p, (future, future))
    first = source_set([tree], tree, cache_dir=tmp_path / "c")
    st = p.stat()
    p.write_text(p.read_text().replace("nr_freed", "nr_fried", 1))  # same size: times tell
    if how != "edit":
        os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns))
    while p.stat().st_ctime_ns == st.st_ctime_ns:  # until the kernel's coarse clock ticks
        os.chmod(p, st.st_mode)
    after = source_set([tree], tree, cache_dir=tmp_path / "c")
    nocache = source_set([tree], tree)
    assert after.digests == nocache.digests
    assert after.digests["proven.c"] != first.digests["proven.c"]


def test_stat_cache_keeps_only_recent_trees(tmp_path):
    import sqlite3

    from lockgraph.static.sources import source_set

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

    from lockgraph.static.sources import source_set

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
