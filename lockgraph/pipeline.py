"""The static half joined to the runtime half: scan → solve → merge graph → checks → verdicts.

Runtime names carry lockdep's `#N` registration versions, static names cannot (they depend
on boot order), so a static class is merged onto a runtime node when exactly one runtime
name equals it modulo `#N`; otherwise it keeps its own node.
"""

from __future__ import annotations

import gc
import os
import re
from contextlib import contextmanager
from functools import lru_cache
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lockgraph.checks import CheckInput, CheckResult, run_checks
from lockgraph.graph import FS_RECLAIM, add_edge, build_graph
from lockgraph.model import Edge, Evidence, Report
from lockgraph.contexts import Context, mark_contexts

if TYPE_CHECKING:  # the static half is imported only when a source tree is scanned
    from lockgraph.static.facts.config import Config
    from lockgraph.static.sources import SourceSet
    from lockgraph.static.slab_roots import Root
    from lockgraph.static.solve import Solved
    from lockgraph.verdicts import RootVerdict

_VERSION = re.compile(r"#\d+")


@contextmanager
def collector_paused():
    """No cyclic garbage collection inside: the solve and the checks build tens of millions
    of long-lived objects (32 M on the whole tree) and almost no cyclic garbage, yet every
    full collection walks all of them — a fifth of the whole-tree solve (308 s -> 248 s,
    same edges, same peak RSS).  Reference counting still frees the rest.  Not around the
    facts phase: its forked parsers inherit the collector and make lark garbage."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


@dataclass(slots=True)
class StaticScan:
    solved: Solved
    root: Path
    config: Config | None
    files: int
    excluded: list[str] = field(default_factory=list)


def kernel_root(paths: list[Path]) -> Path:
    """The tree the paths belong to (a directory with Kconfig and MAINTAINERS), else cwd."""
    for p in paths:
        q = p.resolve()
        for cand in (q, *q.parents):
            if (cand / "Kconfig").is_file() and (cand / "MAINTAINERS").is_file():
                return cand
    if len(paths) == 1 and paths[0].is_dir():
        return paths[0].resolve()
    return Path.cwd()


@dataclass(slots=True)
class Sources:
    """What a static run reads, hashed once; the result cache keys on it."""

    root: Path
    config: Config | None
    files: SourceSet
    excluded: list[str] = field(default_factory=list)   # tree directories not scanned

    def key(self, *parts: str) -> str:
        """A whole command's identity: these exact sources, .config, analyser and options.

        Equal keys mean byte-identical output, so a repeated run over an unchanged tree
        replays the stored result instead of loading every file's facts and re-solving."""
        import hashlib

        from lockgraph.cache import code_digest
        from lockgraph.static.facts.scan import fact_key

        h = hashlib.sha1()
        for p in (fact_key(self.config, self.files.guards), code_digest(), self.files.key(), str(self.root),
                  self.config.source if self.config else "", *parts):
            h.update(p.encode() + b"\0")
        return h.hexdigest()


def target_arch(cfg: Config | None, arch: str | None) -> str:
    """--arch, else the architecture a .config selects, else x86 (the common target)."""
    from lockgraph.static.sources import ARCH_SYMBOLS, DEFAULT_ARCH

    if arch:
        return arch
    if cfg is not None:
        chosen = [d for d, sym in ARCH_SYMBOLS.items() if cfg.value(f"CONFIG_{sym}") == "y"]
        # CONFIG_X86 and CONFIG_X86_64 differ; ARM64 configs do not set CONFIG_ARM
        if len(chosen) == 1:
            return chosen[0]
    return DEFAULT_ARCH


def collect_sources(paths: list[Path], config: Path | None = None,
                    root: Path | None = None, arch: str | None = None,
                    cache_dir: Path | None = None, warn=None) -> Sources:
    from lockgraph.static.facts.config import load_config
    from lockgraph.static.kbuild import Kbuild
    from lockgraph.static.sources import excluded_dirs, source_set

    cfg = load_config(config, warn) if config else None
    base = root or kernel_root(paths)
    tree = kernel_root(paths)
    skip = excluded_dirs(tree, target_arch(cfg, arch)) if _is_tree(tree) else []
    if cfg is not None and _is_tree(tree):
        # one build: what its Makefiles never compile is not scanned (static/kbuild.py)
        skip += Kbuild(cfg).unbuilt(_walked(paths, tree, skip), skip)
    return Sources(base, cfg, source_set(paths, base, skip, cache_dir, warn),
                   sorted((str(d.relative_to(tree)) for d in skip), key=lambda s: s.split("/")))


