"""The pre-merge review checklist: one section per root, one checkbox per claim, evidence inline.

A reviewer answers a series on a mailing list in plain text, or in a forge in Markdown; both
come from one list of blocks built here, so the two cannot disagree.  Each claim carries the
fact that decides it (the edge and its file:line, the witness call chain), because a box
ticked without a reason is what the slab-destructor review got and could not check.
Predicted splats are printed verbatim, never wrapped: lockdep output is read by shape.
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Union

from lockgraph.checks import CheckResult
from lockgraph.graph import FS_RECLAIM, best_evidence, out_edges_sorted, shortest_path_or_none
from lockgraph.model import Edge, Evidence, Finding, trim_stack
from lockgraph.verdicts import SPINNING

#: Blind spots named per root; the rest are counted (`--format json` lists all).
MAX_BLIND = 5
#: Functions of a witness chain shown before eliding the middle.
MAX_VIA = 3


@dataclass(frozen=True, slots=True)
class Code:
    """A name shown as code: backticks in Markdown, bare in mail."""

    text: str


Inline = tuple[Union[str, Code], ...]


@dataclass(frozen=True, slots=True)
class Heading:
    level: int
    text: Inline


@dataclass(frozen=True, slots=True)
class Para:
    text: Inline


@dataclass(frozen=True, slots=True)
class Item:
    """A checkbox line (`ok` None: a plain bullet) with nested evidence bullets."""

    ok: bool | None
    text: Inline
    sub: tuple[Inline, ...] = ()


@dataclass(frozen=True, slots=True)
class Verbatim:
    text: str


Block = Union[Heading, Para, Item, Verbatim]


# --- facts to blocks ----------------------------------------------------------------------

def _frame(label: str) -> str:
    """`free_percpu (mm/percpu.c:2257)` → `free_percpu`; a runtime frame stays as it is."""
    return label.split(" (", 1)[0]


def _via(stack: Iterable[str]) -> Inline:
    names = [_frame(s) for s in stack if not s.startswith("configs: ")]
    if len(names) > MAX_VIA:
        names = names[:MAX_VIA - 1] + ["…", names[-1]]
    return _join([(n,) if n == "…" else (Code(n),) for n in names], " → ")


def _edge_tokens(a: str, b: str, ev: dict | Edge | None, runtime: bool = False) -> Inline:
    """`a → b` via the functions that make it, at file:line."""
    head: Inline = (Code(a), " → ", Code(b))
    if ev is None:
        return head
    if not isinstance(ev, dict):  # an Edge, or static evidence whose stack is built on read
        ev = {"file": ev.file, "line": ev.line, "stack": ev.stack}
    stack = tuple(ev.get("stack", ()))
    if runtime:  # lockdep stacks are innermost first: the acquiring function is the first
        stack = trim_stack(stack)[:1]
    via = (" via ", *_via(stack)) if stack else ()
    return (*head, *via, f" ({ev['file']}:{ev['line']})")


def _witness(steps: list[dict]) -> Inline:
    if not steps:
        return ()
    last = steps[-1]
    return (" via ", *_via(s["function"] for s in steps), f" ({last['file']}:{last['line']})")


def _spinning(v) -> Item:
    fn = Code(v.root.function)
    bad = [lk for lk in v.locks if lk.kind not in SPINNING or lk.lock == FS_RECLAIM]
    if not v.locks:
        return Item(True, (fn, " takes only spinning locks (it takes none)"))
    if not bad:
        return Item(True, (fn, " takes only spinning locks: ",
                           *_join([(Code(lk.lock), f" ({lk.kind})") for lk in v.locks])))
    return Item(False, (fn, " takes only spinning locks — no:"),
                tuple((Code(lk.lock), f" ({lk.kind})", *_witness(lk.witness))
                      for lk in bad))


def _join(parts: list[Inline], sep: str = ", ") -> Inline:
    out: list[str | Code] = []
    for k, p in enumerate(parts):
        if k:
            out.append(sep)
        out.extend(p)
    return tuple(out)


def _not_a_leaf(lock: str, edges: list[Inline]) -> Item:
    """One edge fits on the line; more become evidence bullets under it."""
    if len(edges) == 1:
        return Item(False, (Code(lock), " is a leaf — no: ", *edges[0]))
    return Item(False, (Code(lock), f" is a leaf — no, {len(edges)} outgoing dependencies:"),
                tuple(edges))


def _leaf_items(locks: list[dict], violations: dict[str, list[dict]]) -> list[Item]:
    items = []
    for lk in locks:
        name = lk.lock
        bad = violations.get(name, [])
        if not bad:
            items.append(Item(True, (Code(name), " is a leaf — taken", *_witness(lk.witness))))
            continue
        edges = [(Code(name), " takes reclaim itself") if x.to == "(reclaim)"
                 else _edge_tokens(name, x.to, x.edge,
                                   runtime=bool(x.edge) and "runtime" in x.edge.what)
                 for x in bad]
        items.append(_not_a_leaf(name, edges))
    return items


def _blind_item(v) -> Item:
    n = len(v.blind_spots)
    if not n:
        return Item(True, ("every function it reaches was analysed (no blind spots)",))
    shown = [(b,) for b in v.blind_spots[:MAX_BLIND]]
    if n > MAX_BLIND:
        shown.append((f"… {n - MAX_BLIND} more (--format json lists all)",))
    return Item(False, (f"every function it reaches was analysed — no: {n} blind spot(s), "
                        "so no verdict below can be 'proven'",), tuple(shown))


def _dtor_blocks(v) -> list[Block]:
    out: list[Block] = [_spinning(v)]
    by_lock: dict[str, list[dict]] = {}
    for x in v.strict_leaf.violations:
        by_lock.setdefault(x.lock, []).append(x)
    out += _leaf_items(v.locks, by_lock)
    contexts = (Code(FS_RECLAIM), " and the locks held where ",
                *_join([(Code(c),) for c in v.root.caches], " or "), " is freed") \
        if v.root.caches else (Code(FS_RECLAIM),)
    not_irq = v.dtor_safe.not_irq_safe
    if not_irq:
        out.append(Item(False, ("every lock it takes is irq-safe (a free can run in hard irq) — "
                                "no, never seen taken with interrupts disabled: ",
                                *_join([(Code(n),) for n in not_irq]))))
    elif v.locks:
        out.append(Item(True, ("every lock it takes is irq-safe (taken with interrupts "
                               "disabled somewhere)",)))
    if v.splats:
        out.append(Item(False, ("taking its locks under ", *contexts, " closes no cycle — no: "
                                f"{len(v.splats)} predicted splat(s) below",)))
    else:
        out.append(Item(True, ("taking its locks under ", *contexts, " closes no cycle")))
    out.append(_blind_item(v))
    out.append(Para(("strict leaf: ", v.strict_leaf.verdict,
                     "; dtor-safe: ", v.dtor_safe.verdict)))
    out += [Item(None, (why,)) for why in v.dtor_safe.reasons]
    for s in v.splats:
        out.append(Verbatim(s))
    return out


def _ctor_blocks(v) -> list[Block]:
    c = v.ctor
    fn = Code(v.root.function)
    out: list[Block] = []
    if c.sleeps_or_reclaims:
        wit = next((lk.witness for lk in v.locks if lk.lock == FS_RECLAIM), [])
        out.append(Item(False, (fn, " neither sleeps nor enters reclaim — no: ",
                                ", ".join(c.why), *_witness(wit))))
    else:
        out.append(Item(True, (fn, " neither sleeps nor enters reclaim")))
    atomic = c.atomic_sites
    n = c.allocation_sites
    if atomic:
        out.append(Item(not c.sleeps_or_reclaims,
                        (f"its cache is allocated from atomic context at {len(atomic)} of {n} "
                         "site(s)",),
                        tuple((Code(a.function), f" ({a.file}:{a.line}, {a.context})")
                              for a in atomic)))
    else:
        out.append(Item(True, (f"its cache is never allocated from atomic context ({n} "
                               "allocation site(s) found)",)))
    out.append(_blind_item(v))
    return out


def _graph_leaf_items(res: CheckResult, locks: Iterable[tuple[str, Inline]]) -> list[Item]:
    """Leaf claims judged on the merged graph (runtime roots and reclaim roots)."""
    G = res.graph
    items = []
    for lock, where in locks:
        outs = out_edges_sorted(G, lock) if lock in G else []
        if not outs:
            items.append(Item(True, (Code(lock), " is a leaf", *where)))
            continue
        edges = [_edge_tokens(a, b, best_evidence(G, a, b),
                              runtime=best_evidence(G, a, b).source != "static")
                 for a, b in outs]
        items.append(_not_a_leaf(lock, edges))
    return items


def _reclaim_root_blocks(res: CheckResult, v) -> list[Block]:
    out: list[Block] = []
    for lk in v.locks:
        back = (shortest_path_or_none(res.graph, lk.lock, FS_RECLAIM)
                if lk.lock != FS_RECLAIM else None)
        if back:
            out.append(Item(False, (Code(lk.lock), " does not lead back into ",
                                    Code(FS_RECLAIM), " — no: ", *_path(tuple(back)))))
        else:
            out.append(Item(True, (Code(lk.lock), " does not lead back into ",
                                   Code(FS_RECLAIM), " — taken", *_witness(lk.witness))))
    out += _graph_leaf_items(res, [(lk.lock, ()) for lk in v.locks])
    out.append(_blind_item(v))
    return out


def _path(path: Iterable[str]) -> Inline:
    return _join([(Code(p),) for p in path], " → ")


def _runtime_roots(res: CheckResult) -> list[Block]:
    """Destructor and reclaim contexts seen in logs, grouped the way a reviewer asks."""
    out: list[Block] = []
    by_root: dict[str, dict[str, Evidence]] = {}
    for lock, ctxs in sorted(res.dtor_locks.items()):
        for c in ctxs:
            by_root.setdefault(c.root, {}).setdefault(lock, c.evidence)
    for root in sorted(by_root):
        locks = by_root[root]
        out.append(Heading(2, ("Slab destructor ", Code(root), " (runtime evidence)")))
        out += _graph_leaf_items(res, [(lk, (f" (taken at {ev.file}:{ev.line})",))
                                       for lk, ev in sorted(locks.items())])
    # Reclaim roots found in the sources have their own sections; the rest came from logs.
    static = {v.root.function for v in res.roots if v.root.kind == "reclaim"}
    seen = {lock: [c for c in ctxs if c.root not in static]
            for lock, ctxs in res.reclaim_locks.items() if lock != FS_RECLAIM}
    seen = {lock: ctxs for lock, ctxs in seen.items() if ctxs}
    if seen:
        out.append(Heading(2, ("Memory reclaim (runtime evidence)",)))
        rows = []
        for lock, ctxs in sorted(seen.items()):
            ev = ctxs[0].evidence
            roots = sorted({c.root for c in ctxs})
            rows.append((lock, (" (under ", *_join([(Code(r),) for r in roots]),
                                f", {ev.file}:{ev.line})")))
        out += _graph_leaf_items(res, rows)
    return out


def _covered(res: CheckResult) -> set[str]:
    """Findings a root section already states, so the findings list does not repeat them."""
    fns = {v.root.function for v in res.roots}
    return {f.id for f in res.findings if f.rule in ("LG101", "LG105", "LG106") and f.root in fns}


def _finding_item(f: Finding) -> list[Block]:
    sub = []
    for ev in f.evidence:
        frames = trim_stack(ev.stack)
        where = f"{ev.file}:{ev.line}: " if ev.file else ""
        tail: Inline = ()
        if frames and " (" not in frames[0]:
            tail = (" — in ", *_join([(Code(x),) for x in frames[:MAX_VIA]], " ← "),
                    *((" ← …",) if len(frames) > MAX_VIA else ()))
        elif frames:
            tail = (" — via ", *_via(frames))
        sub.append((where + ev.what, *tail))
    out: list[Block] = [Item(False, (f"{f.rule} {f.slug} ({f.severity.value}): {f.message} (id ",
                                     Code(f.id), ")"), tuple(sub))]
    if f.detail:
        out.append(Verbatim(f.detail))
    return out


_TITLES = {"dtor": "Slab destructor ", "ctor": "Slab constructor ", "reclaim": "Reclaim root "}


def root_blocks(res: CheckResult, v, level: int = 2) -> list[Block]:
    """One root's section: what `review` shows for the roots a series adds or changes."""
    r = v.root
    out: list[Block] = [Heading(level, (_TITLES[r.kind], Code(r.function))),
                        Para(("registered: " + "; ".join(r.how),))]
    if not r.fids:
        out.append(Item(False, ("definition found in the scanned sources — no",)))
    elif r.kind == "dtor":
        out += _dtor_blocks(v)
    elif r.kind == "ctor":
        out += _ctor_blocks(v)
    else:
        out += _reclaim_root_blocks(res, v)
    return out


