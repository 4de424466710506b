"""The exceptions a Slipstream user catches (`from slipstream.errors import RemoteError`)."""

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
from .spec.endpoint_spec import SpecError

__all__ = ["SlipstreamError", "RemoteError", "RemoteTraceback", "WorkerCrashed", "EndpointTimeout", "Overloaded",
           "RuntimeUnavailable", "CallWasCancelled", "MapError", "DeployError", "MissingBlobs", "SpecError"]
