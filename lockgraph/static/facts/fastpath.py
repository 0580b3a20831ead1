"""The call-list front end: facts of a body whose statement structure cannot matter.

Most bodies (83% of mm/, measured) call no lock, guard or scope primitive and test nothing
that gates a sleep.  In such a body every held set, memalloc scope, dropped-lock set and
gate is empty on every path, so its facts depend only on its calls in evaluation order and
on the assignments it makes — what `cparse.flat_atoms` followed by the walker records.  This
module computes exactly that without the slow path's per-token objects: one compiled-regex
`findall` yields the tokens as strings, one loop nests them into the same atom IR, and the
walker's own expression step records the events (so what a call means stays defined in one
place, walk.py).

`structure_matters` decides which bodies go to lark instead, from the names the body calls;
scan.py sends there too a body that reassigns a gfp variable (walk.reassigned_gfp), whose
value at a call depends on the branches before it.
`call_facts` declines (returns False) when its tokens show a call that text scan did not (a
primitive name split from its `(` by a backslash, say): the caller then takes the slow
path, so the facts never depend on which front end ran.
"""

from __future__ import annotations

import re

from lockgraph.static.facts import kb
from lockgraph.static.facts.cparse import ITERATOR, KEYWORDS, close_paren
from lockgraph.static.facts.walk import GATE_WORDS, FuncFacts, ScanContext, Walker, _State

#: Calls whose presence makes statement structure matter: they change the held set or the
#: memalloc scope, or end a path (kb.NORETURN).  Allocations, lock initialisers and header aliases are events too, but in
#: a body without these every held set and scope is empty, so the call list records them
#: exactly as a parsed body would (about a third of the bodies that mention any primitive
#: only allocate or initialise).
TRIGGERS = frozenset(kb.PRIMITIVES) | frozenset(kb.SCOPES) | kb.SLEEPING_CALLS | kb.NORETURN | {
    "guard", "scoped_guard", "scoped_cond_guard"}
#: A called name: an identifier followed by `(` (possessive: no backtracking into it).
_CALLED = re.compile(r"\b([A-Za-z_]\w*+)\s*+\(")
#: What the walker changes state on; any of these among the tokens' calls sends the body
#: back to the slow path.
_STATEFUL = frozenset(kb.PRIMITIVES) | frozenset(kb.SCOPES) | kb.SLEEPING_CALLS | kb.NORETURN | {
    "guard"}
#: cparse._TOKEN without its whitespace alternative: the same tokens, as strings, in one
#: C-level pass ("\n" kept, to count lines).
_TOKEN = re.compile(
    r"\n|[A-Za-z_]\w*|\.?\d[\w.]*|\"[^\"\n]*\"|'[^'\n]*'"
    r"|->|\+\+|--|<<=|>>=|<<|>>|<=|>=|==|!=|&&|\|\||\.\.\.|[-+*/%&|^~!=<>?:.,\[\];{}()#@$`]"
    r"|[^ \t\r\f\v\\\n]")
_NAME_START = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_")


def structure_matters(body: str) -> bool:
    """Whether a body calls anything that changes or needs the held-lock set (under its
    name or its `_noprof` form), or tests whether it may sleep (walk.GATE_WORDS: the branch
    decides whether a sleep happens).  Substring scans and one findall, all in C: a single
    regex alternating over the 200 trigger names measured slower."""
    if any(w in body for w in GATE_WORDS):
        return True
    names = set(_CALLED.findall(body))
    if not TRIGGERS.isdisjoint(names):
        return True
    return "_noprof" in body and any(n[:-7] in TRIGGERS for n in names if n.endswith("_noprof"))


#: `if (` and the words a test wraps around a flag (`if (unlikely(!async))`).
_IF = re.compile(r"\bif\s*\(")
_FLAG_NOISE = re.compile(r"\b(?:unlikely|likely|READ_ONCE)\b|[()!\s]")


def tests_flag(body: str, params: frozenset[str]) -> bool:
    """Whether an `if` of the body tests a parameter as a flag, alone or as a conjunct or
    disjunct (`if (!plug->multiple_queues && !from_schedule)`): a caller's constant
    argument then closes a branch (constargs.py), which the walker sees only in a parsed
    body."""
    if not params or "if" not in body:
        return False
    for m in _IF.finditer(body):
        depth, k, n = 1, m.end(), len(body)
        while k < n and depth:
            ch = body[k]
            depth += (ch == "(") - (ch == ")")
            k += 1
        cond = body[m.end():k - 1]
        for part in re.split(r"&&|\|\|", cond):
            if _FLAG_NOISE.sub("", part) in params:
                return True
    return False


def call_facts(body: str, first_line: int, facts: FuncFacts, ctx: ScanContext) -> bool:
    """Record the events of a body without structure into `facts`, as flat_atoms and the
    walker would; False (and `facts` untouched) if a call needs the walker's state."""
    toks = _TOKEN.findall(body)
    n = len(toks)
    line = first_line
    stmts: list[list[tuple]] = []
    atoms: list[tuple] = []
    stack: list[list[tuple]] = [atoms]
    pending: list[tuple[str, int, bool, int]] = []
    prev = ""
    for i, t in enumerate(toks):
        if t == "\n":
            line += 1
            continue
        if len(stack) == 1 and (t == ";" or t == "{" or t == "}"):
            if atoms:
                stmts.append(atoms)
            atoms = []
            stack = [atoms]
        elif t == "(":
            stack.append([])
        elif t == ")" and len(stack) > 1:
            close_paren(stack, pending)
        elif t[0] in _NAME_START and _next(toks, i, n) == "(" and t not in KEYWORDS \
                and not ITERATOR.search(t):
            if t in _STATEFUL:
                return False
            pending.append((t, line, prev == "->" or prev == ".", len(stack)))
        else:
            stack[-1].append(("tok", t, line))
        prev = t
    while len(stack) > 1:  # unclosed parentheses: their atoms join the enclosing run
        inner = stack.pop()
        stack[-1].extend(inner)
    if atoms:
        stmts.append(atoms)
    walker = Walker(facts, ctx)
    st = _State()
    for s in stmts:
        walker.expr(s, st)
    return True


def _next(toks: list[str], i: int, n: int) -> str:
    """The token after toks[i], across line ends."""
    i += 1
    while i < n and toks[i] == "\n":
        i += 1
    return toks[i] if i < n else ""
