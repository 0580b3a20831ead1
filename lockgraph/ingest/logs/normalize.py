"""Console cleanup: turn raw captured bytes into lockdep's own printk lines.

Real logs arrive through serial consoles, journald, CI dumps and mail clients. Before any
report structure can be recognised, each line must lose its transport prefix (timestamps,
caller ids, syslog headers, printk levels), wrapped lines must be re-joined and KERN_CONT
fragments re-assembled — while every line keeps the physical line number the user will be
pointed at.  A 100 MB console log is mostly noise, so only windows around lockdep anchors are
normalised at all (`find_windows`).
"""

from __future__ import annotations

import codecs
import re
from dataclasses import dataclass

from lockgraph.model import Diagnostic

#: Longest logical line we look at.  No lockdep line comes near it (macro-expanded class
#: names are a few hundred characters); it bounds regex work on a 10 MB garbage line.
MAX_LINE = 16384

_SYSLOG = (
    r"(?:[A-Z][a-z]{2} +\d{1,2} \d\d:\d\d:\d\d"
    r"|\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d:?\d\d)?)"
    r" \S+ kernel: ?"
)
#: `dmesg -T` prints the wall-clock time instead of seconds since boot (ctime format).
_HUMAN_TS = (r"\[(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun) (?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov"
             r"|Dec) [ \d]\d \d\d:\d\d:\d\d \d{4}\]")
_TS = rf"(?:\[\s*\d+\.\d+\]|{_HUMAN_TS})"
_CALLER = r"(?: ?\[ *[TC]\d+\])"
_PREFIX = re.compile(rf"^(?P<p>(?:{_SYSLOG})?(?:<\d>)?{_TS}{_CALLER}?|{_SYSLOG}(?:<\d>)?|<\d>)")
#: A complete kernel timestamp in the middle of a line marks where the real record starts
#: (another console's bytes were interleaved before it).
_MID_TS = re.compile(rf"(?:\[\s*\d+\.\d{{6}}\]|{_HUMAN_TS}){_CALLER}?")
#: Mail quoting: `>`, `> >`, `>>` … at the start of a line (the space after the last `>` is
#: the quote's own when the whole excerpt is quoted that way, see `_quote_space`).
_QUOTE = re.compile(r">(?:[ \t]?>)*")
_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b[@-_]")
_CTRL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")

#: Fragments of a lock descriptor printed as separate KERN_CONT records.
_FRAG_START = re.compile(
    r"^\s*(?:#\d+:\s*)?(?:[0-9a-f]{8,16}\s*)?\(?\s*$"  # ' #0: ', 'ffff88..', ' ('
    r"|^\s*(?:#\d+:\s*(?:[0-9a-f]{8,16}\s*)?|-> #\d+\s*|[0-9a-f]{8,16}\s*)\((?!.*\)\{[.+\-?]{4,8}\}).*$"
)
_HAS_DESC = re.compile(r"\)\{[.+\-?]{4,8}\}")
_ENDS_AT = re.compile(r",?\s*at:\s*$")
_FRAMEISH = re.compile(r"^\s*(?:\? )?(?:\[<[0-9a-f]+>\] )?[\w.$]+\+0x[0-9a-f]+/0x[0-9a-f]+")
_HELD_IDX_ONLY = re.compile(r"^\s*#\d+:")
_ADDR_ONLY = re.compile(r"^\s*[0-9a-f]{8,16}\s*$")


@dataclass(frozen=True, slots=True)
class Line:
    """One printk record: its message text and where it starts in the user's file."""

    no: int
    text: str
    stamp: str = ""


def _latin1_fallback(exc: UnicodeError) -> tuple[str, int]:
    if not isinstance(exc, UnicodeDecodeError):
        raise exc
    return exc.object[exc.start:exc.end].decode("latin-1"), exc.end


_LATIN1_FALLBACK = "lockgraph-latin1-fallback"
codecs.register_error(_LATIN1_FALLBACK, _latin1_fallback)


