"""Spawned calls: started now, fetched later by id (from any process, or over HTTP), cancellable.

    POST   /v1/projects/{project}/endpoints/{name}/spawn   (or /v1/endpoints/{name}/spawn)
           body as for .../call (JSON or the SDK's pickle frame) -> 202 {"id", "status"}
    GET    /v1/calls/{id}?wait=S    status; with the result once done (waits up to S seconds)
    DELETE /v1/calls/{id}           cancel: dropped from the queue, or interrupted on its worker

A call's outcome is kept `CallRegistry.ttl` seconds after it finishes (`slipstream serve
--call-ttl`, default one hour), then dropped: a later GET answers 404 saying so. Outcomes live
in the runtime's memory only, never on its disk.
Imported by the server only (FastAPI resolves the routes' annotations from this module).
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from fastapi import Query, Request
from fastapi.responses import JSONResponse, Response

from ..protocol import wire
from ..protocol.errors import ErrorInfo
from ..protocol.kinds import CallState, ErrorKind
from .pools import Call, PoolError

__all__ = ["CallRegistry", "Spawned", "add_call_routes", "DEFAULT_TTL_S"]

DEFAULT_TTL_S = 3600.0
MAX_WAIT_S = 60.0  # longest single GET ?wait=; clients poll again


@dataclass
class Spawned:
    id: str
    endpoint: str
    project: str | None
    fmt: str  # pickle | json
    call: Call
    pool: Any
    created_at: float = field(default_factory=time.time)
    finished_at: float | None = None
    state: CallState = CallState.QUEUED
    sdk_reply: list[Any] | None = None  # records (pickle calls)
    json_reply: dict[str, Any] | None = None  # the call route's JSON reply (JSON calls)
    error: dict[str, Any] | None = None
    done: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Future[Any] | None = None

    @property
    def status(self) -> CallState:
        if self.state == CallState.QUEUED and self.call.dispatched.is_set():
            return CallState.RUNNING
        return self.state

    def describe(self, ttl: float) -> dict[str, Any]:
        d: dict[str, Any] = {
            "id": self.id,
            "status": self.status,
            "endpoint": self.endpoint,
            "project": self.project,
            "method": self.call.method,
            "format": self.fmt,
            "created_at": self.created_at,
            "finished_at": self.finished_at,
            "expires_at": None if self.finished_at is None else self.finished_at + ttl,
        }
        if self.error is not None:
            d["error"] = self.error
        return d


class CallRegistry:
    """The runtime's spawned calls by id, each kept `ttl` seconds after it finished."""

    ttl: float = DEFAULT_TTL_S  # slipstream serve --call-ttl

    def __init__(self) -> None:
        self.calls: dict[str, Spawned] = {}

    def start(self, pool: Any, call: Call, fmt: str, project: str | None) -> Spawned:
        self.sweep()
        s = Spawned("fc-" + secrets.token_urlsafe(12), pool.name, project, fmt, call, pool)
        call.tag = call.tag or s.id  # its log lines carry the id: GET /v1/logs?tag=<id>
        self.calls[s.id] = s
        s.task = asyncio.ensure_future(self._run(s))
        return s

    async def _run(self, s: Spawned) -> None:
        from .replies import call_meta, error_records, sdk_records

        pool, c = s.pool, s.call
        try:
            await pool.call(c)
            status, payload = c.future.result()
        except PoolError as exc:
            s.state = CallState.CANCELLED if exc.kind == ErrorKind.CANCELLED else CallState.FAILED
            s.error = exc.info.to_dict()
            s.sdk_reply = error_records(c, exc.info)
            s.json_reply = {"ok": False, "endpoint": pool.name, "logs": c.logs, "error": s.error}
        except Exception as exc:  # noqa: BLE001 - a spawned call must always reach an end state
            info = ErrorInfo(type(exc).__name__, str(exc), "", kind=ErrorKind.FATAL)
            s.state, s.error = CallState.FAILED, info.to_dict()
            s.sdk_reply = error_records(c, info)
            s.json_reply = {"ok": False, "endpoint": pool.name, "logs": c.logs, "error": s.error}
        else:
            s.state = CallState.DONE if status == "ok" else CallState.FAILED
            if s.fmt == "pickle":
                s.sdk_reply = [bytes(b) for b in sdk_records(pool, c, status, payload)]
            meta = call_meta(pool, c)
            if status == "ok":
                if s.fmt == "json":
                    s.json_reply = {
                        "ok": True,
                        **meta,
                        "logs": c.logs,
                        "result": json.loads(bytes(payload)),
                    }
            else:
                s.error = payload.to_dict()
                s.json_reply = {"ok": False, **meta, "logs": c.logs, "error": s.error}
        finally:
            c.body = b""  # the arguments are no longer needed
            s.finished_at = time.time()
            s.done.set()

    def get(self, call_id: str) -> Spawned | None:
        self.sweep()
        return self.calls.get(call_id)

    def cancel(self, s: Spawned, reason: str) -> None:
        if not s.done.is_set():
            s.pool.cancel(s.call, reason)

    def sweep(self) -> None:
        now = time.time()
        for k in [
            k
            for k, s in self.calls.items()
            if s.finished_at is not None and now - s.finished_at > self.ttl
        ]:
            del self.calls[k]


