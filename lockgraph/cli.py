"""Command line: options in, core called, renderer out, exit code.

Besides that it owns what only a terminal session has: reading stdin (`-`), progress on
stderr, one-line warnings and errors, and writing --svg/--png/--write-baseline files.

Exit codes: 0 no violation, 1 violations (error findings), 2 unusable input or usage
error, 3 internal error.  Errors are one line on stderr: `path:line: error: …`.
"""

from __future__ import annotations

import os
import sys
from enum import Enum
from pathlib import Path
from typing import List, Optional

import typer

from lockgraph import __version__
from lockgraph.errors import ExitCode, LockgraphError
from lockgraph.model import Diagnostic, Report
from lockgraph.progress import lap

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  context_settings={"help_option_names": ["-h", "--help"]},
                  help="Lock-dependency verifier for the Linux kernel: lockdep logs into one "
                       "lock graph, leaf-lock verdicts for slab destructors and reclaim.")


class Format(str, Enum):
    text = "text"
    json = "json"


class ScanFormat(str, Enum):
    """`scan` formats: `edges` is one tab-separated line per lock-class edge, streamed."""

    text = "text"
    json = "json"
    edges = "edges"


class CheckFormat(str, Enum):
    """`check` formats: `checklist` is the review checklist as a 72-column plain-text mail,
    `markdown` the same for a forge; `text` stays the lockdep-like report."""

    text = "text"
    json = "json"
    markdown = "markdown"
    checklist = "checklist"
    dot = "dot"
    sarif = "sarif"


def _shown(p: Path) -> str:
    """The path as the user should see it: relative when it lies under the cwd."""
    if p.is_absolute():
        try:
            return str(p.relative_to(Path.cwd()))
        except ValueError:
            return str(p)
    return os.path.normpath(str(p))


def _err(msg: str) -> None:
    sys.stderr.write(msg.rstrip("\n") + "\n")


#: How evidence names a log read from standard input (`-`).
STDIN = "<stdin>"


def _is_stdin(p: Path) -> bool:
    return str(p) == "-"


def _ingest(logs: List[Path]) -> tuple[list[Report], list[Diagnostic], list[str], bytes]:
    """(reports, diagnostics, names as shown, the bytes of standard input if `-` was given)."""
    from lockgraph.ingest.logs import parse_bytes, parse_log, usable

    reports: list[Report] = []
    diags: list[Diagnostic] = []
    shown: list[str] = []
    stdin = b""
    if sum(map(_is_stdin, logs)) > 1:
        _err("lockgraph: error: '-' (standard input) given more than once")
        raise typer.Exit(ExitCode.USAGE)
    for p in logs:
        name = STDIN if _is_stdin(p) else _shown(p)
        shown.append(name)
        try:
            if _is_stdin(p):
                stdin = usable(typer.get_binary_stream("stdin").read(), name, "input")
                res = parse_bytes(stdin, name)
            else:
                res = parse_log(p, name)
        except LockgraphError as exc:
            _err(exc.format())
            raise typer.Exit(ExitCode.USAGE) from None
        if not res.reports:
            res.diagnostics.append(Diagnostic(name, 1, "warning", "no lockdep output found"))
        reports += res.reports
        diags += res.diagnostics
    return reports, diags, shown, stdin


def _emit_diags(diags: list[Diagnostic]) -> None:
    for d in diags:
        _err(d.format())


LogsArg = typer.Argument(..., metavar="LOG...", help="dmesg, console, journalctl, mail "
                         "excerpts, /proc/lockdep, /proc/lockdep_chains, /proc/lockdep_stats; "
                         "'-' reads standard input")
FormatOpt = typer.Option(Format.text, "--format", "-f", help="output format")


SrcOpt = typer.Option([], "--src", metavar="PATH",
                      help="kernel source tree, directory or file to scan (repeatable)")
ConfigOpt = typer.Option(None, "--config", metavar="FILE",
                         help="kernel .config: the one build it describes (default: every "
                              "configuration, both branches of each CONFIG #if)")
RootOpt = typer.Option(None, "--root", metavar="DIR",
                       help="show source paths relative to DIR (default: the kernel tree)")


ArchOpt = typer.Option(None, "--arch", metavar="ARCH",
                       help="architecture whose arch/ directory a tree scan includes (default: "
                            "the one --config selects, else x86; 'all' keeps every arch/); "
                            "tools/, scripts/, usr/ and Documentation/ are never kernel code")
