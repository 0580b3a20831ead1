"""Loading the lark grammars; with `static/facts/cparse.py`, the only places lark objects exist
(both return plain tuples, so nothing of lark leaves the parser layer).

The `.lark` files live in the top-level `grammars/` directory of the source tree and inside
the package (`lockgraph/grammars/`) once installed from a wheel; both places are searched so
the tool works from a checkout and from `pip install`.

lark is imported on first use: a /proc/lockdep dump never needs it (see `parse_block`).
"""

from __future__ import annotations

from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

from lockgraph.errors import LogSyntaxError

if TYPE_CHECKING:
    from lark import Lark


def grammar_text(name: str) -> str:
    """The text of `grammars/<name>`, installed or from the checkout."""
    try:
        res = resources.files("lockgraph").joinpath("grammars", name)
        if res.is_file():
            return res.read_text(encoding="utf-8")
    except (FileNotFoundError, ModuleNotFoundError):
        pass
    src = Path(__file__).resolve().parent.parent / "grammars" / name
    return src.read_text(encoding="utf-8")


@lru_cache(maxsize=None)
def _tok_lexer() -> type:
    from lark import Token
    from lark.lexer import Lexer

    class _TokLexer(Lexer):
        """Feeds pre-classified line tokens to the LALR parser (lines, not characters)."""

        def __init__(self, lexer_conf):  # noqa: D401 - lark's interface
            pass

        def lex(self, data, *_):  # type: ignore[override]
            for i, tok in enumerate(data):
                yield Token(tok.type, str(i), start_pos=i, line=tok.line.no)

    return _TokLexer


BLOCK_RULES = ("report", "dump", "listing", "proc_classes", "proc_chains", "proc_stats")


@lru_cache(maxsize=None)
def lockdep_parser(strict: bool = False) -> Lark:
    from lark import Lark

    return Lark(grammar_text("lockdep.lark"), parser="lalr", lexer=_tok_lexer(),
                start=list(BLOCK_RULES), strict=strict)


Section = tuple[str, int, list[int]]
"""(section rule, index of its leader token, indexes of its subordinate tokens)."""

#: The /proc blocks of `grammars/lockdep.lark`, which are flat:
#:   start: HEAD? _sub* (leader _sub*)*   with   leader: LEADER _sub*
#: as (head token or None, leader token, leader's section rule, _sub terminals).
#: `proc_stats: STAT_FIRST _sub*` is a head with no leaders.
_SUB = frozenset({"LOCK", "HELD", "FRAME", "DEP", "CHAINCLASS", "STAT", "SCEN", "BLANK", "RULE",
                  "NOISE"})
_FLAT: dict[str, tuple[str, str | None, str | None, bool]] = {
    # rule: (head terminal, leader terminal, leader's section rule, head required)
    "proc_classes": ("PROC_CLASSES", "CLASS", "class_block", False),
    "proc_chains": ("PROC_CHAINS", "IRQCTX", "chain_block", False),
    "proc_stats": ("STAT_FIRST", None, None, True),
}


def _parse_flat(toks: list, start: str) -> list[Section] | None:
    """The sections lark would build for a /proc block, grouped in plain Python.

    These blocks hold tens of thousands of lines and their grammar is flat, so an LALR
    parse only costs time.  Returns None for any token sequence that is not exactly of the
    grammar's shape; the caller then lets lark parse it (and report its errors).
    """
    head_t, lead_t, lead_rule, head_required = _FLAT[start]
    n = len(toks)
    i = 0
    head: list[int] = []
    if n and toks[0].type == head_t:
        head.append(0)
        i = 1
    elif head_required:
        return None
    sub = _SUB
    while i < n and toks[i].type in sub:
        head.append(i)
        i += 1
    sections: list[Section] = [(start, head[0], head[1:])] if head else []
    while i < n:
        if toks[i].type != lead_t:
            return None
        lead = i
        i += 1
        while i < n and toks[i].type in sub:
            i += 1
        sections.append((lead_rule, lead, list(range(lead + 1, i))))  # type: ignore[arg-type]
    return sections


def parse_block(toks: list, start: str) -> list[Section]:
    """Group a block's tokens into sections; raises LogSyntaxError, never a lark error."""
    if start in _FLAT:
        flat = _parse_flat(toks, start)
        if flat is not None:
            return flat
    from lark import Token, Tree
    from lark.exceptions import LarkError

    try:
        tree = lockdep_parser().parse(toks, start=start)
    except LarkError as exc:
        line = getattr(getattr(exc, "token", None), "line", 0) or (toks[0].line.no if toks else 0)
        raise LogSyntaxError(f"unexpected line in {start} block", line) from None
    sections: list[Section] = []
    head: list[int] = []
    for child in tree.children:
        if isinstance(child, Token):
            head.append(int(child))
        elif isinstance(child, Tree):
            idxs = [int(t) for t in child.scan_values(lambda v: isinstance(v, Token))]
            sections.append((str(child.data), idxs[0], idxs[1:]))
    if head:
        sections.insert(0, (start, head[0], head[1:]))
    return sections
