"""Persistent per-file fact cache (SQLite): an unchanged file is never parsed twice.

Rows are keyed by (path, content digest, analyser key); the analyser key covers the
lockgraph version, the fact schema, the .config and the guard classes of the tree, so an
upgrade or a different configuration simply misses.  SQLite in WAL mode gives atomic
batches (a `kill -9` mid-scan loses at most the batch in flight) and lets two scans of the
same tree share the file.  A damaged cache file is detected, reported once and rebuilt.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import sqlite3
import zlib
from functools import lru_cache
from pathlib import Path
from typing import Any

from lockgraph import __version__

#: Bump when the pickled fact types change shape.
FACT_SCHEMA = 5
#: Whole-command results kept (newest first); each can be tens of MB for a whole tree.
RESULTS_KEPT = 8
#: Analyser keys whose facts are kept (newest used first).  Every lockgraph upgrade, edit
#: or .config is a new key; a whole tree is ~200 MB of facts per key.
KEYS_KEPT = 4
#: Source trees whose file signatures are kept (most recently scanned first).
TREES_KEPT = 8
#: A file is trusted by its stat signature only when it had not changed for this long
#: before it was hashed (git's "racily clean" rule: a write within the same timestamp
#: tick would leave the signature unchanged).
SETTLED_NS = 2_000_000_000


def default_dir() -> Path:
    """$LOCKGRAPH_FACT_CACHE, else the user's cache directory."""
    env = os.environ.get("LOCKGRAPH_FACT_CACHE")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "lockgraph" / "facts"


def digest(data: bytes) -> str:
    return hashlib.sha1(data).hexdigest()


#: Modules that decide a file's facts: the C scanner (`static/facts/`), its grammar, and
#: what they import.  The solver, checks and renderers decide only results, so editing them
#: keeps the (whole-tree: eight minutes to rebuild) fact cache warm.
FACT_CODE = ("static/facts/", "grammar.py", "errors.py", "cache.py", "__init__.py")


@lru_cache(maxsize=2)
def code_digest(part: str = "all") -> str:
    """A digest of lockgraph's own code and grammars (`part` "facts": the scanner's only).

    The version alone is not enough: an edited checkout (or a patched install) keeps its
    version, and a cache keyed only by it would replay facts and results of the old code."""
    pkg = Path(__file__).resolve().parent
    files = sorted(pkg.rglob("*.py"))
    if part == "facts":
        files = [f for f in files if f.relative_to(pkg).as_posix().startswith(FACT_CODE)]
    files += sorted(pkg.rglob("*.lark"))
    grammars = pkg.parent / "grammars"
    if grammars.is_dir():
        files += sorted(grammars.glob("*.lark"))
    h = hashlib.sha1()
    for f in files:
        try:
            h.update(f.name.encode() + b"\0" + f.read_bytes())
        except OSError:
            pass
    return h.hexdigest()


def analyser_key(*parts: str) -> str:
    h = hashlib.sha1("\x1f".join((__version__, str(FACT_SCHEMA), code_digest("facts"), *parts)).encode())
    return h.hexdigest()[:16]


