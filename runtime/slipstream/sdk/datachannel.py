"""The client side of the SDK's binary call channel (the server side is server/datachannel.py): framed messages over a plain TCP connection.

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
import json
import queue
import socket
import ssl
from typing import Any

from ..protocol import wire
from ..protocol.ipc import PREFIX, encode_header, recv_exact, send_chunks
from ..protocol.messages import ReplyHeader, call_header
from ..protocol.wire import parse_records

__all__ = ["DataClient", "AsyncDataClient", "parse_records", "CONNECT_TIMEOUT", "HANDSHAKE_TIMEOUT"]

CONNECT_TIMEOUT = 2.0  # a data port behind a proxy or firewall is given up on this fast (then HTTP)
HANDSHAKE_TIMEOUT = 10.0


class DataClient:
    """Blocking client with a small pool of connections (thread-safe)."""

    def __init__(self, host: str, port: int, token: str, tls: ssl.SSLContext | None = None) -> None:
        self.addr = (host, port)
        self.token = token
        self.tls = tls
        self._idle: queue.SimpleQueue[socket.socket] = queue.SimpleQueue()
        self._busy: dict[
            socket.socket, None
        ] = {}  # connections with a call in flight, oldest first
        self._aborts = 0  # bumped by abort(): a call it ended is never sent again

    def probe(self) -> bool:
        """Whether the channel can be reached (connected, and with TLS the certificate verified);
        the connection is kept for the first call."""
        try:
            self._idle.put(self._fresh())
        except (OSError, ssl.SSLError):
            return False
        return True

    def call(
        self,
        endpoint: str,
        method: str | None,
        chunks: list[Any],
        timeout: float | None,
        project: str | None = None,
    ) -> tuple[int, bytearray]:
        try:
            pooled = self._idle.get_nowait()
        except queue.Empty:
            return self._call(self._fresh(), endpoint, method, chunks, timeout, project)
        aborts = self._aborts
        try:
            return self._call(pooled, endpoint, method, chunks, timeout, project)
        except (ConnectionError, BrokenPipeError):
            if self._aborts != aborts:
                raise  # abort() closed it (Ctrl-C): the call is cancelled, not sent again
            # the runtime closed this pooled connection while it sat idle: once more, fresh
            return self._call(self._fresh(), endpoint, method, chunks, timeout, project)

    def _fresh(self) -> socket.socket:
        s = socket.create_connection(self.addr, timeout=CONNECT_TIMEOUT)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self.tls is not None:
            try:
                s.settimeout(HANDSHAKE_TIMEOUT)
                s = self.tls.wrap_socket(s, server_hostname=self.addr[0])
            except BaseException:
                s.close()
                raise
        return s

    def _call(
        self,
        s: socket.socket,
        endpoint: str,
        method: str | None,
        chunks: list[Any],
        timeout: float | None,
        project: str | None = None,
    ) -> tuple[int, bytearray]:
        self._busy[s] = None
        try:
            s.settimeout(timeout)
            header = call_header(self.token, endpoint, method, project)
            send_chunks(s, [encode_header(header, wire.frame_length(chunks)), *chunks])
            hlen, blen = PREFIX.unpack(recv_exact(s, PREFIX.size))
            reply: ReplyHeader = json.loads(recv_exact(s, hlen))
            status = reply.get("status", 500)
            body = recv_exact(s, blen)
        except BaseException:
            s.close()  # Ctrl-C, a timeout, an error: the runtime sees the close and cancels the call
            raise
        finally:
            self._busy.pop(s, None)
        self._idle.put(s)
        return status, body

    def abort(self) -> None:
        """End every call in flight on this client (their threads get an error at once; the
        runtime sees the connections close and cancels the calls)."""
        self._aborts += 1
        # newest first: a call sent later is likelier to be queued behind an earlier one, and the
        # runtime must hear of it before the earlier one's cancel frees a worker for it
        for s in reversed(list(self._busy)):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def close(self) -> None:
        while True:
            try:
                self._idle.get_nowait().close()
            except queue.Empty:
                return


class AsyncDataClient:
    """The same channel for `await f.aio(...)`: asyncio streams, a pool of connections per loop."""

    def __init__(self, host: str, port: int, token: str, tls: ssl.SSLContext | None = None) -> None:
        self.addr = (host, port)
        self.token = token
        self.tls = tls
        self.loop = asyncio.get_running_loop()
        self._idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []

    async def _fresh(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        tls: dict[str, Any] = (
            {"ssl": self.tls, "server_hostname": self.addr[0]} if self.tls is not None else {}
        )
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(*self.addr, limit=1 << 20, **tls),
            CONNECT_TIMEOUT + HANDSHAKE_TIMEOUT,
        )
        return reader, writer

    async def call(
        self,
        endpoint: str,
        method: str | None,
        chunks: list[Any],
        timeout: float | None,
        project: str | None = None,
    ) -> tuple[int, bytearray]:
        if self._idle:
            pooled = self._idle.pop()
            try:
                return await self._call(pooled, endpoint, method, chunks, timeout, project)
            except (ConnectionError, asyncio.IncompleteReadError):
                pass  # closed by the runtime while idle: once more on a fresh connection
        return await self._call(await self._fresh(), endpoint, method, chunks, timeout, project)

    async def _call(
        self,
        conn: tuple[asyncio.StreamReader, asyncio.StreamWriter],
        endpoint: str,
        method: str | None,
        chunks: list[Any],
        timeout: float | None,
        project: str | None = None,
    ) -> tuple[int, bytearray]:
        reader, writer = conn
        header = call_header(self.token, endpoint, method, project)
        try:
            writer.write(encode_header(header, wire.frame_length(chunks)))
            for c in chunks:
                writer.write(c)
            await writer.drain()
            hlen, blen = PREFIX.unpack(
                await asyncio.wait_for(reader.readexactly(PREFIX.size), timeout)
            )
            reply: ReplyHeader = json.loads(await reader.readexactly(hlen))
            status = reply.get("status", 500)
            body = bytearray(await reader.readexactly(blen)) if blen else bytearray()
        except BaseException:
            writer.close()
            raise
        self._idle.append(conn)
        return status, body

    async def close(self) -> None:
        while self._idle:
            self._idle.pop()[1].close()
