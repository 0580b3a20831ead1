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
_WEAK = re.compile(r"\b__weak\b|__attribute__\s*\(\(\s*(?:__)?weak(?:__)?\s*\)\)")
_RETURNS = re.compile(r"\bstruct\s+(\w+)\s*\*\s*$")
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
    misaligned: int = 0     # CONFIG groups that took one branch: not whole statements
    choices: int = 0        # CONFIG groups kept whole (every branch)

    def at(self, line: int) -> tuple[str, ...]:
        return self.conds[line - 1] if 0 < line <= len(self.conds) else ()


def resolve_conditionals(text: str, config: Config | None) -> tuple[str, Conditional]:
    """Blank directives and inactive `#if` branches; keep line numbers.

    With a config, conditions on CONFIG_* are evaluated: one build.  Without one, a group
    whose every condition is on CONFIG_* options alone is a choice, since some build takes
    each branch (config.py): inside a function body it becomes an `if`/`else` on a
    placeholder the walker joins like any other (`if (__lockgraph_config_1) {` on the
    `#ifdef` line, so lines stay where they were), elsewhere every branch is kept (both
    definitions of a function defined per configuration).  A group whose branches are not
    whole statements, or not balanced, takes the branch the documented default takes and is
    counted in `Conditional.misaligned`; so are conditions on other macros, always.
    """
    lines = text.split("\n")
    out: list[str] = [""] * len(lines)
    conds: list[tuple[str, ...]] = [()] * len(lines)
    res = _Resolver(lines, out, conds, config)
    res.emit(_parse_groups(lines), True, (), _Context())
    return "\n".join(out), Conditional(conds, res.misaligned, res.choices)


@dataclass(slots=True)
class _Branch:
    expr: str                  # the condition as an #if expression ("" for #else)
    line: int                  # index of its directive line
    span: int                  # lines the directive takes (continuations)
    items: list = field(default_factory=list)
    end: int = 0               # index just past its last content line


@dataclass(slots=True)
class _Group:
    branches: list[_Branch]
    end: int = -1              # index of the #endif line (-1: the file ends first)
    end_span: int = 0


def _parse_groups(lines: list[str]) -> list:
    """The file as nested items: (first, past) line ranges of code, ("dir", i, span) for a
    directive that is no conditional, and _Group."""
    top: list = []
    stack: list[tuple[_Group, list]] = []     # open groups and the item list they were in
    cur = top
    i = 0
    n = len(lines)
    text = "\n".join(lines)
    for j in _directive_lines(text):
        if j < i:
            continue  # a continuation line of the directive before
        if j > i:
            cur.append((i, j))
        line = lines[j]
        full, span = line, 1
        while full.endswith("\\") and j + span < n:
            full = full[:-1] + " " + lines[j + span]
            span += 1
        m = _DIRECTIVE.match(full)
        d, rest = m.group(1), m.group(2).strip()  # type: ignore[union-attr]
        if d in ("if", "ifdef", "ifndef"):
            expr = rest if d == "if" else (f"defined({rest})" if d == "ifdef" else f"!defined({rest})")
            g = _Group([_Branch(expr, j, span)])
            cur.append(g)
            stack.append((g, cur))
            cur = g.branches[0].items
        elif d in ("elif", "else") and stack:
            g = stack[-1][0]
            g.branches[-1].end = j
            g.branches.append(_Branch(rest if d == "elif" else "", j, span))
            cur = g.branches[-1].items
        elif d == "endif" and stack:
            g, cur = stack.pop()
            g.branches[-1].end = j
            g.end, g.end_span = j, span
        else:
            cur.append(("dir", j, span))
        i = j + span
    if i < n:
        cur.append((i, n))
    while stack:   # no #endif before the end of the file
        g, _ = stack.pop()
        g.branches[-1].end = n
    return top


