"""Function bodies of raw kernel C → a small statement IR (lark LALR, one parse per body).

Stages (docs/kernel-facts.md, "C parsing design"): a master-regex tokenizer, a
linear classifier that retypes tokens so the grammar stays small (block vs initializer
braces, macro loops, labels, keywords inside macro arguments), then `grammars/cbody.lark`.
A body the grammar rejects is not dropped: the caller falls back to the flat token run and
marks the function "structure unknown".  lark objects never leave this module.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from lark import Lark, Token, Tree
from lark.exceptions import LarkError
from lark.lexer import Lexer

from lockgraph.grammar import grammar_text

_TOKEN = re.compile(
    r"(?P<nl>\n)|(?P<ws>[ \t\r\f\v\\]+)|(?P<name>[A-Za-z_]\w*)|(?P<num>\.?\d[\w.]*)"
    r"|(?P<str>\"[^\"\n]*\"|'[^'\n]*')"
    r"|(?P<op>->|\+\+|--|<<=|>>=|<<|>>|<=|>=|==|!=|&&|\|\||\.\.\.|[-+*/%&|^~!=<>?:.,\[\];{}()#@$`])"
    r"|(?P<other>.)"
)
KEYWORDS = {"if": "IF", "else": "ELSE", "while": "WHILE", "for": "FOR", "do": "DO",
            "switch": "SWITCH", "case": "CASE", "default": "DEFAULT", "return": "RETURN",
            "goto": "GOTO", "break": "BREAK", "continue": "CONTINUE"}


@dataclass(slots=True)
class Tk:
    type: str
    text: str
    line: int


def tokenize(body: str, first_line: int) -> list[Tk]:
    out: list[Tk] = []
    line = first_line
    for m in _TOKEN.finditer(body):
        kind = m.lastgroup
        if kind == "nl":
            line += 1
        elif kind == "ws":
            continue
        elif kind == "name":
            out.append(Tk("NAME", m.group(0), line))
        elif kind in ("num", "str", "other"):
            out.append(Tk("OP", m.group(0), line))
        else:
            out.append(Tk("P", m.group(0), line))
    return out


def classify(toks: list[Tk]) -> list[Tk]:
    """Retype tokens for the grammar (see cbody.lark's header)."""
    out: list[Tk] = []
    modes = ["stmt"]
    parens: list[tuple[str, int]] = []          # (kind, index in out of the CALL or -1)
    braces: list[tuple[str, bool]] = []         # (LB|ILB|SLB, opened right after DO)
    stmt_start = True
    in_case = False
    ternary = [0]
    n = len(toks)
    i = 0
    prev_type = ""
    while i < n:
        t = toks[i]
        nxt = toks[i + 1] if i + 1 < n else None
        mode = modes[-1]
        if t.type == "NAME":
            kw = KEYWORDS.get(t.text)
            if kw and mode == "stmt":
                tk = Tk(kw, t.text, t.line)
                if kw in ("CASE", "DEFAULT"):
                    in_case = True
                stmt_start = kw in ("ELSE", "DO")
                out.append(tk)
            elif nxt is not None and nxt.text == "(":
                out.append(Tk("CALL", t.text, t.line))
                parens_kind = "stmtcall" if (stmt_start and mode == "stmt") else "expr"
                i += 1
                out.append(Tk("LP", "(", nxt.line))
                parens.append((parens_kind, len(out) - 2))
                modes.append("expr")
                ternary.append(0)
                stmt_start = False
            elif (mode == "stmt" and stmt_start and nxt is not None and nxt.text == ":"
                  and not (i + 2 < n and toks[i + 2].text == ":")):
                out.append(Tk("LABEL", t.text, t.line))
                out.append(Tk("LCOLON", ":", nxt.line))
                i += 1
                stmt_start = True
            else:
                out.append(Tk("NAME", t.text, t.line))
                if mode == "stmt" and stmt_start and (nxt is None or nxt.text == "}"):
                    out.append(Tk("SEMI", ";", t.line))  # statement macro without ';'
                else:
                    stmt_start = False
            prev_type = out[-1].type
            i += 1
            continue
        s = t.text
        if t.type == "OP":
            out.append(Tk("OP", s, t.line))
            stmt_start = False
        elif s == "(":
            kind = "ctrl" if prev_type in ("IF", "WHILE", "FOR", "SWITCH") else "expr"
            out.append(Tk("LP", "(", t.line))
            parens.append((kind, -1))
            modes.append("expr")
            ternary.append(0)
            stmt_start = False
        elif s == ")":
            if not parens:
                out.append(Tk("OP", s, t.line))
            else:
                kind, call_at = parens.pop()
                modes.pop()
                ternary.pop()
                out.append(Tk("RP", ")", t.line))
                if kind == "ctrl":
                    stmt_start = True
                elif kind == "stmtcall":
                    if nxt is not None and (nxt.text == "{" or nxt.type == "NAME"):
                        out[call_at].type = "MLOOP"
                        stmt_start = True
                    elif nxt is None or nxt.text == "}":
                        out.append(Tk("SEMI", ";", t.line))
                        stmt_start = True
                    else:
                        stmt_start = False
                else:
                    stmt_start = False
        elif s == "{":
            if prev_type == "LP":
                out.append(Tk("SLB", "{", t.line))
                braces.append(("SLB", False))
                modes.append("stmt")
                stmt_start = True
            elif mode == "stmt" and stmt_start:
                out.append(Tk("LB", "{", t.line))
                braces.append(("LB", prev_type == "DO"))
                modes.append("stmt")
                stmt_start = True
            else:
                out.append(Tk("ILB", "{", t.line))
                braces.append(("ILB", False))
                modes.append("expr")
                stmt_start = False
            ternary.append(0)
        elif s == "}":
            if not braces:
                out.append(Tk("OP", s, t.line))
            else:
                kind, after_do = braces.pop()
                modes.pop()
                ternary.pop()
                out.append(Tk("RB", "}", t.line))
                stmt_start = kind != "ILB"
                if kind == "LB" and after_do and nxt is not None and nxt.type == "NAME" \
                        and nxt.text != "while":
                    toks[i + 1] = Tk("NAME", "while", nxt.line)  # do {} while_each_thread(..)
                if kind == "SLB":
                    stmt_start = False
        elif s == ";":
            if mode == "stmt":
                out.append(Tk("SEMI", ";", t.line))
                stmt_start = True
                in_case = False
            else:
                out.append(Tk("OP", s, t.line))
        elif s == "?":
            ternary[-1] += 1
            out.append(Tk("OP", s, t.line))
        elif s == ":":
            if ternary[-1] > 0:
                ternary[-1] -= 1
                out.append(Tk("OP", s, t.line))
            elif mode == "stmt" and in_case:
                out.append(Tk("LCOLON", s, t.line))
                in_case = False
                stmt_start = True
            else:
                out.append(Tk("OP", s, t.line))
        else:
            out.append(Tk("OP", s, t.line))
            stmt_start = False
        prev_type = out[-1].type
        i += 1
    return out


class _Feed(Lexer):
    def __init__(self, conf):  # noqa: D401 - lark interface
        pass

    def lex(self, data, *_):  # type: ignore[override]
        for i, t in enumerate(data):
            yield Token(t.type, str(i), start_pos=i, line=t.line)


@lru_cache(maxsize=None)
def _parser(strict: bool = False) -> Lark:
    """The LALR body parser; `strict` makes lark refuse any conflict (tests build it so)."""
    return Lark(grammar_text("cbody.lark"), parser="lalr", lexer=_Feed, strict=strict)


# ---------------------------------------------------------------------------------------
# IR: plain tuples so nothing of lark escapes.
#   expression atom: ("tok", text, line) | ("call", name, args, line, member)
#                    | ("group", atoms) | ("block_expr", stmts)
#   statement: ("block", stmts, line) | ("if", cond, then, else, line)
#              | ("loop", kind, head, body, line) | ("switch", head, body, line)
#              | ("label", name, line) | ("case", line) | ("return", atoms, line)
#              | ("goto", name, line) | ("break", line) | ("continue", line)
#              | ("expr", atoms, line)


#: Iteration macros (list_for_each_entry, for_each_possible_cpu, ...): in a parsed body they
#: are macro loops, not calls; the flat fallback must not count them as calls either.
ITERATOR = re.compile(r"(?:^|_)for_each")


class BodyParseError(Exception):
    def __init__(self, line: int) -> None:
        super().__init__(line)
        self.line = line


def parse_body(body: str, first_line: int) -> list[tuple]:
    """Statements of a body (text between the function's braces)."""
    toks = classify(tokenize(body, first_line))
    try:
        tree = _parser().parse(toks)
    except LarkError as exc:
        tok = getattr(exc, "token", None)
        raise BodyParseError(getattr(tok, "line", first_line) or first_line) from None
    return [_stmt(c, toks) for c in tree.children]


def flat_atoms(body: str, first_line: int) -> list[tuple]:
    """Fallback for a body the grammar rejects: calls in textual order, no structure."""
    toks = tokenize(body, first_line)
    stmts: list[tuple] = []
    atoms: list[tuple] = []
    stack: list[list] = [atoms]
    pending: list[tuple] = []
    for i, t in enumerate(toks):
        if len(stack) == 1 and t.text in (";", "{", "}"):
            # statement boundary: assignments and calls stay in their own statement
            if atoms:
                stmts.append(("expr", atoms, _first_line(atoms) or t.line))
            atoms = []
            stack = [atoms]
            continue
        if (t.type == "NAME" and i + 1 < len(toks) and toks[i + 1].text == "("
                and t.text not in KEYWORDS and not ITERATOR.search(t.text)):
            member = i > 0 and toks[i - 1].text in ("->", ".")
            pending.append((t.text, t.line, member, len(stack)))
        elif t.text == "(":
            stack.append([])
        elif t.text == ")" and len(stack) > 1:
            close_paren(stack, pending)
        else:
            stack[-1].append(("tok", t.text, t.line))
    while len(stack) > 1:
        inner = stack.pop()
        stack[-1].extend(inner)
    if atoms:
        stmts.append(("expr", atoms, _first_line(atoms) or first_line))
    return stmts


def close_paren(stack: list[list], pending: list[tuple[str, int, bool, int]]) -> None:
    """A `)` in a flat run: the innermost open run becomes the arguments of the call opened
    at this depth (pending: name, line, member, depth), or a parenthesised group."""
    inner = stack.pop()
    if pending and pending[-1][3] == len(stack):
        name, line, member, _ = pending.pop()
        stack[-1].append(("call", name, split_args(inner), line, member))
    else:
        stack[-1].append(("group", inner))


def _tok(toks: list[Tk], child) -> Tk:
    return toks[int(child)]


def _stmt(node, toks: list[Tk]) -> tuple:
    if isinstance(node, Token):  # pragma: no cover - grammar wraps every statement
        return ("expr", [], toks[int(node)].line)
    kind = node.data
    ch = node.children
    first = _tok(toks, ch[0]) if isinstance(ch[0], Token) else None
    line = first.line if first else 0
    if kind == "block":
        return ("block", [_stmt(c, toks) for c in ch[1:-1]], line)
    if kind == "if_stmt":
        cond = _paren(ch[1], toks)
        then = _stmt(ch[2], toks)
        els = _stmt(ch[4], toks) if len(ch) > 4 else None
        return ("if", cond, then, els, line)
    if kind in ("while_stmt", "for_stmt", "switch_stmt"):
        head = _paren(ch[1], toks)
        body = _stmt(ch[2], toks)
        if kind == "switch_stmt":
            return ("switch", head, body, line)
        return ("loop", kind[:-5], head, body, line)
    if kind == "do_stmt":
        return ("loop", "do", _paren(ch[3], toks), _stmt(ch[1], toks), line)
    if kind == "mloop":
        return ("loop", "macro:" + first.text, _paren(ch[1], toks), _stmt(ch[2], toks), line)  # type: ignore[union-attr]
    if kind == "label":
        return ("label", first.text, line)  # type: ignore[union-attr]
    if kind in ("case", "default"):
        return ("case", line, kind == "default")
    if kind == "return_stmt":
        return ("return", _atoms(ch[1:-1], toks), line)
    if kind == "goto_stmt":
        target = _atoms(ch[1:-1], toks)
        name = target[0][1] if target and target[0][0] == "tok" else ""
        return ("goto", name, line)
    if kind == "break_stmt":
        return ("break", line)
    if kind == "continue_stmt":
        return ("continue", line)
    if kind == "expr_stmt":
        atoms = _atoms(ch[:-1], toks)
        return ("expr", atoms, line or _first_line(atoms))
    if kind == "empty":
        return ("expr", [], line)
    # A grammar rule added without its IR here would silently drop the statement's calls.
    raise ValueError(f"cbody.lark rule {kind!r} has no IR in cparse._stmt")


def _first_line(atoms: list[tuple]) -> int:
    for a in atoms:
        if a[0] in ("tok", "call"):
            return a[2] if a[0] == "tok" else a[3]
    return 0


def _paren(node, toks: list[Tk]) -> list[tuple]:
    return _atoms(node.children[1:-1], toks)


def _atoms(children, toks: list[Tk]) -> list[tuple]:
    out: list[tuple] = []
    prev_text = ""
    for c in children:
        if isinstance(c, Token):
            t = _tok(toks, c)
            out.append(("tok", t.text, t.line))
            prev_text = t.text
            continue
        if c.data == "call":
            name_tok = _tok(toks, c.children[0])
            inner = _atoms(c.children[1].children[1:-1], toks)
            out.append(("call", name_tok.text, split_args(inner), name_tok.line,
                        prev_text in ("->", ".")))
        elif c.data == "paren":
            out.append(("group", _atoms(c.children[1:-1], toks)))
        elif c.data == "init":
            out.append(("group", _atoms(c.children[1:-1], toks)))
        elif c.data == "stmt_expr":
            out.append(("block_expr", [_stmt(s, toks) for s in c.children[1:-1]]))
        prev_text = ""
    return out


def split_args(atoms: list[tuple]) -> list[list[tuple]]:
    """Split an argument list at its top-level commas (nested groups are single atoms)."""
    args: list[list[tuple]] = [[]]
    for a in atoms:
        if a[0] == "tok" and a[1] == ",":
            args.append([])
        else:
            args[-1].append(a)
    return [a for a in args if a]


def split_top(text: str) -> list[str]:
    """Split source text at commas outside (), [] and {}."""
    out: list[str] = []
    depth = 0
    cur = ""
    for ch in text:
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        if ch == "," and depth == 0:
            out.append(cur)
            cur = ""
        else:
            cur += ch
    out.append(cur)
    return out


_WORDISH = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_(")


def _glue(prev: str, nxt: str) -> bool:
    """No blank between two pieces: C-like spacing for lock and gfp expression text."""
    if not prev or not nxt:
        return True
    a, b = prev[-1], nxt[0]
    if a in "([" or b in ")],[":
        return b != "," or a in "(["
    if prev.endswith("->") or nxt.startswith("->") or a == "." or b == ".":
        return True
    return a in "&*!~" and b in _WORDISH


def atom_text(atoms: list[tuple]) -> str:
    """Source-like text of an expression (tokens joined C-style, for lock names)."""
    out = ""
    for a in atoms:
        kind = a[0]
        if kind == "tok":
            piece = a[1]
        elif kind == "call":
            piece = a[1] + "(" + ", ".join(atom_text(x) for x in a[2]) + ")"
        elif kind == "group":
            piece = "(" + atom_text(a[1]) + ")"
        else:
            piece = "({…})"
        out = out + piece if _glue(out, piece) else out + " " + piece
    return out