def _walked(paths: list[Path], tree: Path, skip: list[Path]) -> list[Path]:
    """The directories a scan of `paths` walks (inside the tree, not already excluded)."""
    out = [p.resolve() for p in paths if p.is_dir()]
    out = [q for q in out if q == tree or tree in q.parents]
    return [d for d in out if not any(s == d or s in d.parents for s in skip)]


def _is_tree(p: Path) -> bool:
    return (p / "Kconfig").is_file() and (p / "MAINTAINERS").is_file()


def scan(paths: list[Path], config: Path | None = None, root: Path | None = None,
         jobs: int = 1, cache_dir: Path | None = None, progress=None, warn=None,
         sources: Sources | None = None, arch: str | None = None) -> StaticScan:
    from lockgraph.progress import lap
    from lockgraph.static.facts.scan import scan_paths
    from lockgraph.static.solve import solve

    src = sources or collect_sources(paths, config, root, arch, warn=warn)
    lap("facts (cached or parsed)")
    files = scan_paths(paths, src.root, src.config, jobs=jobs, progress=progress,
                       cache_dir=cache_dir, warn=warn, sources=src.files)
    lap("solve")
    with collector_paused():
        solved = solve(files, one_build=src.config is not None)
    return StaticScan(solved, src.root, src.config, len(files), src.excluded)


def display(path: str, base: Path) -> str:
    """Paths relative to the scanned root, or to the cwd for files outside it."""
    if not path.startswith("/"):
        return path  # facts already carry root-relative paths; no Path object needed
    return _display_abs(path, base, os.getcwd())


@lru_cache(maxsize=65536)
def _display_abs(path: str, base: Path, cwd: str) -> str:
    p = Path(path)
    for b in (base, Path(cwd)):
        try:
            return str(p.relative_to(b))
        except ValueError:
            pass
    return path


def name_mapper(runtime_nodes: set[str]):
    """static class -> its graph node: the one runtime name equal to it modulo `#N`, else
    itself.  A dict lookup: the whole tree asks it millions of times."""
    by_base: dict[str, set[str]] = {}
    for n in runtime_nodes:
        by_base.setdefault(_VERSION.sub("", n), set()).add(n)
    merged = {b: next(iter(c)) for b, c in by_base.items() if len(c) == 1}
    return lambda static: merged.get(static, static)


class StaticEvidence:
    """An Edge of the static scan whose stack is searched on first read.

    It quacks like model.Edge: the graph holds one per witness of every static edge (the
    whole tree has millions), and only the evidence a finding shows needs its call chain."""

    __slots__ = ("src", "dst", "file", "line", "_edge", "_k", "_base", "_stack")
    certain = True
    source = "static"
    report = -1

    def __init__(self, src: str, dst: str, edge, k: int, base: Path) -> None:
        step = edge.raw[k][0]
        self.src, self.dst, self.file, self.line = src, dst, display(step.file, base), step.line
        self._edge, self._k, self._base, self._stack = edge, k, base, None

    @property
    def stack(self) -> tuple[str, ...]:
        if self._stack is None:  # this witness's chain only: the others may never be read
            step, via = self._edge.witness(self._k)
            stack = tuple(s.label(display(s.file, self._base)) for s in (step, *via))
            cfg = sorted(self._edge.configs_of(self._k))
            self._stack = stack + (("configs: " + ", ".join(cfg),) if cfg else ())
        return self._stack

    @property
    def may(self) -> str:
        """The ops-table call this witness goes through ("" for none): a may-path."""
        return self._edge.indirect_hop(self._k)

    def to_json(self) -> dict[str, Any]:
        return Edge.to_json(self)  # type: ignore[arg-type]


class LazyEvidence:
    """The evidence list of a static edge in the graph: its StaticEvidence objects are made
    when the list is first read (a whole-tree graph has millions of edges, a check reads
    the evidence of a few hundred)."""

    __slots__ = ("_edge", "_a", "_b", "_base", "_items")

    def __init__(self, edge, a: str, b: str, base: Path) -> None:
        self._edge, self._a, self._b, self._base, self._items = edge, a, b, base, None

    def _load(self) -> list:
        if self._items is None:
            self._items = _witnesses(self._edge, self._a, self._b, self._base)
        return self._items

    def __len__(self) -> int:
        return len(self._load())

    def __iter__(self):
        return iter(self._load())

    def __getitem__(self, k):
        return self._load()[k]

    def append(self, e) -> None:
        self._load().append(e)


