"""The server side of the SDK's binary call channel (the client side is sdk/datachannel.py): framed messages over a plain TCP connection.

HTTP stays the API for curl, browsers and editors; the SDK sends its calls here because a
request is one framed write and large bodies land straight in shared memory on the runtime,
without HTTP parsing or extra copies.

    request:  u32 len(header) | u64 len(body) | {"token", "endpoint", "method", "project"} | wire frame
    response: u32 len(header) | u64 len(body) | {"status"}                     | records

With `slipstream serve --tls-cert/--tls-key` the channel is TLS with the same certificate; a
client that reaches the runtime over https:// uses it only then (never the token in clear).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import hmac
import json
import os
import select
import socket
import ssl
import threading
from typing import Any

from ..protocol import shm, wire
from ..protocol.ipc import PREFIX, encode_header, recv_exact, recv_into, send_chunks
from ..protocol.kinds import ErrorKind
from ..protocol.messages import CallHeader, ReplyHeader
from .credentials import refusal, token_project
from .idle import counted
from .pools import Call, PoolError

__all__ = ["DataServer"]

IDLE_TIMEOUT = 120.0  # seconds a connection may sit without a request
MAX_CONNECTIONS = 1024
HANDSHAKE_TIMEOUT = 10.0


def _peek(conn: socket.socket) -> bytes:
    """One byte of what the peer sent, left unread (on a TLS socket: of the raw stream)."""
    return socket.socket.recv(conn, 1, socket.MSG_PEEK | socket.MSG_DONTWAIT)


class DataServer:
    """Accepts SDK connections; each is served by a thread with a blocking socket, so large
    bodies go straight from the socket into shared memory and back out with no copies in
    between, while the call itself runs on the runtime's event loop."""

    def __init__(
        self, rt: Any, token: str, max_body: int = 1 << 31, tls: ssl.SSLContext | None = None
    ) -> None:
        self.rt = rt
        self.tls = tls
        self.token, self.expected = token, token.encode()
        self.max_body = max_body
        self.shm_tag = f"q{rt.id[:6]}-"
        self.port = 0
        self._sock: socket.socket | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closing = False
        self._lock = threading.Lock()
        self._open = 0

    async def start(self, host: str, port: int = 0) -> int:
        """Listen on `host`:`port` (0: a free port; serve --data-port pins it)."""
        from .sockets import bind_socket

        self._loop = asyncio.get_running_loop()
        self._sock = bind_socket(host, port)
        self.port = self._sock.getsockname()[1]
        threading.Thread(target=self._accept, name="data-accept", daemon=True).start()
        return self.port

    def _accept(self) -> None:
        assert self._sock is not None
        while not self._closing:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                if self._open >= MAX_CONNECTIONS:
                    conn.close()  # a client pool never needs this many; refuse rather than grow
                    continue
                self._open += 1
            threading.Thread(
                target=self._serve, args=(conn,), name="data-conn", daemon=True
            ).start()

    def _serve(self, conn: socket.socket) -> None:
        wake = _Wake()
        try:
            if self.tls is not None:
                conn.settimeout(HANDSHAKE_TIMEOUT)
                try:
                    conn = self.tls.wrap_socket(conn, server_side=True)
                except (ssl.SSLError, OSError):
                    return  # not TLS, a client that does not trust us, or gone
            while not self._closing:
                conn.settimeout(
                    IDLE_TIMEOUT
                )  # an idle or silent connection is closed; clients reconnect
                try:
                    prefix = recv_exact(conn, PREFIX.size)
                except (ConnectionError, TimeoutError):
                    return
                conn.settimeout(None)
                hlen, blen = PREFIX.unpack(prefix)
                if hlen > 1 << 20 or blen > self.max_body:
                    what = f"header of {hlen} bytes" if hlen > 1 << 20 else f"body of {blen} bytes"
                    self._reply(
                        conn,
                        413,
                        _error_record(
                            "PayloadTooLarge", f"message too large ({what})", ErrorKind.BAD_REQUEST
                        ),
                    )
                    return
                try:
                    header: CallHeader = json.loads(recv_exact(conn, hlen))
                except (ValueError, RecursionError):  # RecursionError: nested too deep to parse
                    self._reply(
                        conn,
                        400,
                        _error_record(
                            "BadRequest", "message header is not JSON", ErrorKind.BAD_REQUEST
                        ),
                    )
                    return
                got = str(header.get("token", "")) if isinstance(header, dict) else ""
                narrowed = (
                    None
                    if hmac.compare_digest(got.encode(), self.expected)
                    else token_project(self.token, got)
                )
                if narrowed is not None and header.get("project") != narrowed:
                    self._reply(
                        conn,
                        ErrorKind.UNAUTHORIZED.http_status,
                        _error_record("Unauthorized", refusal(narrowed), ErrorKind.UNAUTHORIZED),
                    )
                    return
                if narrowed is None and not hmac.compare_digest(got.encode(), self.expected):
                    self._reply(
                        conn,
                        ErrorKind.UNAUTHORIZED.http_status,
                        _error_record(
                            "Unauthorized", "wrong or missing token", ErrorKind.UNAUTHORIZED
                        ),
                    )
                    return
                buf = (
                    shm.SharedBuffer(blen, self.shm_tag)
                    if blen >= shm.THRESHOLD and shm.available()
                    else None
                )
                try:
                    body: Any = buf.view if buf is not None else bytearray(blen)
                    recv_into(conn, memoryview(body))
                    assert self._loop is not None
                    fut = asyncio.run_coroutine_threadsafe(
                        counted(
                            self.rt, self._call(header, body, buf.ref() if buf else None, conn)
                        ),
                        self._loop,
                    )
                    if not _until_done_or_gone(conn, fut, wake):
                        return  # the client went away (closed, killed, timed out): its call was cancelled
                    status, chunks = fut.result()
                    self._reply(conn, status, chunks)
                finally:
                    if buf is not None:
                        buf.unlink()
                        buf.release()
        except OSError:
            return
        finally:
            wake.close()
            conn.close()
            with self._lock:
                self._open -= 1

    async def _call(
        self, header: CallHeader, body: Any, shm_ref: dict | None, conn: socket.socket | None = None
    ) -> tuple[int, list[Any]]:
        from .replies import error_records, sdk_records
        from .service import AmbiguousEndpoint

        try:
            pool = self.rt.pool(str(header.get("endpoint", "")), header.get("project") or None)
        except AmbiguousEndpoint as exc:
            return 409, _error_record("AmbiguousEndpoint", str(exc), ErrorKind.BAD_REQUEST)
        except KeyError as exc:
            return ErrorKind.UNKNOWN_ENDPOINT.http_status, _error_record(
                "UnknownEndpoint", exc.args[0], ErrorKind.UNKNOWN_ENDPOINT
            )
        except ValueError as exc:  # a malformed project key
            return 400, _error_record("BadProject", str(exc), ErrorKind.BAD_REQUEST)
        c = Call(method=header.get("method") or None, fmt="pickle", body=body)
        c.shm_ref = shm_ref
        if conn is not None:
            c.gone = lambda: _peer_closed(conn)
        try:
            await pool.call(c)
        except PoolError as exc:
            return 200, error_records(c, exc.info)
        status, payload = c.future.result()
        return 200, sdk_records(pool, c, status, payload)

    @staticmethod
    def _reply(conn: socket.socket, status: int, chunks: list[Any]) -> None:
        size = sum(memoryview(c).nbytes for c in chunks)
        reply: ReplyHeader = {"status": status}
        send_chunks(conn, [encode_header(reply, size), *chunks])

    async def close(self) -> None:
        self._closing = True
        if self._sock is not None:
            self._sock.close()
        shm.cleanup(self.shm_tag)


