"""The client's work-done progress for a long daemon action (a deploy, a rebuild): begun with
a fresh token when the client supports it, ended with a short message."""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import TYPE_CHECKING

from lsprotocol import types

if TYPE_CHECKING:
    from pygls.progress import Progress

log = logging.getLogger(__name__)

__all__ = ["begin", "end"]


async def begin(progress: Progress | None, kind: str, message: str) -> str | None:
    """A progress token shown with `message`, or None when the client has no progress."""
    if progress is None:
        return None
    token = f"slipstream-{kind}-{uuid.uuid4().hex[:12]}"
    try:
        await asyncio.wait_for(progress.create_async(token), 5)
    except Exception as exc:
        log.debug("client refused a progress token: %s", exc)
        return None
    progress.begin(token, types.WorkDoneProgressBegin(title="Slipstream", message=message))
    return token


def end(progress: Progress | None, token: str | None, message: str) -> None:
    if token is not None and progress is not None:
        progress.end(token, types.WorkDoneProgressEnd(message=message[:200]))
