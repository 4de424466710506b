"""Call handles: `f.spawn(...)` starts a call on the runtime and returns at once.

    h = f.spawn(x)          # FunctionCall: h.id, h.status, h.get(timeout=None), h.cancel()
    hs = f.spawn_map(xs)    # one handle per input (zipped like f.map)
    slipstream.gather(*hs)  # their results, in order
    FunctionCall.from_id(h.id).get()   # from another process, after this one exited

The runtime keeps each outcome for a stated time after the call finished (`slipstream serve
--call-ttl`, default one hour; calls.py). Every form has an `.aio` variant
(`await f.spawn.aio(x)`, `await h.get.aio()`, `await slipstream.gather.aio(*hs)`).
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from ..endpoint import Form
from ..protocol import wire
from ..protocol.errors import CallWasCancelled, SlipstreamError
from ..protocol.kinds import CallState, ErrorKind
from ..protocol.messages import call_params
from .waiting import FULL, until_room

if TYPE_CHECKING:
    from ..endpoint import Endpoint
    from .client import RuntimeClient

__all__ = ["FunctionCall", "gather", "STATUSES"]

STATUSES = tuple(CallState)  # what status() answers: queued, running, done, failed, cancelled
_POLL_S = 30.0  # one long-poll of GET /v1/calls/{id}?wait=


class FunctionCall:
    """A call started with `spawn`: `.id` finds it again from any process (`from_id`)."""

    def __init__(self, client: RuntimeClient, call_id: str, ep: Endpoint | None = None) -> None:
        self._client = client
        self.id = call_id
        self._ep = ep

    def __repr__(self) -> str:
        return f"<FunctionCall {self.id}{' of ' + repr(self._ep.name) if self._ep else ''}>"

    @classmethod
    def from_id(cls, call_id: str) -> FunctionCall:
        """The handle of a call spawned anywhere (another process, a script that exited), on the
        runtime SLIPSTREAM_RUNTIME_URL/SLIPSTREAM_TOKEN name, else the one slipstream.toml
        names ([runtime] url) for the project of the current folder."""
        if not isinstance(call_id, str) or not call_id.startswith("fc-"):
            raise ValueError(
                f"{call_id!r} is not a call id (spawned calls' ids look like 'fc-...')"
            )
        from .client import RuntimeClient

        client = RuntimeClient.from_env()
        if client is None:
            from .config import find_project_root, load_project, runtime_from_env

            target = runtime_from_env(load_project(find_project_root(".")))
            if not target:
                raise SlipstreamError(
                    "FunctionCall.from_id needs to know the runtime: set SLIPSTREAM_RUNTIME_URL and SLIPSTREAM_TOKEN "
                    "(an embedded runtime ends with the process that started it, and its calls with it)"
                )
            client = RuntimeClient(*target)
        return cls(client, call_id)

    # --- status -----------------------------------------------------------------------------
    def _fetch(self, wait: float, records: bool) -> Any:
        from .client import _timeout

        headers = {"accept": wire.CONTENT_TYPE} if records else {}
        r = self._client._request(
            "GET",
            f"/v1/calls/{self.id}",
            params={"wait": f"{wait:g}"},
            headers=headers,
            timeout=_timeout(wait + 30),
        )
        if r.status_code == 404:
            raise SlipstreamError(_message(r))
        if r.status_code >= 400:
            raise SlipstreamError(
                f"GET /v1/calls/{self.id} failed ({r.status_code}): {_message(r)}"
            )
        return r

    @property
    def status(self) -> str:
        """queued | running | done | failed | cancelled"""
        return self._fetch(0, records=False).json()["status"]

    def info(self) -> dict[str, Any]:
        """What the runtime says of the call: status, endpoint, created/finished/expires times."""
        return self._fetch(0, records=False).json()

    def _get(self, timeout: float | None = None) -> Any:
        """The call's result (or its exception), waiting up to `timeout` seconds (None: as long
        as it runs). TimeoutError when it has not finished by then; it keeps running."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            wait = (
                _POLL_S if deadline is None else max(0.0, min(_POLL_S, deadline - time.monotonic()))
            )
            r = self._fetch(wait, records=True)
            if r.status_code == 202:
                if deadline is not None and time.monotonic() >= deadline:
                    raise TimeoutError(
                        f"call {self.id} has not finished within {timeout:g}s; it keeps running "
                        "(get() again, or cancel())"
                    )
                continue
            return self._finish(r)

    def _finish(self, r: Any) -> Any:
        from .client import _outcome
        from .session import current

        out = _outcome(r.status_code, r.headers.get("content-type", ""), [r.content], r)
        if out.error is not None and out.error.kind == ErrorKind.CANCELLED:
            raise CallWasCancelled(f"call {self.id} was cancelled: {out.error.message}")
        session = current()
        if self._ep is not None:
            return session._finish(self._ep, out)
        for log in out.logs:
            (sys.stderr if log.get("stream") == "stderr" else sys.stdout).write(log.get("text", ""))
        if out.error is not None:
            raise session._exception(out.error)
        return out.value

    async def _get_aio(self, timeout: float | None = None) -> Any:
        return await asyncio.to_thread(self._get, timeout)

    get = Form(_get, _get_aio)

    def _cancel(self) -> bool:
        """Cancel the call: dropped from the queue, or interrupted on its worker (which is then free
        for the next call). True when it was still queued or running."""
        r = self._client._request("DELETE", f"/v1/calls/{self.id}")
        if r.status_code >= 400:
            raise SlipstreamError(_message(r))
        return bool(r.json().get("cancelled"))

    async def _cancel_aio(self) -> bool:
        return await asyncio.to_thread(self._cancel)

    cancel = Form(_cancel, _cancel_aio)


