"""From grouped sections to `Report` facts and the dependency edges each report implies.

The edge rules are lockdep's own (format spec §4, §5, §6): report-stated edges are
*certain*; neighbours in a held-lock listing are *inferred*, because a listing cannot show
trylocks, read-recursive acquisitions or irq-context switches.
"""

from __future__ import annotations

import re
from typing import Any

from lockgraph.grammar import Section
from lockgraph.ingest.logs.lexer import USAGE, Tok
from lockgraph.model import PRIMITIVES, RCU_PSEUDO_LOCKS, ChainEntry, Edge, HeldList, LockRef, Report

_DESC = re.compile(
    r"^\s*(?:#\d+:\s*)?(?:(?:[0-9a-f]{8,16}|\(____ptrval____\))\s*)?\((?P<name>.*?)\)\{(?P<usage>"
    + USAGE + r")\}(?:-\{(?P<wait>\d:\d)\})?(?:.*?,? at: (?P<at>.*))?"
)
_RELEASED = re.compile(r"^\s*(?:#\d+:\s*)?(?:[0-9a-f]{8,16}\s*)?<RELEASED>")
_PAIR = re.compile(
    r"^\s*\((?P<a>.*?)\)\{" + USAGE + r"\}(?:-\{\d:\d\})? -> \((?P<b>.*?)\)\{" + USAGE + r"\}"
)
_RELEASE_NAME = re.compile(r"\((?P<name>.*)\)(?: at:)?\s*$")
_SCEN = re.compile(r"^(?P<indent>\s*)(?P<op>lock|rlock|sync)\((?P<name>.*)\);\s*$")
_SITE = re.compile(r" at (?P<site>\S+:\d+)\s*$")
#: The line `dump_stack()` prints before the frames (x86 & co., arm64, arm32).
_TRACE_START = re.compile(r"^\s*(?:Call [Tt]race:|Backtrace:)")
_ADDR_FUNC = re.compile(r"^\s*(?:\[<[0-9a-f]+>\]\s*)?\(?(?P<func>[A-Za-z_$][\w.$]*)")

def func_name(text: str | None) -> str | None:
    """`[<addr>] foo.isra.3+0x1/0x2 [mod] file.c:1` -> `foo` (clone suffixes dropped)."""
    if not text:
        return None
    m = _ADDR_FUNC.match(text)
    if not m:
        return None
    return m.group("func").split(".")[0] or None


