"""Does an allocation reclaim, or sleep?  The gfp expression it passes, evaluated
(docs/kernel-facts.md §3.2-3.3).

Kept apart from the solver's bookkeeping because the same evaluation answers two checks:
fs_reclaim edges (gfp_reclaims) and sleeping in atomic context (gfp_blocks), and a gfp
that is the function's own parameter defers the answer to each caller ("param").
"""

from __future__ import annotations

import re

from lockgraph.static.facts import kb
from lockgraph.static.facts.walk import FuncFacts
from lockgraph.static.resolution import IDENT

FS_RECLAIM = "fs_reclaim"


class _Dyn(Exception):
    pass


def _gfp_bits(text: str) -> frozenset[str]:
    toks = re.findall(r"[A-Za-z_]\w*|\d+|[|&~()]", text)
    pos = 0

    def atom() -> frozenset[str]:
        nonlocal pos
        if pos >= len(toks):
            raise _Dyn("")
        t = toks[pos]
        pos += 1
        if t == "~":
            return frozenset({"~"}) | frozenset("~" + b for b in atom())
        if t == "(":
            v = expr()
            pos += 1
            return v
        if t in kb.GFP:
            return kb.GFP[t]
        if t.isdigit():
            return frozenset()
        if t.startswith(kb.GFP_NEUTRAL_PREFIX):
            return frozenset()
        raise _Dyn(t)

    def term() -> frozenset[str]:
        nonlocal pos
        v = atom()
        while pos < len(toks) and toks[pos] == "&":
            pos += 1
            w = atom()
            if "~" in w:
                v = v - {b[1:] for b in w if b.startswith("~")}
            else:
                v = v & w
        return v

    def expr() -> frozenset[str]:
        nonlocal pos
        v = term()
        while pos < len(toks) and toks[pos] == "|":
            pos += 1
            v = v | term()
        return v

    return expr()


def gfp_reclaims(text: str, f: FuncFacts) -> tuple[str, int]:
    """('yes'|'no'|'param'|'unknown', param index): does an allocation's gfp in f take
    fs_reclaim (direct reclaim with __GFP_FS, lockdep not told to look away)?"""
    return _gfp_test(text, f, _takes_fs_reclaim)


def gfp_blocks(text: str, f: FuncFacts) -> tuple[str, int]:
    """The same answer for "may this allocation sleep": direct reclaim alone decides
    (gfpflags_allow_blocking()); GFP_NOFS and GFP_NOIO sleep, GFP_ATOMIC/GFP_NOWAIT do not."""
    return _gfp_test(text, f, _direct_reclaim)


def _takes_fs_reclaim(bits: frozenset[str]) -> bool:
    return "DIRECT_RECLAIM" in bits and "FS" in bits and "NOLOCKDEP" not in bits


def _direct_reclaim(bits: frozenset[str]) -> bool:
    return "DIRECT_RECLAIM" in bits


_ALL_BITS = "(__GFP_RECLAIM|__GFP_IO|__GFP_FS)"   # what a gfp parameter may carry at most


def _gfp_test(text: str, f: FuncFacts, test, depth: int = 0) -> tuple[str, int]:
    if not text:
        return "yes", -1
    names = set(IDENT.findall(text))
    for k, (typ, name) in enumerate(f.params):
        if name in names and "gfp" in typ:
            # `gfp & ~__GFP_DIRECT_RECLAIM` never passes, whatever the caller gives
            try:
                widest = _gfp_bits(re.sub(rf"\b{name}\b", _ALL_BITS, text))
            except _Dyn:
                return "param", k
            return ("param", k) if test(widest) else ("no", -1)
    if depth < 3:
        for n in names:
            if n in f.aliases and n not in kb.GFP:
                sub = re.sub(rf"\b{n}\b", f"({f.aliases[n]})", text)
                return _gfp_test(sub, f, test, depth + 1)
    try:
        bits = _gfp_bits(text)
    except _Dyn:
        return "unknown", -1
    return ("yes" if test(bits) else "no"), -1


_MASKING = frozenset({"nofs", "noio", "noreclaim"})


def masked(scopes: frozenset[str]) -> bool:
    """A memalloc scope that removes __GFP_FS (or all reclaim) is active."""
    return not _MASKING.isdisjoint(scopes)
