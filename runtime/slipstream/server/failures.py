"""Why a call could not run, on the runtime's side: PoolError's kind maps to the HTTP status."""

from __future__ import annotations

from ..protocol.errors import ErrorInfo

__all__ = ["PoolError"]


class PoolError(Exception):
    """A call that could not run; kind maps to the HTTP status."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind  # overloaded | crash | timeout | unavailable | fatal | cancelled
        self.info = ErrorInfo(
            {"overloaded": "Overloaded", "crash": "WorkerCrashed", "timeout": "EndpointTimeout", "cancelled": "CallCancelled"}.get(
                kind, "EndpointUnavailable"
            ),
            message,
            message,
            kind=kind,
        )
