"""Persistent per-file fact cache (SQLite): an unchanged file is never parsed twice.

Rows are keyed by (path, content digest, analyser key); the analyser key covers the
lockgraph version, the fact schema, the .config and the guard classes of the tree, so an
upgrade or a different configuration simply misses.  SQLite in WAL mode gives atomic
batches (a `kill -9` mid-scan loses at most the batch in flight) and lets scans running at
once share the file.

A busy database is not a damaged one.  SQLite's busy timeout is set as a connection opens,
before the switch to WAL (which needs a lock of its own), and what SQLite reports busy without
waiting (that switch, on a new file) is tried again with backoff; a cache still busy after
BUSY_WAIT_S is left alone and the run goes on without it.  Only damage (not a database, a
malformed image, a row that does not unpickle) is reported and rebuilt, and a rebuild never
removes a database another process has open: every process holds a shared flock on
`facts.sqlite.lock` while it uses the cache, and the files are removed only under an
exclusive one.  A damaged cache that another process is using is left for a later run to
rebuild and this run goes without it, with one warning: waiting could mean waiting for
another whole-tree scan, and the output is the same without the cache, only slower.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import pickle
import random
import sqlite3
import time
import weakref
import zlib
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Iterator, TypeVar

from lockgraph import __version__

T = TypeVar("T")

#: Bump when the pickled fact types change shape.
FACT_SCHEMA = 6
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


#: SQLite's own busy timeout, set when a connection opens (so before the switch to WAL).
SQLITE_TIMEOUT_S = 60.0
#: How long a busy cache is waited for in all, counting the retries of what SQLite reports
#: busy without waiting (the switch to WAL on a new file does: measured, 24 of 300 rounds of
#: six processes opening one new cache at once failed at once with "database is locked").
BUSY_WAIT_S = 60.0
LOCK_NAME = "facts.sqlite.lock"

#: SQLITE_BUSY, SQLITE_LOCKED, SQLITE_PROTOCOL (a lost race for a WAL lock): try again.
_BUSY_CODES = (5, 6, 15)
#: SQLITE_CORRUPT, SQLITE_NOTADB: the file is damaged.
_DAMAGE_CODES = (11, 26)
class BadRow(Exception):
    """A stored row that no longer loads (truncated, garbage, or pickled by a class shape
    that changed): damage.  Raised only around decoding a row, so a plain bug elsewhere in a
    cache operation (a TypeError, say) is never mistaken for damage and never wipes the cache."""


#: What decoding a row may raise when the row, not the code, is bad.
_ROW_ERRORS = (zlib.error, pickle.UnpicklingError, EOFError, AttributeError, ImportError,
               TypeError, ValueError, IndexError)


def _sqlite_says(exc: BaseException, codes: tuple[int, ...], words: tuple[str, ...]) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)  # Python >= 3.11; before, only the message
    return code & 0xFF in codes if code is not None else any(w in str(exc) for w in words)


def _is_busy(exc: BaseException) -> bool:
    return isinstance(exc, BlockingIOError) or (  # BlockingIOError: a flock held elsewhere
        isinstance(exc, sqlite3.OperationalError)
        and _sqlite_says(exc, _BUSY_CODES, ("locked", "busy", "locking protocol")))


def _is_damage(exc: BaseException) -> bool:
    return isinstance(exc, BadRow) or (
        isinstance(exc, sqlite3.DatabaseError)
        and _sqlite_says(exc, _DAMAGE_CODES, ("malformed", "not a database")))


def _why(exc: BaseException) -> str:
    return str(getattr(exc, "strerror", None) or exc)


def _pickled(value: Any) -> bytes:
    return zlib.compress(pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL), 1)


def _unpickled(db: sqlite3.Connection, sql: str, args: tuple) -> Any | None:
    row = db.execute(sql, args).fetchone()
    if row is None:
        return None
    try:
        return pickle.loads(zlib.decompress(row[0]))
    except _ROW_ERRORS as exc:
        raise BadRow(f"{type(exc).__name__}: {exc}") from None


#: zlib level of a stored output: 3 inflates a third faster than 1 (the replay pays
#: that) and costs little more to deflate than 1 (whole tree: 316 MB of JSON, 1.4 s).
RESULT_LEVEL = 3
_CHUNK = 1 << 22


def _result(blob: bytes) -> tuple[Any, memoryview]:
    """(metadata, compressed output) of a results row; metadata and output are checked
    whole (one crc32 over both) before either is read, so a damaged row is never half
    replayed nor unpickled."""
    n = int.from_bytes(blob[:8], "little")
    crc = int.from_bytes(blob[8:12], "little")
    rest = memoryview(blob)[12:]
    if len(blob) < 12 or n > len(rest) or zlib.crc32(rest) != crc:
        raise BadRow("stored result does not match its checksum")
    try:
        meta = pickle.loads(rest[:n])
    except _ROW_ERRORS as exc:
        raise BadRow(f"{type(exc).__name__}: {exc}") from None
    return meta, rest[n:]


def _inflate(body: memoryview) -> Iterator[bytes]:
    """The output in pieces of at most _CHUNK bytes (inflated, not compressed input: JSON
    inflates tenfold and more)."""
    d = zlib.decompressobj()
    for k in range(0, len(body), _CHUNK):
        data = body[k:k + _CHUNK]
        while data:
            yield d.decompress(data, _CHUNK)
            data = d.unconsumed_tail
    yield d.flush()


_sleep = time.sleep


def _patiently(op: Callable[[], T]) -> T:
    """op(), tried again with backoff while it reports busy, for up to BUSY_WAIT_S."""
    deadline = time.monotonic() + BUSY_WAIT_S
    delay = 0.002
    while True:
        try:
            return op()
        except (sqlite3.OperationalError, BlockingIOError) as exc:
            if not _is_busy(exc) or time.monotonic() >= deadline:
                raise
        _sleep(delay * random.uniform(0.5, 1.5))  # jitter: racing openers do not retry in step
        delay = min(delay * 2, 0.25)


class _Hold:
    """This process's shared flock on a cache directory's lock file, and its FactCaches.

    One per process and directory: a flock belongs to an open file, so a second one in the
    same process would conflict with the first and no rebuild could ever be done."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.pid = os.getpid()
        self.users: weakref.WeakSet[FactCache] = weakref.WeakSet()
        self.off = False
        self.fd: int | None = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            self.shared()
        except BaseException:
            self.release()
            raise

    def shared(self) -> None:
        assert self.fd is not None
        fd = self.fd
        _patiently(lambda: fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB))

    def exclusive(self) -> bool:
        """Whether the lock became exclusive: no other process has the database open."""
        assert self.fd is not None
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            self.shared()  # flock converts by dropping the old lock first: take it again
            return False

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
        if _HOLDS.get(str(self.path)) is self:
            del _HOLDS[str(self.path)]