class FactCache:
    """get/put pickled per-file facts; every SQLite failure degrades to a rebuild, never a crash."""

    def __init__(self, directory: Path, key: str, warn=None) -> None:
        self.dir = directory
        self.path = directory / "facts.sqlite"
        self.key = key
        self.warn = warn or (lambda msg: None)
        self.hits = 0
        self.misses = 0
        self.db: sqlite3.Connection | None = None
        self._open()

    def _open(self, retry: bool = True) -> None:
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(self.path, timeout=60, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute("CREATE TABLE IF NOT EXISTS facts (path TEXT NOT NULL, digest TEXT NOT NULL,"
                       " key TEXT NOT NULL, blob BLOB NOT NULL, PRIMARY KEY (path, digest, key))")
            db.execute("CREATE TABLE IF NOT EXISTS results (key TEXT PRIMARY KEY, seq INTEGER NOT NULL,"
                       " blob BLOB NOT NULL)")
            db.execute("CREATE TABLE IF NOT EXISTS keys (key TEXT PRIMARY KEY, seq INTEGER NOT NULL)")
            db.execute("CREATE TABLE IF NOT EXISTS stats (tree TEXT NOT NULL, path TEXT NOT NULL,"
                       " sig TEXT NOT NULL, digest TEXT NOT NULL, guards TEXT NOT NULL,"
                       " PRIMARY KEY (tree, path))")
            db.execute("CREATE TABLE IF NOT EXISTS trees (tree TEXT PRIMARY KEY, seq INTEGER NOT NULL)")
            db.execute("SELECT count(*) FROM facts WHERE key = ?", (self.key,)).fetchone()
            db.execute("SELECT count(*) FROM results").fetchone()
            if self.key:  # registered at open, so a scan in flight is never pruned away
                db.execute("INSERT OR REPLACE INTO keys VALUES (?, (SELECT coalesce(max(seq), 0) + 1"
                           " FROM keys))", (self.key,))
            self.db = db
        except sqlite3.DatabaseError as exc:
            if retry:
                self.warn(f"{self.path}: warning: fact cache unreadable ({exc}); rebuilding it")
                self._remove()
                self._open(retry=False)
            else:
                self.warn(f"{self.path}: warning: fact cache disabled ({exc})")
                self.db = None
        except OSError as exc:
            self.warn(f"{self.path}: warning: fact cache disabled ({exc.strerror})")
            self.db = None

    def _remove(self) -> None:
        for suffix in ("", "-wal", "-shm"):
            try:
                Path(str(self.path) + suffix).unlink()
            except FileNotFoundError:
                pass

    def _fail(self, exc: Exception) -> None:
        self.warn(f"{self.path}: warning: fact cache damaged ({exc}); rebuilding it")
        try:
            if self.db is not None:
                self.db.close()
        except sqlite3.Error:
            pass
        self.db = None
        self._remove()
        self._open(retry=False)

    def get(self, path: str, dig: str) -> Any | None:
        if self.db is None:
            self.misses += 1
            return None
        try:
            row = self.db.execute("SELECT blob FROM facts WHERE path = ? AND digest = ? AND key = ?",
                                  (path, dig, self.key)).fetchone()
            if row is None:
                self.misses += 1
                return None
            value = pickle.loads(zlib.decompress(row[0]))
        except (sqlite3.DatabaseError, zlib.error, pickle.UnpicklingError, EOFError,
                AttributeError, ImportError, TypeError) as exc:
            self._fail(exc)
            self.misses += 1
            return None
        self.hits += 1
        return value

    def put_many(self, rows: list[tuple[str, str, Any]]) -> None:
        if self.db is None or not rows:
            return
        blobs = [(p, d, self.key, zlib.compress(pickle.dumps(v, protocol=pickle.HIGHEST_PROTOCOL), 1))
                 for p, d, v in rows]
        self._transaction(lambda db: db.executemany(
            "INSERT OR REPLACE INTO facts VALUES (?, ?, ?, ?)", blobs))

    def _transaction(self, body) -> None:
        """Run body(db) as one write transaction; a failure rolls back and rebuilds."""
        assert self.db is not None
        try:
            self.db.execute("BEGIN IMMEDIATE")
            body(self.db)
            self.db.execute("COMMIT")
        except sqlite3.DatabaseError as exc:
            try:
                self.db.execute("ROLLBACK")
            except sqlite3.Error:
                pass
            self._fail(exc)

    def get_result(self, key: str) -> Any | None:
        """A whole command's result for exactly these inputs (see pipeline.result_key)."""
        if self.db is None:
            return None
        try:
            row = self.db.execute("SELECT blob FROM results WHERE key = ?", (key,)).fetchone()
            return None if row is None else pickle.loads(zlib.decompress(row[0]))
        except (sqlite3.DatabaseError, zlib.error, pickle.UnpicklingError, EOFError,
                AttributeError, ImportError, TypeError) as exc:
            self._fail(exc)
            return None

    def put_result(self, key: str, value: Any) -> None:
        """Keep the newest RESULTS_KEPT results: a result is worth keeping while the tree
        has not changed, and a changed tree makes older ones dead weight."""
        if self.db is None:
            return
        blob = zlib.compress(pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL), 1)

        def body(db: sqlite3.Connection) -> None:
            seq = (db.execute("SELECT max(seq) FROM results").fetchone()[0] or 0) + 1
            db.execute("INSERT OR REPLACE INTO results VALUES (?, ?, ?)", (key, seq, blob))
            db.execute("DELETE FROM results WHERE seq <= ?", (seq - RESULTS_KEPT,))

        self._transaction(body)

    def signatures(self, tree: str) -> dict[str, tuple[str, str, str]]:
        """path -> (stat signature, content digest, guards JSON) recorded for a tree."""
        if self.db is None:
            return {}
        try:
            return {p: (sig, d, g) for p, sig, d, g in self.db.execute(
                "SELECT path, sig, digest, guards FROM stats WHERE tree = ?", (tree,))}
        except sqlite3.DatabaseError as exc:
            self._fail(exc)
            return {}

    def put_signatures(self, tree: str, rows: list[tuple[str, str, str, str]]) -> None:
        """Record (path, signature, digest, guards JSON) rows; keep TREES_KEPT trees."""
        if self.db is None:
            return

        def body(db: sqlite3.Connection) -> None:
            db.execute("INSERT OR REPLACE INTO trees VALUES (?, (SELECT coalesce(max(seq), 0) + 1"
                       " FROM trees))", (tree,))
            db.executemany("INSERT OR REPLACE INTO stats VALUES (?, ?, ?, ?, ?)",
                           [(tree, *r) for r in rows])
            old = [r[0] for r in db.execute(
                "SELECT tree FROM trees ORDER BY seq DESC LIMIT -1 OFFSET ?", (TREES_KEPT,))]
            db.executemany("DELETE FROM stats WHERE tree = ?", [(t,) for t in old])
            db.executemany("DELETE FROM trees WHERE tree = ?", [(t,) for t in old])

        self._transaction(body)

    def prune(self, live: dict[str, str]) -> None:
        """Drop this key's rows for the scanned paths whose content has since changed, and
        every row of keys older than the KEYS_KEPT most recently used."""
        if self.db is None:
            return
        try:
            rows = self.db.execute("SELECT path, digest FROM facts WHERE key = ?", (self.key,)).fetchall()
            stale = [r for r in rows if r[0] in live and live[r[0]] != r[1]]
            old = [r[0] for r in self.db.execute(
                "SELECT key FROM keys ORDER BY seq DESC LIMIT -1 OFFSET ?", (KEYS_KEPT,))]
            unknown = self.db.execute("SELECT count(*) FROM facts WHERE key NOT IN "
                                      "(SELECT key FROM keys)").fetchone()[0]
        except sqlite3.DatabaseError as exc:
            self._fail(exc)
            return

        def body(db: sqlite3.Connection) -> None:
            db.executemany("DELETE FROM facts WHERE path = ? AND digest = ? AND key = ?",
                           [(p, d, self.key) for p, d in stale])
            db.executemany("DELETE FROM facts WHERE key = ?", [(k,) for k in old])
            db.executemany("DELETE FROM keys WHERE key = ?", [(k,) for k in old])
            db.execute("DELETE FROM facts WHERE key NOT IN (SELECT key FROM keys)")

        if stale or old or unknown:
            self._transaction(body)

    def close(self) -> None:
        if self.db is not None:
            try:
                self.db.close()
            except sqlite3.Error:
                pass
            self.db = None
