"""Watching an HTTP client go away while its call runs (an ASGI request's disconnect message):
the runtime cancels the call; the dev server relays the cancellation."""

from __future__ import annotations

import asyncio
from typing import Any

__all__ = ["disconnected", "unless_disconnected"]


async def disconnected(request: Any) -> None:
    """Returns when the HTTP client has gone away (its body was already read)."""
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


async def unless_disconnected(request: Any, task: asyncio.Future[Any]) -> bool:
    """Wait for the call; if the client goes away first (closed, killed, timed out), cancel it
    (Pool.call drops it from the queue or interrupts its worker) and say False."""
    watcher = asyncio.ensure_future(disconnected(request))
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    except BaseException:  # this handler was cancelled itself (e.g. the server is shutting down)
        task.cancel()
        raise
    finally:
        watcher.cancel()
    if task.done():
        return True
    task.cancel()
    return False
