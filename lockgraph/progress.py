"""A progress bar on stderr for scans that take more than about a second, and phase
timings on request ($LOCKGRAPH_TIMINGS).

Silent when stderr is not a terminal (CI logs, pipes) or with --quiet, so output stays
byte-identical across runs.
"""

from __future__ import annotations

import sys
import time


class ScanProgress:
    DELAY = 1.0  # seconds before the bar appears

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled and sys.stderr.isatty()
        self.start = time.monotonic()
        self.files = 0
        self.bytes = 0
        self.total_files = 0
        self.total_bytes = 0
        self._bar = None
        self._task = None

    def __enter__(self) -> "ScanProgress":
        return self

    def __exit__(self, *exc) -> None:
        if self._bar is not None:
            self._bar.stop()

    def begin(self, files: int, nbytes: int) -> None:
        self.total_files, self.total_bytes = files, nbytes

    def advance(self, nbytes: int) -> None:
        self.files += 1
        self.bytes += nbytes
        if not self.enabled:
            return
        if self._bar is None and time.monotonic() - self.start > self.DELAY:
            from rich.console import Console
            from rich.progress import (BarColumn, Progress, TextColumn, TimeRemainingColumn,
                                       TransferSpeedColumn)

            self._bar = Progress(TextColumn("scanning"), BarColumn(),
                                 TextColumn("{task.fields[files]}/{task.fields[of]} files"),
                                 TransferSpeedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
                                 console=Console(stderr=True), transient=True)
            self._bar.start()
            self._task = self._bar.add_task("scan", total=self.total_bytes, files=0,
                                            of=self.total_files)
        if self._bar is not None:
            self._bar.update(self._task, completed=self.bytes, files=self.files)


class _Laps:
    """Phase timings on stderr, with $LOCKGRAPH_TIMINGS set: a whole-tree run spends
    minutes in phases no progress bar shows (solve, graph, verdicts, cycles, JSON), and a
    run that stalls should say in which."""

    def __init__(self) -> None:
        self.t0 = time.monotonic()
        self.name: str | None = None
        self.start = self.t0

    def lap(self, name: str | None) -> None:
        import os

        if not os.environ.get("LOCKGRAPH_TIMINGS"):
            return
        now = time.monotonic()
        if self.name is not None:
            sys.stderr.write(f"lockgraph: [{now - self.t0:7.1f} s] {self.name}: {now - self.start:.1f} s, "
                             f"peak RSS {_peak_mb()} MB\n")
        if name is not None:
            sys.stderr.write(f"lockgraph: [{now - self.t0:7.1f} s] {name} ...\n")
        sys.stderr.flush()
        self.name, self.start = name, now


def _peak_mb() -> int:
    try:
        import resource
    except ImportError:  # not on every platform
        return -1
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024


_laps = _Laps()


def lap(name: str | None) -> None:
    """End the current phase and start `name` (None: the last one ended).  Silent unless
    $LOCKGRAPH_TIMINGS is set, so output stays byte-identical."""
    _laps.lap(name)
