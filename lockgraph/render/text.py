"""Plain text that reads like lockdep's own output and fits a review e-mail."""

from __future__ import annotations

from lockgraph.checks import CheckResult
from lockgraph.model import Evidence, Finding, Report, trim_stack

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


def check_text(res: CheckResult, reports: list[Report], inputs: list[str]) -> str:
    G = res.graph
    live = [r for r in reports if r.duplicate_of is None]
    src = f", {res.sources} source file(s) scanned" if res.static else ""
    out = [f"lockgraph: {len(inputs)} log file(s), {len(live)} lockdep block(s){src}, "
           f"graph of {G.number_of_nodes()} locks and {G.number_of_edges()} dependencies", ""]
    if inputs:
        out += _lock_rows("locks taken in slab destructors (runtime evidence)",
                          res.lock_table(res.dtor_locks))
    out += _lock_rows("locks taken in memory reclaim", res.lock_table(res.reclaim_locks))
    out.append("")
    for f in res.findings:
        out += finding(f)
        if f.detail:
            out += ["", *("    " + ln if ln else "" for ln in f.detail.splitlines())]
        out.append("")
    out += roots_text(res.roots)
    counts = {s: sum(1 for f in res.findings if f.severity.value == s)
              for s in ("error", "warning", "note")}
    out.append(f"{counts['error']} error(s), {counts['warning']} warning(s), {counts['note']} note(s)")
    out.append(f"verdict: {res.verdict}" + (f" ({'; '.join(res.blind_spots)})" if res.blind_spots else ""))
    return "\n".join(out) + "\n"


def _lockref(title: str, lk) -> list[str]:
    return [f"  {title}: {lk.name}" + (f" at {lk.at}" if lk.at else "")] if lk else []


def _report_facts(r: Report) -> list[str]:
    """Every fact `parse --format json` gives for a report, one labelled line each."""
    out = [f"  task: {r.task}"] if r.task else []
    out += _lockref("new lock", r.new_lock) + _lockref("held lock", r.held_lock)
    out += _lockref("subject lock", r.subject_lock)
    for label, value in (("other lock", r.other_lock), ("direction", r.direction),
                         ("irq class", r.irq_class), ("usage transition", r.usage_transition),
                         ("context", r.context), ("site", r.site)):
        if value:
            out.append(f"  {label}: {value}")
    if r.chain:
        chain = sorted(r.chain, key=lambda c: c.index)
        out.append("  chain: " + " --> ".join(c.lock for c in chain))
        out += [f"   -> #{c.index} {c.lock}" + (f", acquired at: {c.acquired_at}" if c.acquired_at else "")
                for c in reversed(chain)]
    if r.chain_exists_of:
        out.append("  chain exists of: " + " --> ".join(r.chain_exists_of))
    if r.scenario:
        out.append("  scenario: " + "; ".join(f"{cpu} {op}({name})" for cpu, op, name in r.scenario))
    for key in sorted(r.paths):
        out.append(f"  {key.replace('_', ' ')}: " + " -> ".join(r.paths[key]))
    return out


def parse_text_out(reports: list[Report]) -> str:
    out: list[str] = []
    for r in reports:
        kind = r.kind + (f" ({', '.join(r.other_kind)})" if r.other_kind else "")
        dup = f" [duplicate of line {r.duplicate_of}]" if r.duplicate_of else ""
        out.append(f"{r.file}:{r.line}: {kind}{dup}")
        out += _report_facts(r)
        for hl in r.held_lists:
            out.append(f"  {hl.count} lock(s) held by {hl.task}:")
            out += [f"   #{lk.index}: {lk.name}" + (f", at: {lk.at}" if lk.at else "") for lk in hl.locks]
        for e in r.edges:
            mark = "" if e.certain else " (inferred)"
            out.append(f"  edge {e.src} -> {e.dst} [{e.source}] line {e.line}{mark}")
        if r.classes:
            out.append(f"  lock classes: {len(r.classes)}")
        if r.chains:
            out.append(f"  lock chains: {len(r.chains)}")
        out += [f"  stat {label}: {value}" for label, value in r.stats.items()]
        if r.backtrace:
            out.append("  stack backtrace:")
            out += [INDENT + f for f in r.backtrace]
        for n in r.notes:
            out.append(f"  note: {n}")
        out.append("")
    return "\n".join(out)


MAX_BLIND_SHOWN = 12


def _step(st: dict) -> str:
    return f"{st['function']}() {st['file']}:{st['line']}"