def decode(data: bytes, path: str) -> tuple[str, list[Diagnostic]]:
    """Bytes to text without ever failing: damaged bytes are replaced and reported once."""
    diags: list[Diagnostic] = []
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        diags.append(Diagnostic(path, line, "warning",
                                "invalid UTF-8; undecodable bytes read as Latin-1"))
        # Latin-1 rather than U+FFFD: a Latin-1 saved log keeps its U+00A0 (cleaned like
        # any non-breaking space) instead of losing the timestamp/indent it stood for.
        text = data.decode("utf-8", errors=_LATIN1_FALLBACK)
    # Checked on the bytes (a memchr, not a pass over the wider str): decoding neither makes
    # nor removes a CR or a NUL, whichever way an invalid byte is read.
    if b"\r" in data and "\r" in text:
        text = text.replace("\r\n", "\n")
        if "\r" in text:
            # A lone CR ends lines only in a file without any LF; elsewhere (serial captures'
            # "\r\r\n") it is no line break, and making it one would shift line numbers.
            text = text.replace("\r", "\n" if "\n" not in text else "")
    if b"\x00" in data and "\x00" in text:
        first = text.index("\x00")
        diags.append(Diagnostic(path, text.count("\n", 0, first) + 1, "warning", "NUL bytes removed"))
        text = text.replace("\x00", "")
    return text, diags


def is_binary(data: bytes) -> bool:
    """True when the bytes are not a text log at all (NUL runs alone do not count)."""
    sample = b""
    for pos in range(0, len(data), 65536):  # skip NUL runs longer than one sample
        sample += data[pos:pos + 65536].replace(b"\x00", b"")
        if len(sample) >= 65536:
            break
    sample = sample[:65536]
    if not sample:
        return bool(data)
    # Uniformly random bytes (compressed files, executables) hold ~10% of these controls, a
    # text log almost none; ESC is left out because colour codes are console damage we clean.
    bad = sum(1 for b in sample if b < 9 or 13 < b < 27 or 27 < b < 32 or b == 127)
    return bad * 20 > len(sample)


def clean(text: str) -> str:
    """Remove console damage that never belongs to a message."""
    if text.isprintable():  # no ESC, NBSP, tab or other control character: nothing to do
        return text
    if "\x1b" in text:
        text = _ANSI.sub("", text)
    if "\u00a0" in text:
        text = text.replace("\u00a0", " ")
    if "\t" in text:
        text = text.replace("\t", " ")
    return _CTRL.sub("", text)


def split_prefix(raw: str) -> tuple[str | None, str]:
    """Return (prefix, message); prefix is None when the line carries no log prefix."""
    # _PREFIX can only start with "[", "<", an ASCII capital or a (Unicode) decimal digit.
    c = raw[:1]
    m = _PREFIX.match(raw) if c == "[" or c == "<" or "A" <= c <= "Z" or c.isdecimal() else None
    if m:
        rest = raw[m.end():]
        return m.group("p"), rest[1:] if rest.startswith(" ") else rest
    m = _MID_TS.search(raw) if "[" in raw else None
    if m:
        rest = raw[m.end():]
        return m.group(0), rest[1:] if rest.startswith(" ") else rest
    return None, raw


# ---------------------------------------------------------------------------------------
# Windows: the cheap pre-pass that keeps a 100 MB noisy log fast.

#: Substrings that occur on (or within a few lines of) every lockdep line we parse.
ANCHORS = (
    "locking dependency detected", "recursive locking detected", "inconsistent lock state",
    "lock inversion dependency", "unsafe lock order detected", "Invalid wait context",
    "bad unlock balance", "held lock freed", "returning to user space", "suspicious RCU usage",
    "non-static key", "DEBUG_LOCKS_WARN_ON", "kernel/locking/lockdep.c", "too low!",
    "lockdep is turned off", "all lock classes:", "all lock chains:", "lock-classes:",
    "Showing all locks held", " held by ", "still has locks held", "Nested lock was not taken",
    "bad contention detected", "chain_key collision", "-> [", "irq_context:",
    "blocked for more than", " FD: ",
)
#: Lines kept before an anchor (rules, wrapped prefixes) and after it (the report body).
BEFORE, AFTER = 4, 400


