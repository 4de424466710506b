"""Helpers for the reliability tests: deploy a project to a real runtime and poke at it raw."""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from slipstream.protocol import wire
from tests.conftest import RunningRuntime, write_project

# Every request in these tests is bounded: a hang fails the test instead of stalling CI.
HANG_BOUND_S = 60.0

ECHO_APP = '''
import os
from slipstream import endpoint

@endpoint
def echo(x=None):
    return x

@endpoint
class Box:
    def setup(self):
        self.n = 0

    def bump(self, k=1):
        self.n += k
        return self.n

    def _private(self):
        return "hidden"

@endpoint
def tree():
    """Every file of the generation the worker runs, relative to it."""
    here = os.path.dirname(os.path.abspath(__file__))
    out = []
    for d, _, names in os.walk(here):
        out += [os.path.relpath(os.path.join(d, n), here) for n in names]
    return sorted(p for p in out if "__pycache__" not in p)
'''


def auth(rt: RunningRuntime, token: str | None = None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token or rt.token}"}


def wait_for(cond: Any, what: str, bound: float = HANG_BOUND_S) -> Any:
    """Poll `cond` until it returns something true (returned); fail after `bound` seconds."""
    deadline = time.monotonic() + bound
    while time.monotonic() < deadline:
        got = cond()
        if got:
            return got
        time.sleep(0.02)
    raise AssertionError(f"timed out after {bound:g}s waiting for {what}")


def endpoint_info(rt: RunningRuntime, name: str) -> dict[str, Any]:
    """GET /v1/endpoints/{name}: the pool and its stats."""
    return httpx.get(f"{rt.url}/v1/endpoints/{name}", headers=auth(rt), timeout=HANG_BOUND_S).json()


def log_lines(rt: RunningRuntime, endpoint: str, backlog: int = 2000) -> list[str]:
    """The runtime's recent log lines for one endpoint (the SSE backlog, up to its first keep-alive)."""
    out = []
    with httpx.stream(
        "GET",
        f"{rt.url}/v1/logs",
        params={"endpoint": endpoint, "backlog": backlog, "keepalive": 0.2},
        headers=auth(rt),
        timeout=HANG_BOUND_S,
    ) as r:
        for line in r.iter_lines():
            if line.startswith(":"):
                return out
            if line.startswith("data: "):
                out.append(json.loads(line[6:])["text"])
    return out


_roots: dict[str, Path] = {}


def deploy(rt: RunningRuntime, files: dict[str, str], root: Path | None = None) -> Any:
    """Sync a project holding just `files` (plus slipstream.toml) to rt; the SyncResult.
    Without a root it is the runtime's one test project, so each deploy replaces the last
    (as a save does); a root of its own makes another project beside it."""
    if root is None:
        root = _roots.setdefault(rt.url, Path(tempfile.mkdtemp(prefix="slipstream-rel-")) / "proj")
        shutil.rmtree(root, ignore_errors=True)
    write_project(root, files)
    client = rt.client()
    try:
        return client.sync(root)
    finally:
        client.close()


def generation(rt: RunningRuntime) -> str | None:
    return httpx.get(f"{rt.url}/health", timeout=HANG_BOUND_S).json()["generation"]


def call_json(
    rt: RunningRuntime, name: str, body: Any = None, project: str | None = None, **params: str
) -> httpx.Response:
    """POST a JSON call; with a project key, to that project's endpoint (the qualified route)."""
    return httpx.post(
        f"{rt.url}/v1/projects/{project}/endpoints/{name}/call"
        if project
        else f"{rt.url}/v1/endpoints/{name}/call",
        json=body if body is not None else {},
        params=params or None,
        headers=auth(rt),
        timeout=HANG_BOUND_S,
    )


