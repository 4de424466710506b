"""Debugging endpoint calls from this machine: start a call under the debugger on the runtime,
and relay any DAP client (VS Code, a test, nvim-dap) to it through the runtime's authenticated
WebSocket (/v1/debug/{session}, docs/debugging.md).

The relay listens on 127.0.0.1 of this machine only. A client's `attach` (or `launch`) request
is completed on the way: pathMappings from the project root here to the worker's copy of it
(the session's remoteRoot), so breakpoints set in local files stop the remote worker.
"""

from __future__ import annotations

import json
import socket
import threading
from pathlib import Path
from typing import Any

from ..protocol.errors import SlipstreamError
from ..protocol.messages import call_params
from .client import RuntimeClient, _timeout

__all__ = [
    "start",
    "sessions",
    "result",
    "end",
    "Relay",
    "BreakpointWatcher",
    "attach_config",
    "ws_url",
    "DEFAULT_PORT",
]


def _path(endpoint: str, project: str | None) -> str:
    return (
        f"/v1/projects/{project}/endpoints/{endpoint}/debug"
        if project
        else f"/v1/endpoints/{endpoint}/debug"
    )


def start(
    client: RuntimeClient,
    endpoint: str,
    kwargs: dict[str, Any] | None = None,
    method: str | None = None,
    args: list[Any] | None = None,
    project: str | None = None,
    tag: str | None = None,
    timeout: float | None = 600.0,
) -> dict[str, Any]:
    """Run one call of `endpoint` under the debugger (JSON arguments, as call_json takes them).
    Returns once a worker with the endpoint loaded waits for a debugger: {"session", "call",
    "remoteRoot", "attach", "worker", ...}. Raises SlipstreamError when the call failed first
    (bad arguments, a failing setup)."""
    params = call_params(method, tag=tag)
    r = client._request(
        "POST",
        _path(endpoint, project or client.project),
        params=params,
        json={"args": args or [], "kwargs": kwargs or {}},
        timeout=_timeout(timeout),
    )
    body = _body(r)
    if r.status_code >= 400 or "session" not in body:
        err = body.get("error") or {}
        raise SlipstreamError(
            f"could not debug {endpoint}{'.' + method if method else ''}: "
            f"{err.get('type', r.status_code)}: {err.get('message', r.text[:300])}"
        )
    return body


def sessions(
    client: RuntimeClient, after: int = -1, wait: float = 0.0
) -> tuple[int, list[dict[str, Any]]]:
    """The runtime's debug sessions; with wait, returns when they change after version `after`."""
    r = client._request(
        "GET",
        "/v1/debug",
        params={"after": str(after), "wait": str(wait)},
        timeout=_timeout(wait + 30),
    )
    body = _body(r)
    if r.status_code >= 400:
        raise SlipstreamError(f"GET /v1/debug failed ({r.status_code}): {r.text[:300]}")
    return int(body.get("version", 0)), list(body.get("sessions") or [])


def result(client: RuntimeClient, call: str, wait: float = 60.0) -> dict[str, Any]:
    """The debugged call's outcome (GET /v1/calls/{call}): the call route's JSON reply with a
    "status"; "running" while it has not finished within `wait` seconds."""
    r = client._request(
        "GET", f"/v1/calls/{call}", params={"wait": str(wait)}, timeout=_timeout(wait + 30)
    )
    return _body(r)


def end(client: RuntimeClient, session: str) -> dict[str, Any]:
    return _body(client._request("DELETE", f"/v1/debug/{session}"))


def _body(r: Any) -> dict[str, Any]:
    try:
        body = r.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def ws_url(client: RuntimeClient, session: str) -> str:
    base = client.url
    scheme = "wss" if base.startswith("https:") else "ws"
    return f"{scheme}:{base.split(':', 1)[1]}/v1/debug/{session}"