#: One pass over the text per search key.  Most anchors share the key "lock": a hit on it
#: is checked against the anchors that hold "lock" at that very place (dispatched on the
#: character after it), so 16 anchors cost one pass.  The others are keys of their own.
_KEY = "lock"


def _keyed(anchors: tuple[str, ...], key: str) -> tuple[
        dict[str, tuple[tuple[str, int], ...]], tuple[tuple[str, int], ...]]:
    """({character after the key: ((anchor, offset of the key in it), ...)}, the pairs
    whose anchor ends with the key, which any character may follow)."""
    after: dict[str, tuple[tuple[str, int], ...]] = {}
    anywhere: tuple[tuple[str, int], ...] = ()
    for a in anchors:
        k = a.find(key)
        while k != -1:
            nxt = a[k + len(key):k + len(key) + 1]
            if nxt:
                after[nxt] = after.get(nxt, ()) + ((a, k),)
            else:
                anywhere += ((a, k),)
            k = a.find(key, k + 1)
    return {c: pairs + anywhere for c, pairs in after.items()}, anywhere


_KEYED, _KEYED_ANY = _keyed(ANCHORS, _KEY)
_SINGLE = tuple(a for a in ANCHORS if _KEY not in a)


#: Texts are searched in chunks of whole lines of about this many characters: all the
#: passes over one chunk run while it is in the CPU cache (and a chunk of plain ASCII is
#: searched as 1-byte text even when the whole log holds a wider character somewhere).
_CHUNK = 1 << 16


def _anchor_offsets(text: str) -> list[int]:
    """Sorted offsets of anchor hits: at least one on every line that holds an anchor, and
    none on any other line (which hit of a line is reported does not matter)."""
    n = len(text)
    if n <= _CHUNK:
        return _chunk_anchor_offsets(text)
    offsets: list[int] = []
    find = text.find
    pos = 0
    while pos < n:  # no anchor holds a newline, so none crosses a chunk boundary
        end = find("\n", pos + _CHUNK)
        if end == -1:
            end = n
        hits = _chunk_anchor_offsets(text[pos:end])
        if hits:
            offsets.extend([pos + off for off in hits])
        pos = end + 1
    return offsets


def _chunk_anchor_offsets(text: str) -> list[int]:
    offsets: list[int] = []
    find = text.find
    for anchor in _SINGLE:
        pos = find(anchor)
        while pos != -1:
            offsets.append(pos)
            nl = find("\n", pos)
            if nl == -1:
                break
            pos = find(anchor, nl)
    keyed, anywhere, klen = _KEYED, _KEYED_ANY, len(_KEY)
    startswith = text.startswith
    pos = find(_KEY)
    while pos != -1:
        for anchor, k in keyed.get(text[pos + klen:pos + klen + 1], anywhere):
            if pos >= k and startswith(anchor, pos - k):
                offsets.append(pos)
                pos = find("\n", pos)  # the rest of this line adds nothing
                break
        if pos == -1:
            break
        pos = find(_KEY, pos + 1)
    offsets.sort()
    return offsets


