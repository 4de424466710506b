"""A small synchronous Debug Adapter Protocol client for tests: over the runtime's WebSocket
(one JSON message per WebSocket message) or a TCP port (Content-Length framing, what editors
speak to the SDK's relay)."""

from __future__ import annotations

import json
import queue
import socket
import threading
import time
from typing import Any

from slipstream.sdk.debug import _frame, _read_frames

TIMEOUT_S = 30.0


class DapClient:
    def __init__(self, send: Any, messages: Any, close: Any) -> None:
        self._send, self._close = send, close
        self.seq = 0
        self.inbox: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self.seen: list[dict[str, Any]] = []
        self.closed = threading.Event()

        def read() -> None:
            try:
                for raw in messages():
                    self.inbox.put(json.loads(raw))
            except Exception:  # noqa: BLE001 - the connection closed
                pass
            finally:
                self.closed.set()
                self.inbox.put(None)

        threading.Thread(target=read, daemon=True).start()

    @classmethod
    def websocket(cls, url: str, token: str | None) -> DapClient:
        from websockets.sync.client import connect

        headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
        cm = connect(url, additional_headers=headers, proxy=None, open_timeout=TIMEOUT_S)
        ws = cm.__enter__()
        return cls(ws.send, lambda: iter(ws), lambda: cm.__exit__(None, None, None))

    @classmethod
    def tcp(cls, port: int) -> DapClient:
        sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT_S)
        sock.settimeout(None)

        def close() -> None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()

        return cls(
            lambda text: sock.sendall(_frame(text.encode())), lambda: _read_frames(sock), close
        )

    def send(self, command: str, **arguments: Any) -> int:
        self.seq += 1
        self._send(
            json.dumps(
                {"seq": self.seq, "type": "request", "command": command, "arguments": arguments}
            )
        )
        return self.seq

    def _next(self, pred: Any, what: str, timeout: float) -> dict[str, Any]:
        for m in self.seen:
            if pred(m):
                self.seen.remove(m)
                return m
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(
                    f"no {what} within {timeout:g}s; saw {[m.get('event') or m.get('command') for m in self.seen]}"
                )
            try:
                m = self.inbox.get(timeout=left)
            except queue.Empty:
                continue
            if m is None:
                self.inbox.put(None)
                raise ConnectionError(f"the debug connection closed while waiting for {what}")
            if pred(m):
                return m
            self.seen.append(m)

    def request(self, command: str, timeout: float = TIMEOUT_S, **arguments: Any) -> dict[str, Any]:
        seq = self.send(command, **arguments)
        reply = self._next(
            lambda m: m.get("type") == "response" and m.get("request_seq") == seq,
            f"reply to {command}",
            timeout,
        )
        assert reply.get("success"), f"{command} failed: {reply}"
        return reply.get("body") or {}

    def event(self, name: str, timeout: float = TIMEOUT_S) -> dict[str, Any]:
        return (
            self._next(
                lambda m: m.get("type") == "event" and m.get("event") == name,
                f"{name!r} event",
                timeout,
            ).get("body")
            or {}
        )

    def start(
        self, breakpoints: dict[str, list[int]] | None = None, uncaught: bool = True, **attach: Any
    ) -> None:
        """initialize, attach, breakpoints, configurationDone: what editors do."""
        self.request(
            "initialize",
            adapterID="slipstream",
            clientID="tests",
            pathFormat="path",
            linesStartAt1=True,
            columnsStartAt1=True,
        )
        self.send("attach", **attach)
        for path, lines in (breakpoints or {}).items():
            got = self.request(
                "setBreakpoints", source={"path": path}, breakpoints=[{"line": n} for n in lines]
            )
            assert all(b.get("verified") for b in got["breakpoints"]), got
        self.request("setExceptionBreakpoints", filters=["uncaught"] if uncaught else [])
        self.request("configurationDone")

    def top_frame(self, thread: int) -> dict[str, Any]:
        return self.request("stackTrace", threadId=thread)["stackFrames"][0]

    def locals(self, frame_id: int) -> dict[str, str]:
        scopes = self.request("scopes", frameId=frame_id)["scopes"]
        ref = scopes[0]["variablesReference"]
        return {
            v["name"]: v["value"]
            for v in self.request("variables", variablesReference=ref)["variables"]
        }

    def close(self) -> None:
        self._close()