def stack_of(toks: list[Tok], idxs: list[int]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(all reliable frames incl. inlined, frames used for acquired_at) of a trace."""
    full: list[str] = []
    real: list[str] = []
    caller = None  # an arm32 line's caller: the next line's frame, or the outermost one
    for i in idxs:
        t = toks[i]
        if t.type != "FRAME" or not t.data.get("func") or t.data.get("q"):
            continue
        f = t.data["func"].split(".")[0]
        full.append(f)
        if not t.data.get("inline"):
            real.append(f)
        caller = t.data.get("caller")
    if caller:
        f = caller.split(".")[0]
        full.append(f)
        real.append(f)
    return tuple(full), tuple(real)


def acquired_at(frames: tuple[str, ...]) -> str | None:
    for f in frames:
        if not PRIMITIVES.match(f):
            return f
    return frames[0] if frames else None


def lockref(text: str, line: int, index: int | None = None) -> LockRef | None:
    m = _DESC.match(text)
    if not m:
        return None
    return LockRef(m.group("name"), line, m.group("usage"), m.group("wait"),
                   func_name(m.group("at")), index)


def _first_lock(toks: list[Tok], idxs: list[int]) -> LockRef | None:
    for i in idxs:
        t = toks[i]
        if t.type == "LOCK":
            return lockref(t.line.text, t.line.no)
    return None


def _task(raw: str | None) -> str | None:
    return raw.strip() if raw else None


class _Builder:
    """Accumulates one report's facts while walking its sections in printed order."""

    def __init__(self, file: str, toks: list[Tok], sections: list[Section], rule: str) -> None:
        self.file, self.toks, self.sections, self.rule = file, toks, sections, rule
        head = toks[sections[0][1]] if sections else toks[0]
        kind, other = "other", None
        if rule == "report":
            kind, other = head.data["kind"], head.data["other"]
        elif rule == "dump":
            kind = "hung_task_locks"
        elif rule == "listing":
            kind = "other"  # a listing inside a non-lockdep report: no marker of its own
        else:
            other = {"proc_classes": "proc_lockdep", "proc_chains": "proc_lockdep_chains",
                     "proc_stats": "proc_lockdep_stats"}[rule]
        self.r = Report(file=file, line=head.line.no, kind=kind,
                        other_kind=[other] if other else [])
        if kind == "sleep_in_invalid_context":
            m = _SITE.search(head.line.text)
            self.r.site = m.group("site") if m else None
        self.edges: list[Edge] = []

    # -- edge helpers ---------------------------------------------------------------
    def edge(self, a: str | None, b: str | None, certain: bool, source: str, line: int,
             stack: tuple[str, ...] = ()) -> None:
        if not a or not b:
            return
        if source in ("held", "held_to_new", "proc_chain") and a == b:
            return
        self.edges.append(Edge(a, b, certain, source, self.file, line, -1, stack))

    # -- sections -------------------------------------------------------------------
    def held_list(self, leader: Tok, subs: list[int]) -> HeldList:
        entries: list[LockRef] = []
        for i in subs:
            t = self.toks[i]
            if t.type != "HELD":
                continue
            idx = int(t.data["idx"])
            rest = t.data["rest"]
            if _RELEASED.match(rest):
                lk: LockRef | None = LockRef("<RELEASED>", t.line.no, index=idx)
            else:
                lk = lockref(rest, t.line.no, idx)
            if lk is None:
                self.r.notes.append(f"line {t.line.no}: held entry #{idx} unreadable")
                continue
            if entries and entries[-1].index == idx:
                if entries[-1].name == lk.name:
                    entries[-1] = lk  # syzbot repeats an entry per inlined frame: keep the last
                    continue
            entries.append(lk)
        task = leader.data.get("task", "").strip()
        return HeldList(task, leader.data.get("n", 0), leader.line.no, tuple(entries))

    def held_edges(self) -> None:
        for hl in self.r.held_lists:
            names = [lk for lk in hl.locks
                     if lk.name not in RCU_PSEUDO_LOCKS and lk.name != "<RELEASED>"]
            for a, b in zip(names, names[1:]):
                self.edge(a.name, b.name, False, "held", b.line, (b.at,) if b.at else ())

    def last_held(self) -> LockRef | None:
        for hl in self.r.held_lists:
            if hl.task == self.r.task or self.r.task is None:
                # A listing cut off before its announced count does not show the innermost
                # lock; its last visible entry is an outer one, not the lock held last.
                if not hl.locks or (hl.locks[-1].index or 0) < hl.count - 1:
                    return None
                names = [lk for lk in hl.locks
                         if lk.name not in RCU_PSEUDO_LOCKS and lk.name != "<RELEASED>"]
                return names[-1] if names else None
        return None

    def bfs_path(self, start: int) -> tuple[list[str], list[tuple[int, tuple[str, ...]]]]:
        """Entries of one BFS path block after section `start`, with their acquire stacks."""
        names: list[str] = []
        meta: list[tuple[int, tuple[str, ...]]] = []
        for rule, lead, subs in self.sections[start + 1:]:
            tok = self.toks[lead]
            if rule == "bfs_entry":
                names.append(tok.data["name"])
                meta.append((tok.line.no, ()))
            elif rule == "phrase" and tok.data["phrase"] == "acquired_at" and meta:
                meta[-1] = (meta[-1][0], stack_of(self.toks, subs)[0])
            elif rule == "phrase" and tok.data["phrase"] in ("key_at",):
                continue
            elif rule == "phrase" and tok.data["phrase"] != "acquired_at":
                break
            elif rule != "bfs_entry":
                break
        return names, meta

    def run(self) -> Report:
        r = self.r
        toks = self.toks
        bfs_blocks: list[tuple[str, int]] = []
        phrase_seen: set[str] = set()
        for n, (rule, lead, subs) in enumerate(self.sections):
            tok = toks[lead]
            d = tok.data
            if rule in ("report", "header", "dump", "hung", "show_all", "listing"):
                if tok.type == "HUNG":
                    hung = f"{d['comm']}/{d['pid']}"
                    r.task = r.task or hung
                    r.task_stacks.setdefault(hung, stack_of(toks, subs)[0])
                if tok.type == "HDR" and rule == "header" and d.get("other"):
                    r.other_kind.append(d["other"])
                if rule == "listing":
                    r.held_lists.append(self.held_list(tok, []))
                if rule == "proc_stats":
                    self._stats(subs)
            elif rule == "held_list":
                r.held_lists.append(self.held_list(tok, subs))
            elif rule == "trying":
                r.task = r.task or _task(d.get("task"))
                lk = _first_lock(toks, subs)
                if lk and r.new_lock is None:
                    r.new_lock = lk
            elif rule == "release":
                r.task = r.task or _task(d.get("task"))
                m = _RELEASE_NAME.search(d.get("rest", ""))
                frames = stack_of(toks, subs)[1]
                if m:
                    r.subject_lock = LockRef(m.group("name"), tok.line.no,
                                             at=frames[0] if frames else None)
            elif rule == "chain_entry":
                name = d.get("name")
                if not name:
                    lk = _first_lock(toks, subs)
                    name = lk.name if lk else None
                if name is None:
                    r.notes.append(f"line {tok.line.no}: chain entry #{d['idx']} without a lock name")
                    continue
                full, real = stack_of(toks, subs)
                r.chain.append(ChainEntry(int(d["idx"]), name, tok.line.no, acquired_at(real), full))
            elif rule == "phrase":
                self._phrase(n, tok, subs, bfs_blocks, phrase_seen)
            elif rule == "class_block":
                dep_toks = [t for t in map(toks.__getitem__, subs) if t.type == "DEP"]
                deps = [t.data["name"] for t in dep_toks]
                name = d["name"]
                r.classes.append({"name": name, "fd": int(d["fd"]) if d.get("fd") else None,
                                  "bd": int(d["bd"]) if d.get("bd") else None,
                                  "usage": d.get("usage"), "deps": deps, "line": tok.line.no})
                if name:  # self.edge(name, dep, True, "proc_direct", line), inlined: 32k a dump
                    file, edges = self.file, self.edges
                    for t, dep in zip(dep_toks, deps):
                        if dep:
                            edges.append(Edge(name, dep, True, "proc_direct", file, t.line.no, -1, ()))
            elif rule == "chain_block":
                names = [(toks[i].data["name"], toks[i].line.no) for i in subs
                         if toks[i].type == "CHAINCLASS"]
                r.chains.append({"irq_context": d["ctx"], "classes": [x for x, _ in names],
                                 "line": tok.line.no})
                kept = [x for x in names if x[0] not in RCU_PSEUDO_LOCKS]
                for (a, _), (b, ln) in zip(kept, kept[1:]):
                    self.edge(a, b, False, "proc_chain", ln)
            elif rule in ("stats", "proc_stats"):
                self._stats([lead] + subs)
        self._finish(bfs_blocks)
        r.edges = self.edges
        return r

    def _stats(self, idxs: list[int]) -> None:
        for i in idxs:
            t = self.toks[i]
            if t.type in ("STAT", "STAT_FIRST"):
                label = t.data["label"].rsplit(":", 1)[-1].strip()
                self.r.stats[label] = t.data["value"]

    def _phrase(self, n: int, tok: Tok, subs: list[int], bfs_blocks: list[tuple[str, int]],
                seen: set[str]) -> None:
        r, toks, d = self.r, self.toks, tok.data
        p = d["phrase"]
        if p == "holding":
            lk = _first_lock(toks, subs)
            if lk and r.held_lock is None:
                r.held_lock = lk
        elif p == "chain_exists":
            text = " ".join(toks[i].line.text.strip() for i in subs
                            if toks[i].type not in ("BLANK",) and toks[i].line.text.strip())
            first_blank = next((k for k, i in enumerate(subs) if toks[i].type == "BLANK"
                                and k > 0), None)
            if first_blank is not None:
                text = " ".join(toks[i].line.text.strip() for i in subs[:first_blank]
                                if toks[i].line.text.strip())
            r.chain_exists_of = [x.strip() for x in text.split("-->") if x.strip()]
        elif p == "scenario":
            rows = []
            for i in subs:
                m = _SCEN.match(toks[i].line.text)
                if m:
                    rows.append((len(m.group("indent")), m.group("op"), m.group("name")))
            if rows:
                base = min(x[0] for x in rows)
                r.scenario = [["CPU1" if ind > base + 10 else "CPU0", op, name]
                              for ind, op, name in rows]
        elif p == "backtrace":
            r.backtrace = stack_of(toks, subs)[0]
        elif p == "changed_state":
            r.task = r.task or _task(d.get("task"))
            r.subject_lock = r.subject_lock or _first_lock(toks, subs)
        elif p in ("took_unsafe", "taken_by_safe"):
            r.direction = "forwards" if p == "took_unsafe" else "backwards"
            r.irq_class = d.get("cls")
            lk = _first_lock(toks, subs)
            r.other_lock = lk.name if lk else None
        elif p == "new_dependency":
            for i in subs:
                m = _PAIR.match(toks[i].line.text)
                if m:
                    r.paths["new_dependency"] = [m.group("a"), m.group("b")]
                    break
        elif p == "connects_safe":
            r.irq_class = d.get("cls")
            lk = _first_lock(toks, subs)
            if lk:
                r.paths["safe_lock"] = [lk.name]
        elif p == "to_unsafe":
            lk = _first_lock(toks, subs)
            if lk:
                r.paths["unsafe_lock"] = [lk.name]
        elif p == "inconsistent":
            r.usage_transition = f"{{{d['a']}}} -> {{{d['b']}}}"
        elif p == "takes":
            r.task = r.task or _task(d.get("task"))
            r.new_lock = r.new_lock or _first_lock(toks, subs)
        elif p == "context":
            r.context = f"context-{{{d['ctx']}}}"
        elif p in ("freeing", "leaving", "still_has"):
            r.task = r.task or _task(d.get("task"))
            if p == "freeing":
                r.subject_lock = r.subject_lock or _first_lock(toks, subs)
        elif p == "bfs_hdr":
            bfs_blocks.append((tok.line.text, n))
        elif p == "in_atomic":
            r.task = r.task or f"{d['comm']}/{d['pid']}"
            r.context = r.context or (f"in_atomic(): {d['atomic']}, irqs_disabled(): {d['irqs']}"
                                      + (f", non_block: {d['nb']}" if d.get("nb") else ""))
        seen.add(p)

    def _finish(self, bfs_blocks: list[tuple[str, int]]) -> None:
        r = self.r
        if r.kind == "circular":
            self._circular()
        elif r.kind == "recursive":
            # The attempted acquisition is a self-loop when prev and next share a class;
            # it is the report itself, not a dependency, so only distinct classes make an edge.
            if r.held_lock and r.new_lock and r.held_lock.name != r.new_lock.name:
                self.edge(r.held_lock.name, r.new_lock.name, True, "new", r.new_lock.line,
                          r.backtrace)
        elif r.kind == "irq_inversion" and bfs_blocks:
            names, meta = self.bfs_path(bfs_blocks[0][1])
            r.paths["path"] = names
            for k in range(len(names) - 1):
                if r.direction == "backwards":
                    self.edge(names[k], names[k + 1], True, "path", meta[k + 1][0], meta[k + 1][1])
                else:
                    self.edge(names[k + 1], names[k], True, "path", meta[k][0], meta[k][1])
        elif r.kind == "irq_safe_unsafe":
            safe: list[str] = []
            unsafe: list[str] = []
            if bfs_blocks:
                safe, smeta = self.bfs_path(bfs_blocks[0][1])
                for k in range(len(safe) - 1):
                    self.edge(safe[k], safe[k + 1], True, "safe_path", smeta[k + 1][0], smeta[k + 1][1])
            nd = r.paths.get("new_dependency")
            if nd:
                self.edge(nd[0], nd[1], True, "new", r.new_lock.line if r.new_lock else r.line,
                          r.backtrace)
            if len(bfs_blocks) > 1:
                unsafe, umeta = self.bfs_path(bfs_blocks[1][1])
                for k in range(len(unsafe) - 1):
                    self.edge(unsafe[k + 1], unsafe[k], True, "unsafe_path", umeta[k][0], umeta[k][1])
            r.paths["safe_path"] = safe
            r.paths["unsafe_path"] = unsafe
        elif r.kind == "sleep_in_invalid_context" and not r.backtrace:
            r.backtrace = self.call_trace()
        if r.kind in ("other", "sleep_in_invalid_context") and r.task is None and r.held_lists:
            r.task = r.held_lists[0].task
        self.held_edges()
        if r.kind in ("circular", "recursive", "invalid_wait_context", "irq_safe_unsafe") and r.new_lock:
            last = self.last_held()
            if last and last.name != r.new_lock.name:
                self.edge(last.name, r.new_lock.name, False, "held_to_new", r.new_lock.line,
                          r.backtrace)

    def call_trace(self) -> tuple[str, ...]:
        """The frames of the first `Call Trace:` of a report that has no `stack backtrace:`
        line (its own dump_stack(); a second trace is another report's)."""
        toks = self.toks
        start = next((i for i, t in enumerate(toks) if _TRACE_START.match(t.line.text)), None)
        if start is None:
            return ()
        end = next((i for i in range(start + 1, len(toks))
                    if _TRACE_START.match(toks[i].line.text)), len(toks))
        return stack_of(toks, list(range(start + 1, end)))[0]

    def _circular(self) -> None:
        r = self.r
        by_idx = {c.index: c for c in r.chain}
        if not by_idx:
            if r.held_lock and r.new_lock:
                self.edge(r.held_lock.name, r.new_lock.name, True, "new", r.new_lock.line,
                          r.backtrace)
            return
        top = max(by_idx)
        names = {k: c.lock for k, c in by_idx.items()}
        if 0 not in names and r.new_lock:
            names[0] = r.new_lock.name
        for k in range(1, top + 1):
            if k - 1 in names and k in by_idx:
                c = by_idx[k]
                self.edge(names[k - 1], names[k], True, "chain", c.line, c.stack)
        if 0 in names and top in names and top > 0:
            zero = by_idx.get(0)
            stack = zero.stack if zero else r.backtrace
            line = zero.line if zero else (r.new_lock.line if r.new_lock else r.line)
            self.edge(names[top], names[0], True, "new", line, stack)


def build_report(file: str, toks: list[Tok], sections: list[Section], rule: str) -> Report:
    return _Builder(file, toks, sections, rule).run()

