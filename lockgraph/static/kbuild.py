"""Which files and directories of a kernel tree one build compiles, from its kbuild Makefiles.

With `--config`, an `#if` is evaluated for one build; the files that build never compiles
must go as well, or their definitions still answer calls.  mm/kmemleak.c is the example:
built only with CONFIG_DEBUG_KMEMLEAK (`obj-$(CONFIG_DEBUG_KMEMLEAK) += kmemleak.o`), yet
kfree()'s call to kmemleak_free() reaches it when the tree is scanned whole, and most of the
whole-kernel lock cycles ran through it.

Only the plain kbuild forms are read: `obj-$(CONFIG_X) += a.o dir/`, `obj-y`, `lib-y`, and
composite objects (`foo-y := a.o b.o`, `foo-$(CONFIG_Y) += c.o`, `foo-objs`), under the
conditionals whose test is an option of the .config (`ifdef CONFIG_X`, `ifndef`, `ifeq
($(CONFIG_X),y)`, `ifneq ($(CONFIG_A)$(CONFIG_B),)`, `else`, `else ifeq`).  A later `:=`
replaces what a list held: mm/Makefile's `mmu-y := nommu.o` is gone once
`mmu-$(CONFIG_MMU) := highmem.o ...` runs, so an MMU kernel does not link mm/nommu.c's
second vfree().  Anything this does not understand keeps a file: a rule under any other
test (`ifeq ($(ARCH),x86_64)`), a name built from a variable (`memcpy_$(BITS).o`), a file no
rule names (`#include "percpu-vm.c"`).  A file or directory is left out only when every
rule naming it is off in the .config: its option unset, inside a conditional that is
false, or replaced by a later assignment.

A .c file no rule names is compiled where another file `#include`s it: i915's
gt/mock_engine.c and its fifty selftests are included by intel_engine_cs.c and friends
under `#if IS_ENABLED(CONFIG_DRM_I915_SELFTEST)`, which a distribution kernel leaves off;
scanned on their own, their mock ops tables joined every `ce->ops->unpin()` call.  Such a
file is left out when its includers are found and every include of it sits under a
conditional the .config makes false.  Includers are looked for in its directory and the
two above: one including it from a directory beside it is not seen, and the file would be
left out wrongly — its definitions then show as missing, a listed blind spot, never a
silent edge.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from lockgraph.static.facts.config import Config, eval_condition

_RULE = re.compile(r"^([A-Za-z0-9_.\-]+?)-(y|m|objs|\$\(CONFIG_([A-Za-z0-9_]+)\))\s*(\+=|:=|\?=|=)\s*(.*)$")
_IF = re.compile(r"^(else\s+)?(ifdef|ifndef|ifeq|ifneq)\b\s*(.*)$")
_ELSE = re.compile(r"^else\s*$")
_END = re.compile(r"^endif\b")
_OPTION = re.compile(r"CONFIG_[A-Za-z0-9_]+")
_REF = re.compile(r"\$\((CONFIG_[A-Za-z0-9_]+)\)")
_LISTREF = re.compile(r"\$\(([A-Za-z0-9_.\-]+?)-(?:y|m|objs)\)")
#: Rule lists kbuild links into the kernel (or builds as modules) directly; any other name
#: before `-y` is a composite object, built when its own object is.
_LISTS = frozenset({"obj", "lib", "core", "drivers", "net", "libs", "virt", "head", "subdir"})

_INCLUDE_C = re.compile(r'^[ \t]*#[ \t]*include[ \t]*"([^"]+\.c)"', re.M)
_PP = re.compile(r"^\s*#\s*(if|ifdef|ifndef|elif|elifdef|elifndef|else|endif)\b(.*)$")
_COMMENT = re.compile(r"/\*.*?\*/", re.S)
_DIRECTIVE = re.compile(r"^[ \t]*#.*$", re.M)

UNKNOWN = "?"   # a rule whose condition this reader cannot evaluate
NEVER = "!"     # a rule the .config never runs (a false conditional, a replaced value)


def _test(kind: str, arg: str, config: Config) -> bool | None:
    """One conditional's value under the .config; None when it tests anything but options."""
    arg = arg.strip()
    if kind in ("ifdef", "ifndef"):
        if not _OPTION.fullmatch(arg):
            return None
        return (config.value(arg) not in (None, "")) == (kind == "ifdef")
    if not (arg.startswith("(") and arg.endswith(")")) or arg.count(",") != 1:
        return None
    sides = [_REF.sub(lambda m: config.value(m.group(1)) or "", x).strip()
             for x in arg[1:-1].split(",")]
    if any("$" in x or "(" in x for x in sides):
        return None
    return (sides[0] == sides[1]) == (kind == "ifeq")


