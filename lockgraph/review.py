"""Pre-merge review of a patch series: what the series changes in the lock graph.

A reviewer wants the *difference* a series makes, not a verdict on the whole tree: which
dependencies it adds, which destructor or reclaim locks stop being leaves, which violations
it introduces or fixes.  So base and head are scanned over the same set of paths and both
are judged exactly as `check --src` would judge them; the review is the diff of the two.

Why the same path set on both sides, and not just the changed files: a changed function can
add a lock edge to every caller anywhere in the scanned code, so only a scan of everything
that may call it is sound.  The fact cache makes that cheap: unchanged files hit the cache
(keyed by relative path and content), only changed files are parsed again.  What lies
outside the scanned paths is a blind spot and the output says so.

The user's tree, repository and patch files are never written: a git range is read with
`git archive` / `git cat-file` into a temporary directory; patches are applied with
`git apply` to a private copy of the scanned sources and of the files the patches touch.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lockgraph.errors import LockgraphError
from lockgraph.graph import best_evidence
from lockgraph.model import Finding, Severity


class ReviewError(LockgraphError):
    """The series or the tree cannot be reviewed (bad range, patch does not apply, …)."""


@dataclass(slots=True)
class Change:
    status: str      # A added, M modified, D deleted (renames count as D + A)
    path: str        # relative to the tree root
    scanned: bool    # inside the scanned paths and a C source


@dataclass(slots=True)
class EdgeDelta:
    src: str
    dst: str
    file: str
    line: int
    stack: tuple[str, ...]
    roots: list[str]     # roots whose lock set contains `src` (on the side the edge exists)

    def to_json(self) -> dict[str, Any]:
        return {"from": self.src, "to": self.dst, "file": self.file, "line": self.line,
                "stack": list(self.stack), "roots": self.roots}


@dataclass(slots=True)
class RootDelta:
    kind: str
    function: str
    how: list[str]
    changes: list[str]                # why it counts as changed (empty for added/removed)
    base: dict[str, Any] | None       # summary on the base side, None when absent
    head: dict[str, Any] | None

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "function": self.function, "why": self.how,
                "changes": self.changes, "base": self.base, "head": self.head}


@dataclass(slots=True)
class Review:
    series: str
    tree: str
    scanned: list[str]            # scanned paths relative to the tree ("." = everything)
    files: tuple[int, int]        # C files scanned in base, head
    changes: list[Change]
    base: Any                     # CheckResult
    head: Any
    edges_added: list[EdgeDelta] = field(default_factory=list)
    edges_removed: list[EdgeDelta] = field(default_factory=list)
    roots_added: list[RootDelta] = field(default_factory=list)
    roots_removed: list[RootDelta] = field(default_factory=list)
    roots_changed: list[RootDelta] = field(default_factory=list)
    reach: dict[str, dict[str, dict[str, list[str]]]] = field(default_factory=dict)
    new_findings: list[Finding] = field(default_factory=list)
    fixed_findings: list[Finding] = field(default_factory=list)
    blind_spots: list[str] = field(default_factory=list)

    @property
    def new_errors(self) -> list[Finding]:
        return [f for f in self.new_findings if f.severity is Severity.ERROR]

    @property
    def new_cycles(self) -> list[Finding]:
        return [f for f in self.new_findings if f.rule == "LG103"]

    @property
    def new_splats(self) -> list[Finding]:
        return [f for f in self.new_findings if f.rule == "LG105" and f.detail]


# --- reading the series --------------------------------------------------------------------

def _git(args: list[str], cwd: Path | None = None, check: bool = True,
         stdin: bytes | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ, GIT_TERMINAL_PROMPT="0", LC_ALL="C")
    try:
        res = subprocess.run(["git", *args], cwd=cwd, input=stdin, capture_output=True, env=env)
    except FileNotFoundError:
        raise ReviewError("git is not installed (Debian package git)", path="lockgraph review") from None
    if check and res.returncode != 0:
        raise ReviewError(_first_error(res.stderr) or f"git {args[0]} failed",
                          path="lockgraph review")
    return res


def _first_error(stderr: bytes) -> str:
    lines = [ln.strip() for ln in stderr.decode("utf-8", "replace").splitlines() if ln.strip()]
    errs = [ln for ln in lines if ln.startswith(("error:", "fatal:"))] or lines
    if not errs:
        return ""
    msg = errs[0].split(":", 1)[1].strip() if errs[0].startswith(("error:", "fatal:")) else errs[0]
    return msg


def is_range(series: list[str]) -> bool:
    """One argument containing `..` that is not a file names a git range."""
    return len(series) == 1 and ".." in series[0] and not Path(series[0]).is_file()


def _resolve_range(tree: Path, spec: str, shown_tree: str) -> tuple[str, str, str]:
    """(prefix of tree in its repository, base commit, head commit) of `base..head`."""
    res = _git(["-C", str(tree), "rev-parse", "--show-prefix"], check=False)
    if res.returncode != 0:
        raise ReviewError("not a git checkout: a range base..head needs one (or give patch files)",
                          path=shown_tree)
    prefix = res.stdout.decode().strip()
    three = "..." in spec
    left, right = spec.split("..." if three else "..", 1)
    left, right = left or "HEAD", right or "HEAD"
    revs = []
    for rev in (left, right):
        r = _git(["-C", str(tree), "rev-parse", "--verify", "--quiet", "--end-of-options",
                  rev + "^{commit}"], check=False)
        if r.returncode != 0:
            raise ReviewError(f"'{rev}' is not a commit in {shown_tree} (range '{spec}')",
                              path=spec)
        revs.append(r.stdout.decode().strip())
    base, head = revs
    if three:
        r = _git(["-C", str(tree), "merge-base", base, head], check=False)
        if r.returncode != 0:
            raise ReviewError(f"'{left}' and '{right}' have no merge base", path=spec)
        base = r.stdout.decode().strip()
    return prefix, base, head


def _range_changes(tree: Path, base: str, head: str) -> list[tuple[str, str, str, str]]:
    """(status, path, new mode, new blob) per changed file, paths relative to `tree`."""
    out = _git(["-C", str(tree), "diff", "--raw", "-z", "--no-renames", "--no-abbrev",
                "--relative", base, head]).stdout.split(b"\0")
    changes = []
    for meta, path in zip(out[0::2], out[1::2]):
        if not meta.startswith(b":"):
            continue
        _om, nm, _os, nsha, status = meta[1:].decode().split()
        changes.append((status[0], path.decode("utf-8", "surrogateescape"), nm, nsha))
    return sorted(changes, key=lambda c: c[1])


def _archive(tree: Path, prefix: str, rev: str, pathspecs: list[str] | None, dest: Path) -> None:
    """Extract `rev` (below the tree's prefix; only `pathspecs` when given) into dest."""
    if pathspecs == []:
        return
    args = ["-C", str(tree), "archive", "--format=tar", f"{rev}:{prefix}" if prefix else rev]
    if pathspecs:
        args += ["--", *pathspecs]
    res = _git(args)

    def safe(member: tarfile.TarInfo, path: str) -> tarfile.TarInfo | None:
        try:
            return tarfile.data_filter(member, path)
        except tarfile.FilterError:
            return None  # a link pointing out of the tree: not source we can scan

    with tarfile.open(fileobj=io.BytesIO(res.stdout), mode="r:") as tar:
        tar.extractall(dest, filter=safe)


def _present(tree: Path, rev: str, prefix: str, paths: list[str]) -> list[str]:
    return [p for p in paths if p == "." or _git(["-C", str(tree), "cat-file", "-e",
                                                   f"{rev}:{prefix}{p}"], check=False).returncode == 0]


def _write_blobs(tree: Path, dest: Path, changes: list[tuple[str, str, str, str]]) -> None:
    """Turn the base checkout in dest into head: delete, write or link each changed path."""
    wanted = [c for c in changes if c[0] != "D" and c[2] in ("100644", "100755", "120000")]
    blobs: list[bytes] = []
    if wanted:
        res = _git(["-C", str(tree), "cat-file", "--batch"],
                   stdin=b"".join(c[3].encode() + b"\n" for c in wanted))
        data, pos = res.stdout, 0
        for _ in wanted:
            nl = data.index(b"\n", pos)
            size = int(data[pos:nl].split()[2])
            blobs.append(data[nl + 1:nl + 1 + size])
            pos = nl + 1 + size + 1
    for status, path, _mode, _sha in changes:
        p = dest / path
        if status == "D" and (p.is_file() or p.is_symlink()):
            p.unlink()
    for (_status, path, mode, _sha), blob in zip(wanted, blobs):
        p = dest / path
        p.parent.mkdir(parents=True, exist_ok=True)
        if p.is_symlink() or p.exists():
            p.unlink()
        if mode == "120000":
            p.symlink_to(blob.decode("utf-8", "surrogateescape"))
        else:
            p.write_bytes(blob)


@dataclass(slots=True)
class Patch:
    source: str       # the name the user gave (shown)
    number: int       # 1-based position within its file (0 when the file is one plain patch)
    of: int
    subject: str
    file: Path        # the patch text, in our temporary directory or the user's file

    @property
    def name(self) -> str:
        """How errors name it; the file itself goes in front (`series.mbox: error: …`)."""
        where = f"patch {self.number}/{self.of}" if self.number else "patch"
        return where + (f" '{self.subject}'" if self.subject else "")


def split_patches(files: list[tuple[Path, str]], work: Path) -> list[Patch]:
    """Every patch in order: an mbox (`git format-patch` output) is split message by message,
    so an error can name the patch that failed instead of the whole mbox."""
    out: list[Patch] = []
    for k, (path, shown) in enumerate(files):
        if not path.is_file():
            raise ReviewError("no such patch file", path=shown)
        head = path.read_bytes()[:4096]
        if not head.strip():
            raise ReviewError("empty patch file", path=shown)
        if head.startswith(b"From "):
            d = work / f"mbox{k}"
            d.mkdir()
            _git(["mailsplit", "-o" + str(d), str(path)])
            msgs = sorted(d.iterdir())
            for n, msg in enumerate(msgs, 1):
                info = _git(["mailinfo", str(d / f"{msg.name}.msg"), str(d / f"{msg.name}.patch")],
                            cwd=d, stdin=msg.read_bytes()).stdout.decode("utf-8", "replace")
                subject = next((ln.split(":", 1)[1].strip() for ln in info.splitlines()
                                if ln.startswith("Subject:")), "")
                patch = d / f"{msg.name}.patch"
                if patch.stat().st_size == 0:
                    continue  # a cover letter
                out.append(Patch(shown, n, len(msgs), subject, patch))
        else:
            subject = next((ln.split(":", 1)[1].strip() for ln in
                            head.decode("utf-8", "replace").splitlines()[:40]
                            if ln.startswith("Subject:")), "")
            out.append(Patch(shown, 0, 1, subject, path))
    return out


def _touched(p: Patch) -> list[str]:
    res = _git(["apply", "--numstat", "-z", str(p.file)], check=False)
    if res.returncode != 0:
        why = _first_error(res.stderr)
        why = "no diff in it" if why.startswith("No valid patches") else why
        raise ReviewError((f"{p.name}: " if p.number else "") + f"not a patch: {why}",
                          path=p.source)
    fields = res.stdout.split(b"\0")
    out, i = [], 0
    while i < len(fields):
        f = fields[i]
        if not f:
            i += 1
            continue
        stat = f.split(b"\t")
        if len(stat) == 3 and stat[2]:
            out.append(stat[2])
            i += 1
        else:  # a rename or copy: "add\tdel\t" then old and new path
            out += [fields[i + 1], fields[i + 2]]
            i += 3
    return [x.decode("utf-8", "surrogateescape") for x in out]


def _apply_series(tree: Path, patches: list[tuple[Patch, list[str]]], sources: list[Path],
                  head: Path) -> None:
    """Build head = tree + patches in `head` from real copies of the scanned sources and of
    every file a patch touches.

    Not hard links: git apply would not write through them, but linking and unlinking
    changes each file's ctime, and git then re-reads the whole user's tree at the next
    `git status`.
    """
    touched = {rel for _p, rels in patches for rel in rels}
    files = set(sources) | {tree / rel for rel in touched if (tree / rel).is_file()}
    made: set[Path] = set()
    for f in sorted(files):
        dst = head / f.relative_to(tree)
        if dst.parent not in made:
            dst.parent.mkdir(parents=True, exist_ok=True)
            made.add(dst.parent)
        shutil.copy(f, dst)
    # No repository above the copy may be discovered: git apply must patch plain files.
    env = dict(os.environ, GIT_CEILING_DIRECTORIES=str(head.parent), LC_ALL="C")
    for p, _rels in patches:
        res = subprocess.run(["git", "apply", "--whitespace=nowarn", str(p.file)], cwd=head,
                             capture_output=True, env=env)
        if res.returncode != 0:
            raise ReviewError(f"{p.name} does not apply: {_first_error(res.stderr)}",
                              path=p.source)


# --- scanning and judging ------------------------------------------------------------------

def _scan_and_judge(root: Path, rels: list[str], config: Path | None, dtors: tuple[str, ...],
                    jobs: int, cache_dir: Path | None, progress, warn):
    """One side of the review, judged exactly as `check --src` would judge it (each side's
    guard types live in its own scan's ScanContext, so none leaks into the other side)."""
    from lockgraph.pipeline import run, scan

    paths = [root / r for r in rels if (root / r).exists()]
    st = scan(paths, config, root, jobs=jobs, cache_dir=cache_dir, progress=progress,
              warn=warn) if paths else None
    if st is None or st.files == 0:
        return run([], dtors, None), None
    return run([], dtors, st), st


def _root_summary(v) -> dict[str, Any]:
    out: dict[str, Any] = {"locks": [lk.lock for lk in v.locks], "defined": bool(v.root.fids),
                           "blind_spots": len(v.blind_spots)}
    if v.root.kind == "dtor":
        out["strict_leaf"] = v.strict_leaf.verdict
        out["dtor_safe"] = v.dtor_safe.verdict
    if v.root.kind == "ctor":
        out["sleeps_or_reclaims"] = bool(v.ctor.sleeps_or_reclaims)
        out["atomic_sites"] = len(v.ctor.atomic_sites)
    return out


def _root_files(v, st) -> set[str]:
    if st is None:
        return set()
    funcs = st.solved.funcs
    return {funcs[fid].file for fid in v.root.fids if fid in funcs}


def _lock_roots(res, kind: str) -> dict[str, list[str]]:
    """lock -> roots of `kind` (dtor | reclaim) that take it, runtime contexts included."""
    out: dict[str, set[str]] = {}
    for v in res.roots:
        if v.root.kind == kind:
            for lk in v.locks:
                out.setdefault(lk.lock, set()).add(v.root.function)
    ctx = res.dtor_locks if kind == "dtor" else res.reclaim_locks
    for lock, cs in ctx.items():
        out.setdefault(lock, set()).update(c.root for c in cs)
    return {k: sorted(v) for k, v in sorted(out.items())}


def _edges(res) -> set[tuple[str, str]]:
    return {(a, b) for a, b in res.graph.edges if a != b}


def _edge_delta(res, a: str, b: str) -> EdgeDelta:
    e = best_evidence(res.graph, a, b)
    holders = sorted({v.root.function for v in res.roots if any(lk.lock == a for lk in v.locks)})
    return EdgeDelta(a, b, e.file, e.line, tuple(e.stack), holders)


def diff(rv: Review, base_st, head_st) -> None:
    """Fill the review's deltas from its two CheckResults (and scans, for root files)."""
    b, h = rv.base, rv.head
    changed = {c.path for c in rv.changes}
    rv.edges_added = [_edge_delta(h, x, y) for x, y in sorted(_edges(h) - _edges(b))]
    rv.edges_removed = [_edge_delta(b, x, y) for x, y in sorted(_edges(b) - _edges(h))]
    br = {(v.root.kind, v.root.function): v for v in b.roots}
    hr = {(v.root.kind, v.root.function): v for v in h.roots}
    order = {"dtor": 0, "ctor": 1, "reclaim": 2}
    for key in sorted(set(br) | set(hr), key=lambda k: (order.get(k[0], 3), k[1])):
        vb, vh = br.get(key), hr.get(key)
        sb = _root_summary(vb) if vb else None
        sh = _root_summary(vh) if vh else None
        how = (vh or vb).root.how
        if vb is None or vh is None:
            (rv.roots_added if vb is None else rv.roots_removed).append(
                RootDelta(key[0], key[1], how, [], sb, sh))
            continue
        why = []
        new = sorted(set(sh["locks"]) - set(sb["locks"]))
        gone = sorted(set(sb["locks"]) - set(sh["locks"]))
        if new:
            why.append("now takes " + ", ".join(f"'{x}'" for x in new))
        if gone:
            why.append("no longer takes " + ", ".join(f"'{x}'" for x in gone))
        for k in ("strict_leaf", "dtor_safe", "sleeps_or_reclaims", "atomic_sites", "defined",
                  "blind_spots"):
            if sb.get(k) != sh.get(k):
                why.append(f"{k.replace('_', ' ')}: {sb.get(k)} -> {sh.get(k)}")
        files = sorted((_root_files(vb, base_st) | _root_files(vh, head_st)) & changed)
        if files:
            why.append("defined in a changed file: " + ", ".join(files))
        if why:
            rv.roots_changed.append(RootDelta(key[0], key[1], how, why, sb, sh))
    for kind in ("dtor", "reclaim"):
        lb, lh = _lock_roots(b, kind), _lock_roots(h, kind)
        rv.reach[kind] = {"added": {k: lh[k] for k in sorted(set(lh) - set(lb))},
                          "removed": {k: lb[k] for k in sorted(set(lb) - set(lh))}}
    fb = {f.id: f for f in b.findings}
    fh = {f.id: f for f in h.findings}
    # A finding already there but raised to error (a cycle whose edges became certain) is
    # new as a violation.
    rv.new_findings = [f for i, f in fh.items() if i not in fb or (
        f.severity is Severity.ERROR and fb[i].severity is not Severity.ERROR)]
    rv.fixed_findings = [f for i, f in fb.items() if i not in fh]


def _inside(path: str, rels: list[str]) -> bool:
    return any(r == "." or path == r or path.startswith(r.rstrip("/") + "/") for r in rels)


def _is_c(path: str) -> bool:
    return path.endswith((".c", ".h"))


def _blind_spots(rv: Review) -> list[str]:
    out = []
    if rv.scanned != ["."]:
        out.append("only " + ", ".join(p + "/" if not _is_c(p) else p for p in rv.scanned)
                   + " (and the changed C files) scanned: callers and locks elsewhere in the "
                   "tree are not seen")
    skipped = [c.path for c in rv.changes if not c.scanned]
    if skipped:
        out.append(f"{len(skipped)} changed file(s) not analysed (not C sources): "
                   + ", ".join(skipped[:8]) + (" ..." if len(skipped) > 8 else ""))
    out += [f"head: {b}" for b in rv.head.blind_spots]
    nb = sum(1 for v in rv.head.roots if v.blind_spots)
    if nb:
        out.append(f"head: {nb} root(s) with blind spots (unresolved or missing callees); "
                   "their verdicts stay 'unproven'")
    return out


def _range_sides(tree: Path, spec: str, shown_tree: str, scan_rels: list[str], work: Path,
                 judge):
    """Base and head of a git range, both judged in one temporary checkout: base from
    `git archive`, then turned into head by writing the changed blobs."""
    prefix, base, head = _resolve_range(tree, spec, shown_tree)
    raw = _range_changes(tree, base, head)
    for p in scan_rels:
        if p != "." and not (_present(tree, base, prefix, [p]) or _present(tree, head, prefix, [p])):
            raise ReviewError(f"--path {p}: not in the tree at either end of the range", path=spec)
    rels = _with_changed_c(scan_rels, [c[1] for c in raw])
    side = work / "tree"
    side.mkdir()
    _archive(tree, prefix, base, None if rels == ["."] else _present(tree, base, prefix, rels), side)
    b = judge(side, rels)
    _write_blobs(tree, side, [c for c in raw if _inside(c[1], rels)])
    h = judge(side, rels)
    return b, h, {c[1]: c[0] for c in raw}, rels


def _patch_sides(tree: Path, series: list[str], shown_series: list[str], shown_tree: str,
                 scan_rels: list[str], work: Path, judge):
    """Base is the user's tree as it is on disk; head is a private copy with the patches."""
    from lockgraph.static.sources import iter_sources

    for s, shown in zip(series, shown_series):
        if not Path(s).is_file():
            raise ReviewError("no such patch file" if len(series) > 1 else
                              "neither a patch file nor a git range base..head", path=shown)
    patches = [(p, _touched(p)) for p in
               split_patches(list(zip((Path(s) for s in series), shown_series)), work)]
    if not patches:
        raise ReviewError("no patches found", path=", ".join(shown_series))
    for p in scan_rels:
        if not (tree / p).exists():
            raise ReviewError(f"--path {p}: no such path in the tree", path=shown_tree)
    touched = sorted({rel for _p, rs in patches for rel in rs})
    rels = _with_changed_c(scan_rels, touched)
    head_dir = work / "head"
    head_dir.mkdir()
    _apply_series(tree, patches, iter_sources([tree / r for r in rels if (tree / r).exists()]),
                  head_dir)
    statuses = {}
    for rel in touched:
        a, b = tree / rel, head_dir / rel
        if a.is_file() != b.is_file():
            statuses[rel] = "A" if b.is_file() else "D"
        elif a.is_file() and a.read_bytes() != b.read_bytes():
            statuses[rel] = "M"
    return judge(tree, rels), judge(head_dir, rels), statuses, rels


def review(tree: Path, series: list[str], shown_tree: str, shown_series: list[str],
           paths: list[str], config: Path | None, dtors: tuple[str, ...], jobs: int,
           cache_dir: Path | None, progress=None, warn=None) -> Review:
    """Scan base and head of `series` over the same paths of `tree` and diff the verdicts.

    `paths` are relative to the tree (empty: the whole tree).  Changed C files outside them
    are scanned too, on both sides, so the changed code itself is always judged.
    `progress` is a factory of context managers (one bar per side).
    """
    from contextlib import nullcontext

    if not tree.is_dir():
        raise ReviewError("no such directory (--src must be the kernel tree)", path=shown_tree)
    for p in paths:
        if Path(p).is_absolute() or ".." in Path(p).parts:
            raise ReviewError("--path must be relative to the tree and stay inside it", path=p)
    scan_rels = sorted({Path(p).as_posix() for p in paths}) or ["."]
    bar = progress or (lambda: nullcontext(None))

    def judge(root: Path, rels: list[str]):
        with bar() as pb:
            return _scan_and_judge(root, rels, config, dtors, jobs, cache_dir, pb, warn)

    with tempfile.TemporaryDirectory(prefix="lockgraph-review-") as tmp:
        if is_range(series):
            (bres, bst), (hres, hst), statuses, rels = _range_sides(
                tree, series[0], shown_tree, scan_rels, Path(tmp), judge)
            label = series[0]
        else:
            (bres, bst), (hres, hst), statuses, rels = _patch_sides(
                tree, series, shown_series, shown_tree, scan_rels, Path(tmp), judge)
            label = " ".join(shown_series)
    if bst is None and hst is None:
        raise ReviewError("no C sources (.c, .h) in the scanned paths at either end of the series",
                          path=shown_tree)
    changes = [Change(s, p, _inside(p, rels) and _is_c(p)) for p, s in sorted(statuses.items())]
    rv = Review(label, shown_tree, scan_rels, (bst.files if bst else 0, hst.files if hst else 0),
                changes, bres, hres)
    diff(rv, bst, hst)
    rv.blind_spots = _blind_spots(rv)
    return rv


def _with_changed_c(scan_rels: list[str], changed: list[str]) -> list[str]:
    """The scanned paths plus every changed C file outside them."""
    if scan_rels == ["."]:
        return scan_rels
    return scan_rels + sorted(p for p in changed if _is_c(p) and not _inside(p, scan_rels))
