"""Why a call could not run, on the runtime's side: PoolError's kind gives the HTTP status."""

from __future__ import annotations

from ..protocol.errors import ErrorInfo
from ..protocol.kinds import ErrorKind

__all__ = ["PoolError"]

# The error type a caller sees for each kind of failure (EndpointUnavailable for the others).
_TYPE_NAMES = {
    ErrorKind.OVERLOADED: "Overloaded",
    ErrorKind.CRASH: "WorkerCrashed",
    ErrorKind.TIMEOUT: "EndpointTimeout",
    ErrorKind.CANCELLED: "CallCancelled",
}


class PoolError(Exception):
    """A call that could not run; its kind (overloaded, crash, timeout, unavailable, fatal,
    cancelled) gives the HTTP status (ErrorKind.http_status)."""

    def __init__(self, kind: ErrorKind, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.info = ErrorInfo(
            _TYPE_NAMES.get(kind, "EndpointUnavailable"), message, message, kind=kind
        )
