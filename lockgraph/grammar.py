"""Loading the lark grammars, and the only place lark objects exist.

The `.lark` files live in the top-level `grammars/` directory of the source tree and inside
the package (`lockgraph/grammars/`) once installed from a wheel; both places are searched so
the tool works from a checkout and from `pip install`.
"""

from __future__ import annotations

from functools import lru_cache
from importlib import resources
from pathlib import Path

from lark import Lark, Token, Tree
from lark.exceptions import LarkError
from lark.lexer import Lexer

from lockgraph.errors import LogSyntaxError


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


class _TokLexer(Lexer):
    """Feeds pre-classified line tokens to the LALR parser (lines, not characters)."""

    def __init__(self, lexer_conf):  # noqa: D401 - lark's interface
        pass

    def lex(self, data, *_):  # type: ignore[override]
        for i, tok in enumerate(data):
            yield Token(tok.type, str(i), start_pos=i, line=tok.line.no)


BLOCK_RULES = ("report", "dump", "listing", "proc_classes", "proc_chains", "proc_stats")


@lru_cache(maxsize=None)
def lockdep_parser(strict: bool = False) -> Lark:
    return Lark(grammar_text("lockdep.lark"), parser="lalr", lexer=_TokLexer,
                start=list(BLOCK_RULES), strict=strict)


Section = tuple[str, int, list[int]]
"""(section rule, index of its leader token, indexes of its subordinate tokens)."""


def parse_block(toks: list, start: str) -> list[Section]:
    """Group a block's tokens into sections; raises LogSyntaxError, never a lark error."""
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
