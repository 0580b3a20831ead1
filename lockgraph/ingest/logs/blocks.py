"""Cutting a token stream into lockdep blocks (syzkaller's first stage, for lockdep only).

A block opens at a report header, a hung-task message, a /proc dump header or a lone
held-lock listing, and closes at the next opener, at the rule that ends a lock dump, or
after a run of lines that belong to nothing lockdep prints (other CPUs, other subsystems).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from lockgraph.ingest.logs.lexer import Tok

#: Consecutive noise lines after which a block is considered finished.
IDLE_LIMIT = 40
#: /proc dumps are contiguous; a few noise lines (mail prose) end them.
PROC_IDLE_LIMIT = 6

_PROC_OK = {
    "proc_classes": {"CLASS", "DEP", "BLANK", "NOISE", "PROC_CLASSES"},
    "proc_chains": {"IRQCTX", "CHAINCLASS", "BLANK", "NOISE", "PROC_CHAINS"},
    "proc_stats": {"STAT", "BLANK", "NOISE", "STAT_FIRST"},
}
_NEUTRAL = {"FRAME", "BLANK"}
#: The only token types `_opener` can answer for; any other type never opens a block.
_OPENERS = frozenset({"HDR", "HUNG", "SHOW_ALL", "PROC_CLASSES", "CLASS", "PROC_CHAINS", "IRQCTX",
                      "STAT_FIRST", "HELD_HDR"})


@dataclass(slots=True)
class Block:
    rule: str
    toks: list[Tok] = field(default_factory=list)
    seen_backtrace: bool = False
    seen_show_all: bool = False


def _opener(tok: Tok, cur: Block | None) -> str | None:
    t = tok.type
    if t == "HDR":
        return "report"
    if t == "HUNG":
        if cur is not None and cur.rule == "dump" and not cur.seen_show_all:
            return None
        return "dump"
    if t == "SHOW_ALL":
        if cur is not None and cur.rule == "dump" and not cur.seen_show_all:
            return None
        return "dump"
    if t == "PROC_CLASSES" or (t == "CLASS" and cur is None and "fd" in tok.data and tok.data["fd"]):
        return "proc_classes" if cur is None or cur.rule != "proc_classes" or t == "PROC_CLASSES" else None
    if t == "PROC_CHAINS" or (t == "IRQCTX" and cur is None):
        return "proc_chains" if cur is None or cur.rule != "proc_chains" or t == "PROC_CHAINS" else None
    if t == "STAT_FIRST":
        return "proc_stats"
    if t == "HELD_HDR":
        if cur is None or (cur.rule == "report" and cur.seen_backtrace):
            return "listing"
    return None


def segment(toks: list[Tok]) -> list[Block]:
    blocks: list[Block] = []
    cur: Block | None = None
    idle = 0
    for tok in toks:
        opener = _opener(tok, cur) if tok.type in _OPENERS else None
        if opener is not None:
            cur = Block(opener)
            blocks.append(cur)
            idle = 0
        elif cur is None:
            continue
        elif cur.rule in _PROC_OK:
            if tok.type not in _PROC_OK[cur.rule]:
                cur = None
                continue
        if cur is None:
            continue
        cur.toks.append(tok)
        t = tok.type
        if t == "SHOW_ALL":
            cur.seen_show_all = True
        if t == "PHRASE" and tok.data.get("phrase") == "backtrace":
            cur.seen_backtrace = True
        if t == "RULE" and cur.rule == "dump" and cur.seen_show_all and tok.line.text.strip()[0] == "=":
            cur = None
            continue
        if t == "NOISE":
            idle += 1
            limit = PROC_IDLE_LIMIT if cur.rule in _PROC_OK else IDLE_LIMIT
            if idle >= limit:
                del cur.toks[len(cur.toks) - idle:]
                cur = None
                idle = 0
        elif t not in _NEUTRAL:
            idle = 0
    return blocks
