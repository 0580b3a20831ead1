"""A series review as a reviewer answers it: plain text for the mail, Markdown, JSON for CI.

Only what the series changes is shown in full; roots it does not touch are counted, so the
answer to a one-line patch stays short even on a whole-tree scan.  The roots a series adds
or changes get the same checklist section `check --format markdown|checklist` prints.
"""

from __future__ import annotations

from typing import Any

from lockgraph.model import Finding
from lockgraph.render.checklist import blocks_markdown, blocks_text, root_blocks
from lockgraph.render.json import SCHEMA_VERSION, dumps
from lockgraph.render.text import INDENT
from lockgraph.review import EdgeDelta, Review, RootDelta

REACH_TITLES = {"dtor": "slab destructors", "reclaim": "memory reclaim"}
# A review goes into a mail thread: long lists are cut here, --format json has them all.
MAX_FRAMES = 8
MAX_EVIDENCE = 4
MAX_SPLATS = 3
MAX_LIST = 30


def _cut(items: list, limit: int) -> tuple[list, str]:
    more = len(items) - limit
    return items[:limit], (f"... {more} more (--format json lists all)" if more > 0 else "")


def _scanned(rv: Review) -> str:
    where = "the whole tree" if rv.scanned == ["."] else (
        ", ".join(rv.scanned) + " and the changed C files")
    return f"{where} ({rv.files[0]} C file(s) at base, {rv.files[1]} at head)"


def _summary(rv: Review) -> str:
    return (f"{len(rv.new_errors)} new error(s), {len(rv.new_findings)} new finding(s), "
            f"{len(rv.fixed_findings)} fixed; {len(rv.edges_added)} edge(s) added, "
            f"{len(rv.edges_removed)} removed; {len(rv.new_cycles)} new cycle(s), "
            f"{len(rv.new_splats)} new predicted splat(s)")


def _touched_roots(rv: Review) -> tuple[list, int]:
    """Head verdicts of the roots the series adds or changes, and how many others exist."""
    keys = {(d.kind, d.function) for d in rv.roots_added + rv.roots_changed}
    shown = [v for v in rv.head.roots if (v.root.kind, v.root.function) in keys]
    return shown, len(rv.head.roots) - len(shown)


def _edge_text(e: EdgeDelta) -> list[str]:
    roots = f"  [taken in {', '.join(r + '()' for r in e.roots)}]" if e.roots else ""
    out = [f"  {e.src} --> {e.dst}  {e.file}:{e.line}{roots}"]
    out += [INDENT + s for s in e.stack[:MAX_FRAMES]]
    return out


def _root_delta_text(d: RootDelta) -> str:
    why = "; ".join(d.changes) if d.changes else "; ".join(d.how)
    return f"  {d.kind} {d.function}(): {why}"


def _finding_text(f: Finding) -> list[str]:
    """A finding without its stacks: the review names places, `check` shows the traces."""
    out = [f"  {f.severity.value}: {f.rule} {f.slug}: {f.message}", f"    id: {f.id}"]
    if len(f.path) > 1:
        out.append("    path: " + " --> ".join(f.path))
    evs, more = _cut(list(f.evidence), MAX_EVIDENCE)
    out += [f"    {ev.file}:{ev.line}: {ev.what}" for ev in evs]
    return out + ([f"    {more}"] if more else [])


def review_text(rv: Review) -> str:
    out = [f"lockgraph review: {rv.series} on {rv.tree}", f"scanned: {_scanned(rv)}", ""]
    out.append(f"changed files ({len(rv.changes)}):" if rv.changes else "changed files: none")
    out += [f"  {c.status} {c.path}" + ("" if c.scanned else "  (not analysed)") for c in rv.changes]
    out += ["", f"verdict: {rv.base.verdict} at base, {rv.head.verdict} at head", ""]
    for title, edges in (("edges added", rv.edges_added), ("edges removed", rv.edges_removed)):
        out.append(f"{title} ({len(edges)}):" if edges else f"{title}: none")
        for e in edges:
            out += _edge_text(e)
    out.append("")
    for title, ds in (("roots added", rv.roots_added), ("roots removed", rv.roots_removed),
                      ("roots changed", rv.roots_changed)):
        out.append(f"{title} ({len(ds)}):" if ds else f"{title}: none")
        out += [_root_delta_text(d) for d in ds]
    out.append("")
    for kind, title in REACH_TITLES.items():
        for side, verb in (("added", "now taken in"), ("removed", "no longer taken in")):
            locks = rv.reach[kind][side]
            if locks:
                out.append(f"locks {verb} {title} ({len(locks)}):")
                rows, more = _cut(list(locks.items()), MAX_LIST)
                out += [f"  {lk} (via {', '.join(r + '()' for r in rs)})" for lk, rs in rows]
                out += [f"  {more}"] if more else []
    if any(rv.reach[k][s] for k in REACH_TITLES for s in ("added", "removed")):
        out.append("")
    for title, fs in (("new findings", rv.new_findings), ("fixed findings", rv.fixed_findings)):
        out.append(f"{title} ({len(fs)}):" if fs else f"{title}: none")
        for f in fs:
            out += _finding_text(f)
        out.append("")
    splats, more = _cut(rv.new_splats, MAX_SPLATS)
    for f in splats:
        out.append(f"predicted splat ({f.id}):")
        out += ["    " + ln if ln else "" for ln in f.detail.splitlines()]
        out.append("")
    if more:
        out += [f"predicted splats: {more}", ""]
    shown, others = _touched_roots(rv)
    if shown:
        out.append("roots the series adds or changes, at head:")
        out += ["", blocks_text([b for v in shown for b in root_blocks(rv.head, v)]), ""]
    if others:
        out.append(f"{others} other root(s) unchanged")
    if shown or others:
        out.append("")
    if rv.blind_spots:
        out.append("blind spots:")
        out += [f"  - {b}" for b in rv.blind_spots]
        out.append("")
    out.append(_summary(rv))
    return "\n".join(out) + "\n"