def attach_config(local_root: str | None, remote_root: str) -> dict[str, Any]:
    """What the relay adds to a client's attach request (unless the client set it itself)."""
    cfg: dict[str, Any] = {"justMyCode": True}
    if local_root and remote_root:
        cfg["pathMappings"] = [
            {"localRoot": str(Path(local_root).resolve()), "remoteRoot": remote_root}
        ]
    return cfg


def complete_request(
    msg: dict[str, Any], local_root: str | None, remote_root: str
) -> dict[str, Any]:
    """A client's attach/launch request, made the attach the worker's debugger expects."""
    if msg.get("type") == "request" and msg.get("command") in ("attach", "launch"):
        msg["command"] = "attach"
        args = msg.setdefault("arguments", {})
        for k, v in attach_config(local_root, remote_root).items():
            args.setdefault(k, v)
        for k in ("connect", "listen", "processId", "program", "module"):
            args.pop(k, None)
    return msg


class Relay:
    """A local TCP port (127.0.0.1) for DAP clients, each connection relayed to one debug
    session through the runtime's WebSocket. `once=True` (default): after the first client's
    connection ends, the relay closes."""

    def __init__(
        self,
        client: RuntimeClient,
        session: dict[str, Any],
        local_root: str | None = None,
        port: int = 0,
        once: bool = True,
    ) -> None:
        self.client, self.session, self.local_root, self.once = client, session, local_root, once
        self.server = socket.create_server(("127.0.0.1", port))
        self.port: int = self.server.getsockname()[1]
        self.closed = threading.Event()
        self.active = False  # a client is (or was) connected
        self._conns: list[Any] = []
        self._thread = threading.Thread(
            target=self._accept, name=f"dap-relay-{self.port}", daemon=True
        )

    def start(self) -> Relay:
        self._thread.start()
        return self

    def close(self) -> None:
        if self.closed.is_set():
            return
        self.closed.set()
        try:
            self.server.close()
        except OSError:
            pass
        for c in list(self._conns):
            try:
                c.close()
            except Exception:  # noqa: BLE001
                pass

    def _accept(self) -> None:
        while not self.closed.is_set():
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            self._conns.append(conn)
            self.active = True
            t = threading.Thread(
                target=self._serve, args=(conn,), name="dap-relay-conn", daemon=True
            )
            t.start()
            if self.once:
                try:
                    self.server.close()  # one client per session: nobody else can connect here
                except OSError:
                    pass
                t.join()
                self.close()
                return

    def _serve(self, conn: socket.socket) -> None:
        from websockets.sync.client import connect

        headers = {"Authorization": f"Bearer {self.client.token}"} if self.client.token else {}
        opts: dict[str, Any] = {
            "additional_headers": headers,
            "ssl": self.client.tls,
            "max_size": None,
            "compression": None,
            "open_timeout": 15,
        }
        try:
            try:  # never through a proxy from the environment (as the SDK's HTTP client: trust_env=False)
                ws_cm = connect(ws_url(self.client, self.session["session"]), proxy=None, **opts)
            except TypeError:  # websockets < 15 has no proxy support at all
                ws_cm = connect(ws_url(self.client, self.session["session"]), **opts)
        except Exception as exc:  # noqa: BLE001 - tell the DAP client why, as an output event
            _write(
                conn,
                {
                    "seq": 0,
                    "type": "event",
                    "event": "output",
                    "body": {
                        "category": "stderr",
                        "output": f"slipstream: cannot reach the debug session: {exc}\n",
                    },
                },
            )
            _write(conn, {"seq": 0, "type": "event", "event": "terminated", "body": {}})
            conn.close()
            return
        with ws_cm as ws:
            self._conns.append(ws)
            self._relay(conn, ws)

    def _relay(self, conn: socket.socket, ws: Any) -> None:
        remote_root = self.session.get("remoteRoot", "")

        def down() -> None:  # runtime -> client
            try:
                for text in ws:
                    conn.sendall(_frame(text.encode() if isinstance(text, str) else text))
            except Exception:  # noqa: BLE001 - either side closed
                pass
            finally:
                try:
                    conn.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

        t = threading.Thread(target=down, name="dap-relay-down", daemon=True)
        t.start()
        try:
            for msg in _read_frames(conn):  # client -> runtime
                try:
                    obj = json.loads(msg)
                except ValueError:
                    continue
                ws.send(json.dumps(complete_request(obj, self.local_root, remote_root)))
        except Exception:  # noqa: BLE001 - either side closed
            pass
        finally:
            try:
                ws.close()
            except Exception:  # noqa: BLE001
                pass
            t.join(5)
            conn.close()


