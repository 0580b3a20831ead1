"""Scanning a tree of raw kernel C into per-file facts (the static half's ingestion).

Per file: functions (walked with their held-lock sets, or flagged "structure unknown"),
static lock definitions, designated initialisers (ops tables, kmem_cache_args, member lock
initialisers), global variable types and guard classes the tree declares.  Files are
independent, so the result of one file can be computed (and later cached) on its own.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from lockgraph.static.facts import kb
from lockgraph.static.facts.config import Config
from lockgraph.static.facts.cparse import BodyParseError, flat_atoms, parse_body
from lockgraph.static.facts.fastpath import call_facts, structure_matters, tests_flag
from lockgraph.static.facts.prepass import FileText, prepare
from lockgraph.static.facts.structs import match_brace, struct_fields, struct_typedefs
from lockgraph.static.facts.walk import (FuncFacts, ScanContext, local_types, parse_params,
                                         reassigned_gfp, walk_function)

_DEFINE = re.compile(r"\b(" + "|".join(kb.DEFINE_PRIMS) + r")\s*\(\s*(\w+)\s*[,)]")
_PERCPU_DEF = re.compile(r"\bDEFINE_PER_CPU(?:_ALIGNED|_SHARED_ALIGNED)?\s*\(\s*((?:struct\s+)?\w+)\s*,\s*(\w+)\s*\)")
_GLOBAL = re.compile(r"^(?:static\s+|extern\s+)?(?:const\s+)?struct\s+(\w+)\s+(\*?\s*\w+)\s*(?:\[[^\]]*\])?\s*[;=]", re.M)
_INIT_OPEN = re.compile(r"=\s*\{")
_DESIG_OR_BRACE = re.compile(r"\.\s*(\w+)\s*=(?!=)\s*|[{}]")
_VAR_BEFORE = re.compile(
    r"(?:DEFINE_PER_CPU\w*\s*\(\s*(?:struct\s+)?(?P<pt>\w+)\s*,\s*(?P<pv>\w+)\s*\)"
    r"|(?:struct\s+(?P<t>\w+)\s+)?\**\s*(?P<v>\w+)\s*(?:\[[^\]]*\])*)\s*$")
_GUARD_DEF = re.compile(
    r"\bDEFINE_(?:GUARD|LOCK_GUARD_[012])\s*\(\s*(\w+)\s*,(?:[^,()]|\([^()]*\))*,\s*(\w+)\s*\(")
_GUARD_COND = re.compile(r"\bDEFINE_(?:GUARD_COND|LOCK_GUARD_1_COND)\s*\(\s*(\w+)\s*,\s*(\w+)\s*,\s*(\w+)\s*\(")

SOURCE_SUFFIXES = (".c", ".h")


@dataclass(slots=True)
class Desig:
    """`.member = value` inside an initialiser of variable `var` (of struct `type`)."""

    var: str
    type: str
    member: str
    value: str
    line: int
    outer: str = ""     # members enclosing it in a nested initialiser: "ops" in {.ops = {.free = f}}


@dataclass(slots=True)
class FileFacts:
    path: str
    functions: list[FuncFacts] = field(default_factory=list)
    defines: list[tuple[str, str, int]] = field(default_factory=list)    # (ident, kind, line)
    desig: list[Desig] = field(default_factory=list)
    globals: dict[str, str] = field(default_factory=dict)                 # name -> type
    guards: dict[str, str] = field(default_factory=dict)
    conds: dict[int, tuple[str, ...]] = field(default_factory=dict)       # line -> CONFIG conds
    fields: dict[str, dict[str, str]] = field(default_factory=dict)       # struct -> member -> struct
    typedefs: dict[str, str] = field(default_factory=dict)                # typedef name -> struct
    includes: list[str] = field(default_factory=list)   # `#include "x.c"`, relative to the root
    unbalanced: bool = False
    error: str = ""
    choices: int = 0      # CONFIG `#if` groups kept whole (prepass.resolve_conditionals)
    misaligned: int = 0   # CONFIG groups not on statement boundaries: one branch taken


def declared_guards(text: str) -> dict[str, str]:
    """Guard classes a file declares: DEFINE_GUARD(name, type, lockfn(...), ...)."""
    out: dict[str, str] = {}
    if "DEFINE_GUARD" not in text and "DEFINE_LOCK_GUARD" not in text:
        return out  # most files: two substring scans instead of two regex passes
    for m in _GUARD_DEF.finditer(text):
        if m.group(2) in kb.PRIMITIVES:
            out[m.group(1)] = m.group(2)
    for m in _GUARD_COND.finditer(text):
        if m.group(3) in kb.PRIMITIVES:
            out[f"{m.group(1)}_{m.group(2)}"] = m.group(3)
    return out


def _designated(ft: FileText, out: list[Desig]) -> None:
    text = ft.text
    for m in _INIT_OPEN.finditer(text):
        start = m.end() - 1
        end = match_brace(text, start, start + 200000)
        if end < 0:
            continue
        before = text[max(0, m.start() - 200):m.start()]
        vm = _VAR_BEFORE.search(before)
        var = typ = ""
        if vm:
            var = vm.group("pv") or vm.group("v") or ""
            typ = vm.group("pt") or vm.group("t") or ""
        body = text[start:end]
        nest: list[str] = []   # enclosing members: "" for a brace no designator opened
        for d in _DESIG_OR_BRACE.finditer(body):
            if d.group(0) == "{":
                nest.append("")
                continue
            if d.group(0) == "}":
                if nest:
                    nest.pop()
                continue
            vstart = d.end()
            if body.startswith("{", vstart):
                nest.append(d.group(1))
                continue
            depth2 = 0
            k = vstart
            while k < len(body):
                c = body[k]
                if c in "({[":
                    depth2 += 1
                elif c in ")}]":
                    if depth2 == 0:
                        break
                    depth2 -= 1
                elif c == "," and depth2 == 0:
                    break
                k += 1
            value = " ".join(body[vstart:k].split())
            out.append(Desig(var, typ, d.group(1), value, ft.line_of(start + d.start()),
                             ".".join(x for x in nest if x)))


def scan_file(path: str, src: str, ctx: ScanContext, fast: bool = True) -> FileFacts:
    """The facts of one file.  `fast=False` sends the bodies without structure through
    flat_atoms and the walker instead of fastpath.call_facts: the reference the fast path
    is checked against (scripts/compare-fastpath, tests/test_fastpath.py)."""
    ft = prepare(path, src, ctx.config)
    ff = FileFacts(path, unbalanced=ft.unbalanced, choices=ft.cond.choices,
                   misaligned=ft.cond.misaligned)
    ff.includes = [os.path.normpath(os.path.join(os.path.dirname(path), n)) for n in c_includes(src)]
    text = ft.text
    # substring tests first: a regex starting with \b is tried at every offset of the file
    for m in _DEFINE.finditer(text) if any(d in text for d in kb.DEFINE_PRIMS) else ():
        ff.defines.append((m.group(2), kb.DEFINE_PRIMS[m.group(1)], ft.line_of(m.start())))
    for m in _PERCPU_DEF.finditer(text) if "DEFINE_PER_CPU" in text else ():
        typ = " ".join(m.group(1).split())
        ff.globals[m.group(2)] = typ
        if typ in ("spinlock_t", "raw_spinlock_t", "struct mutex", "local_lock_t", "rwlock_t"):
            ff.defines.append((m.group(2), "percpu:" + typ, ft.line_of(m.start())))
    for m in _GLOBAL.finditer(text):
        ff.globals[m.group(2).lstrip("* ")] = "struct " + m.group(1)
    ff.guards = declared_guards(text)
    ff.typedefs = struct_typedefs(text)
    ff.fields = struct_fields(text, ff.typedefs)
    _designated(ft, ff.desig)
    walked = []
    for fn in ft.functions:
        facts, again = _function_facts(fn, text, ft, path, ctx, fast)
        ff.functions.append(facts)
        walked.append(again)
    _rewalk_with_effects(ff, walked, ctx)
    # CONFIG conditions of the lines that carry events (evidence shows them) and of the
    # definitions (a call may reach another file's definition of a conditional one)
    for f in ff.functions:
        c = ft.cond.at(f.line)
        if c:
            ff.conds[f.line] = c
        for ev in (*f.acqs, *f.allocs, *f.calls):
            c = ft.cond.at(ev.line)
            if c:
                ff.conds[ev.line] = c
    return ff




def _function_facts(fn, text: str, ft, path: str, ctx: ScanContext, fast: bool):
    """One function's facts, and how to walk it again with what its same-file callees
    release or hold: (statements, tracked gfp variables, locals, body, first line); a
    body without lock primitives holds nothing of its own and is parsed only when it calls
    a function with a lock effect (statements None)."""
    body = text[fn.body_start + 1:fn.body_end - 1]
    first = ft.line_of(fn.body_start + 1)
    facts = FuncFacts(fn.name, path, fn.line, fn.is_static, parse_params(fn.params),
                      local_types(body), annotations=fn.annotations)
    stmts: list[tuple] | None = None
    tracked = reassigned_gfp(body, facts.params, facts.locals)
    needs = structure_matters(body) or tests_flag(body, frozenset(n for _, n in facts.params if n))
    if needs or tracked:
        try:
            stmts = parse_body(body, first)
        except BodyParseError as exc:
            tracked = frozenset()  # without its branches a mask would cover every path
            if needs:
                facts.structure = f"unknown (grammar stopped at line {exc.line})"
                stmts = flat_atoms(body, first)
    if not needs and stmts is None:
        # No lock, guard or scope primitive: every held set in this body is empty, so
        # its call list (in order) is all the analysis needs.  A body parsed only for
        # its gfp reassignments is never a blind spot when the grammar stops.
        facts.structure = "not needed"
        if not fast:
            stmts = flat_atoms(body, first)
    again = None
    try:
        if stmts is not None:
            walk_function(facts, stmts, ctx, tracked)
        elif not call_facts(body, first, facts, ctx):
            walk_function(facts, flat_atoms(body, first), ctx)
        again = (stmts if needs else None, tracked, facts.locals, body, first)
    except Exception as exc:  # an analyser bug must cost one function, never the scan
        facts = FuncFacts(fn.name, path, fn.line, fn.is_static, facts.params, facts.locals,
                          annotations=fn.annotations,
                          structure=f"unknown (analyser error {type(exc).__name__})")
        try:
            walk_function(facts, flat_atoms(body, first), ctx)
        except Exception:
            pass
    _trim(facts)
    return facts, again

#: Rounds of re-walking the callers of functions with lock effects: a caller that thereby
#: releases its own caller's lock, or returns holding one, has effects for the next round
#: (wrappers of wrappers).
EFFECT_ROUNDS = 3


def _rewalk_with_effects(ff: FileFacts, walked: list, ctx: ScanContext) -> None:
    """Walk again the functions that call a same-file function with a lock effect: it
    releases their lock on every path (wake_futex_pi() drops the wait_lock
    futex_unlock_pi() took) or returns holding one (console_list_lock()).  Their first
    walk kept the lock held after a release — a false edge to everything taken next — and
    did not hold the wrapper's lock — no edge at all.  Callees in other files are not
    known while one file is scanned."""
    file_locks = {n for n, _, _ in ff.defines} | set(ff.globals)
    done: dict[str, tuple] = {}
    for _ in range(EFFECT_ROUNDS):
        effects = lock_effects(ff.functions, file_locks)
        # a walk reads only the effects of the names it calls: walk again only the callers
        # of a name whose effect is new or changed since the last round
        changed = {n for n in effects.keys() | done.keys() if effects.get(n) != done.get(n)}
        if not changed:
            return
        done = effects
        for k, f in enumerate(ff.functions):
            again = walked[k]
            if again is None or not any(not c.member and c.name in changed for c in f.calls):
                continue
            stmts, tracked, local, body, first = again
            structure = f.structure
            if stmts is None:  # a wrapper's lock is held in it from the call on
                try:
                    stmts = parse_body(body, first)
                    structure = "parsed"
                except BodyParseError as exc:
                    stmts = flat_atoms(body, first)
                    structure = f"unknown (grammar stopped at line {exc.line})"
                walked[k] = (stmts, tracked, local, body, first)
            g = FuncFacts(f.name, f.file, f.line, f.static, f.params, dict(local),
                          annotations=f.annotations, structure=structure)
            try:
                walk_function(g, stmts, ctx, tracked, effects)
            except Exception:  # keep the first walk, as scan_file would
                continue
            _trim(g)
            ff.functions[k] = g


def lock_effects(functions: list[FuncFacts], file_locks: set[str]) -> dict[str, tuple]:
    """name -> (parameter names, locks released on every path, locks held at every return)
    of the file's functions whose effect a caller can name: a parameter's lock, a fixed
    class, or one of the file's own locks.  A name defined twice in the file (under #if) is
    left out."""
    count: dict[str, int] = {}
    for f in functions:
        count[f.name] = count.get(f.name, 0) + 1
    out = {}
    for f in functions:
        if not (f.releases or f.holds) or count[f.name] > 1:
            continue
        params = tuple(n for _, n in f.params)

        def named(lk) -> bool:
            return bool(lk.fixed or lk.root in params or lk.root in file_locks)
        releases = tuple(lk for lk in f.releases if named(lk))
        holds = tuple(h for h in f.holds if named(h.lock))
        if releases or holds:
            out[f.name] = (params, releases, holds)
    return out


_WORD = re.compile(r"[A-Za-z_]\w*")


def _trim(f: FuncFacts) -> None:
    """Keep only the local types and aliases a later stage can ask about.

    The solver consults them for lock expressions, gfp expressions and call arguments; a
    whole-tree scan keeps 645k functions in memory, so the rest is dropped here.
    """
    used: set[str] = set()
    for ev in (*f.calls, *f.allocs, *f.acqs):
        for g in ev.gates:  # "may block" tests name gfp variables (walk.blocking_gate)
            used.update(_WORD.findall(g))
    for _, _, value, _ in f.assigns:
        used.add(value)   # `p->fn = local` stores no global function of that name
    for c in f.calls:
        used.add(c.name)  # a call through a local function pointer must stay indirect
        for a in c.args:
            used.update(_WORD.findall(a))
        if c.base:
            used.add(_WORD.match(c.base).group(0))
    for a in f.acqs:
        used.add(a.lock.root)
        used.update(h.lock.root for h in a.held)
    for al in f.allocs:
        used.update(_WORD.findall(al.gfp))
        used.update(_WORD.findall(al.target))
    for _, lk, _, _ in f.inits:
        used.add(lk.root)
    for lk, _ in f.asserted:
        used.add(lk.root)
    for lk, _ in f.released_unheld:
        used.add(lk.root)
    frontier = list(used)
    while frontier:  # aliases refer to other locals
        name = frontier.pop()
        for w in _WORD.findall(f.aliases.get(name, "")):
            if w not in used:
                used.add(w)
                frontier.append(w)
    f.aliases = {k: v for k, v in f.aliases.items()
                 if k in used or v.startswith("kmem_cache_create")}
    f.locals = {k: v for k, v in f.locals.items() if k in used}


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
    """C sources under `paths`; a directory walk skips `exclude` unless it was asked for.

    os.walk, pruning excluded directories before entering them and resolving directories
    rather than files: a warm whole-tree run is mostly this walk (47k files)."""
    out: set[str] = set()
    skip = [e.resolve() for e in exclude]
    files = {str(e) for e in skip if e.suffix == ".c"}   # kbuild.py: not built by the .config
    for p in paths:
        if p.is_dir():
            rp = p.resolve()
            drop = {str(e) for e in skip if not (e == rp or e in rp.parents)}
            for d, dirs, names in os.walk(p):
                if drop:
                    dirs[:] = [x for x in dirs if _real_dir(os.path.join(d, x)) not in drop]
                real = _real_dir(d) if files else ""
                for n in names:
                    full = os.path.join(d, n)
                    if files and os.path.join(real, n) in files:
                        continue
                    if n.endswith(SOURCE_SUFFIXES) and os.path.isfile(full):
                        out.add(full[2:] if full.startswith("./") else full)  # as Path("./x") prints
        elif p.is_file():
            out.add(str(p))
            out.update(included_sources(p))
    # Path order (component-wise), not string order: "a/x" before "a-b/x"
    return [Path(s) for s in sorted(out, key=lambda s: s.split("/"))]


_INCLUDE_C = re.compile(r'^[ \t]*#[ \t]*include[ \t]*"([^"\n]+\.c)"', re.M)


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


def c_includes(src: str) -> list[str]:
    """The .c files a source includes, as written (not those in comments)."""
    if ".c\"" not in src:
        return []
    from lockgraph.static.facts.prepass import strip_comments

    code = strip_comments(src)  # blanks comments, and string contents too: match on src
    return [m.group(1) for m in _INCLUDE_C.finditer(src) if "include" in code[m.start():m.end()]]


def _read(p: Path) -> str:
    return p.read_bytes().decode("utf-8", errors="replace")


def _real_dir(d: str) -> str:
    return _realpath(os.path.abspath(d))  # keyed absolute: a chdir must not change answers


@lru_cache(maxsize=65536)
def _realpath(d: str) -> str:
    return os.path.realpath(d)


def _rel(p: Path, root: Path) -> str:
    """p relative to root, both with symlinked directories resolved; else p as given."""
    full = os.path.join(_real_dir(os.path.dirname(os.path.abspath(p))), p.name)
    base = _real_dir(str(root)).rstrip("/") + "/"
    return full[len(base):] if full.startswith(base) else str(p)


def _scan_one(job: tuple[str, str, ScanContext]) -> FileFacts:
    path, rel, ctx = job
    try:
        return scan_file(rel, _read(Path(path)), ctx)
    except RecursionError:
        return FileFacts(rel, error="recursion limit while parsing")


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
    for p in files:
        rel = _rel(p, root)
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


def fact_key(config: Config | None, guards: dict[str, str]) -> str:
    """What a file's facts depend on besides its text: analyser, .config, guard classes."""
    import hashlib

    from lockgraph.cache import analyser_key

    cfg = hashlib.sha1(repr(sorted(config.values.items())).encode()).hexdigest() if config else ""
    gkey = hashlib.sha1(repr(sorted(guards.items())).encode()).hexdigest()
    return analyser_key(cfg, gkey)