def _code(s: str) -> str:
    """A Markdown code span that survives backticks in lock names."""
    s = s.replace("\n", " ")
    fence = "``" if "`" in s else "`"
    pad = " " if fence == "``" else ""
    return f"{fence}{pad}{s}{pad}{fence}"


def _md_finding(f: Finding) -> list[str]:
    first = f.evidence[0] if f.evidence else None
    where = f" ({first.file}:{first.line})" if first and first.file else ""
    out = [f"- **{f.severity.value}** {f.rule} {f.slug}: {f.message}{where} — id {_code(f.id)}"]
    evs, more = _cut(list(f.evidence[1:]), MAX_EVIDENCE)
    out += [f"  - {ev.file}:{ev.line}: {ev.what}" for ev in evs]
    return out + ([f"  - {more}"] if more else [])


def review_markdown(rv: Review) -> str:
    out = [f"## lockgraph review of {_code(rv.series)}", "",
           f"- tree: {_code(rv.tree)}; scanned: {_scanned(rv)}",
           f"- verdict: {rv.base.verdict} at base, **{rv.head.verdict}** at head",
           f"- {_summary(rv)}", ""]
    out.append("### Changed files")
    out += [f"- {c.status} {_code(c.path)}" + ("" if c.scanned else " (not analysed)")
            for c in rv.changes] or ["- none"]
    out.append("")
    for title, edges in (("Edges added", rv.edges_added), ("Edges removed", rv.edges_removed)):
        out.append(f"### {title}")
        for e in edges:
            roots = f", taken in {', '.join(_code(r) for r in e.roots)}" if e.roots else ""
            via = " → ".join(e.stack[:MAX_FRAMES])
            out.append(f"- {_code(e.src)} → {_code(e.dst)} at {e.file}:{e.line}{roots}"
                       + (f" (via {via})" if via else ""))
        if not edges:
            out.append("- none")
        out.append("")
    out.append("### Roots")
    rows = [(t, d) for t, ds in (("added", rv.roots_added), ("removed", rv.roots_removed),
                                 ("changed", rv.roots_changed)) for d in ds]
    out += [f"- {t}: {d.kind} {_code(d.function)}: "
            + "; ".join(d.changes if d.changes else d.how) for t, d in rows] or ["- none changed"]
    out.append("")
    reach = [(kind, side, lk, rs) for kind in REACH_TITLES for side in ("added", "removed")
             for lk, rs in rv.reach[kind][side].items()]
    if reach:
        out.append("### Locks entering or leaving destructor and reclaim context")
        reach, more = _cut(reach, MAX_LIST)
        for kind, side, lk, rs in reach:
            verb = "now taken in" if side == "added" else "no longer taken in"
            out.append(f"- {_code(lk)} {verb} {REACH_TITLES[kind]} (via "
                       + ", ".join(_code(r) for r in rs) + ")")
        out += [f"- {more}", ""] if more else [""]
    for title, fs in (("New findings", rv.new_findings), ("Fixed findings", rv.fixed_findings)):
        out.append(f"### {title}")
        for f in fs:
            out += _md_finding(f)
        if not fs:
            out.append("- none")
        out.append("")
    splats, more = _cut(rv.new_splats, MAX_SPLATS)
    for f in splats:
        out += [f"### Predicted splat ({_code(f.id)})", "", "```", f.detail, "```", ""]
    if more:
        out += [f"Predicted splats: {more}", ""]
    shown, others = _touched_roots(rv)
    if shown:
        out += ["### Roots the series adds or changes (at head)", "",
                blocks_markdown([b for v in shown for b in root_blocks(rv.head, v, level=4)]), ""]
    if others:
        out += [f"{others} other root(s) unchanged.", ""]
    if rv.blind_spots:
        out.append("### Blind spots")
        out += [f"- {b}" for b in rv.blind_spots]
        out.append("")
    return "\n".join(out).rstrip("\n") + "\n"


def review_json(rv: Review) -> str:
    data: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "series": rv.series,
        "tree": rv.tree,
        "scanned": {"paths": rv.scanned, "files": {"base": rv.files[0], "head": rv.files[1]}},
        "changed_files": [{"status": c.status, "path": c.path, "analysed": c.scanned}
                          for c in rv.changes],
        "verdict": {"base": rv.base.verdict, "head": rv.head.verdict},
        "summary": {"new_errors": len(rv.new_errors), "new_findings": len(rv.new_findings),
                    "fixed_findings": len(rv.fixed_findings),
                    "edges_added": len(rv.edges_added), "edges_removed": len(rv.edges_removed),
                    "new_cycles": len(rv.new_cycles), "new_splats": len(rv.new_splats)},
        "edges": {"added": [e.to_json() for e in rv.edges_added],
                  "removed": [e.to_json() for e in rv.edges_removed]},
        "roots": {"added": [d.to_json() for d in rv.roots_added],
                  "removed": [d.to_json() for d in rv.roots_removed],
                  "changed": [d.to_json() for d in rv.roots_changed]},
        "locks": rv.reach,
        "findings": {"new": [f.to_json() for f in rv.new_findings],
                     "fixed": [f.to_json() for f in rv.fixed_findings]},
        "cycles": {"new": [list(f.path) for f in rv.new_cycles]},
        "splats": {"new": [{"id": f.id, "lock": f.lock, "text": f.detail} for f in rv.new_splats]},
        "head_roots": [v.to_json() for v in _touched_roots(rv)[0]],
        "blind_spots": rv.blind_spots,
    }
    return dumps(data)