JobsOpt = typer.Option(0, "--jobs", "-j", metavar="N", help="parallel scan workers (default: cores)")
CacheOpt = typer.Option(None, "--cache", metavar="DIR",
                        help="fact cache directory (default: ~/.cache/lockgraph/facts)")
NoCacheOpt = typer.Option(False, "--no-cache", help="do not read or write the fact cache")
QuietOpt = typer.Option(False, "--quiet", "-q", help="no progress bar")


def _sources(src: List[Path], config: Optional[Path], root: Optional[Path],
             arch: Optional[str] = None, cache_dir: Optional[Path] = None):
    """Validate and hash the source paths (what both caches key on)."""
    from lockgraph.static.sources import ARCH_SYMBOLS
    from lockgraph.pipeline import collect_sources

    for p in src:
        if not p.exists():
            _err(f"{_shown(p)}: error: no such file or directory")
            raise typer.Exit(ExitCode.USAGE)
    if config is not None and not config.is_file():
        _err(f"{_shown(config)}: error: no such .config file")
        raise typer.Exit(ExitCode.USAGE)
    if arch is not None and arch != "all" and arch not in ARCH_SYMBOLS:
        _err(f"lockgraph: error: unknown --arch {arch!r} (one of: all, "
             + ", ".join(sorted(ARCH_SYMBOLS)) + ")")
        raise typer.Exit(ExitCode.USAGE)
    srcs = collect_sources(list(src), config, root, arch, cache_dir, _err)
    if not srcs.files.files:
        _err(f"{', '.join(_shown(p) for p in src)}: error: no C sources (.c, .h) found")
        raise typer.Exit(ExitCode.USAGE)
    return srcs


def _scan_sources(src: List[Path], srcs, jobs: int = 0, cache_dir: Optional[Path] = None,
                  quiet: bool = False):
    import os

    from lockgraph.pipeline import scan
    from lockgraph.progress import ScanProgress

    workers = jobs if jobs > 0 else (os.cpu_count() or 1)
    with ScanProgress(enabled=not quiet) as bar:
        return scan(list(src), jobs=workers, cache_dir=cache_dir, progress=bar, warn=_err,
                    sources=srcs)


class _Results:
    """Whole-command results for unchanged inputs (in the fact cache's database).

    A hit replays stdout and the exit code; diagnostics about the logs are still printed by
    the normal path, since log ingestion runs either way."""

    def __init__(self, cache_dir: Optional[Path], srcs, *parts: str) -> None:
        self.db = None
        if cache_dir is not None and srcs is not None:
            from lockgraph.cache import FactCache

            self.db = FactCache(cache_dir, "", _err)
            self.key = srcs.key(*parts)

    def replay(self) -> None:
        lap("stored result")
        hit = self.db.get_result(self.key) if self.db is not None else None
        if hit is not None:
            meta, chunks = hit
            for w in meta.get("warnings", ()):
                _err(w)
            _write_utf8(chunks)
            self.db.close()
            lap(None)
            raise typer.Exit(meta["exit"])

    def finish(self, out: str, code: int, warnings: tuple[str, ...] = ()) -> None:
        """Print the result; `warnings` (already printed) are replayed with it."""
        lap("write")
        sys.stdout.write(out)
        if self.db is not None:
            lap("store result")
            self.db.put_result(self.key, {"exit": int(code), "warnings": list(warnings)},
                               out.encode("utf-8", "surrogateescape"))
            self.db.close()
        lap(None)
        raise typer.Exit(code)


def _write_utf8(chunks) -> None:
    """Stored output (UTF-8) to stdout as a fresh run would print it: the bytes as they
    are where stdout is UTF-8, else decoded and written as text."""
    import codecs

    sys.stdout.flush()
    buf = getattr(sys.stdout, "buffer", None)
    if buf is not None and codecs.lookup(getattr(sys.stdout, "encoding", None) or "ascii").name == "utf-8":
        for c in chunks:
            buf.write(c)
        buf.flush()
        return
    dec = codecs.getincrementaldecoder("utf-8")("surrogateescape")
    for c in chunks:
        sys.stdout.write(dec.decode(c))
    sys.stdout.write(dec.decode(b"", final=True))


def _cache_dir(cache: Optional[Path], no_cache: bool) -> Optional[Path]:
    from lockgraph.cache import default_dir

    return None if no_cache else (cache or default_dir())