class _Context:
    """Where emitted code stands: the open braces (the outermost one a function body or
    not) and the text just before, to tell statement boundaries."""

    __slots__ = ("stack", "tail")

    def __init__(self, stack: tuple[str, ...] = (), tail: str = "") -> None:
        self.stack = list(stack)
        self.tail = tail

    def copy(self) -> "_Context":
        return _Context(tuple(self.stack), self.tail)

    def feed(self, text: str) -> None:
        base = len(self.tail)
        joined = self.tail + text
        for m in _TOP.finditer(text):
            if m.group(0) == "{":
                if self.stack:
                    self.stack.append("b")
                else:
                    self.stack.append("f" if _function_head(joined, base + m.start()) else "o")
            elif self.stack:
                self.stack.pop()
        self.tail = joined[-4000:]

    def in_body(self) -> bool:
        return bool(self.stack) and self.stack[0] == "f"


_CONDITION_WORDS = frozenset({"defined", "IS_ENABLED", "IS_BUILTIN", "IS_MODULE", "IS_REACHABLE"})
_WORDS = re.compile(r"[A-Za-z_]\w*")
_NEGATED_UNIT = re.compile(r"^!((?:\w+\(\w+\))|\w+)$")
_LABEL_END = re.compile(r"(?:^|[;{}])\s*(?:case\b[^;{}?]*|default|[A-Za-z_]\w*)\s*:$")
_STATEMENT_START = re.compile(r"[A-Za-z_{(*;+-]")
_CASE = re.compile(r"\bcase\b|\bdefault\s*:")


def config_only(expr: str) -> bool:
    """A condition on CONFIG_* options alone: some configuration takes each of its
    branches.  Anything else (`MODULE`, `BITS_PER_LONG`, `#if 0`) keeps the default rule."""
    names = [w for w in _WORDS.findall(expr) if w not in _CONDITION_WORDS]
    return bool(names) and all(w.startswith("CONFIG_") for w in names)


def _balanced(t: str) -> bool:
    depth = {"(": 0, "[": 0, "{": 0}
    close = {")": "(", "]": "[", "}": "{"}
    for c in t:
        if c in depth:
            depth[c] += 1
        elif c in close:
            depth[close[c]] -= 1
            if depth[close[c]] < 0:
                return False
    return not any(depth.values())


def _statements(t: str) -> bool:
    """Whole statements: the branch can stand as the body of an `if`.  Not `case` labels:
    a switch enters them from its head, and inside an `if` they would be dead code."""
    t = t.strip()
    if not t:
        return True
    return (bool(_STATEMENT_START.match(t)) and not re.match(r"else\b", t)
            and t[-1] in ";}" and _balanced(t) and not _CASE.search(t))


def _at_statement(tail: str) -> bool:
    """The code before ends a statement, opens a block, or is a label, `else` or `)`."""
    t = tail.rstrip()
    return (not t or t[-1] in ";{})" or bool(re.search(r"\b(?:else|do)$", t))
            or t[-1] == ":" and bool(_LABEL_END.search(t[-300:])))


