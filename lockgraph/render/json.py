"""The stable JSON contract (`schema_version: 1`, documented in README.md)."""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any

from lockgraph.checks import CheckResult
from lockgraph.ingest.logs.primary import primary_facts
from lockgraph.model import Diagnostic, Report

if TYPE_CHECKING:
    from lockgraph.pipeline import StaticScan

SCHEMA_VERSION = 1


_STRING = re.compile(r'("[^"\\]*(?:\\.[^"\\]*)*")')
_TOKEN = re.compile(r'[{}\[\],:]|[^{}\[\],:"]+')


def dumps(obj: dict[str, Any], compact: bool = False) -> str:
    """Sorted keys always; `compact` prints one line.

    The indented form is the C encoder's compact output re-indented: json.dumps(indent=2)
    runs the pure-Python encoder, five times slower, and whole-tree results are large.
    Byte-identical to json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False)."""
    flat = json.dumps(obj, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return (flat if compact else indent2(flat)) + "\n"


class Items:
    """A top-level list of a result, made one item at a time (dumps_streamed): a
    whole-tree check has a gigabyte of findings and root verdicts, and as one tree of dicts
    plus its text they doubled the run's peak memory."""

    def __init__(self, make) -> None:
        self.make = make

    def __iter__(self):
        return iter(self.make())


def dumps_streamed(fields: dict[str, Any]) -> str:
    """dumps(fields), byte for byte, with the values that are Items encoded item by item."""
    if not fields:
        return "{}\n"
    parts = ["{"]
    for n, key in enumerate(sorted(fields)):
        parts.append(("," if n else "") + "\n  " + json.dumps(key, ensure_ascii=False) + ": ")
        value = fields[key]
        if isinstance(value, Items):
            started = False
            for item in value:
                parts.append(("," if started else "[") + "\n    " + _indented(item, "\n    "))
                started = True
            parts.append("\n  ]" if started else "[]")
        else:
            parts.append(_indented(value, "\n  "))
    parts.append("\n}\n")
    return "".join(parts)


def _indented(obj: Any, pad: str) -> str:
    return indent2(json.dumps(obj, sort_keys=True, ensure_ascii=False, separators=(",", ":")), pad)


def indent2(flat: str, pad: str = "\n") -> str:
    """The compact text re-indented by two spaces per level, starting at `pad`.

    Strings are copied as they are; the text between two strings (`,"`, `:12,`, `]},{`)
    is laid out once per (text, depth) — a whole-tree check prints 800 MB, and a Python
    step per token took a minute of it."""
    # str.split is C speed; a quote can be escaped only where a backslash precedes one
    quote = "" if '\\"' in flat else '"'
    parts = flat.split(quote) if quote else _STRING.split(flat)
    gaps = parts[0::2]
    seen: dict[tuple[str, str], tuple[str, str]] = {}
    for k, gap in enumerate(gaps):
        done = seen.get((gap, pad))
        if done is None:
            done = seen[(gap, pad)] = _layout(gap, pad)
        gaps[k], pad = done
    parts[0::2] = gaps
    return quote.join(parts)


def _layout(part: str, pad: str) -> tuple[str, str]:
    """Text between strings laid out at `pad`: (the text, the pad after it)."""
    out: list[str] = []
    toks = _TOKEN.findall(part)
    k, n = 0, len(toks)
    while k < n:
        t = toks[k]
        if t == "{" or t == "[":
            if k + 1 < n and toks[k + 1] == ("}" if t == "{" else "]"):
                out.append(t + toks[k + 1])
                k += 2
                continue
            pad += "  "
            out.append(t + pad)
        elif t == "}" or t == "]":
            pad = pad[:-2]
            out.append(pad + t)
        elif t == ",":
            out.append("," + pad)
        elif t == ":":
            out.append(": ")
        else:
            out.append(t)
        k += 1
    return "".join(out), pad


def _diags(diags: list[Diagnostic]) -> list[dict[str, Any]]:
    return [{"file": d.path, "line": d.line, "level": d.level, "message": d.message}
            for d in diags]


def parse_json(reports: list[Report], diags: list[Diagnostic]) -> str:
    out = []
    for r in reports:
        d = r.to_json()
        d["duplicate_of"] = r.duplicate_of
        out.append(d)
    by_file: dict[str, list[Report]] = {}
    for r in reports:
        by_file.setdefault(r.file, []).append(r)
    primary = [{"file": f, **_primary(rs)} for f, rs in by_file.items()]
    return dumps({"schema_version": SCHEMA_VERSION, "reports": out, "primary": primary,
                  "diagnostics": _diags(diags)})


def _primary(rs: list[Report]) -> dict[str, Any]:
    facts = primary_facts(rs)
    facts["edges"] = [list(e) for e in dict.fromkeys(facts["edges"])]
    return facts


def check_json(res: CheckResult, reports: list[Report], diags: list[Diagnostic],
               inputs: list[str]) -> str:
    G = res.graph
    per_file = {f: 0 for f in inputs}
    for r in reports:
        if r.duplicate_of is None:
            per_file[r.file] = per_file.get(r.file, 0) + 1
    counts = {s: sum(1 for f in res.findings if f.severity.value == s)
              for s in ("error", "warning", "note")}
    return dumps_streamed({
        "schema_version": SCHEMA_VERSION,
        "verdict": {"status": res.verdict,
                    "evidence": "+".join(x for x, on in (("runtime", bool(reports)),
                                                          ("static", res.static)) if on),
                    "blind_spots": res.blind_spots},
        "findings": Items(lambda: (f.to_json() for f in res.findings)),
        "summary": counts,
        "graph": {"nodes": G.number_of_nodes(), "edges": G.number_of_edges(),
                  "certain_edges": sum(1 for _, _, c in G.edges(data="certain") if c)},
        "dtor_locks": res.lock_table(res.dtor_locks),
        "reclaim_locks": res.lock_table(res.reclaim_locks),
        "inputs": [{"file": f, "reports": n} for f, n in sorted(per_file.items())],
        **({"roots": Items(lambda: (v.to_json() for v in res.roots))} if res.static else {}),
        "diagnostics": _diags(diags),
    })


def scan_json(st: StaticScan) -> dict[str, Any]:
    """`lockgraph scan --format json`: the static graph with every acquisition and witness."""
    from lockgraph.pipeline import display

    S = st.solved
    funcs = list(S.funcs.values())
    unknown = [f for f in funcs if f.structure.startswith("unknown")]
    flat = sum(1 for f in funcs if f.structure == "not needed")
    edges = []
    for (a, b), e in sorted(S.edges.items()):
        edges.append({"from": a, "to": b, "configs": sorted(e.configs), "evidence": [
            {"file": display(step.file, st.root), "line": step.line, "function": step.function,
             "configs": sorted(e.configs_of(k)),
             "via": [{"function": s.function, "file": display(s.file, st.root), "line": s.line}
                     for s in via]} for k, (step, via) in enumerate(e.evidence)]})
    acqs = sorted(({"function": a["function"], "lock": a["lock"],
                    "file": display(a["file"], st.root), "line": a["line"], "mode": a["mode"],
                    "kind": a["kind"], "try": a["try"], "irq": a["irq"],
                    "configs": list(S.conds.get((a["file"], a["line"]), ()))}
                   for a in S.acquisitions if not a["lock"].startswith("@param")),
                  key=lambda a: (a["file"], a["line"], a["lock"]))
    _, locked = S.ranked_blind(sorted(S.funcs))  # every call made under a lock, transitively
    unresolved = [{"call": k, "sites": [f"{display(f, st.root)}:{ln}" for f, ln in sorted(v)[:20]],
                   "count": len(v), "under_lock": k in locked}
                  for k, v in sorted(S.unresolved.items())]
    return {"schema_version": 1, "files": st.files,
            "config": st.config.source if st.config else None,
            "not_scanned": st.excluded,
            "conditionals": {"choices": sum(ff.choices for ff in S.files),
                             "misaligned": sum(ff.misaligned for ff in S.files)},
            "functions": {"total": len(funcs), "parsed": len(funcs) - len(unknown) - flat,
                          "structure_not_needed": flat, "structure_unknown": len(unknown)},
            "structure_unknown": sorted(f"{display(f.file, st.root)}:{f.line}: {f.name}: {f.structure}"
                                        for f in unknown),
            "acquisitions": acqs, "edges": edges, "unresolved_calls": unresolved}
