"""Which C sources a run covers, and their digests: the walk of the tree (what one build
compiles, per static/kbuild.py and the architecture), `#include`d .c files, and a stat
signature per file so an unchanged tree is not read again.

Outside static/facts/: what is scanned decides the result (its key covers every path and
digest), not any one file's facts, so speeding this up keeps the fact cache warm.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from lockgraph.static.facts import kb
from lockgraph.static.facts.scan import SOURCE_SUFFIXES, _read, c_includes, declared_guards


#: Directories of a kernel tree that are not kernel code for the target: host programs
#: and userspace tools (tools/ even defines its own mutex_lock()).
NOT_KERNEL = ("tools", "scripts", "usr", "Documentation")
#: `arch/<dir>` for each architecture, named by the Kconfig symbol that selects it.
ARCH_SYMBOLS = {"alpha": "ALPHA", "arc": "ARC", "arm": "ARM", "arm64": "ARM64", "csky": "CSKY",
                "hexagon": "HEXAGON", "loongarch": "LOONGARCH", "m68k": "M68K",
                "microblaze": "MICROBLAZE", "mips": "MIPS", "nios2": "NIOS2",
                "openrisc": "OPENRISC", "parisc": "PARISC", "powerpc": "PPC", "riscv": "RISCV",
                "s390": "S390", "sh": "SUPERH", "sparc": "SPARC", "um": "UML", "x86": "X86",
                "xtensa": "XTENSA"}
DEFAULT_ARCH = "x86"


#: Inside an architecture's directory: separate programs linked on their own (the boot
#: decompressor has its own panic() and memcpy(), the vDSO runs in user space).
ARCH_NOT_KERNEL = ("boot", "purgatory", "realmode", "tools", "entry/vdso", "kernel/vdso", "vdso")


def excluded_dirs(tree: Path, arch: str) -> list[Path]:
    """What one build of `tree` for `arch` never compiles: other architectures and host code.

    Without this, a call to flush_tlb_all() resolves to twenty architectures' definitions,
    panic() to the boot decompressor's, mutex_lock() to tools/' shim — neither what runs nor
    affordable to solve."""
    out = [tree / d for d in NOT_KERNEL]
    archdir = tree / "arch"
    if archdir.is_dir():
        for d in sorted(archdir.iterdir()):
            if not d.is_dir():
                continue
            if arch != "all" and d.name != arch:
                out.append(d)
            else:
                out += [d / sub for sub in ARCH_NOT_KERNEL]
    return [d for d in out if d.is_dir()]


def iter_sources(paths: Iterable[Path], exclude: Iterable[Path] = ()) -> list[Path]:
    """C sources under `paths`; a directory walk skips `exclude` unless it was asked for."""
    out: set[str] = set()
    skip = [_resolved(e) for e in exclude]   # thousands with --config (kbuild.py)
    files = {e for e in skip if e.endswith(".c")}   # kbuild.py: not built by the .config
    for p in paths:
        if p.is_dir():
            rp = str(p.resolve())
            asked = {rp, *(str(x) for x in Path(rp).parents)}
            drop = {e for e in skip if e not in asked}
            _walk(str(p), rp.rstrip("/"), drop, files, out)
        elif p.is_file():
            out.add(str(p))
            out.update(included_sources(p))
    # Path order (component-wise), not string order: "a/x" before "a-b/x"
    return [Path(s) for s in sorted(out, key=lambda s: s.split("/"))]


def _walk(top: str, real: str, drop: set[str], files: set[str], out: set[str]) -> None:
    """The sources below `top` (resolved: `real`) into `out`, pruning `drop` before entering
    it.  os.scandir: an entry's type comes with the listing, so a file costs no stat, and a
    subdirectory's resolved path is its parent's plus its name (a symlinked directory is
    not entered, as os.walk does not) — no realpath per directory.  A warm whole-tree run
    is mostly this walk (33k sources in 5k directories)."""
    stack = [(top, real)]
    while stack:
        d, rd = stack.pop()
        try:
            it = os.scandir(d)
        except OSError:
            continue
        with it:
            for e in it:
                name = e.name
                try:
                    if e.is_dir(follow_symlinks=False):
                        r = rd + "/" + name
                        if r not in drop:
                            stack.append((e.path, r))
                    elif name.endswith(SOURCE_SUFFIXES) and e.is_file():
                        if files and rd + "/" + name in files:
                            continue
                        path = e.path
                        out.add(path[2:] if path.startswith("./") else path)  # as Path("./x") prints
                except OSError:
                    continue


def included_sources(p: Path) -> list[str]:
    """The .c files a file includes textually (`#include "percpu-vm.c"`), relative to its
    directory, recursively, each once — in both branches of an #if, as a directory scan
    would have both files.  A file named on the command line is one translation unit:
    without them, mm/percpu.c alone calls pcpu_create_chunk() and pcpu_populate_chunk()
    into nothing and pcpu_alloc_mutex -> fs_reclaim is lost."""
    out: list[str] = []
    seen = {os.path.normpath(str(p))}
    work = [p]
    while work:
        cur = work.pop()
        try:
            names = c_includes(_read(cur))
        except OSError:
            continue
        for name in names:
            inc = os.path.normpath(os.path.join(os.path.dirname(str(cur)), name))
            if inc not in seen and os.path.isfile(inc):
                seen.add(inc)
                out.append(inc)
                work.append(Path(inc))
    return out


@lru_cache(maxsize=65536)
def _realpath(d: str) -> str:
    """os.path.realpath of an absolute, normalised directory, built on its parent's: one
    lstat per directory instead of one per component of every path."""
    parent, name = os.path.split(d)
    if not name or parent == d or os.path.islink(d):
        return os.path.realpath(d)
    return os.path.join(_realpath(parent), name)


def _resolved(p: Path) -> str:
    """p absolute with its directories' symlinks resolved (the last component as named, as
    _walk meets it)."""
    d, name = os.path.split(os.path.abspath(p))
    return os.path.join(_realpath(d), name)


@lru_cache(maxsize=65536)
def _rel_dir(d: str, root: str) -> str | None:
    """Directory d (absolute) relative to root (absolute), symlinks resolved, with a
    trailing "/" ("" for root itself); None outside it."""
    full = _realpath(d).rstrip("/") + "/"
    base = _realpath(root).rstrip("/") + "/"
    return full[len(base):] if full.startswith(base) else None


@dataclass(slots=True)
class SourceSet:
    """The sources a scan covers, hashed once: what the fact and result caches key on."""

    files: list[Path]
    rels: dict[str, str]        # str(path) -> path relative to the root
    digests: dict[str, str]     # relative path -> content digest
    sizes: dict[str, int]       # str(path) -> bytes
    guards: dict[str, str]      # guard classes known in this tree (kb + its DEFINE_GUARDs)

    def key(self) -> str:
        """One digest over every (path, content) pair and the tree's guard table."""
        import hashlib

        h = hashlib.sha1()
        for rel in sorted(self.digests):
            h.update(f"{rel}\0{self.digests[rel]}\n".encode())
        h.update(repr(sorted(self.guards.items())).encode())
        return h.hexdigest()