def _file_digest(p: Path) -> str:
    from lockgraph.cache import digest

    try:
        return digest(p.read_bytes())
    except OSError:
        return ""


def _log_digest(p: Path, stdin: bytes) -> str:
    if _is_stdin(p):
        from lockgraph.cache import digest

        return digest(stdin)
    return _file_digest(p)


def _unmatched_dtors(dtor: List[str], reports: list[Report], st, logs: bool) -> tuple[str, ...]:
    """A warning per --dtor name seen on no stack of the logs and in no scanned source: a
    typo there would otherwise silently mark nothing."""
    seen: set[str] = set()
    for r in reports:
        seen |= r.functions()
    by_name = st.solved.by_name if st is not None else {}
    where = " or ".join(w for w, on in (("on any stack in the logs", logs),
                                        ("among the scanned sources' functions", st is not None))
                        if on)
    return tuple(f"lockgraph: warning: --dtor {d} matches no function {where}; it marks nothing"
                 for d in dict.fromkeys(dtor) if d not in seen and d not in by_name)


@app.command()
def check(logs: List[Path] = typer.Argument(None, metavar="[LOG]...",
                                            help="lockdep output: dmesg, console, journalctl, "
                                                 "mail excerpts, /proc/lockdep, /proc/lockdep_chains;"
                                                 " '-' reads standard input"),
          dtor: List[str] = typer.Option([], "--dtor", metavar="FUNC",
                                         help="treat FUNC as a slab destructor (repeatable)"),
          src: List[Path] = SrcOpt, config: Optional[Path] = ConfigOpt,
          root: Optional[Path] = RootOpt, arch: Optional[str] = ArchOpt, jobs: int = JobsOpt,
          cache: Optional[Path] = CacheOpt, no_cache: bool = NoCacheOpt, quiet: bool = QuietOpt,
          fmt: CheckFormat = typer.Option(
              CheckFormat.text, "--format", "-f",
              help="text (lockdep-like report), json, markdown (review checklist), checklist "
                   "(the checklist as a 72-column mail), dot (focused lock graph), sarif"),
          svg: Optional[Path] = typer.Option(None, "--svg", metavar="FILE",
                                             help="also render the focused graph to FILE (SVG)"),
          png: Optional[Path] = typer.Option(None, "--png", metavar="FILE",
                                             help="also render the focused graph to FILE (PNG)"),
          baseline: Optional[Path] = typer.Option(None, "--baseline", metavar="FILE",
                                                  help="hide findings whose id is in FILE"),
          write_baseline: Optional[Path] = typer.Option(
              None, "--write-baseline", metavar="FILE",
              help="write the ids of the current findings to FILE")) -> None:
    """Build the lock graph from LOGs (and --src) and judge destructor and reclaim locks."""
    import shutil

    from lockgraph.baseline import apply_baseline, baseline_json, load_baseline
    from lockgraph.model import Severity
    from lockgraph.pipeline import collector_paused, run

    logs = list(logs or [])
    if not logs and not src:
        _err("lockgraph check: error: give lockdep logs, --src PATH, or both")
        raise typer.Exit(ExitCode.USAGE)
    if (svg or png) and shutil.which("dot") is None:  # before a scan that may take minutes
        _err("lockgraph: error: --svg/--png need graphviz's 'dot', which is not on PATH "
             "(Debian: apt-get install graphviz)")
        raise typer.Exit(ExitCode.USAGE)
    accepted = frozenset()
    if baseline is not None:
        try:
            accepted = load_baseline(baseline, _shown(baseline))
        except LockgraphError as exc:
            _err(exc.format())
            raise typer.Exit(ExitCode.USAGE) from None
    reports, diags, shown, stdin = _ingest(logs) if logs else ([], [], [], b"")
    _emit_diags(diags)
    if logs and not reports and not src:
        names = ", ".join(shown)
        _err(f"{names}: error: no lockdep output found; nothing to check")
        raise typer.Exit(ExitCode.USAGE)
    cache_dir = _cache_dir(cache, no_cache)
    lap("sources (stat, hash)")
    srcs = _sources(src, config, root, arch, cache_dir) if src else None
    # files written and baseline notes are effects a replayed result would not repeat
    effects = any(x is not None for x in (svg, png, baseline, write_baseline))
    keyed = srcs is not None and cache_dir is not None and not effects
    # logs are hashed only for a result that can be stored (a log-only check is not cached)
    results = _Results(cache_dir if keyed else None, srcs, "check", fmt.value, "\x1f".join(dtor),
                       *(f"{n}={_log_digest(p, stdin)}" for n, p in zip(shown, logs) if keyed))
    results.replay()
    st = _scan_sources(src, srcs, jobs, cache_dir, quiet) if src else None
    warnings = _unmatched_dtors(dtor, reports, st, bool(logs))
    for w in warnings:
        _err(w)
    with collector_paused():
        res = run(reports, tuple(dtor), st)
        if write_baseline is not None:
            _write(write_baseline, baseline_json(res.findings).encode())
        if baseline is not None:
            res, hidden = apply_baseline(res, accepted)
            _err(f"lockgraph: {hidden} finding(s) hidden by baseline {_shown(baseline)}")
        for path, kind in ((svg, "svg"), (png, "png")):
            if path is not None:
                _write(path, _image(res, kind, shown))
        lap("render")
        out = _render_check(fmt, res, reports, diags, shown)
    failed = any(f.severity is Severity.ERROR for f in res.findings)
    results.finish(out, ExitCode.FINDINGS if failed else ExitCode.OK, warnings)


