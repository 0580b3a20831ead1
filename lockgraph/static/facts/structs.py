"""Struct member types, for resolving `a->b->fn()` by the type of each step.

An indirect call through an ops table is only as precise as what is known of the object it
goes through: `dev->ops->free()` matched by the member name `free` alone reaches every
`.free` of every table in the kernel, which is how one call-graph component swallows the
kernel.  Knowing that `dev` is a `struct net_device *` and its `ops` a `const struct
net_device_ops *` names the one table type whose `.free` members can be called there
(multi-layer type analysis: Lu & Hu, CCS'19).  This module reads the member types a file's
struct definitions declare; the solver walks the chain.

Only struct members whose type is itself a struct (or a typedef of one) matter for the
chain, so those are all that is kept: `{struct: {member: struct of member}}`.  Members of
anonymous inner structs and unions belong to the enclosing struct, as in C.
"""

from __future__ import annotations

import re

from lockgraph.static.facts.cparse import split_top

_STRUCT_OPEN = re.compile(r"\b(?:struct|union)\s+(\w+)\s*(?:__\w+(?:\([^()]*\))?\s*)*\{")
_TYPEDEF = re.compile(r"\btypedef\s+(?:const\s+)?(?:struct|union)\s+(\w+)\s*(?:\{|(\**\s*\w+)\s*;)")
#: One member declaration: its type words, then declarators.  `struct Y *p, q;` -> Y.
_MEMBER = re.compile(r"^\s*(?:const\s+|volatile\s+)*(?:struct|union)\s+(\w+)\s+(.+)$", re.S)
_TYPEDEF_MEMBER = re.compile(r"^\s*(?:const\s+|volatile\s+)*(\w+_t|\w+)\s+(\**\s*\w+\s*(?:\[[^\]]*\])?"
                             r"(?:\s*,\s*\**\s*\w+\s*(?:\[[^\]]*\])?)*)\s*$", re.S)
_DECLARATOR = re.compile(r"^\s*(?:\*\s*(?:const\s+)?)*(\w+)\s*(?:\[[^\]]*\]\s*)*(?::\s*\w+)?\s*$")
_INNER = re.compile(r"\b(?:struct|union)\s*(?:\w+\s*)?\{")


def match_brace(text: str, start: int, stop: int | None = None) -> int:
    """Index of the `}` closing the `{` at start (looking no further than stop), or -1."""
    depth = 0
    for k in range(start, len(text) if stop is None else min(len(text), stop)):
        c = text[k]
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                return k
    return -1


def _members(body: str, out: dict[str, str], typedefs: dict[str, str]) -> None:
    """Struct-typed members of one struct body; anonymous inner aggregates are flattened."""
    k = 0
    n = len(body)
    while k < n:
        m = _INNER.search(body, k)
        stop = m.start() if m else n
        for decl in body[k:stop].split(";"):
            _member(decl, out, typedefs)
        if not m:
            break
        close = match_brace(body, m.end() - 1)
        if close < 0:
            break
        inner_end = body.find(";", close)
        inner_end = n if inner_end < 0 else inner_end
        named = body[close + 1:inner_end].strip()
        tag = re.match(r"\b(?:struct|union)\s*(\w+)?", body[m.start():]).group(1)
        if named and tag:  # `struct tag { ... } name;`: a named member of a nested struct
            for d in split_top(named):
                dm = _DECLARATOR.match(d)
                if dm:
                    out[dm.group(1)] = tag
        if not named:      # anonymous: its members are the outer struct's
            _members(body[m.end():close], out, typedefs)
        k = inner_end + 1


def _member(decl: str, out: dict[str, str], typedefs: dict[str, str]) -> None:
    decl = decl.strip()
    if not decl or "(" in decl:  # function pointers and macros: not a step of a chain
        return
    m = _MEMBER.match(decl)
    if m:
        typ, rest = m.group(1), m.group(2)
    else:
        m = _TYPEDEF_MEMBER.match(decl)
        if not m or m.group(1) not in typedefs:
            return
        typ, rest = typedefs[m.group(1)], m.group(2)
    for d in split_top(rest):
        dm = _DECLARATOR.match(d)
        if dm:
            out[dm.group(1)] = typ


def struct_typedefs(text: str) -> dict[str, str]:
    """`typedef struct X Y;` and `typedef struct X {...} Y;`: Y -> X."""
    out: dict[str, str] = {}
    for m in _TYPEDEF.finditer(text):
        if m.group(2):
            out[m.group(2).lstrip("* ").strip()] = m.group(1)
            continue
        close = match_brace(text, m.end() - 1)
        if close < 0:
            continue
        nm = re.match(r"\s*(\w+)\s*;", text[close + 1:close + 200])
        if nm:
            out[nm.group(1)] = m.group(1)
    return out


def struct_fields(text: str, typedefs: dict[str, str]) -> dict[str, dict[str, str]]:
    """{struct tag: {member: struct tag of the member}} for every struct defined in text."""
    out: dict[str, dict[str, str]] = {}
    for m in _STRUCT_OPEN.finditer(text):
        close = match_brace(text, m.end() - 1)
        if close < 0:
            continue
        fields: dict[str, str] = {}
        _members(text[m.end():close], fields, typedefs)
        if fields:
            out.setdefault(m.group(1), {}).update(fields)
    return out
