"""The protocol's closed vocabularies: why a call failed (ErrorKind, with its HTTP status), what a
worker is doing (WorkerState) and where a spawned call is (CallState).

Each is a StrEnum: a member *is* its string, so JSON bodies, records and /v1/status keep the
same spellings ("timeout", "bad-request", "warm"...), and a plain string read off the wire
compares equal to the member. The HTTP status of each error kind is defined here and nowhere else.
"""

from __future__ import annotations

import enum

__all__ = ["ErrorKind", "WorkerState", "TRACKED_WORKER_STATES", "CallState"]


class ErrorKind(enum.StrEnum):
    """Why a call (or a deploy) failed: the "kind" of every error record and JSON error body."""

    EXCEPTION = "exception"  # the endpoint's own code raised
    CRASH = "crash"  # the worker died (exit, signal, out of memory); it is replaced
    TIMEOUT = "timeout"  # the call ran past the endpoint's timeout; its worker was killed
    OVERLOADED = "overloaded"  # the endpoint's queue is full
    UNAVAILABLE = "unavailable"  # the endpoint cannot run (no such GPU, removed by a newer deploy)
    FATAL = "fatal"  # the worker could not start or broke internally
    CANCELLED = "cancelled"  # the call was cancelled (the caller went away, DELETE /v1/calls/...)
    BAD_REQUEST = "bad-request"  # arguments that do not fit the signature, a malformed message
    UNAUTHORIZED = "unauthorized"  # wrong or missing token (data channel)
    DEPLOY = "deploy"  # the code could not be deployed (import error, install failed...)
    CUDA_OOM = "cuda-oom"  # an attempt ran out of GPU memory and moved on (a call's `retries` list)
    UNKNOWN_ENDPOINT = "unknown-endpoint"  # SDK side: the runtime answered 404 for the name
    BAD_RESPONSE = "bad-response"  # SDK side: the runtime's answer could not be read

    @property
    def http_status(self) -> int:
        """The HTTP status a runtime answers with for a call that failed this way."""
        return _HTTP_STATUS.get(self, 500)

    @property
    def retried_by_default(self) -> bool:
        """An infrastructure failure the runtime retries without `retries=Retries(on=...)`."""
        return self in (ErrorKind.CRASH, ErrorKind.TIMEOUT)

    @classmethod
    def parse(cls, value: object, default: str = "exception") -> str:
        """A kind read off the wire: its member when known, else the string itself (a newer
        runtime may send a kind this version does not know; it still reads as an error)."""
        text = default if value is None else str(value)
        try:
            return cls(text)
        except ValueError:
            return text

    @classmethod
    def status_of(cls, kind: object) -> int:
        """The HTTP status for a kind given as a string (500 for an unknown one)."""
        try:
            return cls(str(kind)).http_status
        except ValueError:
            return 500


_HTTP_STATUS: dict[ErrorKind, int] = {
    ErrorKind.OVERLOADED: 429,
    ErrorKind.TIMEOUT: 504,
    ErrorKind.CRASH: 502,
    ErrorKind.UNAVAILABLE: 503,
    ErrorKind.FATAL: 500,
    ErrorKind.BAD_REQUEST: 422,
    ErrorKind.UNAUTHORIZED: 401,
    ErrorKind.DEPLOY: 422,
    ErrorKind.UNKNOWN_ENDPOINT: 404,
}


class WorkerState(enum.StrEnum):
    """A worker of a pool, as /v1/status and /v1/endpoints show it (and the runtime tracks it)."""

    STARTING = "starting"  # its process is starting and importing the code
    WARM = "warm"  # ready, no call in flight
    BUSY = "busy"  # running calls
    RETIRING = "retiring"  # finishing its calls, then stopped (scale-down, a replaced generation)
    DEBUGGING = (
        "debugging"  # stopped in a debug session: nothing else is sent to it (server/debug.py)
    )
    IDLE = "idle"  # shown only: warm and unused for half the idle timeout (a scale-down candidate)


# The states /metrics counts workers in (slipstream_workers{state=...}); IDLE is only how a
# long-unused WARM worker is shown.
TRACKED_WORKER_STATES = (
    WorkerState.STARTING,
    WorkerState.WARM,
    WorkerState.BUSY,
    WorkerState.RETIRING,
)


class CallState(enum.StrEnum):
    """A spawned call (POST .../spawn, GET /v1/calls/{id})."""

    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"
