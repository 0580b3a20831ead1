"""Constant arguments prune a callee's paths: `__tcf_chain_put(chain, true, false)` cannot
reach the code behind the callee's `if (!by_act)`.

The walker marks every event (acquisition, allocation, call) behind a test of a flag
parameter with a gate (`@arg:by_act` where it is true, `@!arg:by_act` where it is false;
walk.branch_gates).  A caller that passes a literal decides the gate: `true` closes every
`@!arg:` event of that parameter, `false`/`0`/`NULL` every `@arg:` one.  The callee's summary
without a gate's events is computed with the callee's own (Summaries._without, or a clone
solved with the callee's call component: Summaries._component), and a call that closes the
gate takes that narrower summary instead of the whole.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import replace

from lockgraph.static.facts.walk import ARG_FALSE, ARG_TRUE, FuncFacts

_FALSE = frozenset({"false", "0", "NULL", "0UL", "0L", "0U", "(void *)0"})
_TRUE_INT = re.compile(r"[1-9]\d*[uUlL]*|0x0*[1-9a-fA-F][0-9a-fA-F]*[uUlL]*")


def literal(text: str) -> bool | None:
    """The truth of a literal argument, None when it is no literal."""
    t = text.strip()
    while t.startswith("(") and t.endswith(")") and t.count("(") == 1:
        t = t[1:-1].strip()
    if t in _FALSE:
        return False
    if t == "true" or _TRUE_INT.fullmatch(t) or t.startswith('"'):
        return True
    return None


def arg_gates(f: FuncFacts) -> frozenset[str]:
    """The flag-parameter gates some event of f sits behind."""
    out: set[str] = set()
    for ev in (*f.acqs, *f.allocs, *f.calls):
        for g in ev.gates:
            if g.startswith((ARG_TRUE, ARG_FALSE)):
                out.add(g)
    return frozenset(out)


def split_gate(gate: str) -> tuple[bool, str]:
    """(the gate holds where its flag is true, the flag parameter's name)."""
    on_true = gate.startswith(ARG_TRUE)
    return on_true, gate[len(ARG_TRUE if on_true else ARG_FALSE):]


def closed(gate: str, callee: FuncFacts, args: list[str]) -> bool:
    """Whether a call with `args` can never pass `gate` of the callee."""
    on_true, name = split_gate(gate)
    for k, (_, p) in enumerate(callee.params):
        if p == name:
            if k >= len(args):
                return False
            v = literal(args[k])
            return v is not None and v != on_true
    return False


def forwarded(gate: str, callee: FuncFacts, args: list[str], mine: set[str]) -> str | None:
    """The caller's gate that closes the callee's `gate` when the caller's flag parameter
    is passed to the gated parameter as `q` or `!q`; None when the argument is no flag of
    the caller's."""
    on_true, name = split_gate(gate)
    for k, (_, p) in enumerate(callee.params):
        if p != name:
            continue
        if k >= len(args):
            return None
        a, neg = args[k].replace(" ", ""), False
        while a.startswith("!"):
            a, neg = a[1:], not neg
        if a not in mine:
            return None
        closes_on = (not on_true) != neg   # the caller's value of `a` that closes `gate`
        return (ARG_TRUE if not closes_on else ARG_FALSE) + a
    return None


def with_value(c, gate: str):
    """Call c as made where `gate` is closed: the flag parameter the gate tests, handed on
    as an argument, is the literal that closes it."""
    on_true, name = split_gate(gate)
    value = "false" if on_true else "true"      # @arg:q is closed by false, @!arg:q by true
    other = "true" if on_true else "false"
    args = []
    changed = False
    for a in c.args:
        t = a.replace(" ", "")
        if t == name:
            args.append(value)
            changed = True
        elif t == "!" + name:
            args.append(other)
            changed = True
        else:
            args.append(a)
    return replace(c, args=args) if changed else c


def narrowed(c, j: str, funcs: dict[str, FuncFacts], anyb: dict[str, int], top: dict[str, int],
             clean: dict[str, int], atop: dict[str, int],
             restricted: Mapping[str, Mapping[str, tuple[int, int, int, int]]]
             ) -> tuple[int, int, int, int]:
    """(any, top, clean, atop) of callee j as call c reaches it: without the paths c's
    constant arguments close."""
    a, t, cl, s = anyb[j], top[j], clean[j], atop[j]
    r = restricted.get(j)
    if r is not None and c.args:
        callee = funcs[j]
        for gate, (ga, gt, gc, gs) in r.items():
            if closed(gate, callee, c.args):
                a, t, cl, s = a & ga, t & gt, cl & gc, s & gs
    return a, t, cl, s
