"""Messages between the runtime server and its worker processes.

One message: u32 len(header) | u64 len(body) | header (JSON) | body (bytes, often a wire frame).
The worker side is blocking (threads); the server side is an asyncio BufferedProtocol that
receives large bodies straight into one preallocated buffer.
"""

from __future__ import annotations

import asyncio
import json
import socket
import ssl
import struct
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

__all__ = ["Channel", "ServerSide", "encode_header", "recv_exact", "recv_into", "PREFIX"]

PREFIX = struct.Struct("<IQ")
MAX_HEADER = 16 * 1024 * 1024


def encode_header(header: Mapping[str, Any], body_len: int) -> bytes:
    raw = json.dumps(header, separators=(",", ":")).encode()
    return PREFIX.pack(len(raw), body_len) + raw


def send_all(sock: socket.socket, chunks: Sequence[bytes | memoryview]) -> None:
    views = [memoryview(c).cast("B") for c in chunks if memoryview(c).nbytes]
    while views:
        sent = sock.sendmsg(views[:512])
        while sent:
            n = views[0].nbytes
            if sent >= n:
                sent -= n
                views.pop(0)
            else:
                views[0] = views[0][sent:]
                sent = 0


def recv_into(sock: socket.socket, view: memoryview) -> None:
    """Fill view from a blocking socket; ConnectionError if the peer closes first."""
    got, n = 0, view.nbytes
    while got < n:
        k = sock.recv_into(view[got:], n - got)
        if k == 0:
            raise ConnectionError("the other end closed the connection")
        got += k


def recv_exact(sock: socket.socket, n: int) -> bytearray:
    buf = bytearray(n)
    recv_into(sock, memoryview(buf))
    return buf


class Channel:
    """The worker's end: blocking reads on one thread, sends from any thread."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._send_lock = threading.Lock()

    def send(self, header: dict[str, Any], body: Sequence[bytes | memoryview] = ()) -> None:
        body_len = sum(memoryview(c).nbytes for c in body)
        with self._send_lock:
            send_all(self.sock, [encode_header(header, body_len), *body])

    def recv(self) -> tuple[dict[str, Any], bytearray]:
        hlen, blen = PREFIX.unpack(recv_exact(self.sock, PREFIX.size))
        if hlen > MAX_HEADER:
            raise ValueError("oversized message header")
        header = json.loads(recv_exact(self.sock, hlen))
        body = recv_exact(self.sock, blen) if blen else bytearray()
        return header, body


class ServerSide(asyncio.BufferedProtocol):
    """The server's end of one worker channel."""

    def __init__(
        self,
        on_message: Callable[[dict[str, Any], bytearray], None],
        on_lost: Callable[[Exception | None], None],
    ) -> None:
        self.on_message = on_message
        self.on_lost = on_lost
        self.transport: asyncio.Transport | None = None
        self._prefix = bytearray(PREFIX.size)
        self._buf = self._prefix
        self._got = 0
        self._stage = 0  # 0 prefix, 1 header, 2 body
        self._header: dict[str, Any] = {}
        self._blen = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def get_buffer(self, sizehint: int) -> memoryview:
        return memoryview(self._buf)[self._got :]  # type: ignore[arg-type]

    def buffer_updated(self, nbytes: int) -> None:
        self._got += nbytes
        if self._got < len(self._buf):
            return
        if self._stage == 0:
            hlen, self._blen = PREFIX.unpack(self._prefix)
            if hlen > MAX_HEADER or self._blen > self.max_body:
                self.refuse(f"message too large (header {hlen}, body {self._blen} bytes)")
                return
            self._next(1, bytearray(hlen))
        elif self._stage == 1:
            try:
                self._header = json.loads(self._buf)
            except ValueError:
                self.refuse("message header is not JSON")
                return
            if self._blen:
                self._next(2, self.alloc_body(self._blen, self._header))
            else:
                self._deliver(bytearray())
        else:
            self._deliver(self._buf)

    max_body = 1 << 40

    def alloc_body(self, n: int, header: dict[str, Any]) -> Any:
        """Where a body of n bytes is received (subclasses put large ones in shared memory)."""
        return bytearray(n)

    def refuse(self, reason: str) -> None:
        if self.transport is not None:
            self.transport.close()

    def _next(self, stage: int, buf: Any) -> None:
        self._stage, self._buf, self._got = stage, buf, 0
        if not buf:  # zero-length header cannot happen; keep the machine moving anyway
            self.buffer_updated(0)

    def _deliver(self, body: Any) -> None:
        header = self._header
        self._stage, self._buf, self._got = 0, self._prefix, 0
        self.on_message(header, body)

    def send(self, header: dict[str, Any], body: Sequence[bytes | memoryview] = ()) -> None:
        assert self.transport is not None
        body_len = sum(memoryview(c).nbytes for c in body)
        self.transport.write(encode_header(header, body_len))
        for chunk in body:
            if memoryview(chunk).nbytes:
                self.transport.write(chunk)

    def connection_lost(self, exc: Exception | None) -> None:
        self.on_lost(exc)


def send_chunks(sock: socket.socket, chunks: list[Any]) -> None:
    """Write the chunks: one gathered write on a plain socket; a TLS socket has no sendmsg."""
    if not isinstance(sock, ssl.SSLSocket):
        send_all(sock, chunks)
        return
    small = [c for c in chunks if memoryview(c).nbytes < 1 << 16]
    if len(small) == len(chunks):
        sock.sendall(b"".join(bytes(c) for c in chunks))
        return
    for c in chunks:
        if memoryview(c).nbytes:
            sock.sendall(memoryview(c).cast("B"))
