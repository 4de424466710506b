"""The SDK's side of calling an endpoint (endpoint.Caller): the package installs this module at
import, so `f(x)`, `f.aio(x)`, `f.map(...)`, `f.spawn(...)` reach the session here, while the
decorator module itself stays free of the client (workers import it)."""

from __future__ import annotations

from typing import Any

from . import handles, mapping
from .loading import session_module

__all__ = ["forms", "call", "stream", "call_async", "stream_async", "session_module"]

forms = {
    "map": (mapping.MAP._sync, mapping.MAP._aio),
    "starmap": (mapping.STARMAP._sync, mapping.STARMAP._aio),
    "for_each": (mapping.FOR_EACH._sync, mapping.FOR_EACH._aio),
    "spawn": (handles.SPAWN._sync, handles.SPAWN._aio),
    "spawn_map": (handles.SPAWN_MAP._sync, handles.SPAWN_MAP._aio),
}


def call(ep: Any, method: str | None, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    return session_module().current().call(ep, method, args, kwargs)


def stream(ep: Any, method: str | None, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    return session_module().current().stream(ep, method, args, kwargs)


def call_async(ep: Any, method: str | None, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    return session_module().current().call_async(ep, method, args, kwargs)


def stream_async(ep: Any, method: str | None, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    return session_module().current().stream_async(ep, method, args, kwargs)