class _Resolver:
    def __init__(self, lines: list[str], out: list[str], conds: list[tuple[str, ...]],
                 config: Config | None) -> None:
        self.lines, self.out, self.conds, self.config = lines, out, conds, config
        self.ids: dict[str, int] = {}
        self.misaligned = 0
        self.choices = 0

    def emit(self, items: list, active: bool, labels: tuple[str, ...], ctx: _Context) -> None:
        lines, out, conds = self.lines, self.out, self.conds
        for it in items:
            if isinstance(it, _Group):
                self.group(it, active, labels, ctx)
            elif it[0] == "dir":
                _, j, span = it
                conds[j:j + span] = [labels] * span
                ctx.feed("\n" * span)
            else:
                i, j = it
                if active:
                    out[i:j] = lines[i:j]
                    ctx.feed("\n".join(lines[i:j]) + "\n")
                else:
                    ctx.feed("\n" * (j - i))
                conds[i:j] = [labels] * (j - i)

    def group(self, g: _Group, active: bool, labels: tuple[str, ...], ctx: _Context) -> None:
        start = ctx.copy()
        blabels = self._labels(g, labels)
        choice = active and self.config is None and all(
            config_only(b.expr) for b in g.branches if b.expr)
        if choice:
            for b, lb in zip(g.branches, blabels):
                self.conds[b.line:b.line + b.span] = [lb] * b.span
                self.emit(b.items, True, lb, start.copy())
            if self._choose_all(g, start):
                self.choices += 1
                self._close(g, labels, start, ctx)
                return
            self.misaligned += 1
        taken = False
        for b, lb in zip(g.branches, blabels):
            take = active and not taken and (not b.expr or eval_condition(b.expr, self.config))
            taken = taken or take
            self.conds[b.line:b.line + b.span] = [lb] * b.span
            if choice and not take:
                self.out[b.line + b.span:b.end] = [""] * (b.end - b.line - b.span)
            elif not choice:
                self.emit(b.items, take, lb, start.copy())
        self._close(g, labels, start, ctx)

    def _close(self, g: _Group, labels: tuple[str, ...], start: _Context, ctx: _Context) -> None:
        """The context after the group: the code before it and what the group kept."""
        last = g.end + g.end_span if g.end >= 0 else g.branches[-1].end
        if g.end >= 0:
            self.conds[g.end:g.end + g.end_span] = [labels] * g.end_span
        start.feed("\n".join(self.out[g.branches[0].line:last]) + "\n")
        ctx.stack, ctx.tail = start.stack, start.tail

    def _labels(self, g: _Group, labels: tuple[str, ...]) -> list[tuple[str, ...]]:
        out = []
        prev = ""
        for b in g.branches:
            lab = _label(b.expr, True) if b.expr else _negate(prev)
            prev = lab
            out.append(labels + (lab,) if lab else labels)
        return out

    def _choose_all(self, g: _Group, start: _Context) -> bool:
        """Keep every branch, as an if/else inside a function body: False (nothing
        written) when the branches do not align with statements or braces."""
        out = self.out
        texts = ["\n".join(out[b.line + b.span:b.end]) for b in g.branches]
        if not start.in_body():
            return all(_balanced(t) for t in texts)
        if g.end < 0 or not _at_statement(start.tail) or not all(_statements(t) for t in texts):
            return False
        after = next((x.strip() for x in self.lines[g.end + g.end_span:g.end + g.end_span + 50]
                      if x.strip() and not x.lstrip().startswith("#")), "")
        if re.match(r"else\b", after):
            return False
        for k, b in enumerate(g.branches):
            if not b.expr:
                head = "} else {"
            else:
                test = self._placeholder(b.expr)
                head = f"if ({test}) {{" if k == 0 else f"}} else if ({test}) {{"
            out[b.line] = head
        out[g.end] = "}"
        return True

    def _placeholder(self, expr: str) -> str:
        """One identifier per condition text of the file: the same `#ifdef CONFIG_X` twice
        in a function is the same choice to the walker (a lock taken under the first and
        released under the second is not left held)."""
        key = re.sub(r"\s+", "", expr)
        key = re.sub(r"defined([A-Za-z_]\w*)", r"defined(\1)", key)
        neg = ""
        m = _NEGATED_UNIT.match(key)
        if m:
            neg, key = "!", m.group(1)
        n = self.ids.setdefault(key, len(self.ids) + 1)
        return f"{neg}__lockgraph_config_{n}"


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
        if _WEAK.search(tail):   # the linker takes another file's strong definition first
            annots.append("__weak")
        ret = _RETURNS.search(tail)
        if ret:   # an accessor's pointer type names the class of `&EXT4_I(inode)->lock`
            annots.append(f"returns({ret.group(1)})")
        return name, m.start(1), params, tuple(reversed(annots)), "static" in tail.split()


def prepare(path: str, src: str, config: Config | None) -> FileText:
    stripped = strip_comments(src)
    text, cond = resolve_conditionals(stripped, config)
    starts = [0] + [m.end() for m in re.finditer("\n", text)]
    ft = FileText(path, text, cond, line_starts=starts)
    cut_functions(ft)
    return ft
