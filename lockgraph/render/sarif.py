"""SARIF 2.1.0 for CI and code scanning, built from the same findings as every other format.

Code-scanning services match a result across runs by `partialFingerprints`, so the finding's
stable id goes there: a result then stays "the same alert" after lines move.  No timestamps
and no absolute paths: two runs on the same input give the same bytes, and a log written on
one machine reads the same on another.  Paths are relative to `SRCROOT` (the scanned kernel
tree) for source files and to `LOGROOT` (the directory lockgraph ran in) for lockdep logs.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import quote

from lockgraph import __version__
from lockgraph.checks import CheckResult
from lockgraph.model import Evidence, Finding, Severity, trim_stack
from lockgraph.render.json import dumps
from lockgraph.rules import RULES

SCHEMA = "https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json"
FINGERPRINT = "lockgraphFindingId/v1"
#: `function (file:line)`: a static witness step, which has a place in the source.
_STEP = re.compile(r"^(?P<fn>\S+) \((?P<file>.+):(?P<line>\d+)\)$")


def level(sev: Severity) -> str:
    """SARIF's levels happen to be lockgraph's severities; one place says so."""
    return {Severity.ERROR: "error", Severity.WARNING: "warning", Severity.NOTE: "note"}[sev]


def _rule(rule_id: str) -> dict[str, Any]:
    r = RULES[rule_id]
    return {"id": r.id, "name": r.slug,
            "shortDescription": {"text": r.summary},
            "fullDescription": {"text": r.summary},
            "defaultConfiguration": {"level": level(r.severity)},
            "properties": {"tags": ["locking", "lockdep"]}}


def _physical(file: str, line: int, logs: frozenset[str]) -> dict[str, Any]:
    loc: dict[str, Any] = {"artifactLocation": {
        "uri": quote(file, safe="/"), "uriBaseId": "LOGROOT" if file in logs else "SRCROOT"}}
    if line > 0:
        loc["region"] = {"startLine": line}
    return loc


def _location(ev: Evidence, logs: frozenset[str]) -> dict[str, Any]:
    out: dict[str, Any] = {"message": {"text": ev.what}}
    if ev.file:
        out["physicalLocation"] = _physical(ev.file, ev.line, logs)
    return out


def _thread_flow(ev: Evidence, logs: frozenset[str]) -> dict[str, Any]:
    """One evidence stack as a thread flow, outermost call first, ending where it happened.

    Static witnesses are `function (file:line)` steps, outermost first, each with a place;
    lockdep stacks are innermost first and carry function names only.
    """
    steps: list[dict[str, Any]] = []
    static = [m for m in (_STEP.match(s) for s in ev.stack) if m]
    if static:
        for m in static:
            steps.append({"message": {"text": m["fn"]},
                          "physicalLocation": _physical(m["file"], int(m["line"]), logs)})
    else:
        for fn in reversed(trim_stack(ev.stack)):
            steps.append({"message": {"text": fn}})
    steps.append(_location(ev, logs))
    return {"locations": [{"location": s, "nestingLevel": k} for k, s in enumerate(steps)]}


def _result(f: Finding, index: dict[str, int], logs: frozenset[str]) -> dict[str, Any]:
    located = [ev for ev in f.evidence if ev.file]
    out: dict[str, Any] = {
        "ruleId": f.rule, "ruleIndex": index[f.rule], "level": level(f.severity),
        "message": {"text": f.message},
        "partialFingerprints": {FINGERPRINT: f.id},
        "properties": {"id": f.id, "slug": f.slug, "lock": f.lock, "path": list(f.path)},
    }
    if located:
        out["locations"] = [{"physicalLocation": _physical(located[0].file, located[0].line,
                                                           logs)}]
    if len(located) > 1:
        out["relatedLocations"] = [dict(_location(ev, logs), id=k)
                                   for k, ev in enumerate(located[1:], 1)]
    flows = [_thread_flow(ev, logs) for ev in f.evidence if ev.stack]
    if flows:
        out["codeFlows"] = [{"message": {"text": "witness: " + " --> ".join(f.path)}
                             if f.path else {"text": "witness"}, "threadFlows": flows}]
    if f.detail:
        out["properties"]["detail"] = f.detail
    return out


def check_sarif(res: CheckResult, logs: list[str]) -> str:
    """SARIF log of `res`; `logs` are the input log paths as shown (they get LOGROOT)."""
    ids = sorted(RULES)
    index = {r: k for k, r in enumerate(ids)}
    shown = frozenset(logs)
    run = {
        "tool": {"driver": {"name": "lockgraph", "version": __version__,
                            "rules": [_rule(r) for r in ids]}},
        "originalUriBaseIds": {
            "SRCROOT": {"description": {"text": "the scanned kernel tree (--root, or found "
                                                "from --src)"}},
            "LOGROOT": {"description": {"text": "the directory lockgraph ran in, which lockdep "
                                                "log paths are relative to"}}},
        "columnKind": "unicodeCodePoints",
        "results": [_result(f, index, shown) for f in res.findings],
        "properties": {"verdict": res.verdict, "blindSpots": res.blind_spots},
    }
    return dumps({"$schema": SCHEMA, "version": "2.1.0", "runs": [run]})
