"""The runtime's HTTP API (FastAPI on uvicorn). See docs/http-api.md."""

from __future__ import annotations

import asyncio
import base64
import hmac
import socket
import sys
from collections.abc import AsyncIterator
from typing import Annotated, Any
from urllib.parse import parse_qsl

from fastapi import FastAPI, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException
from starlette.routing import Route

from ..protocol import shm, wire
from ..protocol.disconnect import unless_disconnected
from ..protocol.errors import ErrorInfo
from ..protocol.kinds import TRACKED_WORKER_STATES, ErrorKind
from ..protocol.version import __version__
from .credentials import allows, refusal, token_project
from .pools import Call, PoolError
from .replies import (
    NDJSON,
    ChunkedResponse,
    call_input,
    call_meta,
    error_payload,
    error_reply,
    failure_reply,
    http_status,
    json_reply,
    ndjson,
    pool_or_reply,
    read_body,
    record_bytes,
    sdk_records,
)
from .service import DeployRefused, Runtime, check_project_key
from .sessions import CLIENT_RE, SESSION_ID_RE
from .sockets import bind_socket, tls_server_context
from .store import UploadRefused

__all__ = ["create_app", "serve", "bind_socket"]

OPEN_PATHS = {"/health"}
JSON_BODY_PATHS = {"/v1/sync/manifest", "/v1/generations"}
MAX_JSON_BODY = 32 * 1024 * 1024  # 20,000 files of manifest is about 2 MB


class TokenAuth:
    """Bearer-token check on every request but /health, constant-time. A worker's credential,
    narrowed to its project (credentials.py), passes for that project's routes only (403)."""

    def __init__(self, app: Any, token: str) -> None:
        self.app = app
        self.token = token
        self.expected = f"Bearer {token}".encode()

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] in ("http", "websocket") and scope["path"] not in OPEN_PATHS:
            got = b""
            for k, v in scope["headers"]:
                if k == b"authorization":
                    got = v
                    break
            narrowed = (
                token_project(self.token, got[len(b"Bearer ") :].decode("latin-1"))
                if got.startswith(b"Bearer ") and not hmac.compare_digest(got, self.expected)
                else None
            )
            if narrowed is not None and not allows(
                narrowed,
                scope.get("method", "GET"),
                scope["path"],
                dict(parse_qsl(scope.get("query_string", b"").decode("latin-1"))),
            ):
                if scope["type"] == "websocket":
                    await send({"type": "websocket.close", "code": 1008})
                    return
                resp = JSONResponse(
                    {"error": {"type": "Forbidden", "message": refusal(narrowed)}},
                    status_code=403,
                )
                await resp(scope, receive, send)
                return
            if narrowed is None and not hmac.compare_digest(got, self.expected):
                if (
                    scope["type"] == "websocket"
                ):  # a debug session's relay (debug.py): refused at the handshake (403)
                    await send({"type": "websocket.close", "code": 1008})
                    return
                msg = "missing bearer token" if not got else "wrong token"
                resp = JSONResponse(
                    {
                        "error": {
                            "type": "Unauthorized",
                            "message": f"{msg}: send 'Authorization: Bearer <token>' "
                            "(the token `slipstream serve` printed, or SLIPSTREAM_TOKEN)",
                        }
                    },
                    status_code=401,
                    headers={"WWW-Authenticate": "Bearer"},
                )
                await resp(scope, receive, send)
                return
            if scope["path"] in JSON_BODY_PATHS:
                receive = _limited(receive, MAX_JSON_BODY)
                declared = dict(scope["headers"]).get(b"content-length", b"")
                if declared.isdigit() and int(declared) > MAX_JSON_BODY:
                    await _too_large(scope, receive, send)
                    return
        try:
            await self.app(scope, receive, send)
        except _BodyTooLarge:
            await _too_large(scope, receive, send)


class _BodyTooLarge(HTTPException):
    """Raised while the body streams in; an HTTPException so FastAPI's body parsing passes it on."""

    def __init__(self) -> None:
        super().__init__(
            413,
            f"a manifest or commit over {MAX_JSON_BODY} bytes; exclude data and "
            "build folders in slipstream.toml [sync] exclude",
        )


def _limited(receive: Any, limit: int) -> Any:
    seen = 0

    async def wrapped() -> dict:
        nonlocal seen
        message = await receive()
        seen += len(message.get("body", b""))
        if seen > limit:
            raise _BodyTooLarge()
        return message

    return wrapped


