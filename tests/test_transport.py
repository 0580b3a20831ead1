"""The same report must give the same facts however the console, journal or mailer carried it.

Each corpus log is re-sent through another transport (format spec §7.1): CRLF line ends,
a syslog/journalctl prefix, a `<4>` printk level, a printk caller id, or a timestamp added to
a log that had none.  The primary facts must not change.
"""

from __future__ import annotations

import re

import pytest

from lockgraph.ingest.logs import parse_text
from lockgraph.ingest.logs.normalize import decode
from lockgraph.ingest.logs.primary import primary_facts

from conftest import CORPUS

LOGS = sorted(CORPUS.glob("*.log"))
TS = re.compile(r"^(\[\s*\d+\.\d+\])")
ANY_PREFIX = re.compile(r"^(?:<\d>)?\[\s*\d+\.\d+\]")


def _has_prefix(lines):
    return sum(1 for ln in lines if TS.match(ln)) * 2 > max(1, sum(1 for ln in lines if ln.strip()))


def crlf(lines):
    return "\r\n".join(lines)


def syslog(lines):
    if not _has_prefix(lines):
        return None
    return "\n".join(("Apr 10 10:24:19 testnode2 kernel: " + ln) if TS.match(ln) else ln
                     for ln in lines)


def level(lines):
    if not _has_prefix(lines):
        return None
    return "\n".join(("<4>" + ln) if TS.match(ln) else ln for ln in lines)


def caller_id(lines):
    if not _has_prefix(lines) or any(re.match(r"^\[[^\]]*\] ?\[ *[TC]\d", ln) for ln in lines):
        return None
    return "\n".join(TS.sub(r"\1[ T4242]", ln) for ln in lines)


def timestamped(lines):
    if any(ANY_PREFIX.match(ln) for ln in lines):
        return None
    return "\n".join(f"[{100 + i / 1000:12.6f}] {ln}" for i, ln in enumerate(lines))


TRANSPORTS = [crlf, syslog, level, caller_id, timestamped]


def facts(text, name):
    f = primary_facts(parse_text(text, name).reports)
    return f["kind"], f["new_lock"], f["held_lock"], sorted(set(map(tuple, f["edges"]))), f["held_locks"]


def _cases():
    for log in LOGS:
        text, _ = decode(log.read_bytes(), log.name)
        for t in TRANSPORTS:
            moved = t(text.split("\n"))
            if moved is not None:  # only transports that apply to this log's prefix style
                yield pytest.param(log, t, id=f"{log.stem}-{t.__name__}")


@pytest.mark.parametrize(("log", "transport"), list(_cases()))
def test_facts_survive_transport(log, transport):
    text, _ = decode(log.read_bytes(), log.name)
    moved = transport(text.split("\n"))
    assert facts(moved, log.name) == facts(text, log.name)
