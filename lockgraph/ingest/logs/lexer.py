"""Line classification: each printk line becomes one typed token for the report grammar.

Lockdep prints line-oriented reports, so the natural lexeme is a whole line.  The token
types are the terminals of `grammars/lockdep.lark`; `Tok.data` keeps the regex groups the
extractor needs, so no line is matched twice.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from lockgraph.ingest.logs.normalize import Line

USAGE = r"[.+\-?]{4,8}"
# A trailing name is written `(?P<name>.*\S|[^\S\n])\s*$`: the same match as the lazy
# `(?P<name>.+?)\s*$` (the text up to its last non-space, or one space when there is none),
# found without trying `\s*$` after every character of the name.

#: Report headers: (kind, finer "other" kind or None, regex on the message).
#: The header may carry WARNING:/INFO:/BUG: and old `[ … ]` brackets (format spec §1, §4).
FORMATS: tuple[tuple[str, str | None, re.Pattern[str]], ...] = tuple(
    (kind, other, re.compile(r"^\s*(?:\[ )?(?:WARNING|INFO|BUG): " + rx))
    for kind, other, rx in (
        ("circular", None, r"possible circular locking dependency detected"),
        ("recursive", None, r"possible recursive locking detected"),
        ("inconsistent_state", None, r"inconsistent lock state"),
        ("irq_inversion", None, r"possible irq lock inversion dependency detected"),
        ("irq_safe_unsafe", None, r"(?:HARD|SOFT)IRQ(?:-READ)?-safe -> (?:HARD|SOFT)IRQ(?:-READ)?-unsafe lock order detected"),
        ("invalid_wait_context", None, r"Invalid wait context"),
        ("bad_unlock_balance", None, r"bad unlock balance detected"),
        ("held_lock_freed", None, r"held lock freed"),
        ("held_on_return_to_user", None, r"lock held when returning to user space"),
        # __might_resched() (kernel/sched/core.c): not lockdep's, but it lists held locks.
        ("sleep_in_invalid_context", None, r"sleeping function called from invalid context"),
        ("other", "suspicious_rcu", r"suspicious RCU usage"),
        ("other", "nonstatic_key", r"trying to register non-static key"),
        ("other", "lockdep_limit", r"(?:MAX_LOCKDEP_\w+|MAX_STACK_TRACE_ENTRIES|MAX_LOCK_DEPTH|MAX_LOCKDEP_CHAIN_HLOCKS) too low!"),
        ("other", "lockdep_off", r"lockdep is turned off"),
        ("other", "still_has_locks", r"\S.* still has locks held!"),
        ("other", "nested_lock", r"Nested lock was not taken"),
        ("other", "bad_contention", r"bad contention detected"),
        ("other", "chain_key_collision", r"chain_key collision"),
        ("other", "lockdep_c_warning", r"CPU: \d+ PID: \d+ at kernel/locking/lockdep\.c"),
    )
)

_DESC = re.compile(
    r"^\s*(?:(?P<inst>[0-9a-f]{8,16}|\(____ptrval____\))\s*)?\((?P<name>.*?)\)\{(?P<usage>" + USAGE
    + r")\}(?:-\{(?P<wait>\d:\d)\})?(?:.*?,? at: (?P<at>.*))?"
)
_CHAIN = re.compile(r"^\s*-> #(?P<idx>\d+)\s*\((?P<name>.*?)\)\{(?P<usage>" + USAGE + r")\}")
_CHAIN_BARE = re.compile(r"^\s*-> #(?P<idx>\d+)\s*(?:\((?P<name>.*?)\))?\s*:?\s*$")
_BFS = re.compile(r"^\s*-> \((?P<name>.*?)\)\{(?P<usage>" + USAGE + r")\}")
_DEP = re.compile(r"^\s*-> \[(?P<key>[0-9a-f]+)\] (?P<name>.*\S|[^\S\n])\s*$")
_HELD = re.compile(r"^\s*#(?P<idx>\d+):\s*(?P<rest>.*)$")
_HELD_HDR = re.compile(r"^\s*(?P<n>\d+) locks? held by (?P<task>.+?):\s*$")
_NO_HELD = re.compile(r"^\s*no locks held by (?P<task>.+?)\.\s*$")
_CLASS = re.compile(
    r"^\s*(?P<key>[0-9a-f]{8,16})(?: OPS:\s*(?P<ops>\d+))?(?: FD:\s*(?P<fd>\d+) BD:\s*(?P<bd>\d+)"
    r"(?: (?P<usage>" + USAGE + r"))?)?: (?P<name>.*\S|[^\S\n])\s*$"
)
_CHAIN_CLASS = re.compile(r"^\[(?P<key>[0-9a-f]+)\] (?P<name>.*\S|[^\S\n])\s*$")
_IRQCTX = re.compile(r"^irq_context: (?P<ctx>\S+)\s*$")
_STAT = re.compile(r"^\s*(?P<label>[A-Za-z][\w \-/()]*?):\s*(?P<value>\d+)(?: \[max: (?P<max>\d+)\])?\s*$")
_FRAME = re.compile(
    r"^\s*(?P<q>\? )?(?:\[<[0-9a-f]+>\] )?(?:\()?(?P<func>[A-Za-z_.$][\w.$]*)(?:\+0x[0-9a-f]+/0x[0-9a-f]+\)?)"
    r"(?P<tail>.*)$"
)
_INLINE = re.compile(r"^\s*(?P<func>[A-Za-z_][\w.$]*) (?P<file>\S+:\d+) \[inline\]\s*$")
#: arm32 `dump_backtrace_entry()`: `[<pc>] (func) from [<lr>] (caller+0x10/0x14)` with
#: CONFIG_BACKTRACE_VERBOSE (old kernels print `func+0x0/0xe0` inside the parentheses), else
#: ` func from caller+0x10/0x14`.  Each line names the frame and its caller; the caller is
#: the next line's frame, except on the last line.
_ARM_FRAME = re.compile(
    r"^\s*(?:\[<[0-9a-f]+>\] ?)?\(?(?P<func>[A-Za-z_$][\w.$]*)(?:\+0x[0-9a-f]+/0x[0-9a-f]+)?\)?"
    r" from (?:\[<[0-9a-f]+>\] ?)?\(?(?:(?P<caller>[A-Za-z_$][\w.$]*)(?:\+0x[0-9a-f]+/0x[0-9a-f]+)?"
    r"\)?(?: \[[^\]]*\])?|0x[0-9a-f]+\)?)\s*$"
)
#: powerpc `show_stack()`: `[sp] [pc] func+0x74/0xa8 (unreliable)`; ELFv1 kernels print
#: dot symbols (`.show_stack+0x…`).
_PPC_FRAME = re.compile(
    r"^\s*\[[0-9a-f]{8,16}\] \[[0-9a-f]{8,16}\] \.?(?P<func>[A-Za-z_$][\w.$]*)\+0x[0-9a-f]+/0x[0-9a-f]+"
    r"(?P<tail>.*)$"
)
#: `scripts/decode_stacktrace.sh` output: the offset replaced by the source lines,
#: ` lock_release (kernel/locking/lockdep.c:470 kernel/locking/lockdep.c:5891)`.
_DECODED_FRAME = re.compile(
    r"^\s*(?P<q>\? )?(?P<func>[A-Za-z_$][\w.$]*) \((?:[\w.+-]+/)*[\w.+-]+\.[chsS]:\d+[^)]*\)*"
    r"(?: \[\w+\])?\s*$"
)
_MARK = re.compile(r"^\s*(?:</?(?:IRQ|TASK|NMI|SOFTIRQ|EOI)>|Call [Tt]race:|Exception stack.*)\s*$")
_TASK_TRYING = re.compile(
    r"^\s*(?P<task>\S.*?)(?: \[HC\d+\[\d+\]:SC\d+\[\d+\]:HE\d+:SE\d+\])? is trying to "
    r"(?P<what>acquire lock|acquire|lock|release lock)\b(?P<rest>.*)$"
)
_HUNG = re.compile(r"INFO: task (?P<comm>.+):(?P<pid>\d+) blocked for more than")

#: Sentences of report bodies that open a section (phrase id, regex).
PHRASES: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (pid, re.compile(rx)) for pid, rx in (
        ("holding", r"^\s*(?:but task is already holding lock|and this task is already holding):?\s*$"),
        ("chain_hdr", r"^\s*the existing dependency chain \(in reverse order\) is:"),
        ("chain_exists", r"^\s*Chain exists of:"),
        ("scenario", r"^\s*Possible (?:interrupt )?unsafe locking scenario"),
        ("backtrace", r"^\s*stack backtrace:"),
        ("bfs_hdr", r"^\s*the (?:shortest )?dependencies between"),
        ("changed_state", r"^\s*(?P<task>\S.*?) just changed the state of lock:"),
        ("took_unsafe", r"^\s*but this lock took another, (?P<cls>\S+?)-unsafe lock in the past:"),
        ("taken_by_safe", r"^\s*but this lock was taken by another, (?P<cls>\S+?)-safe lock in the past:"),
        ("new_dependency", r"^\s*which would create a new lock dependency:"),
        ("connects_safe", r"^\s*but this new dependency connects a (?P<cls>\S+?)-irq-safe lock:"),
        ("to_unsafe", r"^\s*to a (?P<cls>\S+?)-irq-unsafe lock:"),
        ("became", r"^\s*\.\.\. which became (?P<cls>\S+?)-irq-(?P<su>safe|unsafe) at:"),
        ("inconsistent", r"^\s*inconsistent \{(?P<a>[^}]*)\} -> \{(?P<b>[^}]*)\} usage\."),
        ("takes", r"^\s*(?P<task>\S.*?) \[HC\d+\[\d+\]:SC\d+\[\d+\]:HE\d+:SE\d+\] takes:"),
        ("registered", r"^\s*\{(?P<a>[^}]*)\} state was registered at:"),
        ("context", r"^\s*context-\{(?P<ctx>\d:\d)\}"),
        ("freeing", r"^\s*(?P<task>\S.*?) is freeing memory .*with a lock still held there!"),
        ("leaving", r"^\s*(?P<task>\S.*?) is leaving the kernel with locks still held!"),
        ("still_has", r"^\s*(?:WARNING: )?(?P<task>\S.*?) still has locks held!"),
        ("not_holding", r"^\s*but this task is not holding:"),
        ("key_at", r"^\s*\.\.\. key\s+at:"),
        ("acquired_at", r"^\s*\.\.\. acquired at:"),
        ("other_info", r"^\s*other info that might help us debug this:"),
        ("irq_stamp", r"^\s*irq event stamp:"),
        ("depends", r"^\s*which lock already depends on the new lock"),
        ("in_atomic", r"^\s*in_atomic\(\): (?P<atomic>\d+), irqs_disabled\(\): (?P<irqs>\d+),"
                      r"(?: non_block: (?P<nb>\d+),)? pid: (?P<pid>\d+), name: (?P<comm>.*\S)\s*$"),
    )
)
_PHRASE_HINT = re.compile(
    r"holding|dependency chain|Chain exists|scenario|backtrace|dependencies between|changed the state"
    r"|took another|taken by another|new lock dependency|connects a|irq-unsafe lock:|which became"
    r"|inconsistent \{|takes:|registered at|context-\{|freeing memory|leaving the kernel"
    r"|still has locks|not holding|key +at:|acquired at:|other info|irq event stamp|depends on"
    r"|in_atomic\(\)"
)


@dataclass(slots=True)
class Tok:
    """A classified line.  `type` is a terminal of the lockdep grammar."""

    type: str
    line: Line
    data: dict[str, Any] = field(default_factory=dict)


def match_header(text: str) -> tuple[str, str | None] | None:
    """(kind, other_kind) when the line is a lockdep report header."""
    if "DEBUG_LOCKS_WARN_ON(" in text:
        return "other", "debug_locks_warn"
    # Every format starts with "WARNING: ", "INFO: " or "BUG: ": most lines need no regex.
    if "WARNING: " not in text and "INFO: " not in text and "BUG: " not in text:
        return None
    for kind, other, rx in FORMATS:
        if rx.search(text):
            return kind, other
    return None


def parse_frame(text: str) -> dict[str, Any] | None:
    """The frame of a stack-trace line of any architecture's shape, else None.

    Keys: `func`, `q` (unreliable: x86 `? func`, powerpc `(unreliable)`), `inline` (a
    syzbot `[inline]` line), and `caller` for arm32 `func from caller` lines.
    """
    if " from " in text:
        m = _ARM_FRAME.match(text)
        if m:
            return {"func": m.group("func"), "q": False, "inline": False,
                    "caller": m.group("caller")}
    m = _FRAME.match(text)
    if m:
        return {"func": m.group("func").lstrip(".") or None, "q": m.group("q") is not None,
                "inline": False}
    m = _INLINE.match(text)
    if m:
        return {"func": m.group("func"), "q": False, "inline": True}
    if text.lstrip().startswith("["):
        m = _PPC_FRAME.match(text)
        if m:
            return {"func": m.group("func"), "q": "(unreliable)" in m.group("tail"),
                    "inline": False}
    m = _DECODED_FRAME.match(text)
    if m:
        return {"func": m.group("func"), "q": m.group("q") is not None, "inline": False}
    return None


def classify(line: Line) -> Tok:
    """Give one line its terminal type; noise is `NOISE`, never an error."""
    text = line.text
    s = text.lstrip()
    if not s:
        return Tok("BLANK", line)
    c = s[0]
    if c == "-":
        if s.startswith("-> #"):
            m = _CHAIN.match(text) or _CHAIN_BARE.match(text)
            if m:
                return Tok("CHAIN", line, m.groupdict())
        elif s.startswith("-> ("):
            m = _BFS.match(text)
            if m:
                return Tok("BFS", line, m.groupdict())
        elif s.startswith("-> ["):
            m = _DEP.match(text)
            if m:
                return Tok("DEP", line, m.groupdict())
        if s.strip("-") == "":
            return Tok("RULE", line)
    elif c == "#":
        m = _HELD.match(text)
        if m:
            return Tok("HELD", line, m.groupdict())
    elif c == "=" and s.strip("=") == "":
        return Tok("RULE", line)
    elif c == "[":
        m = _CHAIN_CLASS.match(text)
        if m and not text.startswith(" ") and "+0x" not in text:
            return Tok("CHAINCLASS", line, m.groupdict())
    hdr = match_header(text)
    if hdr:
        return Tok("HDR", line, {"kind": hdr[0], "other": hdr[1]})
    if "held by" in s:
        m = _HELD_HDR.match(text) or _NO_HELD.match(text)
        if m:
            d = m.groupdict()
            d["n"] = int(d.get("n") or 0)
            return Tok("HELD_HDR", line, d)
    if "is trying to" in s:
        m = _TASK_TRYING.match(text)
        if m:
            d = m.groupdict()
            return Tok("RELEASE" if d["what"] == "release lock" else "TRYING", line, d)
    if s.startswith("Showing all locks held in the system"):
        return Tok("SHOW_ALL", line)
    if "INFO: task " in s:
        m = _HUNG.search(text)
        if m:
            return Tok("HUNG", line, m.groupdict())
    if s.startswith("all lock classes:"):
        return Tok("PROC_CLASSES", line)
    if s.startswith(("all lock chains:", "(buggered) all lock chains:")):
        return Tok("PROC_CHAINS", line)
    if s.startswith("irq_context:"):
        m = _IRQCTX.match(text)
        if m:
            return Tok("IRQCTX", line, m.groupdict())
    if "(" in s and "){" in s:
        m = _DESC.match(text)
        if m:
            return Tok("LOCK", line, m.groupdict())
    if "+0x" in s or "[inline]" in s or " from " in s or ":" in s and " (" in s:
        fr = parse_frame(text)
        if fr:
            return Tok("FRAME", line, fr)
    if c == "<" or c == "C" or c == "E":
        if _MARK.match(text):
            return Tok("FRAME", line, {"func": None, "q": True, "inline": False})
    if c in "0123456789abcdef" and ": " in s:
        m = _CLASS.match(text)
        if m:
            return Tok("CLASS", line, m.groupdict())
    if _PHRASE_HINT.search(s):
        for pid, rx in PHRASES:
            m = rx.match(text)
            if m:
                d = m.groupdict()
                d["phrase"] = pid
                return Tok("PHRASE", line, d)
    if s.startswith(("lock(", "rlock(", "sync(", "<Interrupt>", "local_irq_disable", "CPU0", "CPU1", "----")):
        return Tok("SCEN", line)
    if ":" in s and s[-1].isdigit() or s.endswith("]"):
        m = _STAT.match(text)
        if m:
            label = m.group("label").strip()
            tok = "STAT_FIRST" if label == "lock-classes" else "STAT"
            return Tok(tok, line, {"label": label, "value": int(m.group("value")),
                                   "max": m.group("max")})
    return Tok("NOISE", line)