def _render_check(fmt: CheckFormat, res, reports, diags, shown) -> str:
    if fmt is CheckFormat.json:
        from lockgraph.render.json import check_json
        return check_json(res, reports, diags, shown)
    if fmt is CheckFormat.markdown:
        from lockgraph.render.checklist import checklist_markdown
        return checklist_markdown(res)
    if fmt is CheckFormat.checklist:
        from lockgraph.render.checklist import checklist_text
        return checklist_text(res)
    if fmt is CheckFormat.dot:
        from lockgraph.render.dot import check_dot
        return check_dot(res, shown)
    if fmt is CheckFormat.sarif:
        from lockgraph.render.sarif import check_sarif
        return check_sarif(res, shown)
    from lockgraph.render.text import check_text
    return check_text(res, reports, shown)


def _image(res, kind: str, shown: list[str]) -> bytes:
    from lockgraph.render.dot import check_dot, run_dot

    try:
        return run_dot(check_dot(res, shown), kind)
    except LockgraphError as exc:
        _err(exc.format())
        raise typer.Exit(ExitCode.USAGE) from None


def _write(path: Path, data: bytes) -> None:
    try:
        path.write_bytes(data)
    except OSError as exc:
        _err(f"{_shown(path)}: error: cannot write: {exc.strerror}")
        raise typer.Exit(ExitCode.USAGE) from None


@app.command()
def scan(src: List[Path] = typer.Argument(..., metavar="SRC...",
                                          help="kernel tree, directories or C files"),
         config: Optional[Path] = ConfigOpt, root: Optional[Path] = RootOpt,
         arch: Optional[str] = ArchOpt, jobs: int = JobsOpt, cache: Optional[Path] = CacheOpt,
         no_cache: bool = NoCacheOpt, quiet: bool = QuietOpt,
         fmt: ScanFormat = typer.Option(ScanFormat.text, "--format", "-f",
                                        help="text, json, or edges (from<TAB>to<TAB>file:line<TAB>function)")) -> None:
    """Scan raw kernel C into the static lock graph (acquisitions, edges, blind spots)."""
    from lockgraph.pipeline import collector_paused
    from lockgraph.render.json import dumps, scan_json
    from lockgraph.render.text import scan_text

    cache_dir = _cache_dir(cache, no_cache)
    lap("sources (stat, hash)")
    srcs = _sources(src, config, root, arch, cache_dir)
    # edges are streamed: never held whole, so not kept as a stored result
    streamed = fmt is ScanFormat.edges
    results = _Results(None if streamed else cache_dir, srcs, "scan", fmt.value)
    results.replay()
    st = _scan_sources(src, srcs, jobs, cache_dir, quiet)
    lap("render")
    with collector_paused():
        if streamed:
            from lockgraph.render.edges import scan_edges

            sys.stdout.writelines(scan_edges(st))
            lap(None)
            raise typer.Exit(ExitCode.OK)
        data = scan_json(st)
        out = dumps(data, compact=True) if fmt is ScanFormat.json else scan_text(data)
    results.finish(out, ExitCode.OK)