def _gone(call_id: str) -> Any:
    from .replies import error_reply

    return error_reply(
        404,
        "UnknownCall",
        f"no call {call_id!r} on this runtime: the id is wrong, the runtime restarted, or its "
        f"result was dropped {CallRegistry.ttl:g}s after the call finished (slipstream serve --call-ttl)",
    )


def add_call_routes(app: Any, rt: Any, max_body: int) -> None:
    """The spawn, status and cancel routes (token-protected like every route but /health)."""
    from .replies import call_input, error_reply

    registry = CallRegistry()
    rt.calls = registry

    async def spawn(request: Request) -> Any:
        name = request.path_params["name"]
        project = request.path_params.get("project") or request.query_params.get("project") or None
        got = await call_input(rt, request, name, project, max_body)
        if isinstance(got, JSONResponse):
            return got
        pool, fmt, body = got
        if pool.unavailable:
            return error_reply(503, "EndpointUnavailable", pool.unavailable)
        if len(pool.queue) >= pool.max_queue:
            return JSONResponse(
                {
                    "error": {
                        "type": "Overloaded",
                        "message": f"endpoint {name!r} is overloaded: {len(pool.queue)} calls queued; retry later",
                    }
                },
                status_code=429,
                headers={"Retry-After": "1"},
            )
        c = Call(method=request.query_params.get("method") or None, fmt=fmt, body=body)
        s = registry.start(pool, c, fmt, pool.project)
        return JSONResponse(s.describe(registry.ttl), status_code=202)

    doc = (
        'Start a call and return at once with its id (202 {"id", "status"}); the body is the call route\'s. '
        "Fetch it with GET /v1/calls/{id}, cancel it with DELETE /v1/calls/{id}."
    )
    for path in ("/v1/endpoints/{name}/spawn", "/v1/projects/{project}/endpoints/{name}/spawn"):
        app.add_api_route(
            path,
            spawn,
            methods=["POST"],
            summary="Spawn a call: start it, get its id",
            description=doc,
            status_code=202,
            openapi_extra={
                "parameters": [
                    {
                        "name": "method",
                        "in": "query",
                        "required": False,
                        "schema": {"type": "string"},
                    }
                ]
            },
        )

    @app.get(
        "/v1/calls/{call_id}", summary="A spawned call's status, and its outcome once finished"
    )
    async def call_status(
        request: Request,
        call_id: str,
        wait: float = Query(
            0.0,
            ge=0,
            description=f"wait up to this many seconds (at most {MAX_WAIT_S:g}) for the call to finish",
        ),
    ) -> Any:
        s = registry.get(call_id)
        if s is None:
            return _gone(call_id)
        if wait and not s.done.is_set():
            try:
                await asyncio.wait_for(asyncio.shield(s.done.wait()), min(wait, MAX_WAIT_S))
            except TimeoutError:
                pass
        head = s.describe(registry.ttl)
        if not s.done.is_set():
            return JSONResponse(head, status_code=202)
        wants_records = wire.CONTENT_TYPE in request.headers.get("accept", "")
        if wants_records and s.sdk_reply is not None:
            return Response(
                b"".join(bytes(c) for c in s.sdk_reply),
                media_type=wire.CONTENT_TYPE,
                headers={"x-slipstream-call-status": s.status},
            )
        if s.json_reply is not None:
            return JSONResponse({**s.json_reply, **head})
        # a call spawned by the SDK (pickled values): the JSON form has its status, not its value
        return JSONResponse({**head, "ok": s.status == CallState.DONE, "result_format": "pickle"})

    @app.delete(
        "/v1/calls/{call_id}",
        summary="Cancel a spawned call (dropped from the queue, or interrupted on its worker)",
    )
    async def cancel_call(call_id: str) -> Any:
        s = registry.get(call_id)
        if s is None:
            return _gone(call_id)
        was = s.status
        registry.cancel(s, f"cancelled by DELETE /v1/calls/{call_id}")
        if not s.done.is_set():
            await asyncio.wait_for(asyncio.shield(s.done.wait()), 5)
        return {
            **s.describe(registry.ttl),
            "cancelled": was in (CallState.QUEUED, CallState.RUNNING),
        }
