"""Unusable and damaged input: an InputError a user can act on, or facts plus diagnostics.

`parse_log` raises `InputError` for input that is not a log at all and otherwise returns a
`LogResult`; damage inside a log (format spec §7: NUL runs, CRLF, bad bytes, non-breaking
spaces, ANSI escapes, giant lines, truncation) becomes a diagnostic or a partial report.
"""

from __future__ import annotations

import bz2
import gzip
import lzma
import random
import re

import pytest

from lockgraph.errors import InputError
from lockgraph.ingest.logs import LogResult, parse_log, parse_text
from lockgraph.ingest.logs.normalize import decode
from lockgraph.ingest.logs.primary import primary_facts
from lockgraph.model import REPORT_KINDS

from conftest import CORPUS

PCPU = CORPUS / "ml-block-pcpu-elevator-1.log"
SYZ185 = CORPUS / "syzkaller-185.log"

#: What the two reports used throughout state (corpus expectations, format spec §4.1).
PCPU_EDGES = {
    ("pcpu_alloc_mutex", "fs_reclaim"),
    ("fs_reclaim", "&q->q_usage_counter(io)#6"),
    ("&q->q_usage_counter(io)#6", "&q->elevator_lock"),
    ("&q->elevator_lock", "pcpu_alloc_mutex"),
}
SYZ185_EDGES = {
    ("sk_lock-AF_INET", "&xt[i].mutex"),
    ("&xt[i].mutex", "rtnl_mutex"),
    ("rtnl_mutex", "sk_lock-AF_INET"),
}


# -- helpers ---------------------------------------------------------------------------------


def write(tmp_path, data: bytes, name: str = "input.log"):
    path = tmp_path / name
    path.write_bytes(data)
    return path


def edge_set(res: LogResult) -> set[tuple[str, str]]:
    return {(e.src, e.dst) for r in res.reports for e in r.edges}


def located_edges(res: LogResult) -> set[tuple[str, str, str, int]]:
    """Edges with their source and the line the user is pointed at."""
    return {(e.src, e.dst, e.source, e.line) for r in res.reports for e in r.edges}


def circular(res: LogResult):
    reps = [r for r in res.reports if r.kind == "circular"]
    assert len(reps) == 1, [r.kind for r in res.reports]
    return reps[0]


def assert_located(res: LogResult, shown: str, n_lines: int) -> None:
    """Every fact and diagnostic points at a line that exists in the user's file."""
    for d in res.diagnostics:
        assert d.path == shown
        assert 1 <= d.line <= n_lines, d.format()
    for r in res.reports:
        assert r.kind in REPORT_KINDS
        assert 1 <= r.line <= n_lines
        for e in r.edges:
            assert e.src and e.dst, e
            assert e.file == shown
            assert 1 <= e.line <= n_lines, e


def n_lines(data: bytes | str) -> int:
    nl = b"\n" if isinstance(data, bytes) else "\n"
    return data.count(nl) + 1


def assert_pcpu(res: LogResult) -> None:
    r = circular(res)
    assert r.new_lock is not None and r.new_lock.name == "pcpu_alloc_mutex"
    assert r.held_lock is not None and r.held_lock.name == "&q->elevator_lock"
    assert r.task == "check/12334"
    assert PCPU_EDGES <= edge_set(res)


# -- unusable input: InputError, nothing else ------------------------------------------------


def _elf() -> bytes:
    hdr = bytearray(64)
    hdr[:16] = b"\x7fELF\x02\x01\x01" + bytes(9)
    hdr[16:20] = b"\x02\x00\x3e\x00"           # ET_EXEC, x86-64
    hdr[20:24] = b"\x01\x00\x00\x00"
    hdr[24:32] = (0x401000).to_bytes(8, "little")
    hdr[32:40] = (64).to_bytes(8, "little")
    hdr[52:64] = b"\x40\x00\x38\x00\x0d\x00\x40\x00\x1e\x00\x1d\x00"
    return bytes(hdr) + random.Random(1).randbytes(4096)


BINARY = {
    "random-bytes": random.Random(0).randbytes(65536),
    "random-bytes-small": random.Random(2).randbytes(1024),
    "elf-header": _elf(),
    "only-nuls": b"\x00" * 100_000,
    "control-chars": bytes(range(1, 9)) * 1000,
}


@pytest.mark.parametrize("kind", ["missing", "directory", "name-too-long"])
def test_unusable_path_raises_input_error(tmp_path, kind):
    path = {"missing": tmp_path / "nope.log", "directory": tmp_path,
            "name-too-long": tmp_path / ("x" * 5000)}[kind]
    with pytest.raises(InputError) as info:
        parse_log(path, shown="the.log")
    assert info.value.path == "the.log"
    assert info.value.format().startswith("the.log: error: ")