def _message(r: Any) -> str:
    from .client import _message as msg

    return msg(r)


def spawn_one(
    ep: Endpoint, method: str | None, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> FunctionCall:
    from .client import UnknownEndpoint, call_path
    from .secretvals import with_secrets
    from .session import current

    session = current()
    session.ensure(ep)
    body = wire.dumps_bytes({"args": list(args), "kwargs": with_secrets(ep, kwargs, session.root)})

    def post(client: RuntimeClient) -> FunctionCall:
        def attempt() -> Any:
            r = client._request(
                "POST",
                call_path(ep.name, client.project).removesuffix("/call") + "/spawn",
                params=call_params(method),
                content=body,
                headers={"content-type": wire.CONTENT_TYPE},
            )
            if r.status_code == 202:
                return FunctionCall(client, r.json()["id"], ep)
            if r.status_code == 404:
                raise UnknownEndpoint(_message(r))
            if r.status_code != 429:
                raise SlipstreamError(f"spawning {ep.name} failed ({r.status_code}): {_message(r)}")
            return FULL

        return until_room(attempt)  # the queue is full: wait for room rather than fail (waiting.py)

    return session._with_retry(ep, post)


# --- the forms on endpoints and methods (endpoint._Callable) -----------------------------------
def _spawn(self: Any, *args: Any, **kwargs: Any) -> FunctionCall:
    """Start the call on the runtime and return its FunctionCall handle at once."""
    from ..endpoint import refuse_at_import as _refuse_at_import

    _refuse_at_import(self.endpoint, self.method, ".spawn(...)")
    return spawn_one(self.endpoint, self.method, args, kwargs)


async def _spawn_aio(self: Any, *args: Any, **kwargs: Any) -> FunctionCall:
    return await asyncio.to_thread(_spawn, self, *args, **kwargs)


def _spawn_map(
    self: Any, *iterables: Iterable[Any], kwargs: dict[str, Any] | None = None
) -> list[FunctionCall]:
    """Spawn one call per input (zipped like f.map): their handles, in input order."""
    from .mapping import _prepare

    _, argsets, kw = _prepare(self, "spawn_map", iterables, kwargs, {})
    return [spawn_one(self.endpoint, self.method, args, kw) for args in argsets]


async def _spawn_map_aio(
    self: Any, *iterables: Iterable[Any], kwargs: dict[str, Any] | None = None
) -> list[FunctionCall]:
    return await asyncio.to_thread(_spawn_map, self, *iterables, kwargs=kwargs)


SPAWN = Form(_spawn, _spawn_aio)
SPAWN_MAP = Form(_spawn_map, _spawn_map_aio)


class _Gather:
    """`slipstream.gather(*handles)`: every handle's result, in order (the first failure is
    raised); `await slipstream.gather.aio(*handles)` waits for them together."""

    def __call__(self, *handles: FunctionCall) -> list[Any]:
        _check(handles)
        return [h.get() for h in handles]

    async def aio(self, *handles: FunctionCall) -> list[Any]:
        _check(handles)
        return list(await asyncio.gather(*(h.get.aio() for h in handles)))

    def __repr__(self) -> str:
        return "<function slipstream.gather>"


def _check(handles: tuple[Any, ...]) -> None:
    bad = [h for h in handles if not isinstance(h, FunctionCall)]
    if bad:
        hint = (
            " (pass them unpacked: gather(*handles))"
            if len(handles) == 1 and isinstance(handles[0], (list, tuple))
            else ""
        )
        raise TypeError(
            f"gather() takes FunctionCall handles from f.spawn(...), got {type(bad[0]).__name__}{hint}"
        )


gather = _Gather()
