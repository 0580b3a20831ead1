"""$LOCKGRAPH_TIMINGS: every phase of a run on stderr, stdout untouched."""

from __future__ import annotations

import re

from typer.testing import CliRunner

from lockgraph.cli import app

from conftest import FIXTURES

runner = CliRunner()
TREE = FIXTURES / "csrc" / "verdicts"


def _check(monkeypatch, tmp_path, timings: bool):
    if timings:
        monkeypatch.setenv("LOCKGRAPH_TIMINGS", "1")
    else:
        monkeypatch.delenv("LOCKGRAPH_TIMINGS", raising=False)
    res = runner.invoke(app, ["check", "--src", str(TREE), "--root", str(TREE), "--cache",
                              str(tmp_path / ("t" if timings else "n")), "--format", "json"])
    assert res.exit_code == 1, res.stderr
    return res


def test_each_phase_is_announced_and_timed_on_stderr_only(monkeypatch, tmp_path):
    plain = _check(monkeypatch, tmp_path, False)
    timed = _check(monkeypatch, tmp_path, True)
    assert timed.stdout == plain.stdout
    assert "lockgraph: [" not in plain.stderr
    started = re.findall(r"^lockgraph: \[ *[\d.]+ s\] (.+) \.\.\.$", timed.stderr, re.M)
    ended = re.findall(r"^lockgraph: \[ *[\d.]+ s\] (.+): [\d.]+ s, peak RSS -?\d+ MB$",
                       timed.stderr, re.M)
    assert started == ended  # a stalled run's last line names the phase it is in
    for phase in ("sources (stat, hash)", "facts (cached or parsed)", "solve", "graph",
                  "verdicts", "cycles", "render", "store result"):
        assert phase in started


EXIT_PROBE = """
import sys
import lockgraph.pipeline as pipeline
from lockgraph import cli

class Witness:
    def __del__(self):
        sys.stderr.write("result freed at exit\\n")

real = pipeline.run

def run(*args):
    res = real(*args)
    res.graph.graph["witness"] = Witness()  # lives as long as the run's result
    return res

pipeline.run = run
sys.argv = ["lockgraph", "check", "--src", sys.argv[1], "--root", sys.argv[1], "--no-cache",
            "--format", "json"]
cli.main()
"""


def test_the_process_exits_without_freeing_the_result_one_object_at_a_time(tmp_path):
    """A whole-tree result is ~16 GB of small objects: freeing them at exit took 58 s."""
    import subprocess
    import sys

    from conftest import ROOT

    res = subprocess.run([sys.executable, "-c", EXIT_PROBE, str(TREE)], capture_output=True,
                         text=True, cwd=ROOT)
    want = runner.invoke(app, ["check", "--src", str(TREE), "--root", str(TREE), "--no-cache",
                               "--format", "json"])
    assert res.returncode == want.exit_code == 1, res.stderr
    assert res.stdout == want.stdout  # flushed in full before leaving
    assert "result freed at exit" not in res.stderr