@pytest.mark.parametrize("data", [b"", b" ", b"\n", b" \n\t\r\n  \n", b"\r\n" * 1000],
                         ids=["empty", "space", "newline", "mixed-whitespace", "crlf-only"])
def test_empty_or_whitespace_file_is_input_error(tmp_path, data):
    with pytest.raises(InputError, match="empty"):
        parse_log(write(tmp_path, data))


@pytest.mark.parametrize("name", sorted(BINARY))
def test_binary_garbage_is_input_error(tmp_path, name):
    with pytest.raises(InputError, match="binary"):
        parse_log(write(tmp_path, BINARY[name]))


@pytest.mark.parametrize("codec", [gzip, lzma, bz2], ids=lambda m: m.__name__)
def test_compressed_log_is_input_error_not_silence(tmp_path, codec):
    """A `dmesg.log.gz` passed as is: about one in ten corpus logs, compressed, slipped
    through as "text" (parsed to nothing, with a UTF-8 warning) before the binary sniff
    stopped counting ESC and lowered its threshold."""
    for log in sorted(CORPUS.glob("*.log")):
        with pytest.raises(InputError, match="binary"):
            parse_log(write(tmp_path, codec.compress(log.read_bytes())))


@pytest.mark.parametrize("name", sorted(BINARY))
def test_binary_garbage_as_text_never_raises(name):
    text, diags = decode(BINARY[name], "bin")
    res = parse_text(text, "bin", diags)
    assert res.reports == []
    assert_located(res, "bin", n_lines(text))


# -- NUL runs --------------------------------------------------------------------------------


def _nul_mid_line(data: bytes) -> bytes:
    lines = data.split(b"\n")
    return b"\n".join(ln[:12] + b"\x00" * 40 + ln[12:] if i % 5 == 2 else ln
                      for i, ln in enumerate(lines))


def _nul_line_start(data: bytes) -> bytes:
    lines = data.split(b"\n")
    return b"\n".join(b"\x00" * 300 + ln if i % 7 == 4 else ln for i, ln in enumerate(lines))


def _nul_leading_block(data: bytes) -> bytes:
    # a dmesg file whose first blocks were never written: longer than one binary sniff sample
    return b"\x00" * 70_000 + data


def _nul_in_chain(data: bytes) -> bytes:
    return data.replace(b"-> #1 (fs_reclaim)", b"-> #1 \x00\x00\x00\x00(fs_reclaim)")


NUL_DAMAGE = {"mid-line": (_nul_mid_line, 3), "line-start": (_nul_line_start, 5),
              "leading-block": (_nul_leading_block, 1), "inside-chain-entry": (_nul_in_chain, 60)}


@pytest.mark.parametrize("how", sorted(NUL_DAMAGE))
def test_nul_runs_inside_a_report(tmp_path, how):
    damage, first_line = NUL_DAMAGE[how]
    data = damage(PCPU.read_bytes())
    res = parse_log(write(tmp_path, data), shown="nul.log")
    assert_pcpu(res)
    assert located_edges(res) == located_edges(parse_log(PCPU, shown="nul.log"))
    nul = [d for d in res.diagnostics if "NUL" in d.message]
    assert len(nul) == 1
    assert (nul[0].path, nul[0].line, nul[0].level) == ("nul.log", first_line, "warning")
    assert_located(res, "nul.log", n_lines(data))


# -- line endings ----------------------------------------------------------------------------


@pytest.mark.parametrize("eol", [b"\r\n", b"\r\r\n", b"\r"], ids=["crlf", "cr-cr-lf", "cr-only"])
@pytest.mark.parametrize("log", [PCPU, SYZ185], ids=lambda p: p.stem)
def test_line_endings_give_same_facts_and_lines(tmp_path, log, eol):
    lf = parse_log(log, shown="x.log")
    data = log.read_bytes().replace(b"\n", eol)
    got = parse_log(write(tmp_path, data), shown="x.log")
    assert [r.kind for r in got.reports] == [r.kind for r in lf.reports]
    assert primary_facts(got.reports) == primary_facts(lf.reports)
    # line numbers are the user's: the same lines an editor shows for the LF file
    assert located_edges(got) == located_edges(lf)
    assert [r.line for r in got.reports] == [r.line for r in lf.reports]
    assert got.diagnostics == lf.diagnostics


