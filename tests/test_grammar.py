"""Both grammars are conflict-free, and every statement rule of the C body grammar has IR."""

from __future__ import annotations

import re

import pytest
from lark import Token, Tree

from lockgraph.grammar import grammar_text, lockdep_parser
from lockgraph.static.facts import cparse


def test_both_grammars_build_with_lark_strict():
    lockdep_parser(strict=True)
    cparse._parser(strict=True)


def _tree_names() -> set[str]:
    """Every tree node name the body grammar can produce: its rules and their aliases."""
    text = grammar_text("cbody.lark")
    rules = set(re.findall(r"^([a-z]\w*):", text, re.M))
    aliased = set(re.findall(r"^(\w+):.*?->\s*(\w+)", text, re.M))
    return (rules - {a for a, _ in aliased} | {b for _, b in aliased}
            | set(re.findall(r"->\s*(\w+)", text)))


BODY = """
{ x(); }
if (a) b(); else c();
while (d) e();
for (;;) f();
do g(); while (h);
switch (i) { case 1: j(); break; default: k(); }
list_for_each_entry(p, &l, node) m();
out: n();
;
return o();
goto out;
continue;
"""


def test_every_statement_rule_of_the_body_grammar_has_ir():
    stmts = cparse.parse_body(BODY, 1)

    def kinds(ss):
        for s in ss:
            yield s[0]
            for part in s[1:]:
                if isinstance(part, tuple) and part and isinstance(part[0], str):
                    yield from kinds([part])
                elif isinstance(part, list) and part and isinstance(part[0], tuple) \
                        and part[0][0] in ("block", "expr", "if", "case", "break"):
                    yield from kinds(part)

    got = set(kinds(stmts))
    assert {"block", "if", "loop", "switch", "label", "case", "return", "goto", "break",
            "continue", "expr"} <= got
    # nothing the grammar names as a statement falls through to the error
    statements = _tree_names() - {"start", "paren", "call", "init", "stmt_expr"}
    for name in statements:
        assert f'"{name}"' in open(cparse.__file__).read(), name


def test_an_unhandled_grammar_rule_is_an_error_not_an_empty_statement():
    toks = cparse.classify(cparse.tokenize("x();", 1))
    with pytest.raises(ValueError, match="no IR"):
        cparse._stmt(Tree("new_stmt", [Token("SEMI", "0")]), toks)