def find_spans(text: str) -> list[tuple[int, int, int, int]]:
    """`find_windows` with where each window lies in the text: (start, end) line indexes and
    the [first, last) character offsets of those lines (without the final newline), so that
    `text[first:last].split("\n") == text.split("\n")[start:end]`."""
    offsets = _anchor_offsets(text)
    if not offsets:
        return []
    count, find, rfind = text.count, text.find, text.rfind
    # (start line, end line, offset of the first anchor, its line, offset of the last anchor)
    wins: list[tuple[int, int, int, int, int]] = []
    line = prev = first_off = first_line = last_off = 0
    start = end = -1
    for off in offsets:
        line += count("\n", prev, off)  # newlines before `off`: its 0-based line index
        prev = off
        if end >= 0 and line - BEFORE <= end:  # overlaps or touches the open window
            end = line + AFTER  # lines never decrease, so neither does the end
            last_off = off
            continue
        if end >= 0:
            wins.append((start, end, first_off, first_line, last_off))
        start, end = max(0, line - BEFORE), line + AFTER
        first_off = last_off = off
        first_line = line
    wins.append((start, end, first_off, first_line, last_off))
    total = line + count("\n", prev) + 1  # lines in the text, as len(text.split("\n"))
    spans: list[tuple[int, int, int, int]] = []
    for start, end, first_off, first_line, last_off in wins:
        first = rfind("\n", 0, first_off) + 1
        for _ in range(first_line - start):
            first = rfind("\n", 0, first - 1) + 1
        # The window ends AFTER lines after the one holding its last anchor (or at the end).
        last = last_off - 1
        for _ in range(AFTER):
            last = find("\n", last + 1)
            if last == -1:
                last = len(text)
                break
        spans.append((start, min(end, total), first, last))
    return spans


def find_windows(text: str) -> list[tuple[int, int]]:
    """Line ranges [start, end) worth normalising, merged and sorted."""
    return [(start, end) for start, end, _, _ in find_spans(text)]


# ---------------------------------------------------------------------------------------
# Logical lines.


def _join(a: str, b: str) -> str:
    b = b.strip()
    if not b:
        return a
    a = a.rstrip()
    if a.endswith("(") or b.startswith((")", ",")) or not a:
        return a + b
    return a + " " + b


def logical_lines(raw_lines: list[str], first_no: int, path: str,
                  diags: list[Diagnostic]) -> list[Line]:
    """Strip prefixes and undo wrapping; `first_no` is the 1-based number of raw_lines[0]."""
    stripped: list[tuple[int, str | None, str]] = []
    append = stripped.append
    prefixed = nonblank = 0
    quoted = _quote_space(raw_lines)
    for no, raw in enumerate(raw_lines, first_no):
        if len(raw) > MAX_LINE:
            diags.append(Diagnostic(path, no, "warning",
                                    f"line of {len(raw)} characters truncated to {MAX_LINE}"))
            raw = raw[:MAX_LINE]
        if not raw.isprintable():  # clean() returns a printable line unchanged
            raw = clean(raw)
        if quoted is not None and raw.startswith(">"):
            raw = _unquote(raw, quoted)
        prefix, msg = split_prefix(raw)
        if prefix is not None:
            prefixed += 1
        if msg and not msg.isspace():  # as msg.strip(), without the copy
            nonblank += 1
        append((no, prefix, msg))
    prefixed_mode = prefixed * 3 >= (nonblank or 1)

    if not prefixed_mode:  # the loop below, when its first branch is never taken
        return _reassemble([Line(no, msg.rstrip(), prefix or "") for no, prefix, msg in stripped])
    lines: list[Line] = []
    width = 0
    for no, prefix, msg in stripped:
        if prefixed_mode and prefix is None:
            if not msg.strip():
                continue
            if msg[0] == " " or not lines or not _continues(lines[-1].text, msg):
                # An embedded newline printed without a prefix, indented to its width.
                body = msg[width:] if msg[:width].strip() == "" and width else msg.lstrip()
                lines.append(Line(no, body, ""))
            else:
                # Wrapped by a mail client or a narrow terminal: continues the record above.
                last = lines[-1]
                lines[-1] = Line(last.no, _join(last.text, msg), last.stamp)
            continue
        if prefix is not None:
            width = len(prefix) + 1
        lines.append(Line(no, msg.rstrip(), prefix or ""))
    return _reassemble(lines)


