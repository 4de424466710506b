"""Waiting for room on a runtime whose queue is full (Overloaded, HTTP 429): a batch (f.map,
f.spawn) waits and tries again rather than failing, 0.05 s at first, doubling up to 2 s. One
loop for every form that waits (mapping.py, handles.py)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

__all__ = ["FULL", "FIRST_WAIT_S", "MAX_WAIT_S", "until_room", "until_room_async"]

FULL: Any = object()  # what an attempt returns when the runtime's queue was full
FIRST_WAIT_S = 0.05
MAX_WAIT_S = 2.0


def until_room(attempt: Callable[[], Any]) -> Any:
    """attempt() until it returns something other than FULL, waiting longer each time."""
    delay = FIRST_WAIT_S
    while (out := attempt()) is FULL:
        time.sleep(delay)
        delay = min(delay * 2, MAX_WAIT_S)
    return out


async def until_room_async(attempt: Callable[[], Awaitable[Any]]) -> Any:
    """until_room for asyncio: `await attempt()` until it is not FULL."""
    delay = FIRST_WAIT_S
    while (out := await attempt()) is FULL:
        await asyncio.sleep(delay)
        delay = min(delay * 2, MAX_WAIT_S)
    return out
