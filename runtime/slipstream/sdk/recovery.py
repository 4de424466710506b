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

import os
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from ..protocol import envvars
from ..protocol.errors import RuntimeUnavailable, SlipstreamError
from .client import RuntimeClient, UnknownEndpoint

__all__ = [
    "RECOVERABLE",
    "RuntimeWatch",
    "once_more",
    "patience",
    "recover",
    "wait_for_runtime",
]

PATIENCE_S = 30.0


def patience() -> float:
    """Seconds to wait for a runtime that went away: $SLIPSTREAM_RUNTIME_PATIENCE, else 30."""
    try:
        value = float(os.environ.get(envvars.RUNTIME_PATIENCE, "") or PATIENCE_S)
    except ValueError:
        raise SlipstreamError(
            f"{envvars.RUNTIME_PATIENCE} must be a number of seconds, not "
            f"{os.environ[envvars.RUNTIME_PATIENCE]!r}"
        ) from None
    return max(0.0, value)


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
    watch: RuntimeWatch | None = None,
) -> None:
    """Before a failed call runs once more: wait for a runtime that went away to answer (an
    embedded one does not come back: re-raise; `watch`: the deadline and health check the
    calls of one map share), drop the connections to its old process, and sync the project to
    it again (resync)."""
    if isinstance(exc, RuntimeUnavailable):
        if embedded:
            raise exc
        (watch or RuntimeWatch()).wait(client)
    client.reconnect()
    resync()


def wait_for_runtime(client: RuntimeClient, patience: float | None = None) -> None:
    RuntimeWatch(patience).wait(client)


class RuntimeWatch:
    """Whether the runtime of many calls (one `.map`) is still there: the first call that loses
    it starts one deadline for all of them, one thread at a time asks the runtime's health, and
    once the deadline has passed every call, and every call not started yet, fails at once with
    the same verdict (a map of 100 items notices a dead runtime in `patience` seconds, not in
    one wait per call in flight)."""

    def __init__(self, patience_s: float | None = None) -> None:
        self.patience = patience() if patience_s is None else patience_s
        self.verdict: RuntimeUnavailable | None = None
        self._lost_since: float | None = None
        self._answered_at = 0.0  # when the runtime last answered a health check
        self._lock = threading.Lock()

    def check(self) -> None:
        """Before a call starts: the runtime was given up on, fail now."""
        if self.verdict is not None:
            raise RuntimeUnavailable(str(self.verdict))  # each call its own exception object

    def wait(self, client: RuntimeClient) -> None:
        """Until the runtime answers, or the shared deadline passes (RuntimeUnavailable)."""
        failed_at = time.monotonic()
        with self._lock:  # one health check at a time; the others learn its answer
            if self.verdict is not None:
                raise RuntimeUnavailable(str(self.verdict))
            if self._answered_at > failed_at:
                return
            if self._lost_since is None:
                self._lost_since = failed_at
            deadline = self._lost_since + self.patience
            while True:
                try:
                    client.health()
                except RuntimeUnavailable:
                    if time.monotonic() >= deadline:
                        break
                    time.sleep(min(0.5, max(0.0, deadline - time.monotonic())))
                else:
                    self._answered_at, self._lost_since = time.monotonic(), None
                    return
            self.verdict = RuntimeUnavailable(
                f"lost the runtime at {client.url}: it did not answer for {self.patience:g}s "
                f"({envvars.RUNTIME_PATIENCE}); start it again (`slipstream serve`) and call again"
            )
            raise RuntimeUnavailable(str(self.verdict))
