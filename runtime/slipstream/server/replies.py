"""How the HTTP app and the data channel answer a call: statuses, error bodies, the SDK's records
and reading a call's input. Shared by app.py, calls.py and datachannel.py."""

from __future__ import annotations

import base64
import json
from typing import TYPE_CHECKING, Any

from fastapi import Request
from fastapi.responses import JSONResponse, Response

from ..protocol import wire
from ..protocol.errors import ErrorInfo
from ..protocol.kinds import ErrorKind
from .pools import Call, Pool
from .service import AmbiguousEndpoint

if TYPE_CHECKING:
    from .service import Runtime


def error_reply(status: int, type_: str, message: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"error": {"type": type_, "message": message, **extra}}, status_code=status)


def lookup_error_reply(exc: LookupError) -> JSONResponse:
    """404 for a name no (or not that) project defines; 409 when several projects define it."""
    if isinstance(exc, AmbiguousEndpoint):
        return error_reply(
            409,
            "AmbiguousEndpoint",
            str(exc),
            projects=exc.projects,
            routes=[f"/v1/projects/{p}/endpoints/{exc.name}/call" for p in exc.projects],
        )
    return error_reply(404, "UnknownEndpoint", exc.args[0] if exc.args else str(exc))


async def read_body(request: Request, limit: int) -> bytes | None:
    """The request's body, or None when it is over `limit` (refused on its Content-Length
    before reading, or as the bytes come in)."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        return None
    chunks = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def pool_or_reply(rt: Runtime, name: str, project: str | None) -> Pool | JSONResponse:
    """The endpoint's pool, or the error to answer: 404/409 for the name (lookup_error_reply),
    400 BadProject for a malformed project key."""
    try:
        return rt.pool(name, project)
    except LookupError as exc:
        return lookup_error_reply(exc)
    except ValueError as exc:
        return error_reply(400, "BadProject", str(exc))


async def call_input(
    rt: Runtime, request: Request, name: str, project: str | None, max_body: int
) -> tuple[Any, str, bytes] | JSONResponse:
    """What the call and spawn routes take in: the endpoint's pool, the body's format ("pickle"
    or "json") and the body, checked (an {"args": [...], "kwargs": {...}} object for JSON); or
    the error response to send instead."""
    pool = pool_or_reply(rt, name, project)
    if isinstance(pool, JSONResponse):
        return pool
    ctype = request.headers.get("content-type", "").split(";")[0].strip()
    if ctype == wire.CONTENT_TYPE:
        fmt = "pickle"
    elif ctype in ("application/json", ""):
        fmt = "json"
    else:
        return error_reply(
            415,
            "UnsupportedMediaType",
            f"send application/json or {wire.CONTENT_TYPE}, not {ctype!r}",
        )
    body = await read_body(request, max_body)
    if body is None:
        return error_reply(413, "PayloadTooLarge", f"request body over {max_body} bytes")
    if fmt == "json":
        try:
            parsed = json.loads(body or b"{}")
        except (ValueError, RecursionError) as exc:  # RecursionError: nesting too deep to parse
            return error_reply(400, "BadRequest", f"body is not valid JSON: {exc}")
        if (
            not isinstance(parsed, dict)
            or not isinstance(parsed.get("args", []), list)
            or not isinstance(parsed.get("kwargs", {}), dict)
        ):
            return error_reply(
                400, "BadRequest", 'body must be an object {"args": [...], "kwargs": {...}}'
            )
    return pool, fmt, body


def http_status(info: Any) -> int:
    """The HTTP status of a failed call: its ErrorKind's."""
    return ErrorKind.status_of(getattr(info, "kind", ErrorKind.EXCEPTION))


def call_meta(pool: Any, c: Call) -> dict[str, Any]:
    handle = c.worker
    ran = getattr(c, "ran_in", None) or pool  # another GPU's pool after a CUDA out-of-memory move
    return {
        "endpoint": pool.name,
        "project": pool.project,
        "duration_s": round(c.duration, 6),
        "cost_usd": ran.call_cost(c),
        "gpu": ran.spec.gpu_label,
        "device": getattr(handle, "device", ""),
        "worker": getattr(handle, "id", ""),
        "generation": c.gen or pool.gen.id,  # the code it ran, not the newest
        "note": ran.fallback_note,
        "retries": list(
            getattr(c, "retries", ())
        ),  # each failed attempt run again: {attempt, kind, type, message, gpu, moved_to?}
    }


def error_payload(info: ErrorInfo) -> dict[str, Any]:
    d = info.to_dict()
    if info.pickled:
        d["pickled"] = base64.b64encode(info.pickled).decode()
    return d


def sdk_records(pool: Any, c: Call, status: str, payload: Any) -> list[Any]:
    chunks: list[Any] = [wire.json_record(wire.REC_LOG, log) for log in c.logs]
    chunks.append(wire.json_record(wire.REC_META, call_meta(pool, c)))
    if status == "ok":
        chunks += wire.record(wire.REC_RESULT, payload)
    else:
        chunks.append(wire.json_record(wire.REC_ERROR, error_payload(payload)))
    return chunks


def json_reply(pool: Any, c: Call, status: str, payload: Any) -> Response:
    meta = call_meta(pool, c)
    if status == "ok":
        head = wire.json_dumps({"ok": True, **meta, "logs": c.logs})
        return Response(
            head[:-1] + b',"result":' + bytes(payload) + b"}", media_type="application/json"
        )
    return JSONResponse(
        {"ok": False, **meta, "logs": c.logs, "error": payload.to_dict()},
        status_code=http_status(payload),
    )


def failure_reply(pool: Any, c: Call, info: ErrorInfo, fmt: str) -> Response:
    status = http_status(info)
    headers = {"Retry-After": "1"} if info.kind == ErrorKind.OVERLOADED else None
    if fmt == "json":
        return JSONResponse(
            {"ok": False, "endpoint": pool.name, "logs": c.logs, "error": info.to_dict()},
            status_code=status,
            headers=headers,
        )
    return ChunkedResponse(error_records(c, info), wire.CONTENT_TYPE, status, headers)


def error_records(c: Call, info: ErrorInfo) -> list[bytes]:
    """A call that failed on the runtime's side: the logs it made, then the error."""
    return [wire.json_record(wire.REC_LOG, log) for log in c.logs] + [
        wire.json_record(wire.REC_ERROR, error_payload(info))
    ]


def record_bytes(kind: int, payload: Any) -> bytes:
    return b"".join(bytes(p) for p in wire.record(kind, payload))


NDJSON = "application/x-ndjson"


def ndjson(obj: Any) -> bytes:
    return wire.json_dumps(obj) + b"\n"


class ChunkedResponse(Response):
    """A response sent as several body chunks without joining them (large results)."""

    def __init__(
        self,
        chunks: list[Any],
        media_type: str,
        status_code: int = 200,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.chunks = chunks
        super().__init__(
            content=b"", status_code=status_code, media_type=media_type, headers=headers
        )
        self.headers["content-length"] = str(sum(memoryview(c).nbytes for c in chunks))

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await send(
            {"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers}
        )
        if sum(memoryview(c).nbytes for c in self.chunks) < 1 << 20:
            self.chunks = [b"".join(bytes(c) for c in self.chunks)]
        last = len(self.chunks) - 1
        for i, chunk in enumerate(self.chunks):
            await send(
                {
                    "type": "http.response.body",
                    "body": bytes(chunk) if not isinstance(chunk, bytes) else chunk,
                    "more_body": i < last,
                }
            )
        if not self.chunks:
            await send({"type": "http.response.body", "body": b"", "more_body": False})