def _quote_space(raw_lines: list[str]) -> bool | None:
    """How a mail quoted these lines: None when no line is quoted; else whether the space
    after the quote marks belongs to the quote (`> text`, `> > text`, `>> text`).

    Decided once for the whole excerpt, so that the indentation lockdep gives its lines
    (held entries, trace frames, the scenario columns) stays the same relative to each
    other: with `>text` quoting, the lines whose own text starts with a space show it.
    """
    quoted = tight = 0
    for raw in raw_lines:
        if raw.startswith(">"):
            m = _QUOTE.match(raw)
            rest = raw[m.end():]  # type: ignore[union-attr]
            if rest.strip():
                quoted += 1
                tight += rest[0] not in " \t"
    if not quoted:
        return None
    return tight * 10 < quoted


def _unquote(raw: str, space: bool) -> str:
    end = _QUOTE.match(raw).end()  # type: ignore[union-attr]
    if space and raw[end:end + 1] in (" ", "\t"):
        end += 1
    return raw[end:]


_OPEN_END = re.compile(r"(?:at:|-->|\(|,)\s*$")
_CONT_START = re.compile(r"^\s*(?:\(|\)\{|, at:|-->)")


def _continues(prev: str, msg: str) -> bool:
    """Whether an unprefixed line is the wrapped tail of `prev` rather than stray output."""
    if _OPEN_END.search(prev) or _CONT_START.match(msg) or _ADDR_ONLY.match(prev):
        return True
    return "(" in prev and not _HAS_DESC.search(prev) and bool(_FRAG_START.match(prev))


def _is_fragment_start(text: str) -> bool:
    # The literal tests only skip regexes that cannot match: _HAS_DESC needs "){", and the
    # last test needs "(" or, through _HELD_IDX_ONLY, "#".
    if "){" in text and _HAS_DESC.search(text):
        return bool(_ENDS_AT.search(text))
    if _ADDR_ONLY.match(text):
        return True
    if "(" not in text and "#" not in text:
        return False
    return bool(_FRAG_START.match(text)) and ("(" in text or _HELD_IDX_ONLY.match(text) is not None)


def _reassemble(lines: list[Line]) -> list[Line]:
    """Re-join lock descriptors split into KERN_CONT records or wrapped by mail clients.

    Pieces may be separated by other CPUs' stack frames; those are skipped, not swallowed.
    """
    out: list[Line] = []
    i, n = 0, len(lines)
    while i < n:
        line = lines[i]
        text = line.text
        if not _is_fragment_start(text):
            # A complete descriptor whose ", at: …" arrives as the next record.
            if ("){" in text and _HAS_DESC.search(text) and "at:" not in text and i + 1 < n
                    and lines[i + 1].text.lstrip().startswith(", at:")):
                out.append(Line(line.no, _join(text, lines[i + 1].text), line.stamp))
                i += 2
                continue
            out.append(line)
            i += 1
            continue
        acc = text
        j = i + 1
        skipped: list[Line] = []
        limit = min(n, i + 14)
        while j < limit:
            nxt = lines[j].text
            if _ENDS_AT.search(acc):
                acc = _join(acc, nxt)
                j += 1
                break
            if _HAS_DESC.search(acc):
                if nxt.lstrip().startswith(", at:"):
                    acc = _join(acc, nxt)
                    j += 1
                    if not _ENDS_AT.search(acc):
                        break
                    continue
                if _FRAMEISH.match(nxt) and j + 1 < limit:
                    skipped.append(lines[j])
                    j += 1
                    continue
                break
            if not nxt.strip():
                break
            if _FRAMEISH.match(nxt) or nxt.lstrip().startswith("? "):
                skipped.append(lines[j])
                j += 1
                continue
            if _HELD_IDX_ONLY.match(nxt) or " held by " in nxt:
                break
            acc = _join(acc, nxt)
            j += 1
        if _HAS_DESC.search(acc) and acc != text:
            out.append(Line(line.no, acc, line.stamp))
            out.extend(skipped)
            i = j
        else:
            out.append(line)
            i += 1
    return out