_HOLDS: dict[str, _Hold] = {}


def _hold(path: Path) -> _Hold:
    hold = _HOLDS.get(str(path))
    if hold is None or hold.pid != os.getpid() or hold.fd is None:  # a forked child opens its own
        hold = _HOLDS[str(path)] = _Hold(path)
    return hold


class FactCache:
    """get/put pickled per-file facts; no SQLite failure is ever a crash.

    A busy database is waited for, a damaged one rebuilt (unless another process has it
    open), and anything else makes the run go on without the cache, with one warning."""

    def __init__(self, directory: Path, key: str, warn=None) -> None:
        self.dir = directory
        self.path = directory / "facts.sqlite"
        self.key = key
        self.warn = warn or (lambda msg: None)
        self.hits = 0
        self.misses = 0
        self.db: sqlite3.Connection | None = None
        self.hold: _Hold | None = None
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            self.hold = _hold(directory / LOCK_NAME)
        except BlockingIOError:
            self.warn(f"{self.path}: warning: fact cache busy for {BUSY_WAIT_S:.0f} s"
                      " (another process is rebuilding it); running without it")
            return
        except OSError as exc:
            self.warn(f"{self.path}: warning: fact cache disabled ({_why(exc)})")
            return
        self.hold.users.add(self)
        self._open()

    def _connect(self) -> sqlite3.Connection:
        # timeout= is SQLite's busy timeout: in force from here, so for the switch to WAL too
        db = sqlite3.connect(self.path, timeout=SQLITE_TIMEOUT_S, isolation_level=None)
        try:
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
            return db
        except BaseException:
            db.close()
            raise

    def _open(self) -> None:
        try:
            self.db = _patiently(self._connect)
        except (sqlite3.Error, OSError) as exc:
            self._trouble(exc)

    def _conn(self) -> sqlite3.Connection | None:
        """The connection; reopened when a rebuild by another FactCache of this process closed it."""
        if self.db is None and self.hold is not None and not self.hold.off:
            self._open()
        return self.db

    def _do(self, op: Callable[[sqlite3.Connection], T], default: T) -> T:
        """op(db), waiting while the database is busy; any failure returns `default`."""
        db = self._conn()
        if db is None:
            return default
        try:
            return _patiently(lambda: op(db))
        except (sqlite3.Error, OSError, BadRow) as exc:
            self._trouble(exc)
            return default

    def _trouble(self, exc: BaseException) -> None:
        if _is_damage(exc):
            self._rebuild(exc)
        elif _is_busy(exc):
            self._disable(f"fact cache busy for {BUSY_WAIT_S:.0f} s ({exc}); running without it")
        else:
            self._disable(f"fact cache disabled ({_why(exc)})")

    def _rebuild(self, exc: BaseException) -> None:
        """Remove the damaged files and start afresh, only when no other process has them open."""
        hold = self.hold
        assert hold is not None
        for user in list(hold.users):  # this process's connections are closed first
            user._disconnect()
        try:
            alone = hold.exclusive()
            if alone:
                try:
                    for suffix in ("", "-wal", "-shm"):
                        Path(str(self.path) + suffix).unlink(missing_ok=True)
                finally:
                    hold.shared()
        except OSError as err:
            self._disable(f"fact cache damaged ({exc}) and cannot be rebuilt ({_why(err)})")
            return
        if not alone:
            self._disable(f"fact cache damaged ({exc}); another process is using it, so this run"
                          " goes without it and a later one rebuilds it")
            return
        self.warn(f"{self.path}: warning: fact cache damaged ({exc}); rebuilding it")
        try:
            self.db = _patiently(self._connect)
        except (sqlite3.Error, OSError) as err:
            self._disable(f"fact cache disabled ({_why(err)})")

    def _disable(self, why: str) -> None:
        """The rest of this run goes without the cache: one warning, every connection of this
        process closed and the lock let go (a process not using the database holds no lock)."""
        hold = self.hold
        if hold is None or hold.off:
            return
        self.warn(f"{self.path}: warning: {why}")
        hold.off = True
        for user in list(hold.users):
            user._disconnect()
        hold.release()

    def _disconnect(self) -> None:
        if self.db is not None:
            try:
                self.db.close()
            except sqlite3.Error:
                pass
            self.db = None

    def get(self, path: str, dig: str) -> Any | None:
        value = self._do(lambda db: _unpickled(db, "SELECT blob FROM facts WHERE path = ? AND"
                                               " digest = ? AND key = ?", (path, dig, self.key)), None)
        if value is None:
            self.misses += 1
        else:
            self.hits += 1
        return value

    def put_many(self, rows: list[tuple[str, str, Any]]) -> None:
        if not rows:
            return
        blobs = [(p, d, self.key, _pickled(v)) for p, d, v in rows]
        self._transaction(lambda db: db.executemany(
            "INSERT OR REPLACE INTO facts VALUES (?, ?, ?, ?)", blobs))

    def _transaction(self, body: Callable[[sqlite3.Connection], object]) -> None:
        """Run body(db) as one write transaction; a failed try is rolled back."""
        def op(db: sqlite3.Connection) -> None:
            db.execute("BEGIN IMMEDIATE")
            try:
                body(db)
                db.execute("COMMIT")
            except BaseException:
                try:
                    db.execute("ROLLBACK")
                except sqlite3.Error:
                    pass
                raise

        self._do(op, None)

    def get_result(self, key: str) -> tuple[Any, Iterator[bytes]] | None:
        """A whole command's result for exactly these inputs (see pipeline.result_key): its
        metadata, and its output as chunks decompressed while they are written — the
        whole-tree JSON is hundreds of MB, and holding it whole doubled a replay's time."""
        def op(db: sqlite3.Connection) -> tuple[Any, memoryview] | None:
            row = db.execute("SELECT blob FROM results WHERE key = ?", (key,)).fetchone()
            if row is None:
                return None
            return _result(row[0])
        got = self._do(op, None)
        if got is None:
            return None
        meta, body = got
        return meta, _inflate(body)

    def put_result(self, key: str, meta: Any, out: bytes) -> None:
        """Keep the newest RESULTS_KEPT results: a result is worth keeping while the tree
        has not changed, and a changed tree makes older ones dead weight."""
        if self._conn() is None:
            return
        m = pickle.dumps(meta, protocol=pickle.HIGHEST_PROTOCOL)
        rest = m + zlib.compress(out, RESULT_LEVEL)
        blob = len(m).to_bytes(8, "little") + zlib.crc32(rest).to_bytes(4, "little") + rest

        def body_(db: sqlite3.Connection) -> None:
            seq = (db.execute("SELECT max(seq) FROM results").fetchone()[0] or 0) + 1
            db.execute("INSERT OR REPLACE INTO results VALUES (?, ?, ?)", (key, seq, blob))
            db.execute("DELETE FROM results WHERE seq <= ?", (seq - RESULTS_KEPT,))

        self._transaction(body_)

    def signatures(self, tree: str) -> dict[str, tuple[str, str, str]]:
        """path -> (stat signature, content digest, guards JSON) recorded for a tree."""
        return self._do(lambda db: {p: (sig, d, g) for p, sig, d, g in db.execute(
            "SELECT path, sig, digest, guards FROM stats WHERE tree = ?", (tree,))}, {})

    def put_signatures(self, tree: str, rows: list[tuple[str, str, str, str]]) -> None:
        """Record (path, signature, digest, guards JSON) rows; keep TREES_KEPT trees."""
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
        def look(db: sqlite3.Connection) -> tuple[list, list, int]:
            rows = db.execute("SELECT path, digest FROM facts WHERE key = ?", (self.key,)).fetchall()
            old = [(r[0],) for r in db.execute(
                "SELECT key FROM keys ORDER BY seq DESC LIMIT -1 OFFSET ?", (KEYS_KEPT,))]
            unknown = db.execute("SELECT count(*) FROM facts WHERE key NOT IN "
                                 "(SELECT key FROM keys)").fetchone()[0]
            return [(p, d, self.key) for p, d in rows if p in live and live[p] != d], old, unknown

        stale, old, unknown = self._do(look, ([], [], 0))

        def body(db: sqlite3.Connection) -> None:
            db.executemany("DELETE FROM facts WHERE path = ? AND digest = ? AND key = ?", stale)
            db.executemany("DELETE FROM facts WHERE key = ?", old)
            db.executemany("DELETE FROM keys WHERE key = ?", old)
            db.execute("DELETE FROM facts WHERE key NOT IN (SELECT key FROM keys)")

        if stale or old or unknown:
            self._transaction(body)

    def close(self) -> None:
        self._disconnect()
        hold, self.hold = self.hold, None
        if hold is not None:
            hold.users.discard(self)
            if not hold.users:
                hold.release()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # at interpreter exit the module may be half torn down
            pass