class _Wake:
    """A pipe a connection's thread sleeps on (with its socket) until its call is done."""

    def __init__(self) -> None:
        self.r, self.w = os.pipe()
        self._lock = threading.Lock()
        self._closed = False

    def ring(self, _: object = None) -> None:
        with self._lock:  # never write to a closed (and maybe reused) descriptor
            if not self._closed:
                os.write(self.w, b"\0")

    def drain(self) -> None:
        os.read(self.r, 64)

    def close(self) -> None:
        with self._lock:
            if not self._closed:
                self._closed = True
                os.close(self.r)
                os.close(self.w)


_GONE = select.POLLIN | select.POLLHUP | select.POLLERR | getattr(select, "POLLRDHUP", 0)


def _peer_closed(conn: socket.socket) -> bool:
    """Whether the client closed this connection (a non-blocking peek; nothing is read)."""
    try:
        return _peek(conn) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True


def _until_done_or_gone(
    conn: socket.socket, fut: concurrent.futures.Future[Any], wake: _Wake
) -> bool:
    """Wait for the call while watching the connection: True when the call is done; False when
    the client closed the connection first, after cancelling the call (Pool.call then drops it
    from the queue or interrupts its worker)."""
    fut.add_done_callback(wake.ring)
    poller = select.poll()
    poller.register(wake.r, select.POLLIN)
    poller.register(conn.fileno(), _GONE)
    while True:
        for fd, _ in poller.poll():
            if fd == wake.r:
                wake.drain()
                return True
            try:
                peeked = _peek(conn)
            except BlockingIOError:
                continue
            except OSError:
                peeked = b""
            if peeked:  # the client sent more while waiting (not the SDK's way): just wait
                poller.unregister(conn.fileno())
                continue
            fut.cancel()
            return False


def _error_record(type_: str, message: str, kind: ErrorKind) -> list[bytes]:
    return [wire.json_record(wire.REC_ERROR, {"type": type_, "message": message, "kind": kind})]
