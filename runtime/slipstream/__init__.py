"""Slipstream: run GPU functions on a remote runtime from your editor.

    from slipstream import endpoint, keep

    @endpoint(gpu="H100", workers=(0, 3))
    def generate(prompt: str) -> str: ...
"""

from __future__ import annotations

__version__ = "0.1.0"

from .endpoint import CallInfo, Endpoint, endpoint  # noqa: E402
from .errors import MapError  # noqa: E402
from .handles import FunctionCall, gather  # noqa: E402
from .keeper import keep  # noqa: E402
from .retries import Retries  # noqa: E402


def spend() -> dict[str, float]:
    """What this process's remote calls cost so far: {"cost_usd", "busy_s", "calls"}."""
    from .session import spend as _spend

    return _spend()


__all__ = ["endpoint", "keep", "spend", "gather", "Endpoint", "CallInfo", "FunctionCall", "MapError", "Retries", "__version__"]
