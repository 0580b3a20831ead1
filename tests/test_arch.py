"""A tree scan covers what one build compiles: the target arch/, not tools/ or other arches."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from lockgraph.cli import app

runner = CliRunner()

FILES = {
    "mm/slab_user.c": "void use(void) { flush_tlb_all(); }\n",
    "arch/x86/mm/tlb.c": "void flush_tlb_all(void) { spin_lock(&x86_lock); spin_unlock(&x86_lock); }\n",
    "arch/arm64/mm/tlb.c": "void flush_tlb_all(void) { spin_lock(&arm_lock); spin_unlock(&arm_lock); }\n",
    "arch/x86/boot/compressed/misc.c": "void use(void) { mutex_lock(&boot_lock); }\n",
    "tools/lib/shim.c": "void mutex_lock(struct mutex *m) { }\n",
}


@pytest.fixture()
def tree(tmp_path):
    for rel, text in FILES.items():
        p = tmp_path / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    (tmp_path / "Kconfig").write_text("")
    (tmp_path / "MAINTAINERS").write_text("")
    return tmp_path


def _scan(*args):
    res = runner.invoke(app, ["scan", *map(str, args), "--no-cache", "--format", "json"])
    return res.exit_code, (json.loads(res.stdout) if res.exit_code == 0 else res.stderr)


def _locks(data):
    return sorted({a["lock"] for a in data["acquisitions"]})


def test_default_is_x86_without_host_code(tree):
    code, data = _scan(tree)
    assert code == 0
    assert data["files"] == 2
    assert _locks(data) == ["x86_lock"]
    assert "tools" in data["not_scanned"] and "arch/arm64" in data["not_scanned"]
    assert "arch/x86/boot" in data["not_scanned"]


@pytest.mark.parametrize("arch, locks", [("arm64", ["arm_lock"]), ("all", ["arm_lock", "x86_lock"])])
def test_arch_option(tree, arch, locks):
    code, data = _scan(tree, "--arch", arch)
    assert code == 0 and _locks(data) == locks


def test_config_selects_the_arch(tree, tmp_path):
    cfg = tmp_path / "dot-config"
    cfg.write_text("CONFIG_ARM64=y\nCONFIG_SMP=y\n")
    code, data = _scan(tree, "--config", cfg)
    assert code == 0 and _locks(data) == ["arm_lock"]


def test_a_directory_asked_for_is_scanned(tree):
    code, data = _scan(tree / "tools")
    assert code == 0 and data["files"] == 1


def test_unknown_arch_is_a_usage_error(tree):
    code, err = _scan(tree, "--arch", "vax")
    assert code == 2 and "unknown --arch 'vax'" in err and "Traceback" not in err