def _frame(body: bytes) -> bytes:
    return b"Content-Length: %d\r\n\r\n" % len(body) + body


def _write(conn: socket.socket, obj: dict[str, Any]) -> None:
    try:
        conn.sendall(_frame(json.dumps(obj).encode()))
    except OSError:
        pass


def _read_frames(conn: socket.socket) -> Any:
    """DAP messages (Content-Length framed) from a socket, until it closes."""
    buf = b""
    while True:
        while True:
            head, sep, rest = buf.partition(b"\r\n\r\n")
            if not sep:
                break
            length = 0
            for line in head.split(b"\r\n"):
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value.strip())
            if len(rest) < length:
                break
            yield rest[:length]
            buf = rest[length:]
        chunk = conn.recv(65536)
        if not chunk:
            return
        buf += chunk


DEFAULT_PORT = (
    5678  # `slipstream run --debug`'s relay, the port launch.json names (debugpy's usual one)
)


class BreakpointWatcher:
    """`slipstream run --debug`: each call stopped at breakpoint() on the runtime gets a relay on
    127.0.0.1 (`port`, or a free one while that is taken) and a message saying how to attach."""

    def __init__(
        self,
        client: RuntimeClient,
        local_root: str | None,
        port: int = DEFAULT_PORT,
        out: Any = None,
    ) -> None:
        import sys

        self.client, self.local_root, self.port = client, local_root, port
        self.out = out or sys.stderr
        self.relays: list[Relay] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="debug-watch", daemon=True)

    def start(self) -> BreakpointWatcher:
        self._thread.start()
        return self

    def stop(self, grace: float = 3.0) -> None:
        """Stop watching; a client still attached gets `grace` seconds to take the call's end
        (the "terminated" event) and disconnect before its relay closes."""
        self._stop.set()
        for r in self.relays:
            if r.active:
                r.closed.wait(grace)
            r.close()

    def _loop(self) -> None:
        version, seen = -1, set()
        while not self._stop.is_set():
            try:
                version, found = sessions(self.client, after=version, wait=10)
            except Exception:  # noqa: BLE001 - the runtime is stopping, or restarting: ask again
                if self._stop.wait(0.5):
                    return
                continue
            for s in found:
                if s.get("state") != "waiting" or s["session"] in seen or self._stop.is_set():
                    continue
                seen.add(s["session"])
                self._announce(s, self._relay(s))

    def _relay(self, s: dict[str, Any]) -> Relay:
        try:
            relay = Relay(self.client, s, self.local_root, port=self.port)
        except OSError:  # another session's relay holds it
            relay = Relay(self.client, s, self.local_root, port=0)
        self.relays.append(relay.start())
        return relay

    def _announce(self, s: dict[str, Any], relay: Relay) -> None:
        what = s.get("endpoint", "") + (f".{s['method']}" if s.get("method") else "")
        where = f" at {s['where']}" if s.get("where") else ""
        cfg = json.dumps(
            {
                "type": "slipstream",
                "request": "attach",
                "name": "Slipstream: attach to run --debug",
                "port": relay.port,
            }
        )
        print(
            f"slipstream: breakpoint(){where} in {what} waits for a debugger (session {s['session']})\n"
            f"  VS Code: start the launch configuration {cfg}\n"
            f'    (launch.json snippet "Slipstream: attach to slipstream run --debug")\n'
            f"  any DAP client: attach to 127.0.0.1:{relay.port} (path mappings are filled in)",
            file=self.out,
            flush=True,
        )
