"""Slipstream: run GPU functions on a remote runtime from your editor.

from slipstream import endpoint, keep

@endpoint(gpu="H100", workers=(0, 3))
def generate(prompt: str) -> str: ...
"""

from __future__ import annotations

from .endpoint import CallInfo, Endpoint, endpoint  # noqa: E402
from .endpoint import install_caller as _install_caller  # noqa: E402
from .keeper import keep  # noqa: E402
from .protocol.errors import MapError  # noqa: E402
from .protocol.version import __version__  # noqa: E402
from .sdk import calling as _calling  # noqa: E402
from .sdk.handles import FunctionCall, gather  # noqa: E402
from .spec.retries import Retries  # noqa: E402

_install_caller(_calling)  # endpoint calls reach the SDK (endpoint.Caller)


def spend() -> dict[str, float]:
    """What this process's remote calls cost so far: {"cost_usd", "busy_s", "calls"}."""
    from .sdk.session import spend as _spend

    return _spend()


__all__ = [
    "endpoint",
    "keep",
    "spend",
    "gather",
    "Endpoint",
    "CallInfo",
    "FunctionCall",
    "MapError",
    "Retries",
    "__version__",
]