@app.command()
def parse(logs: List[Path] = LogsArg, fmt: Format = FormatOpt) -> None:
    """Show the lockdep reports and dependency edges found in LOGs (no verdict)."""
    from lockgraph.render.json import parse_json
    from lockgraph.render.text import parse_text_out

    reports, diags, shown, _ = _ingest(logs)
    _emit_diags(diags)
    if not reports:
        _err(f"{', '.join(shown)}: error: no lockdep output found")
        raise typer.Exit(ExitCode.USAGE)
    sys.stdout.write(parse_json(reports, diags) if fmt is Format.json else parse_text_out(reports))


class ReviewFormat(str, Enum):
    text = "text"
    markdown = "markdown"
    json = "json"


@app.command()
def review(series: List[str] = typer.Argument(..., metavar="SERIES...",
                                              help="a git range base..head in the --src checkout, "
                                                   "or patch files / an mbox to apply to it"),
           src: Path = typer.Option(..., "--src", metavar="TREE", help="the kernel tree"),
           path: List[str] = typer.Option([], "--path", metavar="DIR",
                                          help="scan only DIR of the tree (repeatable; default: "
                                               "the whole tree); changed C files are always scanned"),
           dtor: List[str] = typer.Option([], "--dtor", metavar="FUNC",
                                          help="treat FUNC as a slab destructor (repeatable)"),
           config: Optional[Path] = ConfigOpt, jobs: int = JobsOpt,
           cache: Optional[Path] = CacheOpt, no_cache: bool = NoCacheOpt,
           quiet: bool = QuietOpt,
           fmt: ReviewFormat = typer.Option(ReviewFormat.text, "--format", "-f",
                                            help="output format")) -> None:
    """Review a patch series: what it changes in the lock graph and the verdicts (exit 1
    when it adds an error finding)."""
    from lockgraph.cache import default_dir
    from lockgraph.progress import ScanProgress
    from lockgraph.render.review import review_json, review_markdown, review_text
    from lockgraph.review import review as run_review

    if config is not None and not config.is_file():
        _err(f"{_shown(config)}: error: no such .config file")
        raise typer.Exit(ExitCode.USAGE)
    workers = jobs if jobs > 0 else (os.cpu_count() or 1)
    cache_dir = None if no_cache else (cache or default_dir())
    shown_series = [s if not Path(s).exists() else _shown(Path(s)) for s in series]
    try:
        rv = run_review(src, list(series), _shown(src), shown_series, list(path),
                        config.resolve() if config else None, tuple(dtor), workers, cache_dir,
                        progress=lambda: ScanProgress(enabled=not quiet), warn=_err)
    except LockgraphError as exc:
        _err(exc.format())
        raise typer.Exit(ExitCode.USAGE) from None
    render = {ReviewFormat.text: review_text, ReviewFormat.markdown: review_markdown,
              ReviewFormat.json: review_json}[fmt]
    sys.stdout.write(render(rv))
    raise typer.Exit(ExitCode.FINDINGS if rv.new_errors else ExitCode.OK)


def _version(value: bool) -> None:
    if value:
        sys.stdout.write(f"lockgraph {__version__}\n")
        raise typer.Exit()


@app.callback()
def _main(version: Optional[bool] = typer.Option(None, "--version", callback=_version,
                                                 is_eager=True, help="print the version")) -> None:
    """lockgraph."""


def main() -> None:
    """Console entry point: user errors exit 2 with one line, never a traceback."""
    try:
        app(standalone_mode=True)
    except LockgraphError as exc:
        _err(exc.format())
        sys.exit(ExitCode.USAGE)
    except SystemExit as exc:
        _leave(exc)
    except KeyboardInterrupt:
        _err("lockgraph: interrupted")
        sys.exit(130)
    except Exception as exc:  # a bug of ours: still one line, exit 3
        _err(f"lockgraph: internal error: {type(exc).__name__}: {exc}")
        sys.exit(ExitCode.INTERNAL)


def _leave(exc: SystemExit) -> None:
    """Exit without freeing what the run built: a whole-tree check holds ~16 GB of small
    objects (the exit's traceback still references them), and releasing them one by one
    took 58 s of a 488 s re-check.  Output is flushed and every cache written and closed by
    now; a code that is not a number (a message to print) takes the normal exit."""
    code = exc.code
    if code is not None and not isinstance(code, int):
        raise exc
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except (OSError, ValueError):  # a closed pipe: let the normal exit report it
        raise exc from None
    os._exit(code or 0)