async def _too_large(scope: dict, receive: Any, send: Any) -> None:
    resp = JSONResponse(
        {
            "error": {
                "type": "PayloadTooLarge",
                "message": f"a manifest or commit over {MAX_JSON_BODY} bytes; "
                "exclude data and build folders in slipstream.toml [sync] exclude",
            }
        },
        status_code=413,
    )
    await resp(scope, receive, send)


class Manifest(BaseModel):
    files: dict[str, str] = Field(description="project-relative POSIX path -> SHA-256 of its bytes")


class Commit(Manifest):
    entries: list[str] = Field(
        default_factory=list, description="files that define endpoints (imported to find them)"
    )
    paths: list[str] | None = Field(
        None,
        description="project-relative folders the runtime puts on sys.path, in order, as the user's Python has "
        'them ("" is the root, e.g. ["", "src"]); omitted: [""]',
        max_length=32,
    )
    project: str | None = Field(
        None,
        description="the project's key (its name plus a hash of machine and root); a commit replaces only "
        'that project\'s endpoints. Omitted: the project "default"',
        max_length=80,
    )
    blobs: dict[str, str] | None = Field(
        None,
        description="files' bytes sent along (SHA-256 -> base64), stored before the commit: a small edit "
        "deploys in one request",
        max_length=256,
    )
    report_missing: bool = Field(
        False,
        description='when files are missing, answer 409 MissingBlobs with their hashes ("missing") '
        "instead of refusing: the client uploads them and commits again (no manifest round trip first)",
    )
    skipped: dict[str, str] | None = Field(
        None,
        description="the paths the sync left out (folders end in '/') -> the rule that did "
        "(\".gitignore:3 'data/'\"): a call or import failing on one of them says so",
        max_length=10_000,
    )
    sizes: dict[str, int] | None = Field(
        None,
        description="each file's size in bytes: a project over the runtime's limits is refused "
        "before anything is uploaded",
    )
    routing: str | None = Field(
        None,
        description="the project's routing table (JSON) when it runs on several runtimes: the workers' "
        "nested calls read it to reach the runtime serving the endpoint they call (docs/runtimes.md)",
        max_length=1 << 16,
    )


class Attach(BaseModel):
    client: str = Field(
        default="sdk",
        description='what attaches, shown by `slipstream status`: "dev", "editor", "sdk"...',
        pattern=CLIENT_RE.pattern,
        max_length=32,
    )


_TRUE = ("1", "true", "yes", "on", "y", "t")  # what the documented boolean query parameter takes
_FALSE = ("", "0", "false", "no", "off", "n", "f")


