"""Which files and directories of a kernel tree one build compiles, from its kbuild Makefiles.

With `--config`, an `#if` is evaluated for one build; the files that build never compiles
must go as well, or their definitions still answer calls.  mm/kmemleak.c is the example:
built only with CONFIG_DEBUG_KMEMLEAK (`obj-$(CONFIG_DEBUG_KMEMLEAK) += kmemleak.o`), yet
kfree()'s call to kmemleak_free() reaches it when the tree is scanned whole, and most of the
whole-kernel lock cycles ran through it.

Only the plain kbuild forms are read: `obj-$(CONFIG_X) += a.o dir/`, `obj-y`, `lib-y`, and
composite objects (`foo-y := a.o b.o`, `foo-$(CONFIG_Y) += c.o`, `foo-objs`).  Anything this
does not understand keeps a file: a rule inside `ifdef`/`ifeq`, a variable (`$(mmu-y)`), a
file no rule names (`#include "percpu-vm.c"`).  A file or directory is left out only when
every rule naming it depends on an option the .config leaves unset.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from lockgraph.static.facts.config import Config

_RULE = re.compile(r"^([A-Za-z0-9_.\-]+?)-(y|m|objs|\$\(CONFIG_([A-Za-z0-9_]+)\))\s*(?:\+=|:=|\?=|=)\s*(.*)$")
_COND = re.compile(r"^(?:ifdef|ifndef|ifeq|ifneq)\b")
_ELSE = re.compile(r"^else\b")
_END = re.compile(r"^endif\b")
#: Rule lists kbuild links into the kernel (or builds as modules) directly; any other name
#: before `-y` is a composite object, built when its own object is.
_LISTS = frozenset({"obj", "lib", "core", "drivers", "net", "libs", "virt", "head", "subdir"})

UNKNOWN = "?"   # a rule whose condition this reader cannot evaluate


def _rules(path: Path) -> list[tuple[str, str | None, list[str]]]:
    """(list name, condition option or None or UNKNOWN, items) of one Makefile/Kbuild."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return []
    text = text.replace("\\\n", " ")
    out = []
    depth = 0
    for line in text.split("\n"):
        line = line.split("#", 1)[0].strip()
        if _COND.match(line):
            depth += 1
            continue
        if _END.match(line):
            depth = max(0, depth - 1)
            continue
        if _ELSE.match(line):
            continue
        m = _RULE.match(line)
        if not m:
            continue
        # -y, -m and -objs lists have no option (group 3 is None): always built
        out.append((m.group(1), UNKNOWN if depth else m.group(3), m.group(4).split()))
    return out


class Kbuild:
    """The build's view of a tree under one .config; `unbuilt` lists what it skips."""

    def __init__(self, config: Config) -> None:
        self.config = config

    def _on(self, cond: str | None) -> bool:
        if cond is None or cond == UNKNOWN:
            return True
        return self.config.value(f"CONFIG_{cond}") in ("y", "m")

    def unbuilt(self, under: list[Path], prune: list[Path] = ()) -> list[Path]:
        """Directories and C files below `under` (directories of the tree) that no rule of
        the .config builds, outermost first; nothing below a skipped directory is listed,
        nor anything below `prune` (excluded already)."""
        out: list[Path] = []
        pruned = {str(p) for p in prune}
        for top in under:
            for d, dirs, names in os.walk(top):
                here = Path(d)
                dirs[:] = [x for x in dirs if str(here / x) not in pruned]
                rules = _rules(here / "Makefile") + _rules(here / "Kbuild")
                if not rules:
                    continue
                objs: dict[str, list[tuple[str, str | None]]] = {}
                for name, cond, items in rules:
                    for it in items:
                        if it.endswith(".o") or it.endswith("/"):
                            objs.setdefault(it, []).append((name, cond))
                memo: dict[str, bool] = {}

                def built(obj: str, seen: frozenset[str] = frozenset()) -> bool:
                    if obj in memo:
                        return memo[obj]
                    mentions = objs.get(obj)
                    if not mentions or obj in seen:
                        return True      # no rule names it: keep it
                    ok = any(self._on(cond) and (name in _LISTS or built(name + ".o", seen | {obj}))
                             for name, cond in mentions)
                    memo[obj] = ok
                    return ok

                kept = []
                for x in sorted(dirs):
                    if built(x + "/"):
                        kept.append(x)
                    else:
                        out.append(here / x)
                dirs[:] = kept
                for n in sorted(names):
                    if n.endswith(".c") and not built(n[:-2] + ".o"):
                        out.append(here / n)
        return out
