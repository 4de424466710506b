"""`slipstream serve --idle-stop 30m`: stop the runtime after that long with no call and no
client, so a forgotten GPU machine does not bill all night.

Activity is an HTTP request (a call, a sync, a status, an open log stream: a client following
the logs keeps the runtime up while it is connected) or a call on the binary data channel. The
clock starts when the last one ends."""

from __future__ import annotations

import asyncio
import re
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

__all__ = ["IdleWatch", "parse_duration", "counted"]

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> float:
    """'30m', '2h', '90s', '1h30m' or plain seconds ('1800') -> seconds; ValueError says the form."""
    t = str(text).strip().lower()
    if re.fullmatch(r"\d+(\.\d+)?", t):
        v = float(t)
    elif re.fullmatch(r"(\d+(\.\d+)?[smhd])+", t):
        v = sum(float(n) * _UNITS[u] for n, _, u in re.findall(r"(\d+(\.\d+)?)([smhd])", t))
    else:
        raise ValueError(f"{text!r} is not a duration: write e.g. 30m, 2h, 90s or 1h30m")
    if v <= 0:
        raise ValueError(f"{text!r}: the duration must be more than 0")
    return v


def describe(seconds: float) -> str:
    for unit, n in (("h", 3600), ("m", 60)):
        if seconds >= n and seconds % n == 0:
            return f"{int(seconds // n)}{unit}"
    return f"{seconds:g}s"


class IdleWatch:
    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.active = 0
        self.last = time.monotonic()

    def begin(self) -> None:
        self.active += 1
        self.last = time.monotonic()

    def end(self) -> None:
        self.active -= 1
        self.last = time.monotonic()

    def idle_for(self) -> float:
        return 0.0 if self.active else time.monotonic() - self.last

    def wrap(self, app: Any) -> Any:
        """The ASGI app with every HTTP request counted while it runs."""

        async def counted_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
            if scope.get("type") != "http":
                return await app(scope, receive, send)
            self.begin()
            try:
                await app(scope, receive, send)
            finally:
                self.end()

        return counted_app

    async def run(self, stop: Callable[[], None]) -> None:
        """Wait until idle for `seconds`, say so in the log, then call stop()."""
        while True:
            left = self.seconds - self.idle_for()
            if left <= 0:
                break
            await asyncio.sleep(min(left, 5.0) if self.active == 0 else min(self.seconds, 5.0))
        print(
            f"slipstream: idle-stop: no call and no client for {describe(self.seconds)} "
            f"(--idle-stop {describe(self.seconds)}): stopping the runtime",
            file=sys.stderr,
            flush=True,
        )
        stop()


async def counted(rt: Any, coro: Awaitable[Any]) -> Any:
    """Run a data-channel call, counted as activity when the runtime has an idle watch."""
    watch = getattr(rt, "activity", None)
    if watch is None:
        return await coro
    watch.begin()
    try:
        return await coro
    finally:
        watch.end()
