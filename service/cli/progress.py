"""Progress of the long CLI commands (verify, digest, export) on a terminal: the `Progress` callback
(service/audit/report.py) drawn as plain counters."""

from __future__ import annotations

import sys
import time
from typing import IO


class TerminalProgress:
    """Plain counters on stderr, redrawn in place at most ~8 times a second; silent unless stderr is a
    terminal (or `force`)."""

    def __init__(self, stream: IO[str] | None = None, force: bool = False) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = force or self.stream.isatty()
        self.stage: str | None = None
        self.stage_started = 0.0
        self.last_draw = 0.0
        self.drawn = False

    def __call__(self, stage: str, done: int, total: int | None) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if stage != self.stage:
            self.finish()
            self.stage, self.stage_started = stage, now
        elif now - self.last_draw < 0.125 and (total is None or done < total):
            return
        self.last_draw = now
        elapsed = max(now - self.stage_started, 1e-6)
        rate = done / elapsed
        if total:
            share = min(done / total, 1.0)
            bar = "#" * int(share * 30)
            text = f"{stage:<8} [{bar:<30}] {done:,}/{total:,} events  {rate:,.0f}/s"
        else:
            text = f"{stage:<8} {done:,} events  {rate:,.0f}/s"
        self.stream.write("\r" + text + "\x1b[K")
        self.stream.flush()
        self.drawn = True

    def finish(self) -> None:
        if self.enabled and self.drawn:
            self.stream.write("\n")
            self.stream.flush()
            self.drawn = False
