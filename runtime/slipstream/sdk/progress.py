"""A long `.map`'s progress on stderr: done/failed/total and the spend so far.

On by default under `slipstream run` (it sets SLIPSTREAM_PROGRESS=1; set it to 0 to silence,
or to 1 to see it in a plain `python script.py` too). A map that finishes within a second
prints nothing. When stderr is a terminal, one line redrawn in place (a bar when the number of
inputs is known); otherwise (a log file, CI) one line every SLIPSTREAM_PROGRESS_EVERY seconds
(default 10). Either way a last line says how the map ended.

    greet.map [##########----------] 512/1000 done, 3 failed, $0.001234, 12.5 s
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable, Iterable
from typing import IO, Any

from ..protocol import envvars

__all__ = ["MapProgress", "enabled", "known_total"]

FIRST_AFTER_S = 1.0  # a map shorter than this prints nothing
REDRAW_S = 0.1  # at most this often on a terminal
BAR = 20


def enabled() -> bool:
    return os.environ.get(envvars.PROGRESS, "").strip().lower() in ("1", "true", "yes", "on")


def _every() -> float:
    try:
        return max(float(os.environ.get(envvars.PROGRESS_EVERY, "10")), 0.05)
    except ValueError:
        return 10.0


def known_total(iterables: Iterable[Any]) -> int | None:
    """How many calls a map makes, when every iterable has a length (the shortest, as zip)."""
    lengths = []
    for it in iterables:
        try:
            lengths.append(len(it))  # type: ignore[arg-type]
        except TypeError:
            return None
    return min(lengths) if lengths else None


class MapProgress:
    """Counts a map's finished calls (from any thread) and shows them on `stream`."""

    def __init__(
        self,
        what: str,
        total: int | None,
        spend: Callable[[], float],
        stream: IO[str] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.what = what
        self.total = total
        self.done = 0
        self.failed = 0
        self._spend0 = spend()
        self._spend = spend
        self._stream = stream if stream is not None else sys.stderr
        self._clock = clock
        self._t0 = clock()
        try:
            self._tty = self._stream.isatty()
        except (AttributeError, ValueError):
            self._tty = False
        self._every = REDRAW_S if self._tty else _every()
        self._next = self._t0 + (FIRST_AFTER_S if self._tty else max(FIRST_AFTER_S, self._every))
        self._shown = False
        self._closed = False
        self._lock = threading.Lock()

    def tick(self, ok: bool) -> None:
        """One call finished (ok, or failed)."""
        with self._lock:
            if ok:
                self.done += 1
            else:
                self.failed += 1
            now = self._clock()
            if self._closed or now < self._next:
                return
            self._next = now + self._every
            self._show(now, final=False)

    def close(self) -> None:
        """The map is over (finished, left early or interrupted): a last line if it was long."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            now = self._clock()
            if self._shown or now - self._t0 >= FIRST_AFTER_S:
                self._show(now, final=True)

    def line(self, now: float | None = None) -> str:
        elapsed = (self._clock() if now is None else now) - self._t0
        total = "?" if self.total is None else str(self.total)
        bar = ""
        if self.total and self._tty:
            filled = min(BAR, (self.done + self.failed) * BAR // self.total)
            bar = "[" + "#" * filled + "-" * (BAR - filled) + "] "
        spend = max(self._spend() - self._spend0, 0.0)
        return (
            f"{self.what}.map {bar}{self.done + self.failed}/{total} done, {self.failed} failed, "
            f"${spend:.6f}, {elapsed:.1f} s"
        )

    def _show(self, now: float, final: bool) -> None:
        text = self.line(now)
        try:
            if self._tty:
                self._stream.write("\r\x1b[2K" + text + ("\n" if final else ""))
            else:
                self._stream.write(text + "\n")
            self._stream.flush()
        except (OSError, ValueError):  # stderr closed: progress is a nicety
            return
        self._shown = True