def roots_text(roots: list) -> list[str]:
    """One section per root: its locks, the two verdicts, the reasoning, the blind spots."""
    out: list[str] = []
    for v in roots:
        r = v.root
        out.append(f"{r.kind} {r.function}(): " + "; ".join(r.how))
        if not r.fids:
            out += ["  definition not found in the scanned sources", ""]
            continue
        out.append(f"  takes {len(v.locks)} lock(s):")
        for lk in v.locks:
            via = " -> ".join(_step(s) for s in lk.witness)
            out.append(f"    {lk.lock} ({lk.kind}) via {via}")
        if r.kind == "dtor":
            sl = v.strict_leaf
            out.append(f"  strict leaf: {sl.verdict}")
            for x in sl.violations:
                where = f" at {x.edge.file}:{x.edge.line}" if x.edge else ""
                out.append(f"    '{x.lock}' -> '{x.to}'{where}")
            out.append(f"  dtor-safe: {v.dtor_safe.verdict}")
            out += [f"    - {why}" for why in v.dtor_safe.reasons]
        if r.kind == "ctor":
            c = v.ctor
            state = ("sleeps or reclaims (" + ", ".join(c.why) + ")") if c.sleeps_or_reclaims else "neither sleeps nor reclaims"
            out.append(f"  constructor {state}; {c.allocation_sites} allocation site(s) of its cache, "
                       f"{len(c.atomic_sites)} atomic")
            for a in c.atomic_sites:
                out.append(f"    atomic: {a.function}() {a.file}:{a.line} ({a.context})")
        out += [f"  assumes {a}" for a in v.assumptions]
        if v.blind_spots:
            out.append(f"  blind spots ({len(v.blind_spots)}): the verdict cannot be 'proven'")
            locked = set(v.blind_locked)
            out += [f"    {b}" + ("  [reached under a lock]" if b in locked else "")
                    for b in v.blind_spots[:MAX_BLIND_SHOWN]]
            if len(v.blind_spots) > MAX_BLIND_SHOWN:
                out.append(f"    ... {len(v.blind_spots) - MAX_BLIND_SHOWN} more (--format json lists all)")
        out.append("")
    return out


def scan_text(data: dict) -> str:
    fn = data["functions"]
    out = [f"lockgraph scan: {data['files']} file(s), {fn['total']} function(s): "
           f"{fn['parsed']} parsed, {fn['structure_unknown']} structure unknown",
           f"{len(data['acquisitions'])} lock acquisition(s), {len(data['edges'])} dependency edge(s), "
           f"{len(data['unresolved_calls'])} unresolved callee(s)"]
    cond = data["conditionals"]
    if cond["choices"] or cond["misaligned"]:
        out.append(f"CONFIG conditionals: {cond['choices']} kept as choices between their "
                   f"branches, {cond['misaligned']} not on statement boundaries (one branch taken)")
    out.append("")
    for e in data["edges"]:
        ev = e["evidence"][0]
        via = "".join(f" -> {v['function']}() {v['file']}:{v['line']}" for v in ev["via"])
        cfg = f"  [only with {' && '.join(ev['configs'])}]" if ev["configs"] else ""
        out.append(f"{e['from']} --> {e['to']}")
        out.append(f"       {ev['function']}() {ev['file']}:{ev['line']}{via}{cfg}")
    for u in data["structure_unknown"]:
        out.append(f"structure unknown: {u}")
    out += _unresolved_text(data["unresolved_calls"])
    return "\n".join(out) + "\n"


def _unresolved_text(rows: list[dict]) -> list[str]:
    """The unresolved calls most likely to hide an edge first: made under a held lock,
    then the rest, byte-order helpers and frees last (witnesses.blind_rank)."""
    from lockgraph.static.witnesses import blind_rank

    if not rows:
        return []
    rows = sorted(rows, key=lambda u: blind_rank(u["call"], u["under_lock"]))
    n = sum(1 for u in rows if u["under_lock"])
    out = ["", f"blind spots: {len(rows)} unresolved callee(s), {n} called under a held lock"]
    for u in rows[:MAX_BLIND_SHOWN]:
        site = u["sites"][0] if u["sites"] else ""
        more = f" (+{u['count'] - 1})" if u["count"] > 1 else ""
        out.append(f"  {u['call']}  {site}{more}" + ("  [under a lock]" if u["under_lock"] else ""))
    if len(rows) > MAX_BLIND_SHOWN:
        out.append(f"  ... {len(rows) - MAX_BLIND_SHOWN} more (--format json lists all)")
    return out