def checklist_blocks(res: CheckResult) -> list[Block]:
    counts = {s: sum(1 for f in res.findings if f.severity.value == s)
              for s in ("error", "warning", "note")}
    out: list[Block] = [
        Heading(1, ("lockgraph review checklist",)),
        Para((f"verdict: {res.verdict}; {counts['error']} error(s), {counts['warning']} "
              f"warning(s), {counts['note']} note(s); graph of {res.graph.number_of_nodes()} "
              f"locks and {res.graph.number_of_edges()} dependencies"
              + (f"; {res.sources} source file(s) scanned" if res.static else ""),)),
    ]
    out += [Item(None, (b,)) for b in res.blind_spots]
    for v in res.roots:
        out += root_blocks(res, v)
    out += _runtime_roots(res)
    covered = _covered(res)
    rest = [f for f in res.findings if f.id not in covered]
    out.append(Heading(2, ("Lock graph findings",)))
    if not rest:
        out.append(Item(True, ("no further findings on the merged lock graph",)))
    for f in rest:
        out += _finding_item(f)
    return out


# --- blocks to text -----------------------------------------------------------------------

#: What could start markup inside a line; `>` and `_` inside words cannot, and lock names
#: are full of both (`&q->elevator_lock`), so they stay unescaped and readable.
_MD_SPECIAL = str.maketrans({c: "\\" + c for c in "\\`*<["})


