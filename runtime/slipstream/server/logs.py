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
    def __init__(self, keep: int = 2000, queue_size: int = 1000, keep_bytes: int = 4 << 20) -> None:
        # the last `keep` events, and at most `keep_bytes` of their text (a worker's output
        # comes in chunks of up to 64 KiB: worker/main._LogBatcher)
        self.recent: deque[dict[str, Any]] = deque(maxlen=keep)
        self._keep_bytes, self._recent_bytes = keep_bytes, 0
        self._subs: set[asyncio.Queue[dict[str, Any]]] = set()
        self._queue_size = queue_size
        self.dropped = 0

    def emit(self, **event: Any) -> None:
        event.setdefault("ts", time.time())
        if len(self.recent) == self.recent.maxlen:
            self._recent_bytes -= len(self.recent[0].get("text", ""))
        self.recent.append(event)
        self._recent_bytes += len(event.get("text", ""))
        while self._recent_bytes > self._keep_bytes and len(self.recent) > 1:
            self._recent_bytes -= len(self.recent.popleft().get("text", ""))
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
