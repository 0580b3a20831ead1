"""Evaluating a gfp expression (static/gfp.py): the values a reassigned variable may have,
`A || B` (walk.effective_gfp), each on its own; helpers that pass a gfp through."""

from __future__ import annotations

import pytest

from lockgraph.static.facts.walk import FuncFacts
from lockgraph.static.gfp import gfp_blocks, gfp_reclaims

F = FuncFacts("f", "f.c", 1, False, [("gfp_t", "gfp")])


@pytest.mark.parametrize("text, reclaims, blocks", [
    # a constant value reclaiming on one path outranks the caller's: no bit-union of the two
    ("GFP_KERNEL || gfp & ~__GFP_FS", "yes", "yes"),
    ("GFP_NOWAIT || gfp & ~__GFP_FS", "no", "param"),
    ("gfp & ~(__GFP_DIRECT_RECLAIM | __GFP_KSWAPD_RECLAIM) || GFP_ATOMIC", "no", "no"),
    # an unknown value: fs_reclaim edges count it, LG107 keeps the caller's condition
    ("mystery() || gfp", "unknown", "param"),
    ("current_gfp_context(GFP_KERNEL)", "yes", "yes"),
    ("gfp_nested_mask(GFP_NOWAIT)", "no", "no"),
    ("gfp_nested_mask(GFP_NOFS | __GFP_ACCOUNT)", "no", "yes"),
])
def test_each_value_is_evaluated(text, reclaims, blocks):
    assert gfp_reclaims(text, F)[0] == reclaims
    assert gfp_blocks(text, F)[0] == blocks