def create_app(rt: Runtime, token: str, max_body: int = 1 << 30) -> Any:
    app = FastAPI(
        title="Slipstream runtime",
        version=__version__,
        description="Runs @endpoint functions in worker pools; code arrives by content-addressed sync.",
    )
    app.state.runtime = rt

    @app.get("/health", summary="Liveness, version and the GPU inventory (no token needed)")
    async def health() -> dict[str, Any]:
        return rt.health()

    @app.post("/v1/sync/manifest", summary="Which of these files does the runtime lack?")
    async def manifest(m: Manifest) -> Any:
        try:
            return {"missing": rt.missing(m.files)}
        except UploadRefused as exc:
            return error_reply(400, "UploadRefused", str(exc))

    @app.put(
        "/v1/blobs/{sha}",
        summary="Upload one file's bytes, addressed by their SHA-256",
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {
                    "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}
                },
            }
        },
    )
    async def put_blob(
        request: Request, sha: str = PathParam(..., pattern="^[0-9a-f]{64}$")
    ) -> Any:
        limit = rt.store.limits.max_file_bytes
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > limit:
            return error_reply(
                413, "UploadRefused", f"file of {declared} bytes is over the {limit} byte limit"
            )
        data = bytearray()
        async for chunk in request.stream():
            data += chunk
            if len(data) > limit:
                return error_reply(413, "UploadRefused", f"file is over the {limit} byte limit")
        try:
            await asyncio.to_thread(rt.put_blob, sha, bytes(data))
        except UploadRefused as exc:
            return error_reply(400, "UploadRefused", str(exc))
        return {"stored": sha}

    @app.get(
        "/v1/blobs/{sha}",
        summary="Download one stored file by its SHA-256 (workers on other machines fetch code so)",
        response_class=Response,
        responses={
            200: {
                "content": {
                    "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}
                }
            },
            404: {"description": "The runtime has no file with that SHA-256"},
        },
    )
    async def get_blob(sha: str = PathParam(..., pattern="^[0-9a-f]{64}$")) -> Any:
        path = rt.store.blobs / sha
        try:
            data = await asyncio.to_thread(path.read_bytes)
        except OSError:
            return error_reply(404, "UnknownBlob", f"the runtime has no file with SHA-256 {sha}")
        return Response(data, media_type="application/octet-stream")

    @app.post(
        "/v1/blobs",
        summary="Upload several files in one request (what the SDK's sync sends)",
        description="Body: for each file, its SHA-256 as 64 hex characters, its length as a big-endian u64, "
        "then its bytes. Each is checked against its hash and the file size limit.",
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {
                    "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}
                },
            }
        },
    )
    async def put_blobs(request: Request) -> Any:
        body = await read_body(request, MAX_BLOB_BATCH)
        if body is None:
            return error_reply(
                413, "UploadRefused", f"a batch over {MAX_BLOB_BATCH} bytes; send several"
            )
        try:
            items = _split_batch(body)
            await asyncio.to_thread(rt.put_blobs, items)
        except UploadRefused as exc:
            return error_reply(400, "UploadRefused", str(exc))
        return {"stored": len(items)}

    @app.post("/v1/generations", summary="Commit a generation: import it, then swap workers to it")
    async def commit(c: Commit) -> Any:
        try:
            inline = [
                (sha, base64.b64decode(b64, validate=True)) for sha, b64 in (c.blobs or {}).items()
            ]
        except ValueError as exc:  # binascii.Error
            return error_reply(400, "UploadRefused", f"'blobs' values must be base64: {exc}")
        try:
            if c.sizes is not None:  # over the limits: refused before anything is uploaded
                rt.store.check_sizes(c.files, c.sizes)
            if inline:
                await asyncio.to_thread(rt.put_blobs, inline)
            if c.report_missing:
                missing = rt.missing(c.files)
                if missing:
                    return error_reply(
                        409,
                        "MissingBlobs",
                        f"{len(missing)} file(s) to upload first (POST /v1/blobs), then "
                        "commit again",
                        missing=missing,
                    )
            return await rt.commit(
                c.files, c.entries, c.project, c.paths, c.routing, skipped=c.skipped
            )
        except UploadRefused as exc:
            return error_reply(400, "UploadRefused", str(exc))
        except ValueError as exc:  # a malformed project key
            return error_reply(400, "BadProject", str(exc))
        except DeployRefused as exc:
            info = exc.info
            where = next((f for f in reversed(info.frames) if f.in_project), None)
            return error_reply(
                ErrorKind.DEPLOY.http_status,
                info.type,
                info.message,
                kind=ErrorKind.DEPLOY,
                traceback=info.traceback,
                frames=[vars(f) for f in info.frames],
                file=where.file if where else None,
                line=where.line if where else None,
            )

    @app.get(
        "/v1/endpoints", summary="Endpoints with their pool state and stats, grouped by project"
    )
    async def endpoints(
        project: str | None = Query(None, max_length=80, description="only this project's"),
    ) -> Any:
        try:
            return rt.listing(project)
        except (KeyError, ValueError) as exc:
            return error_reply(404, "UnknownProject", exc.args[0])

    @app.get("/v1/endpoints/{name}", summary="One endpoint's pool state and stats")
    async def endpoint_info(name: str, project: str | None = Query(None, max_length=80)) -> Any:
        pool = pool_or_reply(rt, name, project)
        return pool if isinstance(pool, JSONResponse) else pool.describe()

    @app.get(
        "/v1/projects",
        summary="The projects deployed here: generation, endpoints, environments, spend",
    )
    async def projects() -> dict[str, Any]:
        return {"projects": [p.describe() for p in rt.deployed()]}

    @app.get("/v1/projects/{project}/endpoints/{name}", summary="One endpoint of one project")
    async def project_endpoint_info(project: str, name: str) -> Any:
        return await endpoint_info(name, project)

    @app.delete(
        "/v1/projects/{project}",
        summary="Remove a project: stop its workers, delete its generations",
    )
    async def remove_project(project: str) -> Any:
        try:
            await rt.remove_project(project)
        except (KeyError, ValueError) as exc:
            return error_reply(404, "UnknownProject", exc.args[0])
        return {"removed": project}

    @app.put(
        "/v1/projects/{project}/sessions/{session}",
        summary="Attach a dev session to a project, or renew its lease: its endpoints stay warm",
    )
    async def attach_session(
        project: str,
        session: str = PathParam(..., pattern=SESSION_ID_RE.pattern),
        body: Attach | None = None,
    ) -> Any:
        try:
            key = check_project_key(project)
        except ValueError as exc:
            return error_reply(400, "BadProject", str(exc))
        s = rt.sessions.renew(key, session, body.client if body is not None else "sdk")
        lease = rt.sessions.lease
        return {
            "project": key,
            "session": s.id,
            "client": s.client,
            "lease_s": lease,
            "renew_s": round(lease / 3, 3),
        }

    @app.delete(
        "/v1/projects/{project}/sessions/{session}",
        summary="End a dev session: the idle clock of the project's workers starts",
    )
    async def end_session(
        project: str, session: str = PathParam(..., pattern=SESSION_ID_RE.pattern)
    ) -> Any:
        try:
            key = check_project_key(project)
        except ValueError as exc:
            return error_reply(400, "BadProject", str(exc))
        return {"ended": rt.sessions.end(key, session)}

    @app.post(
        "/v1/endpoints/{name}/rebuild",
        summary="Load an endpoint's kept objects again and re-run its setup() on each worker",
        description="keys: only these keep() keys (their repr or str); stale: only the kept "
        "objects that run old code (see 'stale' in GET /v1/endpoints/{name}); neither: all. "
        "Each worker finishes its running calls first; calls queue meanwhile.",
    )
    async def rebuild(
        name: str,
        project: str | None = Query(None, max_length=80),
        keys: Annotated[list[str] | None, Query(description="keep() keys to load again")] = None,
        stale: bool = Query(False, description="only the stale kept objects"),
    ) -> Any:
        pool = pool_or_reply(rt, name, project)
        if isinstance(pool, JSONResponse):
            return pool
        replies = await pool.rebuild(keys, stale)
        failed = [r["error"] for r in replies if r.get("error")]
        return {
            "endpoint": pool.name,
            "workers": len(replies),
            "released": sorted({k for r in replies for k in r.get("released", [])}),
            "model_loads": sum(int(r.get("model_loads", 0)) for r in replies),
            "rebuild_s": round(max((r.get("rebuild_s", 0) for r in replies), default=0.0), 3),
            "stale": pool.stale(),
            "errors": failed,
        }

    @app.post(
        "/v1/endpoints/{name}/call",
        summary="Call an endpoint",
        description='JSON: body {"args": [...], "kwargs": {...}}, reply {ok, result, duration_s, cost_usd, ...}. '
        "SDK: a Slipstream pickle frame of the same object, reply a stream of records.",
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "properties": {
                                "args": {"type": "array", "items": {}},
                                "kwargs": {"type": "object"},
                            },
                        }
                    },
                    wire.CONTENT_TYPE: {"schema": {"type": "string", "format": "binary"}},
                },
            }
        },
    )
    async def call(
        request: Request,
        name: str,
        method: str | None = Query(None, description="method of a class endpoint"),
        stream: bool = Query(False, description="stream generator items as they come (SDK format)"),
        tag: str | None = Query(
            None,
            max_length=64,
            description="a name for this call; its log lines carry it (follow them with /v1/logs?tag=)",
        ),
        project: str | None = Query(
            None,
            max_length=80,
            description="the endpoint's project; needed only when several projects define the name (409 otherwise)",
        ),
    ) -> Any:
        return await handle_call(request)

    @app.post(
        "/v1/projects/{project}/endpoints/{name}/call",
        summary="Call one project's endpoint",
        description="The same as /v1/endpoints/{name}/call, for the endpoint of this project (the SDK always calls so).",
    )
    async def project_call(
        request: Request,
        project: str,
        name: str,
        method: str | None = Query(None),
        stream: bool = Query(False),
        tag: str | None = Query(None, max_length=64),
    ) -> Any:
        return await handle_call(request)

    async def handle_call(request: Request) -> Any:
        name = request.path_params["name"]
        project = request.path_params.get("project") or request.query_params.get("project") or None
        method = request.query_params.get("method") or None
        stream_arg = request.query_params.get("stream", "").lower()
        if stream_arg not in _TRUE + _FALSE:
            return error_reply(
                422,
                "InvalidParameter",
                f"stream must be true or false (1/0, yes/no), not {stream_arg[:40]!r}",
            )
        stream = stream_arg in _TRUE
        got = await call_input(rt, request, name, project, max_body)
        if isinstance(got, JSONResponse):
            return got
        pool, fmt, body = got
        c = Call(method=method, fmt=fmt, body=body, stream=stream)
        c.tag = (request.query_params.get("tag") or "")[:64]
        if c.stream:
            c.items = asyncio.Queue()
            return StreamingResponse(
                _stream(rt, pool, c), media_type=wire.CONTENT_TYPE if fmt == "pickle" else NDJSON
            )
        buf = None
        if len(body) >= shm.THRESHOLD and shm.available():
            buf = shm.SharedBuffer(
                len(body), f"q{rt.id[:6]}-"
            )  # one copy here beats the worker socket
            buf.write([body])
            c.shm_ref = buf.ref()
        task = asyncio.ensure_future(pool.call(c))
        try:
            if not await unless_disconnected(request, task):
                return Response(status_code=499)  # the client went away; its call was cancelled
            try:
                task.result()
            except PoolError as exc:
                return failure_reply(pool, c, exc.info, fmt)
        finally:
            if buf is not None:
                buf.unlink()
                buf.release()
        status, payload = c.future.result()
        if fmt == "json":
            return json_reply(pool, c, status, payload)
        return ChunkedResponse(
            sdk_records(pool, c, status, payload),
            wire.CONTENT_TYPE,
            200 if status == "ok" else http_status(payload),
        )

    # The hot path skips FastAPI's parameter machinery; the route above documents it.
    app.router.routes.insert(0, Route("/v1/endpoints/{name}/call", handle_call, methods=["POST"]))
    app.router.routes.insert(
        0, Route("/v1/projects/{project}/endpoints/{name}/call", handle_call, methods=["POST"])
    )

    from .calls import add_call_routes
    from .variants import add_variant_routes

    add_call_routes(app, rt, max_body)  # spawn, GET and DELETE /v1/calls/{id} (calls.py)
    add_variant_routes(
        app, rt
    )  # f.with_options(...): POST .../endpoints/{name}/variants (variants.py)
    from .debug import add_debug_routes

    add_debug_routes(
        app, rt, max_body
    )  # debug sessions: POST .../debug, WS /v1/debug/{session} (debug.py)

    @app.get("/v1/logs", summary="Live logs as server-sent events")
    async def logs(
        request: Request,
        endpoint: str | None = None,
        backlog: int = Query(50, ge=0, le=2000),
        keepalive: float = Query(
            15.0, ge=0.2, le=300, description="seconds between keep-alive comments"
        ),
        tag: str | None = Query(
            None, max_length=64, description="only the lines of calls made with this tag"
        ),
        project: str | None = Query(None, max_length=80, description="only this project's lines"),
    ) -> Any:
        q = rt.logs.subscribe()

        async def events() -> AsyncIterator[bytes]:
            try:

                def wanted(e: dict[str, Any]) -> bool:
                    return (
                        (endpoint is None or e.get("endpoint") == endpoint)
                        # a worker's setup lines again with the call that carries them (pools.py)
                        and (tag is None or e.get("tag") == tag)
                        and not (tag is None and e.get("replay"))
                        and (project is None or e.get("project") == project)
                    )

                for e in list(rt.logs.recent)[-backlog:] if backlog else []:
                    if wanted(e):
                        yield b"data: " + wire.json_dumps(e) + b"\n\n"
                while True:
                    try:
                        e = await asyncio.wait_for(q.get(), keepalive)
                    except TimeoutError:
                        yield b": keep-alive\n\n"
                        continue
                    if wanted(e):
                        yield b"data: " + wire.json_dumps(e) + b"\n\n"
            finally:
                rt.logs.unsubscribe(q)

        return StreamingResponse(
            events(), media_type="text/event-stream", headers={"Cache-Control": "no-store"}
        )

    @app.get("/metrics", summary="Prometheus metrics", response_class=PlainTextResponse)
    async def metrics() -> str:
        return _prometheus(rt)

    return TokenAuth(app, token)