def test_crlf_cut_mid_report_keeps_line_numbers(tmp_path):
    data = b"\r\n".join(PCPU.read_bytes().split(b"\n")[:59])  # up to `-> #1`
    res = parse_log(write(tmp_path, data), shown="x.log")
    r = circular(res)
    assert r.line == 3
    assert r.new_lock.name == "pcpu_alloc_mutex" and r.new_lock.line == 7
    assert r.held_lock.name == "&q->elevator_lock" and r.held_lock.line == 11
    assert [(c.index, c.lock, c.line) for c in r.chain] == [
        (3, "&q->elevator_lock", 19), (2, "&q->q_usage_counter(io)#6", 40)]


# -- invalid UTF-8 / Latin-1 -----------------------------------------------------------------


def _latin1_task(data: bytes) -> bytes:
    return data.replace(b"check/12334 is trying", b"ch\xe9ck/12334 is trying")


def _latin1_nbsp(data: bytes) -> bytes:
    # a Latin-1 saved log whose timestamps and indentation carry U+00A0 as the byte 0xA0
    text = data.decode("utf-8")
    text = re.sub(r"^\[ ", "[\u00a0", text, flags=re.M).replace("]  #", "]\u00a0 #")
    return text.encode("latin-1")


def _truncated_sequence(data: bytes) -> bytes:
    return data.replace(b"null_blk: disk nullb0 created", b"null_blk: disk \xe2\x82 created")


def _lone_continuations(data: bytes) -> bytes:
    return data.replace(b"Hardware name: GIGABYTE", b"Hardware name: \x80\xbf\xff GIGABYTE")


BAD_UTF8 = {"latin1-task-name": (_latin1_task, 6), "latin1-nbsp-prefix": (_latin1_nbsp, 1),
            "truncated-sequence": (_truncated_sequence, 194),
            "lone-continuation-bytes": (_lone_continuations, 160)}


@pytest.mark.parametrize("how", sorted(BAD_UTF8))
def test_invalid_utf8_is_parsed_with_a_diagnostic(tmp_path, how):
    damage, line = BAD_UTF8[how]
    data = damage(PCPU.read_bytes())
    res = parse_log(write(tmp_path, data), shown="bad.log")
    r = circular(res)
    assert r.new_lock.name == "pcpu_alloc_mutex"
    assert r.held_lock.name == "&q->elevator_lock"
    assert PCPU_EDGES <= edge_set(res)
    assert edge_set(res) == edge_set(parse_log(PCPU))
    utf = [d for d in res.diagnostics if "UTF-8" in d.message]
    assert len(utf) == 1
    assert (utf[0].path, utf[0].line, utf[0].level) == ("bad.log", line, "warning")
    assert utf[0].format().startswith(f"bad.log:{line}: warning: ")


def test_latin1_task_name_is_kept_readable(tmp_path):
    res = parse_log(write(tmp_path, _latin1_task(PCPU.read_bytes())))
    assert circular(res).task == "ch\u00e9ck/12334"


# -- giant lines -----------------------------------------------------------------------------

TEN_MB = 10 * 1024 * 1024

