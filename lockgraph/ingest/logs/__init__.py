"""Lockdep log ingestion: bytes → windows → logical lines → tokens → blocks → reports."""

from __future__ import annotations

import gc
from dataclasses import dataclass, field
from pathlib import Path

from lockgraph.errors import InputError, LogSyntaxError
from lockgraph.grammar import parse_block
from lockgraph.ingest.logs.blocks import segment
from lockgraph.ingest.logs.extract import build_report
from lockgraph.ingest.logs.lexer import classify
from lockgraph.ingest.logs.normalize import decode, find_spans, is_binary, logical_lines
from lockgraph.model import Diagnostic, Report


#: Report kinds whose complete text ends with `stack backtrace:` (format spec §4).
_EXPECT_BACKTRACE = frozenset({
    "circular", "recursive", "inconsistent_state", "irq_inversion", "irq_safe_unsafe",
    "invalid_wait_context", "bad_unlock_balance", "held_lock_freed",
})


#: Lines of a report compared to tell a console copy from another report in the same second.
COPY_LINES = 8


@dataclass(slots=True)
class LogResult:
    reports: list[Report] = field(default_factory=list)
    diagnostics: list[Diagnostic] = field(default_factory=list)


def read_input(path: Path, shown: str) -> bytes:
    """The file's bytes, or an InputError a user can act on."""
    try:
        # exists()/is_dir() swallow only some errno values (not ENAMETOOLONG, EACCES).
        if not path.exists():
            raise InputError("no such file", path=shown)
        if path.is_dir():
            raise InputError("is a directory, expected a log file", path=shown)
        data = path.read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read: {exc.strerror or exc}", path=shown) from None
    return usable(data, shown)


def usable(data: bytes, shown: str, what: str = "file") -> bytes:
    """The bytes when they can be a log (from a file or a pipe), or an InputError."""
    if not data or data.isspace():  # as `not data.strip()`, without copying the file
        raise InputError(f"empty {what}", path=shown)
    if is_binary(data):
        raise InputError("binary data, not a text log", path=shown)
    return data


def parse_text(text: str, shown: str, diags: list[Diagnostic] | None = None) -> LogResult:
    """Parse decoded log text; never raises on any text."""
    # A parse makes a few objects per line and frees nearly all of them by reference
    # counting, so the cyclic collector has nothing to free; left on, it re-scans every live
    # object again and again (a fifth of a big /proc/lockdep parse).  Paused for the parse,
    # then left as it was found.
    enabled = gc.isenabled()
    gc.disable()
    try:
        return _parse_text(text, shown, diags)
    finally:
        if enabled:
            gc.enable()


def _parse_text(text: str, shown: str, diags: list[Diagnostic] | None) -> LogResult:
    res = LogResult(diagnostics=diags if diags is not None else [])
    seen_headers: dict[tuple[str, ...], int] = {}
    hung: list[tuple[int, str]] = []  # (line, comm/pid) of "INFO: task … blocked" messages
    for start, _, first, last in find_spans(text):
        # Only the windows are split into lines: most of a big console log is never looked at.
        lines = logical_lines(text[first:last].split("\n"), start + 1, shown, res.diagnostics)
        toks = [classify(line) for line in lines]
        hung.extend((t.line.no, f"{t.data['comm']}/{t.data['pid']}") for t in toks
                    if t.type == "HUNG")
        for block in segment(toks):
            try:
                sections = parse_block(block.toks, block.rule)
            except LogSyntaxError as exc:
                res.diagnostics.append(Diagnostic(shown, exc.line, "warning",
                                                  f"damaged lockdep block skipped: {exc.message}"))
                continue
            report = build_report(shown, block.toks, sections, block.rule)
            if block.rule == "report" and report.kind in _EXPECT_BACKTRACE and not block.seen_backtrace:
                last = block.toks[-1].line.no
                res.diagnostics.append(Diagnostic(
                    shown, report.line, "warning",
                    f"{report.kind.replace('_', ' ')} report ends at line {last} before its stack "
                    "backtrace (cut off or interleaved); facts parsed so far are kept"))
            head = block.toks[0].line
            if head.stamp and block.rule == "report":
                key: tuple[str, ...] = (head.stamp, head.text)
                if "." not in head.stamp:
                    # Whole seconds (dmesg -T, syslog): one second can hold two reports with
                    # the same header; a copy also repeats the lines that name task and locks.
                    key += tuple(t.line.text for t in block.toks[1:COPY_LINES])
                if key in seen_headers:
                    report.duplicate_of = seen_headers[key]
                else:
                    seen_headers[key] = head.no
            res.reports.append(report)
    _name_hung_tasks(res.reports, hung)
    return res


def _name_hung_tasks(reports: list[Report], hung: list[tuple[int, str]]) -> None:
    """A lock dump names no task; the hung-task message that triggered it does."""
    prev = 0
    for r in reports:
        if r.kind != "hung_task_locks":
            continue
        if r.task is None:
            r.task = next((task for no, task in hung if prev < no < r.line), None)
        prev = r.line


def parse_log(path: Path, shown: str | None = None) -> LogResult:
    """Parse one log file.  Unusable input raises InputError; damage becomes diagnostics."""
    shown = shown if shown is not None else str(path)
    return parse_bytes(read_input(path, shown), shown)


def parse_bytes(data: bytes, shown: str) -> LogResult:
    """Parse a log already read (standard input); `data` passed `usable()`."""
    text, diags = decode(data, shown)
    return parse_text(text, shown, diags)
