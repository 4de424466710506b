"""The SDK's binary call channel: framed messages over a plain TCP connection.

HTTP stays the API for curl, browsers and editors; the SDK sends its calls here because a
request is one framed write and large bodies land straight in shared memory on the runtime,
without HTTP parsing or extra copies.

    request:  u32 len(header) | u64 len(body) | {"token", "endpoint", "method"} | wire frame
    response: u32 len(header) | u64 len(body) | {"status"}                     | records
"""

from __future__ import annotations

import asyncio
import hmac
import json
import queue
import socket
from typing import Any

from . import shm, wire
from .ipc import PREFIX, ServerSide, _send_all, encode_header
from .pools import Call, PoolError

__all__ = ["DataServer", "DataClient", "parse_records"]


class _DataConn(ServerSide):
    def __init__(self, server: DataServer) -> None:
        super().__init__(self._on_request, lambda exc: None)
        self.server = server
        self.max_body = server.max_body
        self._busy = False

    def alloc_body(self, n: int, header: dict[str, Any]) -> Any:
        if n >= shm.THRESHOLD and shm.available():
            buf = shm.SharedBuffer(n, self.server.shm_tag)
            header["_shm"] = buf
            return buf.view
        return bytearray(n)

    def refuse(self, reason: str) -> None:
        self._reply(400, [wire.json_record(wire.REC_ERROR, {"type": "BadRequest", "message": reason, "kind": "bad-request"})])
        super().refuse(reason)

    def _on_request(self, header: dict[str, Any], body: Any) -> None:
        asyncio.ensure_future(self._handle(header, body))

    def _reply(self, status: int, chunks: list[Any]) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        size = sum(memoryview(c).nbytes for c in chunks)
        self.transport.write(encode_header({"status": status}, size))
        for c in chunks:
            if memoryview(c).nbytes:
                self.transport.write(c)

    async def _handle(self, header: dict[str, Any], body: Any) -> None:
        from .server import _error_payload, _sdk_records

        buf: shm.SharedBuffer | None = header.pop("_shm", None)
        try:
            token = str(header.get("token", "")).encode()
            if not hmac.compare_digest(token, self.server.expected):
                self._reply(401, [wire.json_record(wire.REC_ERROR, {"type": "Unauthorized", "message": "wrong or missing token", "kind": "unauthorized"})])
                self.transport.close()  # type: ignore[union-attr]
                return
            name = str(header.get("endpoint", ""))
            try:
                pool = self.server.rt.pool(name)
            except KeyError as exc:
                self._reply(404, [wire.json_record(wire.REC_ERROR, {"type": "UnknownEndpoint", "message": exc.args[0], "kind": "unknown-endpoint"})])
                return
            c = Call(method=header.get("method") or None, fmt="pickle", body=body)
            if buf is not None:
                c.shm_ref = buf.ref()
            try:
                await pool.call(c)
            except PoolError as exc:
                records = [wire.json_record(wire.REC_LOG, log) for log in c.logs]
                records.append(wire.json_record(wire.REC_ERROR, _error_payload(exc.info)))
                self._reply(200, records)
                return
            status, payload = c.future.result()
            self._reply(200, _sdk_records(pool, c, status, payload))
        finally:
            if buf is not None:
                buf.unlink()
                buf.release()


class DataServer:
    def __init__(self, rt: Any, token: str, max_body: int = 1 << 31) -> None:
        self.rt = rt
        self.expected = token.encode()
        self.max_body = max_body
        self.shm_tag = f"q{rt.id[:6]}-"
        self.port = 0
        self._server: asyncio.AbstractServer | None = None

    async def start(self, host: str) -> int:
        from .server import bind_socket

        sock = bind_socket(host, 0)
        self._server = await asyncio.get_running_loop().create_server(lambda: _DataConn(self), sock=sock)
        self.port = sock.getsockname()[1]
        return self.port

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        shm.cleanup(self.shm_tag)


def parse_records(buf: bytes | bytearray | memoryview) -> list[tuple[int, memoryview]]:
    view = memoryview(buf)
    out, pos = [], 0
    head = wire._REC
    while pos < view.nbytes:
        kind, n = head.unpack_from(view, pos)
        pos += head.size
        out.append((kind, view[pos : pos + n]))
        pos += n
    return out


class DataClient:
    """Blocking client with a small pool of connections (thread-safe)."""

    def __init__(self, host: str, port: int, token: str) -> None:
        self.addr = (host, port)
        self.token = token
        self._idle: queue.SimpleQueue[socket.socket] = queue.SimpleQueue()

    def _conn(self) -> socket.socket:
        try:
            return self._idle.get_nowait()
        except queue.Empty:
            s = socket.create_connection(self.addr, timeout=10)
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            return s

    def call(self, endpoint: str, method: str | None, chunks: list[Any], timeout: float | None) -> tuple[int, bytearray]:
        s = self._conn()
        try:
            s.settimeout(timeout)
            header = {"token": self.token, "endpoint": endpoint, "method": method}
            _send_all(s, [encode_header(header, wire.frame_length(chunks)), *chunks])
            hlen, blen = PREFIX.unpack(_recv_exact(s, PREFIX.size))
            status = json.loads(_recv_exact(s, hlen)).get("status", 500)
            body = _recv_exact(s, blen)
        except BaseException:
            s.close()
            raise
        self._idle.put(s)
        return status, body

    def close(self) -> None:
        while True:
            try:
                self._idle.get_nowait().close()
            except queue.Empty:
                return


def _recv_exact(s: socket.socket, n: int) -> bytearray:
    buf = bytearray(n)
    view = memoryview(buf)
    got = 0
    while got < n:
        k = s.recv_into(view[got:], n - got)
        if k == 0:
            raise ConnectionError("the runtime closed the data channel")
        got += k
    return buf
