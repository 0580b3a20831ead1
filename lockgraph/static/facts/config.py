"""Kernel `.config` reading and `#if` condition evaluation.

Default without `--config` (documented in the README): every configuration.  A group of
`#if` branches whose conditions name only `CONFIG_*` options is a choice between its
branches (prepass.py keeps them all); where the branches cannot be kept, and for conditions
on anything else (`MODULE`, `BITS_PER_LONG`, arch macros), every `CONFIG_*` option counts
as enabled and built in, other conditions take the first branch, except a literal `#if 0`.
With `--config`, one build: options not set in the file are disabled.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

_LINE = re.compile(r'^(CONFIG_\w+)=(y|m|n|"(?:\\.|[^"\\])*"|-?\d+|0[xX][0-9a-fA-F]+)$')
_UNSET = re.compile(r"^# (CONFIG_\w+) is not set$")
_TOKEN = re.compile(r"\s*(?:(\d+[uUlL]*)|(defined|IS_ENABLED|IS_BUILTIN|IS_MODULE|IS_REACHABLE)\b"
                    r"|([A-Za-z_]\w*)|(&&|\|\||==|!=|<=|>=|<<|>>|[!()<>+\-*/%]))")


@dataclass(frozen=True, slots=True)
class Config:
    values: dict[str, str] = field(default_factory=dict)
    source: str = ""

    def value(self, name: str) -> str | None:
        return self.values.get(name)


def load_config(path: Path, warn=None) -> Config:
    """Read a .config as Kconfig writes it.  A line of any other shape is skipped with a
    warning naming file:line (through `warn`): a hand-edited or truncated file must not
    silently turn an option off, nor stop the run."""
    values: dict[str, str] = {}
    seen = 0
    for n, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        line = line.rstrip("\r")
        m = _LINE.match(line)
        if m:
            values[m.group(1)] = m.group(2)[1:-1] if m.group(2).startswith('"') else m.group(2)
            seen += 1
        elif _UNSET.match(line):
            values.pop(_UNSET.match(line).group(1), None)  # type: ignore[union-attr]
            seen += 1
        elif line.strip() and not line.startswith("#") and warn is not None:
            shown = line if len(line) <= 60 else line[:57] + "..."
            warn(f"{path}:{n}: warning: not a .config line, ignored "
                 f"(CONFIG_NAME=y|m|n|\"text\"|number, or # CONFIG_NAME is not set): {shown!r}")
    if not seen and warn is not None:
        warn(f"{path}: warning: no CONFIG_ option in this .config: every option counts as off")
    return Config(values, str(path))


class _Unknown(Exception):
    pass


def _option(name: str, config: Config | None, how: str) -> int:
    if not name.startswith("CONFIG_"):
        raise _Unknown(name)
    if config is None:
        return 0 if how == "IS_MODULE" else 1
    v = config.value(name)
    # autoconf.h: an option set to m defines CONFIG_X_MODULE, not CONFIG_X -- `#ifdef
    # CONFIG_X` and `#if CONFIG_X` are false for a module (IS_ENABLED() is true)
    if how == "defined":
        if name.endswith("_MODULE"):
            return int(config.value(name[:-7]) == "m")
        return int(v is not None and v not in ("n", "m"))
    if how == "IS_MODULE":
        return int(v == "m")
    if how == "IS_BUILTIN":
        return int(v == "y")
    if how in ("IS_ENABLED", "IS_REACHABLE"):
        return int(v in ("y", "m"))
    if v is None or v in ("n", "m"):
        return 0
    if v == "y":
        return 1
    try:
        return int(v, 0)
    except ValueError:
        return 1


def eval_condition(expr: str, config: Config | None) -> bool:
    """Evaluate a `#if` expression; unknown macros follow the first-branch rule (True)."""
    toks: list[str] = []
    pos = 0
    expr = expr.strip()
    try:
        while pos < len(expr):
            m = _TOKEN.match(expr, pos)
            if not m or m.end() == pos:
                raise _Unknown(expr[pos:])
            pos = m.end()
            num, fn, ident, op = m.groups()
            if num:
                toks.append(str(int(re.sub(r"[uUlL]+$", "", num), 0)))
            elif fn:
                m2 = re.match(r"\s*\(\s*([A-Za-z_]\w*)\s*\)|\s+([A-Za-z_]\w*)", expr[pos:])
                if not m2:
                    raise _Unknown(fn)
                pos += m2.end()
                toks.append(str(_option(m2.group(1) or m2.group(2), config, fn)))
            elif ident:
                toks.append(str(_option(ident, config, "value")))
            else:
                toks.append({"&&": " and ", "||": " or ", "!": " not "}.get(op, op))
        py = " ".join(toks)
        return bool(eval(py, {"__builtins__": {}}, {}))  # noqa: S307 - only our tokens
    except _Unknown:
        return True
    except Exception:  # malformed expression in the source: treat as unknown
        return True
