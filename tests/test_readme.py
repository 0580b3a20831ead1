"""The README is the user's first contact: its commands, rule table and CI must agree."""

from __future__ import annotations

import re
import site
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

from lockgraph.rules import RULES

from conftest import FIXTURES, ROOT

README = (ROOT / "README.md").read_text()


def quick_start_commands() -> list[str]:
    section = README.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```sh\n(.*?)\n```", section, re.S)


def test_quick_start_has_exactly_two_one_line_commands():
    cmds = quick_start_commands()
    assert len(cmds) == 2
    assert all("\n" not in c for c in cmds)
    assert "lockgraph check fixtures/" in cmds[0]
    assert "pytest" in cmds[1]
    example = re.search(r"lockgraph check (\S+)", cmds[0]).group(1)
    assert (ROOT / example).is_file()


def test_ci_runs_the_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text()
    assert quick_start_commands()[1] in ci.splitlines()


def test_rule_table_matches_rules():
    table = README.split("<!-- rules-table", 1)[1].split("<!-- end rules-table -->", 1)[0]
    rows = [r for r in table.splitlines() if r.startswith("| LG")]
    want = [f"| {r.id} | {r.slug} | {r.severity.value} | {r.summary} |" for r in RULES.values()]
    assert rows == want


@pytest.mark.slow
def test_wheel_carries_the_grammars_and_runs_from_elsewhere(tmp_path):
    """pip install . must work away from the checkout: grammars/ lives inside the wheel."""
    pytest.importorskip("hatchling")
    dist = tmp_path / "dist"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps",
                    "--no-build-isolation", "-w", str(dist), str(ROOT)], check=True)
    (wheel,) = dist.glob("lockgraph-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "lockgraph/grammars/lockdep.lark" in names
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    py = env_dir / "bin" / "python"
    # Dependencies come from this interpreter's site-packages (no network); lockgraph itself
    # only from the wheel, which the fresh venv's own site-packages puts first.
    inner = subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                           capture_output=True, text=True, check=True).stdout.strip()
    (Path(inner) / "outer-deps.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    subprocess.run([str(py), "-m", "pip", "install", "-q", "--no-deps", "--no-index",
                    "--ignore-installed", str(wheel)],
                   check=True)
    work = tmp_path / "elsewhere"
    work.mkdir()
    log = work / "seed.log"
    log.write_bytes((FIXTURES / "logs" / "seed-rfc-dtor-kswapd.log").read_bytes())
    res = subprocess.run([str(env_dir / "bin" / "lockgraph"), "check", "seed.log"], cwd=work,
                         capture_output=True, text=True, env={"PATH": "/usr/bin:/bin"})
    assert res.returncode == 1, res.stderr
    assert "LG101" in res.stdout
    imported = subprocess.run([str(py), "-c", "import lockgraph, sys; print(lockgraph.__file__)"],
                              cwd=work, capture_output=True, text=True, check=True).stdout
    assert str(env_dir) in imported
