"""Does an allocation reclaim, or sleep?  The gfp expression it passes, evaluated
(docs/kernel-facts.md §3.2-3.3).

Kept apart from the solver's bookkeeping because the same evaluation answers two checks:
fs_reclaim edges (gfp_reclaims) and sleeping in atomic context (gfp_blocks), and a gfp
that is the function's own parameter defers the answer to each caller ("param").

A gfp variable the function reassigns is recorded by the walker as the values it may have
at the event, `A || B` (walk.effective_gfp): each is evaluated, and the event reclaims or
blocks if one of them may.
"""

from __future__ import annotations

import re

from lockgraph.static.facts import kb
from lockgraph.static.facts.walk import FuncFacts, split_op
from lockgraph.static.resolution import IDENT

FS_RECLAIM = "fs_reclaim"
#: the class a user access takes when it faults (kb.FAULTING): bit 1 of the summaries, as
#: fs_reclaim is bit 0, so that a scope can mask it at a call
FAULT_CLASS = kb.PRIMITIVES["might_fault"].name


class _Dyn(Exception):
    pass


#: Helpers that pass a gfp through, keeping (at most) these bits: current_gfp_context()
#: strips bits only under a memalloc scope, which the walker tracks itself (§3.3);
#: gfp_nested_mask() (include/linux/gfp.h) keeps GFP_KERNEL|GFP_ATOMIC|__GFP_NOLOCKDEP.
_PASS_THROUGH = {
    "current_gfp_context": None,
    "gfp_nested_mask": kb.GFP["GFP_KERNEL"] | kb.GFP["GFP_ATOMIC"] | kb.GFP["__GFP_NOLOCKDEP"],
}


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
        if t == "(" or (t in _PASS_THROUGH and pos < len(toks) and toks[pos] == "("):
            pos += t != "("
            v = expr()
            pos += 1
            keep = _PASS_THROUGH.get(t)
            return v & keep if keep is not None else v
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
    fs_reclaim (direct reclaim with __GFP_FS, lockdep not told to look away)?  Of several
    values, an unknown one outranks a parameter: fs_reclaim edges count it as reclaiming."""
    return _may(text, f, _takes_fs_reclaim, ("yes", "unknown", "param", "no"))


def gfp_blocks(text: str, f: FuncFacts) -> tuple[str, int]:
    """The same answer for "may this allocation sleep": direct reclaim alone decides
    (gfpflags_allow_blocking()); GFP_NOFS and GFP_NOIO sleep, GFP_ATOMIC/GFP_NOWAIT do not.
    Of several values, a parameter outranks an unknown one: LG107 claims nothing on an
    unknown gfp, and still the finding for callers whose gfp blocks."""
    return _may(text, f, _direct_reclaim, ("yes", "param", "unknown", "no"))


def _may(text: str, f: FuncFacts, test, rank: tuple[str, ...]) -> tuple[str, int]:
    """The answer for the values `A || B` may be: the first in `rank` any of them gives."""
    alts = split_op(text, "||") if "||" in text else [text]
    if len(alts) == 1:
        return _gfp_test(text, f, test)
    answers = [_gfp_test(t.strip(), f, test) for t in alts]
    return min(answers, key=lambda a: rank.index(a[0]))


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


def scope_mask(scopes: frozenset[str]) -> int:
    """The summary bits a call made in these scopes cannot reach: fs_reclaim (bit 0) under
    a memalloc scope that masks it, the faulting class (bit 1) between pagefault_disable()
    and pagefault_enable(), where a callee's user access fails instead of faulting
    (strncpy_from_user_nofault() -> strncpy_from_user())."""
    if not scopes:
        return 0
    return (1 if masked(scopes) else 0) | (2 if kb.NOFAULT in scopes else 0)
