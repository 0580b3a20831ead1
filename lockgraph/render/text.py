"""Plain text that reads like lockdep's own output and fits a review e-mail."""

from __future__ import annotations

from lockgraph.checks import CheckResult
from lockgraph.ingest.logs.extract import trim_stack
from lockgraph.model import Diagnostic, Evidence, Finding, Report

INDENT = "       "  # lockdep indents saved stack traces by 7 blanks
MAX_FRAMES = 16


def _evidence(ev: Evidence) -> list[str]:
    lines = [f"  {ev.file}:{ev.line}: {ev.what}"]
    stack = trim_stack(ev.stack)  # start at the code that took the lock
    frames = stack[:MAX_FRAMES]
    lines += [INDENT + f for f in frames]
    if len(stack) > MAX_FRAMES:
        lines.append(INDENT + f"... {len(stack) - MAX_FRAMES} more frames")
    return lines


def finding(f: Finding) -> list[str]:
    out = [f"{f.severity.value}: {f.rule} {f.slug}: {f.message}", f"  id: {f.id}"]
    if len(f.path) > 1:
        out.append("  path: " + " --> ".join(f.path))
    for ev in f.evidence:
        out += _evidence(ev)
    return out


def _lock_rows(title: str, rows: list[dict]) -> list[str]:
    if not rows:
        return [f"{title}: none seen"]
    out = [f"{title}:"]
    width = min(max(len(r["lock"]) for r in rows), 48)
    for r in rows:
        state = "leaf" if r["leaf"] else "NOT a leaf -> " + ", ".join(r["out"][:3]) + (
            f" (+{len(r['out']) - 3})" if len(r["out"]) > 3 else "")
        roots = ", ".join(r["roots"])
        out.append(f"  {r['lock']:<{width}}  via {roots}: {state}")
    return out


def check_text(res: CheckResult, reports: list[Report], diags: list[Diagnostic],
               inputs: list[str]) -> str:
    G = res.graph
    live = [r for r in reports if r.duplicate_of is None]
    out = [f"lockgraph: {len(inputs)} file(s), {len(live)} lockdep block(s), "
           f"graph of {G.number_of_nodes()} locks and {G.number_of_edges()} dependencies", ""]
    out += _lock_rows("locks taken in slab destructors", res.lock_table(res.dtor_locks))
    out += _lock_rows("locks taken in memory reclaim", res.lock_table(res.reclaim_locks))
    out.append("")
    for f in res.findings:
        out += finding(f)
        out.append("")
    counts = {s: sum(1 for f in res.findings if f.severity.value == s)
              for s in ("error", "warning", "note")}
    out.append(f"{counts['error']} error(s), {counts['warning']} warning(s), {counts['note']} note(s)")
    out.append(f"verdict: {res.verdict} ({'; '.join(res.blind_spots)})")
    return "\n".join(out) + "\n"


def parse_text_out(reports: list[Report]) -> str:
    out: list[str] = []
    for r in reports:
        kind = r.kind + (f" ({', '.join(r.other_kind)})" if r.other_kind else "")
        dup = f" [duplicate of line {r.duplicate_of}]" if r.duplicate_of else ""
        out.append(f"{r.file}:{r.line}: {kind}{dup}")
        if r.task:
            out.append(f"  task: {r.task}")
        if r.new_lock:
            out.append(f"  new lock: {r.new_lock.name}" + (f" at {r.new_lock.at}" if r.new_lock.at else ""))
        if r.held_lock:
            out.append(f"  held lock: {r.held_lock.name}" + (f" at {r.held_lock.at}" if r.held_lock.at else ""))
        if r.chain:
            out.append("  chain: " + " --> ".join(c.lock for c in sorted(r.chain, key=lambda c: c.index)))
        for hl in r.held_lists:
            out.append(f"  {hl.count} lock(s) held by {hl.task}:")
            out += [f"   #{lk.index}: {lk.name}" + (f", at: {lk.at}" if lk.at else "") for lk in hl.locks]
        for e in r.edges:
            mark = "" if e.certain else " (inferred)"
            out.append(f"  edge {e.src} -> {e.dst} [{e.source}] line {e.line}{mark}")
        for n in r.notes:
            out.append(f"  note: {n}")
        out.append("")
    return "\n".join(out)
