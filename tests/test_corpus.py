"""Every real lockdep log of the development corpus parses to its expected facts."""

from __future__ import annotations

import json

import pytest

from lockgraph.ingest.logs import parse_log
from lockgraph.ingest.logs.primary import primary_facts

from conftest import CORPUS

LOGS = sorted(CORPUS.glob("*.log"))


def expected(log):
    return json.loads((CORPUS / "expected" / (log.stem + ".json")).read_text())


@pytest.mark.parametrize("log", LOGS, ids=[p.stem for p in LOGS])
def test_corpus_log_matches_expected_facts(log):
    exp = expected(log)
    got = primary_facts(parse_log(log).reports)
    assert got["kind"] == exp["kind"]
    assert got["new_lock"] == exp["new_lock"]
    assert got["held_lock"] == exp["held_lock"]
    assert set(map(tuple, got["edges"])) == set(map(tuple, exp["edges"]))


@pytest.mark.parametrize("log", LOGS, ids=[p.stem for p in LOGS])
def test_corpus_task_and_held_locks(log):
    exp = expected(log)
    got = primary_facts(parse_log(log).reports)
    assert got["task"] == exp["task"]
    assert got["held_locks"] == exp["held_locks"]
    if exp["kind"] == "other":
        assert got["other_kind"] == exp.get("other_kind", [])


def test_corpus_is_complete():
    assert len(LOGS) == 97
