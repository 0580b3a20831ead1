"""Properties of log parsing that must hold for any input, checked with hypothesis.

(a) `parse_text` never raises, whatever the text; (b) nor when arbitrary text is spliced into
a real report; (c) a log means the same with or without kernel timestamps (format spec
§7.1); (d) every edge names two locks and points at a line of the user's file.
"""

from __future__ import annotations

import datetime
import re
from functools import lru_cache

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lockgraph.ingest.logs import LogResult, parse_log, parse_text
from lockgraph.ingest.logs.normalize import clean, decode, split_prefix
from lockgraph.model import REPORT_KINDS

from conftest import CORPUS

LOGS = sorted(CORPUS.glob("*.log"))

FAST = settings(max_examples=200, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@lru_cache(maxsize=None)
def corpus_text(name: str) -> str:
    return decode((CORPUS / name).read_bytes(), name)[0]


def _unprefixed(name: str) -> bool:
    """A log pasted without any printk prefix (syzbot mails, quoted splats)."""
    lines = [ln for ln in corpus_text(name).split("\n") if ln.strip()]
    return not any(split_prefix(clean(ln))[0] is not None for ln in lines)


NAMES = [p.name for p in LOGS]
UNPREFIXED = [n for n in NAMES if _unprefixed(n)]


def n_lines(text: str) -> int:
    return text.count("\n") + 1


def check_invariants(res: LogResult, shown: str, text: str) -> None:
    """(d): every edge has two named ends and a line inside the file; so do reports and
    diagnostics."""
    last = n_lines(text)
    for d in res.diagnostics:
        assert d.path == shown and 1 <= d.line <= last, d.format()
    for r in res.reports:
        assert r.kind in REPORT_KINDS
        assert r.file == shown and 1 <= r.line <= last
        for e in r.edges:
            assert e.src.strip() and e.dst.strip(), e
            assert e.file == shown
            assert 1 <= e.line <= last, (e, last)


def signature(res: LogResult) -> list:
    return [(r.kind, r.other_kind, r.line, r.task,
             r.new_lock.name if r.new_lock else None, r.held_lock.name if r.held_lock else None,
             [(c.index, c.lock, c.line) for c in r.chain],
             [(e.src, e.dst, e.source, e.certain, e.line) for e in r.edges],
             r.held_locks, r.duplicate_of)
            for r in res.reports]


# -- strategies ------------------------------------------------------------------------------

#: Every code point but surrogates: includes C0/C1 controls, NUL, ESC, CR, U+00A0, U+2028.
ANY_CHAR = st.characters(blacklist_categories=("Cs",))
#: Characters the normaliser and lexer treat specially, to reach deep paths often.
SPECIAL = st.sampled_from(list("\x00\x07\x08\x1b\r\n\t\x7f\u00a0\u2028\ufffd []{}()#-><:,.+?/=")
                          + ["0x", "ffff8880", "{+.+.}", "-{4:4}", " at: ", "-> #", " #0: ",
                             "[  12.345678] ", "[ T123]", "<4>", "\x1b[0m", "\x1b[32m"])
LOCKDEP_WORDS = st.sampled_from([
    "WARNING: possible circular locking dependency detected",
    "WARNING: possible recursive locking detected", "WARNING: inconsistent lock state",
    "[ BUG: Invalid wait context ]", "WARNING: bad unlock balance detected!",
    "WARNING: possible irq lock inversion dependency detected",
    "WARNING: SOFTIRQ-safe -> SOFTIRQ-unsafe lock order detected",
    "x/1 is trying to acquire lock:", "x/1 is trying to release lock (a) at:",
    "but task is already holding lock:", "the existing dependency chain (in reverse order) is:",
    "-> #1 (a){+.+.}-{4:4}:", "-> #0 (b){+.+.}:", "-> #2", "-> (c){+.+.}", " (a){+.+.}, at: f+0x1/0x2",
    "2 locks held by x/1:", " #0: ffff (a){+.+.}, at: f+0x1/0x2", " #1: ", "(", "){+.+.}", ", at:",
    "no locks held by y/2.", "Chain exists of:", "  a --> b --> c", " Possible unsafe locking scenario:",
    "  lock(a);", "stack backtrace:", "Call Trace:", " f+0x1/0x2", " ? g+0x3/0x4", "<IRQ>",
    "the dependencies between HARDIRQ-irq-safe lock and the holding lock:",
    "which would create a new lock dependency:", " (a){+.+.}-{0:0} -> (b){+.+.}-{0:0}",
    "INFO: task k/0:1:12 blocked for more than 120 seconds.", "Showing all locks held in the system:",
    "=============================================", "-------", "all lock classes:",
    "ffffffff82 FD:    1 BD:    2 +.+.: a", " -> [ffffffff83] b", "all lock chains:",
    "irq_context: 0", "[ffffffff84] a", "lock-classes:  10 [max: 8192]", " direct dependencies: 5",
    "inconsistent {SOFTIRQ-ON-W} -> {IN-SOFTIRQ-W} usage.", "x/1 [HC0[0]:SC1[1]:HE1:SE0] takes:",
    "{SOFTIRQ-ON-W} state was registered at:", "context-{4:4}", "DEBUG_LOCKS_WARN_ON(1)",
    "INFO: lockdep is turned off.", "BUG: MAX_LOCKDEP_ENTRIES too low!",
])
LINE = st.one_of(LOCKDEP_WORDS, st.text(ANY_CHAR, max_size=40),
                 st.lists(st.one_of(SPECIAL, LOCKDEP_WORDS), max_size=6).map("".join))
LOCKDEPISH = st.lists(LINE, max_size=40).map("\n".join)
ARBITRARY = st.one_of(st.text(ANY_CHAR, max_size=2000),
                      st.lists(SPECIAL, max_size=300).map("".join), LOCKDEPISH)


# -- (a) arbitrary text ----------------------------------------------------------------------


@FAST
@given(text=ARBITRARY)
def test_parse_text_never_raises_on_arbitrary_text(text):
    res = parse_text(text, "any.log")
    check_invariants(res, "any.log", text)


@FAST
@given(data=st.binary(max_size=2000))
def test_decode_then_parse_never_raises_on_arbitrary_bytes(data):
    text, diags = decode(data, "bytes.log")
    res = parse_text(text, "bytes.log", diags)
    check_invariants(res, "bytes.log", text)


# -- (b) arbitrary text spliced into a real report -------------------------------------------


@FAST
@given(name=st.sampled_from(NAMES), where=st.floats(0, 1), junk=ARBITRARY,
       cut=st.integers(0, 200))
def test_parse_text_never_raises_on_text_spliced_into_a_report(name, where, junk, cut):
    text = corpus_text(name)
    at = int(len(text) * where)
    # splice in the junk, optionally replacing what followed (a cut-off record)
    spliced = text[:at] + junk + text[at + cut:]
    res = parse_text(spliced, name)
    check_invariants(res, name, spliced)


@FAST
@given(name=st.sampled_from(NAMES), data=st.data())
def test_parse_text_never_raises_on_shuffled_report_lines(name, data):
    lines = corpus_text(name).split("\n")
    ops = data.draw(st.lists(st.tuples(st.sampled_from(["del", "dup", "swap", "cut"]),
                                       st.integers(0, len(lines) - 1)), max_size=8))
    for op, i in ops:
        i = min(i, len(lines) - 1)
        if op == "del" and len(lines) > 1:
            del lines[i]
        elif op == "dup":
            lines.insert(i, lines[i])
        elif op == "swap" and i + 1 < len(lines):
            lines[i], lines[i + 1] = lines[i + 1], lines[i]
        elif op == "cut":
            lines[i] = lines[i][: len(lines[i]) // 2]
    text = "\n".join(lines)
    check_invariants(parse_text(text, name), name, text)


# -- (c) timestamps do not change the facts --------------------------------------------------


def test_some_corpus_logs_are_unprefixed():
    assert len(UNPREFIXED) >= 10, UNPREFIXED


TIMESTAMP = st.one_of(
    st.just("[ 12.345678] "),
    st.builds(lambda s, us: f"[{s:5d}.{us:06d}] ", st.integers(0, 99999), st.integers(0, 999999)),
    # CONFIG_PRINTK_CALLER: `[ T5097]`, `[    C0]`, `[T127266]` (the id right-aligned in 6)
    st.builds(lambda s, us, c, n, sep: f"[{s:5d}.{us:06d}]{sep}[{c + str(n):>6}] ",
              st.integers(0, 99999), st.integers(0, 999999), st.sampled_from("TC"),
              st.integers(0, 999999), st.sampled_from(["", " "])),
    st.builds(lambda lv, s, us: f"<{lv}>[{s:5d}.{us:06d}] ", st.integers(0, 7),
              st.integers(0, 99999), st.integers(0, 999999)),
)


@FAST
@given(name=st.sampled_from(UNPREFIXED), stamp=TIMESTAMP, same=st.booleans())
def test_timestamp_prefix_does_not_change_facts(name, stamp, same):
    text = corpus_text(name)
    lines = text.split("\n")
    if same:  # one console, one timestamp per line: the common case
        stamped = "\n".join(stamp + ln for ln in lines)
    else:  # advancing timestamps, like a real console
        stamped = "\n".join(f"[{i // 1000000:5d}.{i % 1000000:06d}] {ln}"
                            for i, ln in enumerate(lines, 1000))
    plain, pref = parse_text(text, name), parse_text(stamped, name)
    assert signature(pref) == signature(plain)
    assert pref.diagnostics == plain.diagnostics


@pytest.mark.parametrize("name", UNPREFIXED)
def test_timestamp_prefix_does_not_change_facts_of_each_unprefixed_log(name):
    text = corpus_text(name)
    stamped = "\n".join("[ 12.345678] " + ln for ln in text.split("\n"))
    assert signature(parse_text(stamped, name)) == signature(parse_text(text, name))


# -- (e) paste formats: mail quoting and `dmesg -T` do not change the facts -----------------


def facts(res: LogResult) -> list:
    """`signature` plus everything else a report states, and the diagnostics."""
    return [signature(res),
            [(r.subject_lock, r.new_lock, r.held_lock, r.other_lock, r.direction, r.irq_class,
              r.usage_transition, r.context, r.site, r.chain, r.chain_exists_of, r.scenario,
              r.paths, r.held_lists, r.backtrace, r.task_stacks, r.notes) for r in res.reports],
            res.diagnostics]


def quote(text: str, marker: str, blank: str) -> str:
    """The text as a mail client quotes it: `marker` before each line, `blank` for empty ones."""
    return "\n".join(marker + ln if ln else blank for ln in text.split("\n"))


#: Quote marks at depth 1-4, each level `>` or `> ` (`> `, `>> `, `> > `, `>`, `> >> ` …).
MARKER = st.lists(st.sampled_from([">", "> "]), min_size=1, max_size=4).map("".join)
_SECONDS = re.compile(r"\[\s*(\d+)\.\d+\]")


def human_time(text: str, boot: datetime.datetime) -> str:
    """The text as `dmesg -T` prints it: `[Sun Dec  6 17:24:01 2026]` for `[ 1234.567890]`."""
    def ctime(m: re.Match) -> str:
        t = boot + datetime.timedelta(seconds=int(m.group(1)))
        return f"[{t:%a %b} {t.day:2d} {t:%H:%M:%S} {t.year}]"
    return _SECONDS.sub(ctime, text)


STAMPED = [n for n in NAMES if _SECONDS.search(corpus_text(n))]
BOOT = st.datetimes(min_value=datetime.datetime(2000, 1, 1),
                    max_value=datetime.datetime(2099, 1, 1))


@FAST
@given(name=st.sampled_from(NAMES), marker=MARKER, blank=st.sampled_from(["marker", "strip", ""]))
def test_quoting_a_log_at_any_depth_does_not_change_facts(name, marker, blank):
    text = corpus_text(name)
    empty = {"marker": marker, "strip": marker.rstrip(), "": ""}[blank]
    assert facts(parse_text(quote(text, marker, empty), name)) == facts(parse_text(text, name))


@FAST
@given(name=st.sampled_from(STAMPED), boot=BOOT, marker=st.one_of(st.just(""), MARKER))
def test_dmesg_T_timestamps_do_not_change_facts(name, boot, marker):
    text = corpus_text(name)
    human = quote(human_time(text, boot), marker, marker)
    assert facts(parse_text(human, name)) == facts(parse_text(text, name))


@pytest.mark.parametrize("name", NAMES)
def test_each_log_quoted_and_with_dmesg_T_times_has_the_same_facts(name):
    text = corpus_text(name)
    plain = facts(parse_text(text, name))
    assert facts(parse_text(quote(text, "> ", ">"), name)) == plain
    assert facts(parse_text(quote(text, ">>", ">>"), name)) == plain
    assert facts(parse_text(human_time(text, datetime.datetime(2026, 12, 6, 17, 0)), name)) == plain


def test_dmesg_T_is_a_prefix_and_quoting_keeps_lockdep_indentation():
    """The line text lockdep printed survives, leading blanks included (` #0:`, traces)."""
    from lockgraph.ingest.logs.normalize import logical_lines

    raw = ["> > [Sun Dec  6 17:24:01 2026] 2 locks held by kworker/0:1/9:",
           "> > [Sun Dec  6 17:24:01 2026]  #0: ffff (a){+.+.}-{4:4}, at: f+0x1/0x2",
           ">> [Mon Dec  7 07:04:09 2026]        g+0x3/0x4"]
    assert [(ln.no, ln.stamp, ln.text) for ln in logical_lines(raw, 1, "q.log", [])] == [
        (1, "[Sun Dec  6 17:24:01 2026]", "2 locks held by kworker/0:1/9:"),
        (2, "[Sun Dec  6 17:24:01 2026]", " #0: ffff (a){+.+.}-{4:4}, at: f+0x1/0x2"),
        (3, "[Mon Dec  7 07:04:09 2026]", "       g+0x3/0x4")]
    # `>` without a space of its own: a line's leading blanks are its text's
    raw = [">2 locks held by kworker/0:1/9:", ">  #0: ffff (a){+.+.}-{4:4}, at: f+0x1/0x2",
           ">>       g+0x3/0x4"]
    assert [ln.text for ln in logical_lines(raw, 1, "q.log", [])] == [
        "2 locks held by kworker/0:1/9:", "  #0: ffff (a){+.+.}-{4:4}, at: f+0x1/0x2",
        "       g+0x3/0x4"]


# -- (d) edges are located -------------------------------------------------------------------


@pytest.mark.parametrize("log", LOGS, ids=lambda p: p.stem)
def test_every_corpus_edge_is_named_and_located(log):
    res = parse_log(log, shown=log.name)
    check_invariants(res, log.name, corpus_text(log.name))


@FAST
@given(name=st.sampled_from(NAMES), keep=st.floats(0, 1))
def test_every_edge_of_a_cut_off_log_is_named_and_located(name, keep):
    text = corpus_text(name)
    cut = text[: int(len(text) * keep)]
    check_invariants(parse_text(cut, name), name, cut)


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=30)


@settings(max_examples=300, deadline=None)
@given(value=st.dictionaries(st.text(), _JSON, max_size=5))
def test_fast_indented_json_is_byte_identical_to_json_dumps(value):
    import json

    from lockgraph.render.json import dumps

    assert dumps(value) == json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