GIANT = {
    "plain": b"x" * TEN_MB,
    "parens": b"(" * TEN_MB,
    "brackets-digits": b"[ 1." * (TEN_MB // 4),
    "descriptor-like": b" #0: ffff88 (" + b"a" * TEN_MB + b"){+.+.}",
    "anchor-repeated": b"WARNING: possible circular locking dependency detected " * (TEN_MB // 56),
    "held-by-repeated": b"1 lock held by " * (TEN_MB // 15),
    "chain-entry": b"-> #0 (" + b"&q->lock " * (TEN_MB // 9),
}


@pytest.mark.parametrize("name", sorted(GIANT))
def test_ten_megabyte_single_line(tmp_path, name):
    data = GIANT[name]
    res = parse_log(write(tmp_path, data), shown="big.log")
    assert_located(res, "big.log", 1)
    assert all(not r.edges for r in res.reports)


@pytest.mark.parametrize("name", sorted(GIANT))
def test_ten_megabyte_line_inside_a_report(tmp_path, name):
    lines = PCPU.read_bytes().split(b"\n")
    at = 75  # between two frames of `-> #1`
    data = b"\n".join(lines[:at] + [GIANT[name]] + lines[at:])
    res = parse_log(write(tmp_path, data), shown="big.log")
    assert_located(res, "big.log", n_lines(data))
    if name == "anchor-repeated":
        # the giant line is itself a header: it opens a second report, the first keeps
        # everything printed before it
        first, second = res.reports
        assert (first.kind, first.line, second.kind, second.line) == (
            "circular", 3, "circular", at + 1)
        assert first.new_lock.name == "pcpu_alloc_mutex"
        assert [c.index for c in first.chain] == [3, 2, 1]
    else:
        assert_pcpu(res)
    trunc = [d for d in res.diagnostics if "truncated" in d.message]
    assert [(d.line, d.level) for d in trunc] == [(at + 1, "warning")]


# -- console damage: non-breaking spaces, ANSI escapes ---------------------------------------


def _nbsp(text: str) -> str:
    text = re.sub(r"^\[ ", "[\u00a0", text, flags=re.M)
    return re.sub(r"(?<=\] ) ( +)", lambda m: "\u00a0" * len(m.group(0)), text)


def _dmesg_color(text: str) -> str:
    return re.sub(r"^(\[[^\]]*\]) ?", lambda m: f"\x1b[32m{m.group(1)}\x1b[0m ", text, flags=re.M)


def _colored_lines(text: str) -> str:
    return "\n".join(f"\x1b[1;31m{ln}\x1b[0m" if i % 2 else ln
                     for i, ln in enumerate(text.split("\n")))


def _cursor_controls(text: str) -> str:
    return "\n".join(f"\x1b[?25l\x1b[2K{ln}\x1b[K" for ln in text.split("\n"))


CONSOLE = {"nbsp": _nbsp, "dmesg-color": _dmesg_color, "colored-lines": _colored_lines,
           "cursor-controls": _cursor_controls}


@pytest.mark.parametrize("how", sorted(CONSOLE))
@pytest.mark.parametrize("log", [PCPU, SYZ185], ids=lambda p: p.stem)
def test_console_damage_gives_same_facts(tmp_path, log, how):
    text = log.read_text()
    damaged = CONSOLE[how](text)
    assert damaged != text
    clean = parse_log(log, shown="c.log")
    got = parse_log(write(tmp_path, damaged.encode()), shown="c.log")
    assert primary_facts(got.reports) == primary_facts(clean.reports)
    assert located_edges(got) == located_edges(clean)
    assert got.diagnostics == clean.diagnostics == []


# -- truncation at every line ----------------------------------------------------------------


def _cuts(log):
    lines = log.read_text().split("\n")
    for k in range(1, len(lines) + 1):
        yield k, lines, parse_text("\n".join(lines[:k]), log.name)


def _line_of(lines: list[str], needle: str) -> int:
    return next(i for i, ln in enumerate(lines, 1) if needle in ln)


@pytest.mark.parametrize("log,new,held,edges", [
    (PCPU, "pcpu_alloc_mutex", "&q->elevator_lock", PCPU_EDGES),
    (SYZ185, "sk_lock-AF_INET", "rtnl_mutex", SYZ185_EDGES),
], ids=["ml-block-pcpu-elevator-1", "syzkaller-185"])
def test_report_cut_off_at_every_line(log, new, held, edges):
    lines = log.read_text().split("\n")
    hdr = _line_of(lines, "possible circular locking dependency detected")
    trying = _line_of(lines, "is trying to acquire lock") + 1
    zero = _line_of(lines, "-> #0 (")
    backtrace = _line_of(lines, "stack backtrace:")
    prev: set[tuple[str, str]] | None = None
    for k, _, res in _cuts(log):
        assert_located(res, log.name, k)
        got = edge_set(res)
        if k < hdr:
            assert not [r for r in res.reports if r.kind == "circular"]
            continue
        r = circular(res)
        assert r.line == hdr
        # a cut-off report is kept, and the user is told where it starts
        cut_diags = [d for d in res.diagnostics if "backtrace" in d.message]
        if k < backtrace:
            assert [(d.path, d.line, d.level) for d in cut_diags] == [(log.name, hdr, "warning")]
        else:
            assert cut_diags == []
        if k >= trying:
            assert r.new_lock is not None and r.new_lock.name == new
        if k >= zero:
            # with the whole chain present the report-stated cycle is complete ...
            assert edges <= got, k
            # ... and more lines only ever add facts (monotonic)
            assert prev is None or prev <= got, (k, prev - got)
            prev = got
    assert prev == edge_set(parse_log(log))
    assert prev is not None and r.held_lock is not None and r.held_lock.name == held


def test_cut_off_held_list_infers_no_edge_from_an_outer_lock():
    """`7 locks held` with only `#0` printed: #0 is not the innermost lock, so no
    held_to_new edge may be drawn from it (it was, before the fix)."""
    lines = PCPU.read_text().split("\n")
    k = _line_of(lines, " #1: ") - 1  # the cut keeps #0 (wrapped over two lines) only
    res = parse_text("\n".join(lines[:k]), "cut.log")
    r = circular(res)
    assert [lk.name for lk in r.held_lists[0].locks] == ["sb_writers#4"]
    assert r.held_lists[0].count == 7
    assert not [e for e in r.edges if e.source == "held_to_new"]
    assert ("sb_writers#4", "pcpu_alloc_mutex") not in edge_set(res)
    # the complete listing does yield it, from the innermost lock
    full = circular(parse_log(PCPU))
    assert [(e.src, e.dst) for e in full.edges if e.source == "held_to_new"] == [
        ("&q->elevator_lock", "pcpu_alloc_mutex")]


# -- damaged reports: a diagnostic or a partial report, never an exception -------------------


def _delete(lines, i):
    return lines[:i] + lines[i + 1:]


def _halve(lines, i):
    return lines[:i] + [lines[i][: len(lines[i]) // 2]] + lines[i + 1:]


def _garbage(lines, i):
    return lines[:i + 1] + ["\x1b[0m\x07 (((){ -> #9 ( #3: )){+.+.} , at: ???"] + lines[i + 1:]


def _duplicate(lines, i):
    return lines[:i + 1] + [lines[i]] + lines[i + 1:]


DAMAGE = {"delete-line": _delete, "halve-line": _halve, "insert-garbage": _garbage,
          "duplicate-line": _duplicate}


@pytest.mark.parametrize("how", sorted(DAMAGE))
@pytest.mark.parametrize("log", [PCPU, SYZ185], ids=lambda p: p.stem)
def test_damaged_report_yields_partial_report_or_diagnostic(log, how):
    lines = log.read_text().split("\n")
    hdr = _line_of(lines, "possible circular locking dependency detected") - 1
    # every line of the report's head, then every third line (keeps the test ~1 s)
    for i in sorted(set(range(hdr + 25)) | set(range(0, len(lines), 3))):
        damaged = DAMAGE[how](lines, i)
        text = "\n".join(damaged)
        res = parse_text(text, "d.log")
        assert_located(res, "d.log", n_lines(text))
        header_intact = any("possible circular locking dependency detected" in ln
                            for ln in damaged)
        if header_intact:
            circ = [r for r in res.reports if r.kind == "circular"]
            damaged_diag = [d for d in res.diagnostics if "damaged" in d.message]
            assert circ or damaged_diag, (how, i)
        elif i == hdr:
            assert not [r for r in res.reports if r.kind == "circular"]


@pytest.mark.parametrize("text", [
    "WARNING: possible circular locking dependency detected",
    "WARNING: possible circular locking dependency detected\n-> #0",
    "WARNING: possible circular locking dependency detected\n-> #1 (\n-> #0 (a){+.+.}:",
    "WARNING: possible circular locking dependency detected\n-> #0 ()",
    "WARNING: possible circular locking dependency detected\nx/1 is trying to acquire lock:\n (",
    "WARNING: possible circular locking dependency detected\n 3 locks held by t/1:\n #2: (b){+.+.}",
    "[ BUG: bad unlock balance detected! ]\nt/1 is trying to release lock (",
    "INFO: task kworker/0:1:12 blocked for more than 120 seconds.\nShowing all locks held in the system:",
    "all lock classes:\nffffffff81 FD: 1 BD: 2 +.+.: ",
    "all lock chains:\nirq_context: 0\n[ffff] ",
    "lock-classes:  10 [max: 8192]\n",
    " FD: \n-> [\n held by \nirq_context:",
], ids=lambda t: t.splitlines()[-1][:30])
def test_fragments_never_raise(text):
    res = parse_text(text, "f.log")
    assert_located(res, "f.log", n_lines(text))


def test_truncated_chain_entry_name_is_a_note_not_a_crash():
    text = ("WARNING: possible circular locking dependency detected\n"
            "x/1 is trying to acquire lock:\n (b){+.+.}, at: f+0x1/0x2\n\n"
            "but task is already holding lock:\n (a){+.+.}, at: g+0x1/0x2\n\n"
            "the existing dependency chain (in reverse order) is:\n\n-> #1\n")
    res = parse_text(text, "n.log")
    r = circular(res)
    assert r.new_lock.name == "b" and r.held_lock.name == "a"
    assert any("without a lock name" in n for n in r.notes)
    assert {(e.src, e.dst) for e in r.edges} == {("a", "b")}