def scan_paths(paths: list[Path], root: Path, config: Config | None, jobs: int = 1,
               progress=None, cache_dir: Path | None = None, warn=None,
               sources: SourceSet | None = None) -> list[FileFacts]:
    """Scan every C source under `paths`; file paths in the result are relative to `root`.

    Files are independent: with jobs > 1 they are scanned by a process pool, largest
    first; the result is sorted by path, so it does not depend on the number of workers
    or on which files came from the cache.
    """
    from lockgraph.cache import FactCache

    ss = sources or source_set(paths, root)
    files, rels, digests, sizes, guards = ss.files, ss.rels, ss.digests, ss.sizes, ss.guards
    sctx = ScanContext(config, guards)
    if progress is not None:
        progress.begin(len(files), sum(sizes.values()))
    size_of = {rels[k]: v for k, v in sizes.items()}
    cache = None
    if cache_dir is not None:
        cache = FactCache(cache_dir, fact_key(config, guards), warn)
    out: list[FileFacts] = []
    work = []
    for p in sorted(files, key=lambda q: -sizes[str(q)]):
        rel = rels[str(p)]
        hit = cache.get(rel, digests[rel]) if cache else None
        if hit is not None:
            out.append(hit)
            if progress is not None:
                progress.advance(size_of.get(hit.path, 0))
        else:
            work.append((str(p), rel, sctx))
    pending: list[tuple[str, str, FileFacts]] = []

    def done(ff: FileFacts) -> None:
        out.append(ff)
        if cache is not None:
            pending.append((ff.path, digests[ff.path], ff))
            if len(pending) >= 64:
                cache.put_many(pending)
                pending.clear()
        if progress is not None:
            progress.advance(size_of.get(ff.path, 0))

    if jobs > 1 and len(work) > 1:
        import multiprocessing as mp

        ctx = mp.get_context("fork")
        with ctx.Pool(jobs) as pool:
            for ff in pool.imap_unordered(_scan_one, work, chunksize=4):
                done(ff)
    else:
        for job in work:
            done(_scan_one(job))
    if cache is not None:
        cache.put_many(pending)
        cache.prune(digests)
        cache.close()
    return sorted(out, key=lambda f: f.path)