def source_set(paths: list[Path], root: Path, exclude: Iterable[Path] = (),
               cache_dir: Path | None = None, warn=None) -> SourceSet:
    """Hash every source once.  With a cache directory, a file whose stat signature (device,
    inode, size, mtime, ctime) is as recorded is not read again: a warm run over an
    unchanged whole tree stats 47k files instead of reading 1.2 GB."""
    import json
    import time

    from lockgraph.cache import SETTLED_NS, FactCache, code_digest, digest

    files = iter_sources(paths, exclude)
    guards = dict(kb.BUILTIN_GUARDS)
    digests: dict[str, str] = {}
    sizes: dict[str, int] = {}
    rels: dict[str, str] = {}
    cache = FactCache(cache_dir, "", warn) if cache_dir is not None else None
    # the guard table a file declares depends on the scanner's code, not only on the file
    tree = f"{root.resolve()}\0{code_digest('facts')}"
    known = cache.signatures(tree) if cache else {}
    fresh: list[tuple[str, str, str, str]] = []
    now = time.time_ns()
    top = os.path.abspath(root)
    dirs: dict[str, str | None] = {}   # directory as the walk named it -> relative to root
    for p in files:
        d, name = os.path.split(str(p))
        if d in dirs:
            base = dirs[d]
        else:
            base = dirs[d] = _rel_dir(os.path.abspath(d), top)
        rel = str(p) if base is None else base + name
        rels[str(p)] = rel
        st = os.stat(p)
        sig = f"{st.st_dev}:{st.st_ino}:{st.st_size}:{st.st_mtime_ns}:{st.st_ctime_ns}"
        row = known.get(rel)
        if row is not None and row[0] == sig:
            dig, declared = row[1], (json.loads(row[2]) if row[2] else {})
            size = st.st_size
        else:
            data = p.read_bytes()
            dig, size = digest(data), len(data)
            declared = {}
            if b"DEFINE_GUARD" in data or b"DEFINE_LOCK_GUARD" in data:
                declared = declared_guards(data.decode("utf-8", errors="replace"))
            if cache and st.st_mtime_ns < now - SETTLED_NS:
                fresh.append((rel, sig, dig, json.dumps(declared, sort_keys=True) if declared else ""))
        digests[rel] = dig
        sizes[str(p)] = size
        guards.update(declared)
    if cache is not None:
        cache.put_signatures(tree, fresh)
        cache.close()
    return SourceSet(files, rels, digests, sizes, guards)
