"""The runtime's log hub: recent lines in a ring, fanned out live to subscribers (SSE)."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from typing import Any, Protocol

__all__ = ["LogHub", "LogSink"]


class LogSink(Protocol):
    """Where a pool's lines go: the hub, or a project's view of it (service._ProjectLogs)."""

    def emit(self, **event: Any) -> None: ...


class LogHub:
    def __init__(self, keep: int = 2000, queue_size: int = 1000) -> None:
        self.recent: deque[dict[str, Any]] = deque(maxlen=keep)
        self._subs: set[asyncio.Queue[dict[str, Any]]] = set()
        self._queue_size = queue_size
        self.dropped = 0

    def emit(self, **event: Any) -> None:
        event.setdefault("ts", time.time())
        self.recent.append(event)
        for q in self._subs:
            try:
                q.put_nowait(event)
            except asyncio.QueueFull:  # a slow reader loses lines, the runtime never blocks
                self.dropped += 1

    def subscribe(self) -> asyncio.Queue[dict[str, Any]]:
        q: asyncio.Queue[dict[str, Any]] = asyncio.Queue(self._queue_size)
        self._subs.add(q)
        return q

    def unsubscribe(self, q: asyncio.Queue[dict[str, Any]]) -> None:
        self._subs.discard(q)
