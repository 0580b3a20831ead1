"""Scanning a tree of raw kernel C into per-file facts (the static half's ingestion).

Per file: functions (walked with their held-lock sets, or flagged "structure unknown"),
static lock definitions, designated initialisers (ops tables, kmem_cache_args, member lock
initialisers), global variable types and guard classes the tree declares.  Files are
independent, so the result of one file can be computed (and later cached) on its own.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from lockgraph.static.facts import kb
from lockgraph.static.facts.config import Config
from lockgraph.static.facts.cparse import BodyParseError, flat_atoms, parse_body
from lockgraph.static.facts.fastpath import call_facts, structure_matters, tests_flag
from lockgraph.static.facts.prepass import FileText, prepare
from lockgraph.static.facts.structs import match_brace, struct_fields, struct_typedefs
from lockgraph.static.facts.walk import (FuncFacts, ScanContext, local_types, parse_params,
                                         reassigned_gfp, walk_function)

if TYPE_CHECKING:
    from lockgraph.static.sources import SourceSet

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


_INCLUDE_C = re.compile(r'^[ \t]*#[ \t]*include[ \t]*"([^"\n]+\.c)"', re.M)


def c_includes(src: str) -> list[str]:
    """The .c files a source includes, as written (not those in comments)."""
    if ".c\"" not in src:
        return []
    from lockgraph.static.facts.prepass import strip_comments

    code = strip_comments(src)  # blanks comments, and string contents too: match on src
    return [m.group(1) for m in _INCLUDE_C.finditer(src) if "include" in code[m.start():m.end()]]


def _read(p: Path) -> str:
    return p.read_bytes().decode("utf-8", errors="replace")


def _scan_one(job: tuple[str, str, ScanContext]) -> FileFacts:
    path, rel, ctx = job
    try:
        return scan_file(rel, _read(Path(path)), ctx)
    except RecursionError:
        return FileFacts(rel, error="recursion limit while parsing")


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

    if sources is None:
        from lockgraph.static.sources import source_set

        sources = source_set(paths, root)
    ss = sources
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