def assert_still_serving(rt: RunningRuntime, gen: str | None, project: str | None = None) -> None:
    """The generation that served before a refusal still serves, unchanged."""
    assert generation(rt) == gen, "a refused request must not change the serving generation"
    r = call_json(rt, "echo", {"args": ["still here"]}, project)
    assert r.status_code == 200, r.text
    assert r.json()["result"] == "still here" and r.json()["generation"] == gen


def error_message(r: httpx.Response) -> str:
    """The human-readable message of an error response (JSON or SDK records)."""
    return message_of(r.headers.get("content-type", ""), r.content)


def message_of(content_type: str, content: bytes) -> str:
    if content_type.split(";")[0] == wire.CONTENT_TYPE:
        for kind, payload in wire.RecordReader().feed(content):
            if kind == wire.REC_ERROR:
                return json.loads(payload)["message"]
        return ""
    try:
        body = json.loads(content)
    except ValueError:
        return ""
    err = body.get("error") or body.get("detail") if isinstance(body, dict) else None
    if isinstance(err, dict):
        return str(err.get("message", ""))
    return str(err or "")


def data_channel(rt: RunningRuntime) -> tuple[str, int]:
    """Host and port of the SDK's binary call channel (datachannel.py), from /health."""
    port = httpx.get(f"{rt.url}/health", timeout=HANG_BOUND_S).json().get("data_port")
    assert port, "the runtime offers its binary call channel"
    return httpx.URL(rt.url).host, int(port)


def data_call(
    rt: RunningRuntime,
    header: Any,
    body: bytes = b"",
    raw_header: bytes | None = None,
    claim: tuple[int, int] | None = None,
) -> tuple[int | None, list[tuple[int, Any]]]:
    """One raw request on the binary channel: (status or None if it just closed, records)."""
    import socket

    from slipstream.protocol.ipc import PREFIX
    from slipstream.protocol.wire import parse_records

    raw = raw_header if raw_header is not None else json.dumps(header).encode()
    with socket.create_connection(data_channel(rt), timeout=HANG_BOUND_S) as s:
        # claim: the (header, body) lengths to announce, whatever is actually sent
        s.sendall(PREFIX.pack(*(claim or (len(raw), len(body)))) + raw + body)
        got = bytearray()
        while True:
            chunk = s.recv(1 << 16)
            if not chunk:
                break
            got += chunk
            if len(got) >= PREFIX.size:
                hlen, blen = PREFIX.unpack_from(got)
                if len(got) >= PREFIX.size + hlen + blen:
                    break
    if len(got) < PREFIX.size:
        return None, []
    hlen, blen = PREFIX.unpack_from(got)
    status = json.loads(bytes(got[PREFIX.size : PREFIX.size + hlen]))["status"]
    return status, parse_records(bytes(got[PREFIX.size + hlen :]))


def record_error(records: list[tuple[int, Any]]) -> dict[str, Any]:
    for kind, payload in records:
        if kind == wire.REC_ERROR:
            return json.loads(bytes(payload))
    return {}


def count_uploads(monkeypatch: Any) -> list[int]:
    """The bytes of each blob the SDK sends (uploads and blobs inlined in a commit)."""
    from slipstream.sdk.client import RuntimeClient

    sent: list[int] = []
    put_blobs, put_blob, commit = (
        RuntimeClient.put_blobs,
        RuntimeClient.put_blob,
        RuntimeClient.commit,
    )

    def counted_put_blobs(self, items):
        sent.extend(len(d) for _, d in items)
        return put_blobs(self, items)

    def counted_put_blob(self, sha, data):
        sent.append(len(data))
        return put_blob(self, sha, data)

    def counted_commit(self, *a, **kw):
        sent.extend(len(d) for d in (kw.get("blobs") or {}).values())
        return commit(self, *a, **kw)

    monkeypatch.setattr(RuntimeClient, "put_blobs", counted_put_blobs)
    monkeypatch.setattr(RuntimeClient, "put_blob", counted_put_blob)
    monkeypatch.setattr(RuntimeClient, "commit", counted_commit)
    return sent
