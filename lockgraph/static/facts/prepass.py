"""Pre-pass over raw, unpreprocessed kernel C: comments, strings, `#if` groups, functions.

Everything keeps its byte offset and line number: comments and dropped `#if` branches are
blanked to spaces (newlines kept), so every later stage can point at file:line in the
user's tree.  Measured design: docs/kernel-facts.md, "C parsing design" (pre-pass and
segmentation in plain re).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from lockgraph.static.facts.config import Config, eval_condition

_COMMENT_STRING = re.compile(
    r"//[^\n]*|/\*.*?\*/|\"(?:\\.|[^\"\\\n])*\"|'(?:\\.|[^'\\\n])*'", re.S)
_DIRECTIVE = re.compile(r"^[ \t]*#[ \t]*(\w+)(.*)$")
_IDENT_BEFORE = re.compile(r"([A-Za-z_]\w*)\s*$")
#: Annotations that may stand between a parameter list and the body.
_ANNOT = frozenset({
    "__acquires", "__releases", "__must_hold", "__attribute__", "__cond_acquires",
    "__no_context_analysis", "__printf", "__scanf", "__malloc", "__alloc_size",
})
_NOT_FUNCS = frozenset({"if", "while", "for", "switch", "return", "sizeof", "__typeof__",
                        "typeof", "defined", "__attribute__", "asm", "__asm__"})


def _blank(m: re.Match[str]) -> str:
    s = m.group(0)
    if s[0] in "\"'":
        return s[0] + re.sub(r"[^\n]", " ", s[1:-1]) + s[-1]
    return re.sub(r"[^\n]", " ", s)


def strip_comments(src: str) -> str:
    """Comments become blanks; string and char literals keep only their quotes."""
    return _COMMENT_STRING.sub(_blank, src)


@dataclass(slots=True)
class Conditional:
    """Per line: the `#if` conditions it depends on (for evidence and config reporting)."""

    conds: list[tuple[str, ...]]

    def at(self, line: int) -> tuple[str, ...]:
        return self.conds[line - 1] if 0 < line <= len(self.conds) else ()


def resolve_conditionals(text: str, config: Config | None) -> tuple[str, Conditional]:
    """Blank directives and inactive `#if` branches; keep line numbers.

    With a config, conditions on CONFIG_* are evaluated; other macros, and every condition
    without a config, follow the documented default (config.py): CONFIG_* options count as
    enabled, anything else takes the first branch (`#if 0` takes its `#else`).
    """
    lines = text.split("\n")
    out: list[str] = []
    conds: list[tuple[str, ...]] = []
    # stack entries: [active_here, any_branch_taken, parent_active, label]
    stack: list[list] = []
    active = True
    i = 0
    n = len(lines)
    for j in _directive_lines(text):
        if j < i:
            continue  # a continuation line of the directive before
        _copy(lines, i, j, active, stack, out, conds)
        i = j
        line = lines[i]
        m = _DIRECTIVE.match(line)
        # join continuation lines of the directive
        full = line
        span = 1
        while full.endswith("\\") and i + span < n:
            full = full[:-1] + " " + lines[i + span]
            span += 1
        d, rest = m.group(1), _DIRECTIVE.match(full).group(2).strip()  # type: ignore[union-attr]
        if d in ("if", "ifdef", "ifndef"):
            expr = rest if d == "if" else (f"defined({rest})" if d == "ifdef" else f"!defined({rest})")
            val = eval_condition(expr, config)
            take = active and val
            stack.append([take, take, active, _label(expr, True)])
            active = take
        elif d == "elif" and stack:
            top = stack[-1]
            val = eval_condition(rest, config)
            take = top[2] and not top[1] and val
            top[0], top[1], top[3] = take, top[1] or take, _label(rest, True)
            active = take
        elif d == "else" and stack:
            top = stack[-1]
            take = top[2] and not top[1]
            top[0], top[1] = take, True
            top[3] = _negate(top[3])
            active = take
        elif d == "endif" and stack:
            top = stack.pop()
            active = top[2]
        out.extend([""] * span)
        conds.extend([tuple(e[3] for e in stack if e[3])] * span)
        i += span
    _copy(lines, i, n, active, stack, out, conds)
    return "\n".join(out), Conditional(conds)


_DIRECTIVE_START = re.compile(r"^[ \t]*#[ \t]*\w", re.M)


def _directive_lines(text: str) -> list[int]:
    """Indexes of the lines _DIRECTIVE matches, found in one pass over the text: the lines
    between them are copied in runs instead of being matched one by one."""
    out: list[int] = []
    line = pos = 0
    for m in _DIRECTIVE_START.finditer(text):
        line += text.count("\n", pos, m.start())
        pos = m.start()
        out.append(line)
    return out


def _copy(lines: list[str], i: int, j: int, active: bool, stack: list[list], out: list[str],
          conds: list[tuple[str, ...]]) -> None:
    """Lines i..j-1, none a directive: kept or blanked, each with its own conditions tuple
    (one object per line, as a pickled FileFacts has always had them)."""
    if j <= i:
        return
    out.extend(lines[i:j] if active else [""] * (j - i))
    labels = [e[3] for e in stack if e[3]]
    conds.extend([tuple(labels) for _ in range(j - i)] if labels else [()] * (j - i))


def _label(expr: str, _pos: bool) -> str:
    expr = " ".join(expr.split())
    return expr if "CONFIG_" in expr else ""


def _negate(label: str) -> str:
    if not label:
        return ""
    return label[1:] if label.startswith("!") and "(" not in label[1:2] else f"!({label})"


@dataclass(slots=True)
class FuncSrc:
    """One function definition cut out of a file."""

    name: str
    line: int              # line of the name
    params: str
    body_start: int        # offset of '{'
    body_end: int          # offset just past '}'
    annotations: tuple[str, ...] = ()
    is_static: bool = False


@dataclass(slots=True)
class FileText:
    path: str
    text: str                       # stripped + conditionals resolved
    cond: Conditional
    functions: list[FuncSrc] = field(default_factory=list)
    line_starts: list[int] = field(default_factory=list)
    unbalanced: bool = False

    def line_of(self, offset: int) -> int:
        from bisect import bisect_right
        return bisect_right(self.line_starts, offset)


def _match_back(text: str, close: int, open_ch: str, close_ch: str) -> int:
    depth = 0
    k = close
    while k >= 0:
        c = text[k]
        if c == close_ch:
            depth += 1
        elif c == open_ch:
            depth -= 1
            if depth == 0:
                return k
        k -= 1
    return -1


_TOP = re.compile(r"[{}]")


def cut_functions(ft: FileText) -> None:
    """Find function bodies: `{` at brace depth 0 right after a parameter list."""
    text = ft.text
    depth = 0
    open_at = -1
    for m in _TOP.finditer(text):
        c = m.group(0)
        if c == "{":
            if depth == 0:
                open_at = m.start()
            depth += 1
        else:
            depth -= 1
            if depth < 0:
                ft.unbalanced = True
                depth = 0
                continue
            if depth == 0 and open_at >= 0:
                fn = _function_head(text, open_at)
                if fn is not None:
                    name, name_off, params, annots, static = fn
                    ft.functions.append(FuncSrc(name, ft.line_of(name_off), params, open_at,
                                                m.end(), annots, static))
                open_at = -1
    if depth != 0:
        ft.unbalanced = True


def _function_head(text: str, brace: int):
    k = brace - 1
    annots: list[str] = []
    while True:
        while k >= 0 and text[k] in " \t\n":
            k -= 1
        if k < 0 or text[k] != ")":
            return None
        op = _match_back(text, k, "(", ")")
        if op < 0:
            return None
        m = _IDENT_BEFORE.search(text, max(0, op - 200), op)
        if not m:
            return None
        name = m.group(1)
        if name in _ANNOT:
            annots.append(f"{name}({' '.join(text[op + 1:k].split())})")
            k = m.start(1) - 1
            continue
        if name in _NOT_FUNCS or name.isupper() and len(name) > 1 and name.startswith("DEFINE"):
            return None
        params = " ".join(text[op + 1:k].split())
        line_start = text.rfind("\n", 0, m.start(1))
        prefix = text[max(0, line_start - 200):m.start(1)]
        # a ';' or '=' between the previous statement and the name: not a definition
        tail = prefix.rsplit(";", 1)[-1].rsplit("}", 1)[-1]
        if "=" in tail:
            return None
        return name, m.start(1), params, tuple(reversed(annots)), "static" in tail.split()


def prepare(path: str, src: str, config: Config | None) -> FileText:
    stripped = strip_comments(src)
    text, cond = resolve_conditionals(stripped, config)
    starts = [0] + [m.end() for m in re.finditer("\n", text)]
    ft = FileText(path, text, cond, line_starts=starts)
    cut_functions(ft)
    return ft