def _rules(path: Path, config: Config | None = None) -> list[tuple[str, str | None, list[str]]]:
    """(list name, condition: an option, None, UNKNOWN or NEVER, items) of one
    Makefile/Kbuild, in order.  An `=`/`:=` that surely runs turns the earlier rules of the variable it sets
    NEVER (one build has one value)."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return []
    text = text.replace("\\\n", " ")
    out: list[tuple[str, str | None, list[str]]] = []
    sets: list[str] = []          # the variable each rule of `out` sets (`mmu-y`), "" if unsure
    stack: list[list] = []        # per open conditional: [this branch, some earlier branch taken]
    for line in text.split("\n"):
        line = line.split("#", 1)[0].strip()
        m = _IF.match(line)
        if m and m.group(1) or _ELSE.match(line):   # `else` is `else ifeq` on a true test
            if stack:
                top = stack[-1]
                top[1] = _or(top[1], top[0])
                t = True if not m else _test(m.group(2), m.group(3), config) if config else None
                top[0] = _and(_not(top[1]), t)
            continue
        if m:
            t = _test(m.group(2), m.group(3), config) if config else None
            stack.append([t, False])
            continue
        if _END.match(line):
            if stack:
                stack.pop()
            continue
        m = _RULE.match(line)
        if not m:
            continue
        here = True
        for branch, _ in stack:
            here = _and(here, branch)
        name, kind, option, op, items = m.group(1), m.group(2), m.group(3), m.group(4), m.group(5).split()
        if here is False:
            out.append((name, NEVER, items))
            sets.append("")
            continue
        var = ""
        if here is True and config is not None:
            var = f"{name}-{config.value('CONFIG_' + option) or 'n'}" if option else f"{name}-{kind}"
        if var and op in (":=", "=") and not any("$(" in x for x in items):
            for k, v in enumerate(sets):   # the earlier values of this variable are gone
                if v == var:
                    out[k], sets[k] = (out[k][0], NEVER, out[k][2]), ""
        # -y, -m and -objs lists have no option (group 3 is None): always built
        out.append((name, option if here is True else UNKNOWN, items))
        sets.append(var)
    return out


def _not(a: bool | None) -> bool | None:
    return None if a is None else not a


def _and(a: bool | None, b: bool | None) -> bool | None:
    if a is False or b is False:
        return False
    return None if a is None or b is None else True


def _or(a: bool | None, b: bool | None) -> bool | None:
    if a is True or b is True:
        return True
    return None if a is None or b is None else False


class Kbuild:
    """The build's view of a tree under one .config; `unbuilt` lists what it skips."""

    def __init__(self, config: Config) -> None:
        self.config = config

    def _on(self, cond: str | None) -> bool:
        if cond is None or cond == UNKNOWN:
            return True
        if cond == NEVER:
            return False
        return self.config.value(f"CONFIG_{cond}") in ("y", "m")

    def unbuilt(self, under: list[Path], prune: list[Path] = ()) -> list[Path]:
        """Directories and C files below `under` (directories of the tree) that no rule of
        the .config builds, outermost first; nothing below a skipped directory is listed,
        nor anything below `prune` (excluded already)."""
        out: list[Path] = []
        unnamed: list[Path] = []    # .c files no rule read so far names
        named: set[str] = set()      # the objects rules name, as paths
        pruned = {str(p) for p in prune}
        for top in under:
            for d, dirs, names in os.walk(top):
                dirs[:] = [x for x in dirs if os.path.join(d, x) not in pruned]
                rules = []
                for n in ("Makefile", "Kbuild"):
                    if n in names:
                        rules += _rules(Path(d, n), self.config)
                here = Path(d)
                for name, _, items in rules:
                    named.update(os.path.normpath(os.path.join(d, it)) for it in items if it.endswith(".o"))
                unnamed += [here / n for n in sorted(names) if n.endswith(".c")
                            and os.path.normpath(os.path.join(d, n[:-2] + ".o")) not in named]
                if not rules:
                    continue
                objs: dict[str, list[tuple[str, str | None]]] = {}
                for name, cond, items in rules:
                    for it in items:
                        if it.endswith(".o") or it.endswith("/"):
                            objs.setdefault(it, []).append((name, cond))
                        # `libphy-y += $(mdio-bus-y)`: mdio-bus's objects are built with libphy
                        for ref in _LISTREF.findall(it):
                            objs.setdefault(ref + ".o", []).append((name, cond))
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
        return out + self._included_only_when_off(unnamed, set(out), under)

    def _included_only_when_off(self, unnamed: list[Path], unbuilt: set[Path],
                                under: list[Path]) -> list[Path]:
        """The files of `unnamed` (no rule names them) that are #included, and only under
        conditionals the .config makes false, or only by files left out themselves."""
        tops = [os.path.normpath(t) for t in under]
        unnamed = [Path(os.path.normpath(u)) for u in unnamed]
        includes: dict[Path, list[tuple[Path, bool | None]]] = {}   # file -> (includer, live)
        read: set[Path] = set()

        def inside(d: Path) -> bool:
            return any(str(d) == t or str(d).startswith(t + os.sep) for t in tops)

        for u in unnamed:
            # its directory and the two above; an includer beside it (`../x/y.c`) is not
            # looked for (reading those directories doubled the time of every run)
            for d in (u.parent, u.parent.parent, u.parent.parent.parent):
                if d in read or not inside(d):
                    continue
                read.add(d)
                for inc, target, live in self._includes_in(d):
                    includes.setdefault(target, []).append((inc, live))
        off: list[Path] = []
        gone = set(unbuilt)
        changed = True
        while changed:   # a selftest included only by another left-out selftest
            changed = False
            for u in unnamed:
                found = includes.get(u)
                if u in gone or not found:
                    continue
                if all(live is False or inc in gone for inc, live in found):
                    gone.add(u)
                    off.append(u)
                    changed = True
        return sorted(off)

    def _includes_in(self, d: Path) -> list[tuple[Path, Path, bool | None]]:
        """(includer, included file, is the include compiled) for the .c includes of the .c
        files directly in d; None when a conditional around it cannot be evaluated."""
        out = []
        try:
            names = sorted(n for n in os.listdir(d) if n.endswith(".c"))
        except OSError:
            return out
        for n in names:
            p = d / n
            try:
                with open(p, "rb") as fh:
                    raw = fh.read()
            except OSError:
                continue
            if b'.c"' not in raw:   # most files: no .c include, decoded for nothing
                continue
            # a directive inside a block comment is none: blank comments, keep line numbers
            text = _COMMENT.sub(lambda m: "\n" * m.group(0).count("\n"),
                                raw.decode("utf-8", errors="replace"))
            stack: list[bool | None] = []   # per open conditional: this branch compiled?
            taken: list[bool | None] = []   # some earlier branch of it compiled
            for d_ in _DIRECTIVE.finditer(text):   # the directive lines only
                line = d_.group(0)
                m = _PP.match(line)
                if m:
                    kind, expr = m.group(1), m.group(2).split("//", 1)[0].split("/*", 1)[0].strip()
                    if kind in ("if", "ifdef", "ifndef"):
                        cond = (expr if kind == "if" else
                                f"defined({expr})" if kind == "ifdef" else f"!defined({expr})")
                        t = self._truth(cond)
                        stack.append(t)
                        taken.append(t)
                    elif kind.startswith("elif") and stack:   # #elifdef, #elifndef: unknown
                        t = _and(_not(taken[-1]), self._truth(expr) if kind == "elif" else None)
                        stack[-1], taken[-1] = t, _or(taken[-1], t)
                    elif kind == "else" and stack:
                        stack[-1] = _not(taken[-1])
                    elif kind == "endif" and stack:
                        stack.pop()
                        taken.pop()
                    continue
                m = _INCLUDE_C.match(line)
                if m:
                    live: bool | None = True
                    for t in stack:
                        live = _and(live, t)
                    out.append((p, Path(os.path.normpath(d / m.group(1))), live))
        return out

    def _truth(self, expr: str) -> bool | None:
        """A #if expression under the .config: None when it tests anything but options
        (eval_condition reads an unknown macro as true, so both tests come out true)."""
        yes, no = eval_condition(expr, self.config), eval_condition(f"!({expr})", self.config)
        return None if yes == no else yes