def _witnesses(edge, a: str, b: str, base: Path) -> list[StaticEvidence]:
    """One StaticEvidence per call site: a call reaching the lock through two targets (an
    ops table) is one place in the code, whatever the chains behind it."""
    seen: set[tuple[str, int]] = set()
    out = []
    for k, (step, _) in enumerate(edge.raw):
        if (step.file, step.line) not in seen:
            seen.add((step.file, step.line))
            out.append(StaticEvidence(a, b, edge, k, base))
    return out


def add_static_edges(G, S: Solved, name, base: Path) -> None:
    """Every static edge into G: onto a runtime edge its witnesses are appended, a new edge
    gets a LazyEvidence list (the same evidence as adding them one by one)."""
    fresh: dict[tuple[str, str], dict] = {}
    for (a, b), e in sorted(S.edges.items()):
        na, nb = name(a), name(b)
        data = G[na][nb] if G.has_edge(na, nb) else fresh.get((na, nb))
        if data is not None:  # a runtime edge (or, defensively, a second class of one name)
            if isinstance(data["evidence"], LazyEvidence):
                data["evidence"] = list(data["evidence"])
            data["evidence"].extend(_witnesses(e, na, nb, base))
            data["certain"] = True
        else:
            fresh[(na, nb)] = {"evidence": LazyEvidence(e, na, nb, base), "certain": True}
    G.add_edges_from((a, b, d) for (a, b), d in fresh.items())


def reclaim_root_contexts(S: Solved, roots: list[Root], name, base: Path) -> tuple[
        list[Edge], dict[str, list[Context]]]:
    """Everything a reclaim root takes is taken under fs_reclaim (docs/kernel-facts.md §5)."""
    from lockgraph.static.facts.kb import NO_EDGE_KINDS

    edges: list[Edge] = []
    ctx: dict[str, list[Context]] = {}
    for r in roots:
        if r.kind != "reclaim":
            continue
        for fid in r.fids:
            for cls, w in sorted(S.takes.get(fid, {}).items()):
                if cls.startswith("@param") or cls == FS_RECLAIM or S.kinds.get(cls) in NO_EDGE_KINDS:
                    continue
                steps = S.chain(fid, cls)
                if not steps:
                    continue
                last = steps[-1]
                stack = tuple(s.label(display(s.file, base)) for s in steps)
                n = name(cls)
                ev = Evidence(display(last.file, base), last.line,
                              f"'{n}' taken under reclaim root {r.function}()", stack)
                ctx.setdefault(n, []).append(Context(r.function, ev))
                if w.edge:
                    edges.append(Edge(FS_RECLAIM, n, True, "reclaim-root",
                                      display(last.file, base), last.line, -1, stack))
    return edges, ctx


@collector_paused()  # check and review alike
def run(reports: list[Report], dtors: tuple[str, ...], st: StaticScan | None) -> CheckResult:
    """Every registered check on the merged graph; root verdicts when a source tree was scanned."""
    from lockgraph.progress import lap

    lap("graph")
    G = build_graph(reports)
    dtor_ctx, reclaim_ctx = mark_contexts(reports, dtors)
    inp = CheckInput(G, reports, dtor_ctx, reclaim_ctx)
    if reports:
        inp.blind_spots.append("runtime evidence only: code paths that did not run are not covered")
    if st is not None:
        from lockgraph.static.slab_roots import find_roots
        from lockgraph.verdicts import judge

        S = st.solved
        name = name_mapper(set(G.nodes))
        seen: set[tuple] = set()
        add_static_edges(G, S, name, st.root)
        lap("roots and reclaim contexts")
        roots = find_roots(S, dtors)
        redges, rctx = reclaim_root_contexts(S, roots, name, st.root)
        for e in redges:
            add_edge(G, e, seen)
        for k, v in rctx.items():
            reclaim_ctx.setdefault(k, []).extend(v)
        lap("verdicts")
        inp.roots, inp.solved, inp.name = judge(S, roots, G, name), S, name
        if not S.funcs:
            inp.blind_spots.append("no C functions found in the scanned sources")
    lap("checks")
    findings = run_checks(inp)
    return CheckResult(findings, G, dtor_ctx, reclaim_ctx, inp.cycles_capped, inp.blind_spots, inp.roots,
                       st is not None, st.files if st else 0)