def _md_code(s: str) -> str:
    """A code span that survives backticks in the name (CommonMark: a longer fence)."""
    ticks = "`"
    while ticks in s:
        ticks += "`"
    pad = " " if s.startswith("`") or s.endswith("`") else ""
    return f"{ticks}{pad}{s}{pad}{ticks}"


def _md(text: Inline) -> str:
    return "".join(_md_code(t.text) if isinstance(t, Code) else t.translate(_MD_SPECIAL)
                   for t in text)


def _plain(text: Inline) -> str:
    """Mail text in ASCII arrows; names verbatim (an arrow inside a name is kept)."""
    return "".join(t.text if isinstance(t, Code) else
                   t.replace("→", "->").replace("←", "<-").replace("—", "--").replace("…", "...")
                   for t in text)


def _fence(text: str) -> str:
    fence = "```"
    while fence in text:
        fence += "`"
    return f"{fence}\n{text}\n{fence}"


def checklist_markdown(res: CheckResult) -> str:
    return blocks_markdown(checklist_blocks(res))


def blocks_markdown(blocks: list[Block]) -> str:
    out: list[str] = []
    for b in blocks:
        if isinstance(b, Heading):
            out += ["", "#" * b.level + " " + _md(b.text), ""]
        elif isinstance(b, Para):
            out += ["", _md(b.text), ""]
        elif isinstance(b, Item):
            box = "" if b.ok is None else ("[x] " if b.ok else "[ ] ")
            out.append(f"- {box}{_md(b.text)}")
            out += [f"  - {_md(s)}" for s in b.sub]
        elif isinstance(b, Verbatim):
            out += ["", _fence(b.text), ""]
    return _squeeze(out)