MAX_BLOB_BATCH = 256 * 1024 * 1024
_BATCH_HEAD = 64 + 8


def _split_batch(body: bytes) -> list[tuple[str, bytes]]:
    """POST /v1/blobs's body: (sha, bytes) per file; UploadRefused when it does not parse."""
    view, pos, out = memoryview(body), 0, []
    while pos < len(body):
        if pos + _BATCH_HEAD > len(body):
            raise UploadRefused(
                "a batch entry is cut short: each is 64 hex characters of SHA-256, a u64 length, the bytes"
            )
        sha = bytes(view[pos : pos + 64]).decode("ascii", "replace")
        n = int.from_bytes(view[pos + 64 : pos + _BATCH_HEAD], "big")
        pos += _BATCH_HEAD
        if pos + n > len(body):
            raise UploadRefused(
                f"the batch entry for {sha[:12]}... says {n} bytes but fewer follow"
            )
        out.append((sha, bytes(view[pos : pos + n])))
        pos += n
    return out


async def _stream(rt: Runtime, pool: Any, c: Call) -> AsyncIterator[Any]:
    """A generator endpoint's items as the worker yields them: SDK records for the pickle
    format; for JSON, one line per event ({"item": ...}, {"log": ...}, then the reply object
    with "ok"). Closing the connection cancels the call."""
    task = asyncio.ensure_future(pool.call(c))
    assert c.items is not None
    as_json = c.fmt == "json"

    def item(payload: Any) -> bytes:
        return (
            b'{"item":' + bytes(payload) + b"}\n"
            if as_json
            else record_bytes(wire.REC_ITEM, payload)
        )

    def log(entry: dict[str, Any]) -> bytes:
        return ndjson({"log": entry}) if as_json else wire.json_record(wire.REC_LOG, entry)

    def error(info: ErrorInfo, meta: dict[str, Any]) -> bytes:
        if as_json:
            return ndjson({"ok": False, **meta, "error": info.to_dict()})
        return wire.json_record(wire.REC_ERROR, error_payload(info))

    try:
        while True:
            getter = asyncio.ensure_future(c.items.get())
            try:
                done, _ = await asyncio.wait({getter, task}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                if not getter.done():
                    getter.cancel()
            # sent as they come, then let go (pools.add_log keeps a tail of what stays)
            sent, c.logs[:], c.log_lines, c.log_note = list(c.logs), [], 0, False
            for entry in sent:
                yield log(entry)
            if getter in done:
                yield item(getter.result())
                continue
            while not c.items.empty():
                yield item(c.items.get_nowait())
            try:
                task.result()
            except PoolError as exc:
                yield error(exc.info, {"endpoint": pool.name})
                return
            status, payload = c.future.result()
            meta = call_meta(pool, c)
            if status != "ok":
                yield error(payload, meta)
            elif as_json:
                yield ndjson({"ok": True, **meta, "result": None})
            else:
                yield wire.json_record(wire.REC_META, meta)
                yield record_bytes(wire.REC_RESULT, payload)
            return
    finally:
        if not task.done():
            task.cancel()  # the client stopped reading or went away: the call is cancelled


def _prometheus(rt: Runtime) -> str:
    lines = [
        "# HELP slipstream_calls_total Calls completed per endpoint.",
        "# TYPE slipstream_calls_total counter",
    ]
    series: dict[str, list[str]] = {
        "slipstream_errors_total": [],
        "slipstream_crashes_total": [],
        "slipstream_timeouts_total": [],
        "slipstream_overloads_total": [],
        "slipstream_cancelled_total": [],
        "slipstream_retries_total": [],
        "slipstream_gpu_fallbacks_total": [],
        "slipstream_busy_seconds_total": [],
        "slipstream_cost_usd_total": [],
        "slipstream_queue_depth": [],
        "slipstream_workers": [],
        "slipstream_reloads_total": [],
        "slipstream_worker_start_seconds": [],
    }
    for key, p in rt.pools.items():
        lab = f'endpoint="{p.name}",gpu="{p.spec.gpu_label}",project="{key.rsplit("/", 1)[0]}"'
        s = p.stats
        lines.append(f"slipstream_calls_total{{{lab}}} {s.calls}")
        series["slipstream_errors_total"].append(f"{{{lab}}} {s.errors}")
        series["slipstream_crashes_total"].append(f"{{{lab}}} {s.crashes}")
        series["slipstream_timeouts_total"].append(f"{{{lab}}} {s.timeouts}")
        series["slipstream_overloads_total"].append(f"{{{lab}}} {s.overloads}")
        series["slipstream_cancelled_total"].append(f"{{{lab}}} {s.cancelled}")
        series["slipstream_retries_total"].append(f"{{{lab}}} {s.retries}")
        series["slipstream_gpu_fallbacks_total"].append(f"{{{lab}}} {s.gpu_fallbacks}")
        series["slipstream_busy_seconds_total"].append(f"{{{lab}}} {s.busy_s:.6f}")
        series["slipstream_cost_usd_total"].append(f"{{{lab}}} {s.cost_usd:.8f}")
        series["slipstream_queue_depth"].append(f"{{{lab}}} {len(p.queue)}")
        series["slipstream_reloads_total"].append(f"{{{lab}}} {s.reloads}")
        for state in TRACKED_WORKER_STATES:
            n = sum(1 for w in p.workers if w.state == state)
            series["slipstream_workers"].append(f'{{{lab},state="{state}"}} {n}')
        for w in p.workers:
            if w.start_s is not None:
                series["slipstream_worker_start_seconds"].append(
                    f'{{{lab},worker="{w.handle.id}"}} {w.start_s:.4f}'
                )
    for name, rows in series.items():
        kind = (
            "gauge"
            if name
            in ("slipstream_queue_depth", "slipstream_workers", "slipstream_worker_start_seconds")
            else "counter"
        )
        lines.append(f"# TYPE {name} {kind}")
        lines += [name + r for r in rows]
    lines.append("# TYPE slipstream_gpus gauge")
    lines.append(f"slipstream_gpus {len(rt.devices)}")
    if rt.allocator is not None:  # who holds each GPU (allocator.py; docs/gpus.md)
        use = rt.allocator.snapshot()
        lines.append("# TYPE slipstream_gpu_memory_total_gb gauge")
        lines += [
            f'slipstream_gpu_memory_total_gb{{gpu="{g["index"]}",name="{g["name"]}"}} {g["memory_gb"]:g}'
            for g in use
        ]
        lines.append("# TYPE slipstream_gpu_memory_reserved_gb gauge")
        for g in use:
            for h in g["holders"]:
                lines.append(
                    f'slipstream_gpu_memory_reserved_gb{{gpu="{g["index"]}",name="{g["name"]}",'
                    f'project="{h["project"]}",endpoint="{h["endpoint"]}",worker="{h["worker"]}"}} {h["gb"]:g}'
                )
    return "\n".join(lines) + "\n"


async def serve(
    rt: Runtime,
    sock: socket.socket,
    token: str,
    *,
    log_level: str = "warning",
    on_ready: Any = None,
    tls_cert: str | None = None,
    tls_key: str | None = None,
    idle_stop: float = 0.0,
    data_port: int = 0,
) -> None:
    import uvicorn

    from .datachannel import DataServer

    tls = tls_server_context(tls_cert, tls_key) if tls_cert and tls_key else None
    rt.tls = tls is not None
    data = DataServer(rt, token, tls=tls)
    rt.data_port = await data.start(sock.getsockname()[0], data_port)
    await (
        rt.restore()
    )  # a persistent store: each project's last generation is served again, before any call
    app = create_app(rt, token)
    watch = None
    if idle_stop:  # --idle-stop: HTTP requests and data-channel calls count as activity
        from .idle import IdleWatch

        watch = rt.activity = IdleWatch(idle_stop)
        app = watch.wrap(app)
    config = uvicorn.Config(
        app,
        log_level=log_level,
        access_log=False,
        lifespan="off",
        timeout_keep_alive=30,
        timeout_graceful_shutdown=2,  # then in-flight calls are cancelled: a stop is never held up
        ssl_certfile=tls_cert if tls else None,
        ssl_keyfile=tls_key if tls else None,
    )
    server = uvicorn.Server(config)
    if on_ready:
        asyncio.get_running_loop().call_soon(on_ready)
    idler = (
        asyncio.ensure_future(watch.run(lambda: setattr(server, "should_exit", True)))
        if watch
        else None
    )
    try:
        await server.serve(sockets=[sock])
    finally:
        if idler is not None:
            idler.cancel()
        await data.close()
        await rt.shutdown()


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)
