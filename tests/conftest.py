from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "fixtures"
CORPUS = FIXTURES / "lockdep-corpus"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--update-golden", action="store_true",
                     help="rewrite golden files from current output (the run still fails)")


@pytest.fixture
def update_golden(request: pytest.FixtureRequest) -> bool:
    return bool(request.config.getoption("--update-golden"))


@pytest.fixture(scope="session")
def linux_tree() -> Path:
    """The real Linux 6.12 tree (scripts/fetch-linux-source; LOCKGRAPH_LINUX overrides)."""
    import os
    import subprocess

    env = os.environ.get("LOCKGRAPH_LINUX")
    if env:
        return Path(env)
    res = subprocess.run([str(ROOT / "scripts" / "fetch-linux-source")], capture_output=True,
                         text=True)
    if res.returncode != 0:
        pytest.skip(f"linux-source-6.12 unavailable: {res.stderr.strip()}")
    return Path(res.stdout.strip())


@pytest.fixture(autouse=True)
def _private_fact_cache(tmp_path_factory, monkeypatch):
    """Tests never touch the user's fact cache."""
    monkeypatch.setenv("LOCKGRAPH_FACT_CACHE", str(tmp_path_factory.getbasetemp() / "facts"))