def _wrap(text: str, first: str, rest: str, width: int) -> list[str]:
    return textwrap.wrap(text, width, initial_indent=first, subsequent_indent=rest,
                         break_long_words=False, break_on_hyphens=False) or [first.rstrip()]


def checklist_text(res: CheckResult, width: int = 72) -> str:
    """The same checklist for a plain-text review mail: prose wrapped at `width` columns."""
    return blocks_text(checklist_blocks(res), width)


def blocks_text(blocks: list[Block], width: int = 72) -> str:
    out: list[str] = []
    for b in blocks:
        if isinstance(b, Heading):
            title = _plain(b.text)
            rule = "=" if b.level == 1 else "-"
            out += ["", title, rule * min(len(title), width), ""]
        elif isinstance(b, Para):
            out += ["", *_wrap(_plain(b.text), "", "", width), ""]
        elif isinstance(b, Item):
            box = "* " if b.ok is None else ("[x] " if b.ok else "[ ] ")
            out += _wrap(_plain(b.text), box, " " * len(box), width)
            for s in b.sub:
                out += _wrap(_plain(s), " " * len(box) + "- ", " " * (len(box) + 2), width)
        elif isinstance(b, Verbatim):
            out += [""] + ["    " + ln if ln else "" for ln in b.text.splitlines()] + [""]
    return _squeeze(out)


def _squeeze(lines: list[str]) -> str:
    """One blank line between blocks, none at the ends: two runs diff clean."""
    out: list[str] = []
    for ln in lines:
        if ln == "" and (not out or out[-1] == ""):
            continue
        out.append(ln.rstrip())
    while out and out[-1] == "":
        out.pop()
    return "\n".join(out) + "\n"
