"""A call that failed because the runtime lost its endpoint or went away, run once more: one
path for the SDK session (session.py: blocking, asyncio and streaming calls) and the editor's
Run (daemon/slipstream_daemon/runs.py).

The runtime restarted, or another client deployed other code (UnknownEndpoint), or it went away
mid-call (RuntimeUnavailable): wait for it to answer again (not for an embedded runtime, which
went away with its process), forget the connections to the old process, sync the project again,
and make the same call again, with the same arguments (its tag too, so live logs go on). This
is the client's side; the endpoint's own `retries=` (spec/retries.py) run on the runtime.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

from ..protocol.errors import RuntimeUnavailable, SlipstreamError
from .client import RuntimeClient, UnknownEndpoint

__all__ = ["RECOVERABLE", "once_more", "recover", "wait_for_runtime"]

RECOVERABLE = (UnknownEndpoint, RuntimeUnavailable)
T = TypeVar("T")


def once_more(
    call: Callable[[], T],
    recover_from: Callable[[SlipstreamError], Any],
    cancelled: Callable[[], bool] = lambda: False,
) -> T:
    """call(); after a RECOVERABLE failure, recover_from(exc) (usually recover()) and call() once
    more. cancelled(): the call's connection was closed on purpose (Ctrl-C): re-raise instead."""
    try:
        return call()
    except RECOVERABLE as exc:
        if cancelled():
            raise
        recover_from(exc)
        return call()


def recover(
    client: RuntimeClient,
    exc: SlipstreamError,
    resync: Callable[[], Any],
    *,
    embedded: bool,
    patience: float = 30.0,
) -> None:
    """Before a failed call runs once more: wait for a runtime that went away to answer (an
    embedded one does not come back: re-raise), drop the connections to its old process, and
    sync the project to it again (resync)."""
    if isinstance(exc, RuntimeUnavailable):
        if embedded:
            raise exc
        wait_for_runtime(client, patience)
    client.reconnect()
    resync()


def wait_for_runtime(client: RuntimeClient, patience: float = 30.0) -> None:
    deadline = time.monotonic() + patience
    while time.monotonic() < deadline:
        try:
            client.health()
            return
        except RuntimeUnavailable:
            time.sleep(0.5)
    raise RuntimeUnavailable(f"the runtime at {client.url} did not come back within {patience:g}s")
