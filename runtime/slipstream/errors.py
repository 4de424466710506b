"""The exceptions a Slipstream user catches (`from slipstream.errors import RemoteError`), and
ErrorKind: the "kind" of a failed call's error as the runtime's HTTP API and records spell it."""

from __future__ import annotations

from .protocol.errors import (
    CallWasCancelled,
    DeployError,
    EndpointTimeout,
    MapError,
    MissingBlobs,
    Overloaded,
    RemoteError,
    RemoteTraceback,
    RuntimeUnavailable,
    SlipstreamError,
    WorkerCrashed,
)
from .protocol.kinds import ErrorKind
from .spec.endpoint_spec import SpecError

__all__ = [
    "SlipstreamError",
    "RemoteError",
    "RemoteTraceback",
    "WorkerCrashed",
    "EndpointTimeout",
    "Overloaded",
    "RuntimeUnavailable",
    "CallWasCancelled",
    "MapError",
    "DeployError",
    "MissingBlobs",
    "SpecError",
    "ErrorKind",
]
