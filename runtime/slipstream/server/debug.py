"""Debug sessions: a call stopped under debugpy in a worker, relayed to a client over one
authenticated WebSocket. No port is opened for it: DAP messages travel on the worker's own
channel to the runtime (worker/debug.py), and between the runtime and the client on the
runtime's HTTP port, behind its token like every route.

    POST /v1/projects/{project}/endpoints/{name}/debug   (or /v1/endpoints/{name}/debug)
         body as for .../call -> 200 {"session", "call", "remoteRoot", "attach", ...} once a worker
         with the endpoint loaded waits for a debugger (the call is a spawned call: its
         outcome at GET /v1/calls/{call})
    WS   /v1/debug/{session}        one text message per DAP message, both ways
    GET  /v1/debug?wait=S&after=V   sessions waiting for or held by a debugger (also those a
                                    breakpoint() opened under `slipstream run --debug`)
    GET  /v1/debug/{session}        one session
    DELETE /v1/debug/{session}      end it

A session ends when its client goes away or is told the call finished (a DAP "terminated"
event, then the client disconnects). The worker then goes back to its pool; if the call was
still running (stopped at a breakpoint, say), the worker is replaced and the call fails saying
so: nothing stays stopped and no call hangs.
Imported by the server only.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from typing import Any

from fastapi import Query, Request, WebSocket
from fastapi.responses import JSONResponse
from starlette.websockets import WebSocketDisconnect

from ..protocol.kinds import ErrorKind, WorkerState
from .failures import PoolError
from .pools import DEBUG_HOOKS, Call

__all__ = ["DebugSession", "add_debug_routes", "on_worker_message", "on_worker_exit"]

CLOSE_AFTER_TERMINATED_S = 5.0  # a client told the call finished has this long to disconnect
KEEP_ENDED_S = 600.0  # an ended session stays listed (with why it ended) this long
MAX_WAIT_S = 30.0  # longest single GET ?wait=; clients ask again (under any proxy's read timeout)

SESSIONS: dict[str, DebugSession] = {}
_version = 0
_changed: asyncio.Event | None = None


def _bump() -> None:
    global _version, _changed
    _version += 1
    if _changed is not None:
        _changed.set()
    _changed = asyncio.Event()


class DebugSession:
    def __init__(self, pool: Any, w: Any, call: Call, root: str, where: str) -> None:
        self.id = "dbg-" + secrets.token_urlsafe(16)
        self.pool, self.w, self.call = pool, w, call
        self.root, self.where = root, where
        self.created_at = time.time()
        self.state = "waiting"  # waiting (for a client) | attached | ended
        self.ended_why = ""
        self.spawned: str | None = None  # the call's id at /v1/calls/{id} (debug lens calls)
        self.to_client: asyncio.Queue[str | None] = asyncio.Queue()
        self.connected = False
        self.terminated_sent = False
        self.ended = asyncio.Event()
        call.future.add_done_callback(lambda _f: self._call_done())

    def describe(self) -> dict[str, Any]:
        return {
            "session": self.id,
            "state": self.state,
            "endpoint": self.pool.name,
            "project": self.pool.project,
            "method": self.call.method,
            "call": self.spawned,
            "worker": self.w.handle.id,
            "pid": self.w.handle.pid,
            "remoteRoot": self.root,
            "where": self.where,
            "attach": f"/v1/debug/{self.id}",
            "created_at": self.created_at,
            **({"ended": self.ended_why} if self.ended_why else {}),
        }

    def _call_done(self) -> None:
        """The call answered (or failed): a client still attached is told the debuggee ended;
        one that never attached has nothing left to debug."""
        if self.state == "ended":
            return
        if not self.connected:
            self.end("the call finished before a debugger attached")
            return
        self.terminated_sent = True
        self.to_client.put_nowait(
            json.dumps({"seq": 0, "type": "event", "event": "terminated", "body": {}})
        )
        asyncio.get_running_loop().call_later(
            CLOSE_AFTER_TERMINATED_S, self.end, "the call finished"
        )

    def end(self, why: str, worker_gone: bool = False) -> None:
        """Close the session: the worker goes back to the pool, or is replaced when its call
        has not finished (stopped at a breakpoint, or still running). `worker_gone`: it exited
        (the pool's exit handling fails its call as a crash)."""
        if self.state == "ended":
            return
        self.state, self.ended_why = "ended", why
        self.to_client.put_nowait(None)
        self.ended.set()
        pool, w, call = self.pool, self.w, self.call
        try:
            w.handle.send({"op": "debug_close", "session": self.id})
        except Exception:  # noqa: BLE001 - a worker that is gone needs no closing
            pass
        if worker_gone:
            pass
        elif not call.future.done() and w in pool.workers:
            pool.logs.emit(
                endpoint=pool.name,
                stream="system",
                tag=call.tag,
                text=f"debug session ended ({why}) while call {call.id} was running; replacing worker {w.handle.id}",
            )
            call.future.set_exception(
                PoolError(
                    ErrorKind.CANCELLED,
                    f"endpoint {pool.name!r}: the debug session ended ({why}) before the call finished; "
                    "its worker was replaced so that nothing stays stopped",
                )
            )
            call.future.exception()
            w.inflight.pop(call.id, None)
            pool._kill_worker(
                w,
                f"killed: its debug session ended ({why}) while call {call.id} was stopped or running",
                "its worker was replaced because a debug session on it ended mid-call",
            )
        else:
            pool.debug_release(w)
        _bump()
        asyncio.get_running_loop().call_later(KEEP_ENDED_S, SESSIONS.pop, self.id, None)


# --- from the pools ----------------------------------------------------------------------------
_ready: dict[
    int, asyncio.Future[DebugSession]
] = {}  # call id -> its session, once the worker waits


def on_worker_message(pool: Any, w: Any, header: dict[str, Any], body: bytearray) -> None:
    op = header.get("op")
    if op == "dap":
        s = SESSIONS.get(header.get("session", ""))
        if s is not None and s.state != "ended":
            s.to_client.put_nowait(bytes(body).decode("utf-8", "replace"))
        return
    if op == "debug_wait" and w is not None:
        call = w.inflight.get(header.get("id"))
        if call is None:
            return
        s = DebugSession(pool, w, call, header.get("root", ""), header.get("where", ""))
        call.debug = s
        w.state = WorkerState.DEBUGGING  # the pool sends it nothing else until the session ends
        SESSIONS[s.id] = s
        _bump()
        where = f" at {s.where}" if s.where else ""
        pool.logs.emit(
            endpoint=pool.name,
            stream="system",
            tag=call.tag,
            text=f"call {call.id} waits for a debugger{where}: session {s.id} on worker {w.handle.id}",
        )
        fut = _ready.pop(call.id, None)
        if fut is not None and not fut.done():
            fut.set_result(s)


def on_worker_exit(pool: Any, handle: Any) -> None:
    for s in list(SESSIONS.values()):
        if s.w.handle is handle and s.state != "ended":
            s.end("the worker exited", worker_gone=True)


DEBUG_HOOKS.update(message=on_worker_message, exit=on_worker_exit)  # the pools call them


# --- routes ---------------------------------------------------------------------------------------
def add_debug_routes(app: Any, rt: Any, max_body: int) -> None:
    from .replies import call_input, error_reply

    async def start(request: Request) -> Any:
        name = request.path_params["name"]
        project = request.path_params.get("project") or request.query_params.get("project") or None
        got = await call_input(rt, request, name, project, max_body)
        if isinstance(got, JSONResponse):
            return got
        pool, fmt, body = got
        if pool.unavailable:
            return error_reply(503, "EndpointUnavailable", pool.unavailable)
        if pool.backend.name != "local":
            return error_reply(
                501,
                "DebugUnavailable",
                f"debugging needs the local backend; this runtime runs "
                f"its workers on {pool.backend.name}",
            )
        c = Call(method=request.query_params.get("method") or None, fmt=fmt, body=body)
        c.debug = True
        c.tag = (request.query_params.get("tag") or "")[:64]
        ready: asyncio.Future[DebugSession] = asyncio.get_running_loop().create_future()
        _ready[c.id] = ready
        spawned = rt.calls.start(pool, c, fmt, pool.project)
        done = asyncio.ensure_future(spawned.done.wait())
        try:
            await asyncio.wait({ready, done}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            done.cancel()
            _ready.pop(c.id, None)
        if not ready.done():  # it failed before it could wait for a debugger (bad arguments, setup)
            ran = c.ran_in or pool
            w = ran._state_of(c.worker) if c.worker is not None else None
            if w is not None:
                ran.debug_release(w)
            return JSONResponse(
                {**(spawned.json_reply or {}), **spawned.describe(rt.calls.ttl)},
                status_code=ErrorKind.BAD_REQUEST.http_status
                if (spawned.error or {}).get("kind") == ErrorKind.BAD_REQUEST
                else 500,
            )
        s = ready.result()
        s.spawned = spawned.id
        return s.describe()

    doc = (
        "Run a call under the debugger: answers once a worker with the endpoint loaded waits for a debugger, "
        "with the session to attach to (WS /v1/debug/{session}) and the worker's project folder (remoteRoot, for "
        "pathMappings). The call's outcome: GET /v1/calls/{call}."
    )
    for path in ("/v1/endpoints/{name}/debug", "/v1/projects/{project}/endpoints/{name}/debug"):
        app.add_api_route(
            path,
            start,
            methods=["POST"],
            summary="Debug a call: start it stopped for a debugger",
            description=doc,
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

    def known(session: str) -> DebugSession | JSONResponse:
        s = SESSIONS.get(session)
        if s is None:
            return error_reply(
                404,
                "UnknownDebugSession",
                f"no debug session {session!r} on this runtime "
                "(GET /v1/debug lists them; an ended one is dropped after "
                f"{KEEP_ENDED_S:g}s)",
            )
        return s

    def mine(s: DebugSession) -> bool:
        return any(s.pool in p.pools.values() for p in rt.projects.values())

    @app.get(
        "/v1/debug", summary="Debug sessions: waiting for a debugger, attached, or recently ended"
    )
    async def sessions(
        wait: float = Query(
            0.0,
            ge=0,
            description=f"wait up to this many seconds (at most {MAX_WAIT_S:g}) "
            "for a change after version `after`",
        ),
        after: int = Query(-1, description="the version a previous answer had"),
    ) -> Any:
        global _changed
        if wait and _version <= after:
            if _changed is None:
                _changed = asyncio.Event()
            try:
                await asyncio.wait_for(asyncio.shield(_changed.wait()), min(wait, MAX_WAIT_S))
            except TimeoutError:
                pass
        return {
            "version": _version,
            "sessions": [s.describe() for s in SESSIONS.values() if mine(s)],
        }

    @app.get("/v1/debug/{session}", summary="One debug session")
    async def session_info(session: str) -> Any:
        s = known(session)
        return s if isinstance(s, JSONResponse) else s.describe()

    @app.delete(
        "/v1/debug/{session}",
        summary="End a debug session (its worker goes back, or is replaced mid-call)",
    )
    async def session_end(session: str) -> Any:
        s = known(session)
        if isinstance(s, JSONResponse):
            return s
        s.end(f"ended by DELETE /v1/debug/{session}")
        return s.describe()

    @app.websocket("/v1/debug/{session}")
    async def relay(ws: WebSocket, session: str) -> None:
        s = SESSIONS.get(session)
        if s is None or s.state == "ended" or s.connected:
            reason = (
                "no such debug session"
                if s is None
                else (
                    f"the session ended: {s.ended_why}"
                    if s.state == "ended"
                    else "a debugger is already attached"
                )
            )
            await ws.close(code=4404 if s is None or s.state == "ended" else 4409, reason=reason)
            return
        await ws.accept()
        s.connected, s.state = True, "attached"
        watch = getattr(rt, "activity", None)  # --idle-stop: an attached debugger is activity
        if watch is not None:
            watch.begin()
        _bump()
        try:
            s.w.handle.send({"op": "debug_open", "session": s.id})
        except Exception:  # noqa: BLE001
            s.end("the worker is gone")
        pump = asyncio.ensure_future(_to_client(ws, s))
        try:
            while s.state != "ended":
                got = asyncio.ensure_future(ws.receive())
                await asyncio.wait({got, pump}, return_when=asyncio.FIRST_COMPLETED)
                if not got.done():
                    got.cancel()
                    break
                msg = got.result()
                if msg["type"] == "websocket.disconnect":
                    break
                data = msg.get("text")
                raw = data.encode() if data is not None else (msg.get("bytes") or b"")
                try:
                    s.w.handle.send({"op": "dap", "session": s.id}, [raw])
                except Exception:  # noqa: BLE001
                    break
                if s.terminated_sent and b'"disconnect"' in raw:
                    # the client says goodbye after the call finished: let pydevd answer, then close
                    asyncio.get_running_loop().call_later(0.5, s.end, "the call finished")
        except WebSocketDisconnect:
            pass
        finally:
            s.end("the debugger disconnected" if not s.terminated_sent else "the call finished")
            pump.cancel()
            if watch is not None:
                watch.end()
            try:
                await ws.close()
            except Exception:  # noqa: BLE001 - already closed
                pass


async def _to_client(ws: WebSocket, s: DebugSession) -> None:
    while True:
        msg = await s.to_client.get()
        if msg is None:
            return
        await ws.send_text(msg)
