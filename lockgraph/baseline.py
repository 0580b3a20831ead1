"""Accepted findings: a baseline file hides what a team already knows about.

A baseline lists finding ids, which are derived from rule, locks and functions — never from
line numbers or lockdep's `#N` suffixes — so it keeps matching after unrelated edits move
code, and after another boot numbers the same class differently.  Rule, lock and message are
written next to each id only so that a human can read and prune the file; matching uses the
id alone.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

from lockgraph.checks import CheckResult
from lockgraph.errors import InputError
from lockgraph.model import Finding

BASELINE_VERSION = 1


def baseline_json(findings: list[Finding]) -> str:
    rows = sorted(({"id": f.id, "rule": f.rule, "lock": f.lock, "message": f.message}
                   for f in findings), key=lambda r: r["id"])
    return json.dumps({"schema_version": BASELINE_VERSION, "findings": rows}, indent=2,
                      sort_keys=True, ensure_ascii=False) + "\n"


def load_baseline(path: Path, shown: str) -> frozenset[str]:
    """The accepted ids; anything that is not a baseline this module wrote is an InputError."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError("no such baseline file", path=shown) from None
    except IsADirectoryError:
        raise InputError("baseline is a directory, not a file", path=shown) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read baseline: {exc}", path=shown) from None
    except json.JSONDecodeError as exc:
        raise InputError(f"baseline is not JSON: {exc.msg}", exc.lineno, shown) from None
    rows = data.get("findings") if isinstance(data, dict) else None
    if (not isinstance(rows, list) or data.get("schema_version") != BASELINE_VERSION
            or not all(isinstance(r, dict) and isinstance(r.get("id"), str) for r in rows)):
        raise InputError("not a lockgraph baseline (expected {\"schema_version\": 1, "
                         "\"findings\": [{\"id\": …}, …]}; write one with --write-baseline)",
                         path=shown)
    return frozenset(r["id"] for r in rows)


def apply_baseline(res: CheckResult, accepted: frozenset[str]) -> tuple[CheckResult, int]:
    """The result without accepted findings, and how many were hidden.

    The verdict and the exit code follow from what is left, which is the point of a
    baseline; the root verdicts stay as they are, since they describe the code, not the
    findings a team chose to accept.
    """
    kept = [f for f in res.findings if f.id not in accepted]
    return replace(res, findings=kept), len(res.findings) - len(kept)
