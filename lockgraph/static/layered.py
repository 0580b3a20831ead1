"""The struct type of a member chain, from the struct definitions of every scanned file.

Multi-layer type analysis (Lu & Hu, CCS'19): a function stored in member `free` of a
`struct a_ops` can only be called through an expression of type `struct a_ops`, so
`h->dev->ops->free()` — `h` a `struct holder *`, its `dev` a `struct a_dev *`, that one's
`ops` a `const struct a_ops *` — reaches the `.free` functions of `a_ops` tables only.  The
solver asks this index for the chain's type; "" means "not known" and the caller falls back
to matching by member name.

A (struct, member) that two files declare with different types (two drivers' private
`struct priv`) is ambiguous and types nothing: a wrong type would drop real targets.
"""

from __future__ import annotations

import re

_AMBIGUOUS = "?"
_SPLIT = re.compile(r"->|\.")
_QUALIFIERS = re.compile(r"\b(?:const|volatile|struct|union|__rcu|__percpu)\b|\*")


class TypeIndex:
    def __init__(self, files) -> None:
        self.typedefs: dict[str, str] = {}
        self.fields: dict[str, dict[str, str]] = {}
        for ff in files:
            self.typedefs.update(ff.typedefs)
            for tag, members in ff.fields.items():
                mine = self.fields.setdefault(tag, {})
                for m, t in members.items():
                    old = mine.get(m)
                    mine[m] = t if old is None or old == t else _AMBIGUOUS

    def struct(self, typ: str) -> str:
        """The struct tag a declared type names (`const struct a_ops *` -> a_ops)."""
        t = _QUALIFIERS.sub(" ", typ).strip()
        if not t or " " in t:
            return ""
        return self.typedefs.get(t, t)

    def member(self, tag: str, path: str) -> str:
        """The struct tag of member path `a.b` of struct `tag`, or ""."""
        for step in path.split(".") if path else ():
            t = self.fields.get(tag, {}).get(step, "")
            if not t or t == _AMBIGUOUS:
                return ""
            tag = self.typedefs.get(t, t)
        return tag

    def of_chain(self, chain: str, root_type: str) -> str:
        """The struct tag of `root->a.b` given the root's declared type, or ""."""
        tag = self.struct(root_type)
        if not tag:
            return ""
        steps = [s.strip() for s in _SPLIT.split(chain)[1:]]
        return self.member(tag, ".".join(steps))
