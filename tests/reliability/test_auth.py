"""Auth: every route but /health wants the bearer token, and the token never leaks."""

from __future__ import annotations

import base64
import json
import os
import secrets
import socket
import subprocess
import sys

import httpx
import pytest

from slipstream.protocol import wire
from tests.conftest import start_runtime
from tests.reliability.helpers import (
    ECHO_APP,
    HANG_BOUND_S,
    auth,
    data_call,
    deploy,
    record_error,
)

BROKEN_APP = """
from slipstream import endpoint

@endpoint
def broken(:
    pass
"""

RAISES_APP = (
    ECHO_APP
    + """

@endpoint
def fails(token_guess=""):
    raise ValueError("endpoint failed on purpose")

@endpoint
def crash():
    import os
    os._exit(7)

@endpoint
def marker(text):
    print(text)
    return text
"""
)

METHODS = ["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"]
# Paths that are not in the OpenAPI document must be refused too, not 404'd past the check.
EXTRA_PATHS = [
    "/docs",
    "/redoc",
    "/docs/oauth2-redirect",
    "/v1/nope",
    "/",
    "/health/",
    "//health",
    "/health/../v1/endpoints",
    "/v1/endpoints/echo",
]


def _routes(rt) -> list[tuple[str, str]]:
    spec = httpx.get(f"{rt.url}/openapi.json", headers=auth(rt), timeout=HANG_BOUND_S).json()
    routes = []
    for path, ops in spec["paths"].items():
        concrete = path.replace("{name}", "echo").replace("{sha}", "0" * 64)
        declared = [m.upper() for m in ops]
        # the declared methods, and the undeclared ones (which must not reach a 405 unauthenticated)
        routes += [(m, concrete) for m in declared + [m for m in METHODS if m not in declared]]
    routes += [(m, p) for p in EXTRA_PATHS for m in ("GET", "POST")]
    return routes


def _bad_credentials(token: str) -> list[dict[str, str]]:
    return [
        {},
        {"Authorization": ""},
        {"Authorization": "Bearer"},
        {"Authorization": "Bearer wrong"},
        {"Authorization": f"Bearer {token[:-1]}"},
        {"Authorization": f"Bearer {token}x"},
        {"Authorization": f"Bearer  {token}"},
        {"Authorization": token},
        {"Authorization": f"Basic {base64.b64encode(token.encode()).decode()}"},
        {"X-Token": token, "Cookie": f"token={token}"},
    ]


@pytest.fixture(scope="module")
def rt():
    runtime = start_runtime("--gpu-fallback")
    deploy(runtime, {"app.py": ECHO_APP})
    yield runtime
    runtime.stop()


def test_every_route_but_health_refuses_missing_or_wrong_tokens(rt):
    routes = _routes(rt)
    assert ("POST", "/v1/endpoints/echo/call") in routes and ("GET", "/metrics") in routes
    refused = 0
    with httpx.Client(timeout=HANG_BOUND_S) as http:
        for method, path in routes:
            if path == "/health":
                continue
            for headers in _bad_credentials(rt.token):
                r = http.request(method, rt.url + path, headers=headers, params={"token": rt.token})
                assert r.status_code == 401, (method, path, headers, r.status_code, r.text[:200])
                assert r.headers["www-authenticate"] == "Bearer"
                if method != "HEAD":
                    assert "token" in r.json()["error"]["message"]
                refused += 1
    print(f"\n{refused} unauthenticated requests over {len(routes)} method/path pairs: all 401")


def test_the_right_token_gets_past_the_check_on_every_route(rt):
    with httpx.Client(timeout=HANG_BOUND_S, headers=auth(rt)) as http:
        for method, path in _routes(rt):
            body = b"{}" if method in ("POST", "PUT", "PATCH") else None
            with http.stream(method, rt.url + path, content=body) as r:
                assert r.status_code != 401, (method, path)
                if r.status_code == 200 and path.endswith("/debug") and method == "POST":
                    # a debug session holds echo's worker until a debugger comes: end it
                    session = json.loads(r.read())["session"]
                    assert http.delete(f"{rt.url}/v1/debug/{session}").status_code < 300


def test_no_route_upgrades_to_a_websocket_without_a_token(rt):
    """The token check covers HTTP; a websocket route added later must not slip past it."""
    host, port = httpx.URL(rt.url).host, httpx.URL(rt.url).port
    for _, path in _routes(rt):
        with socket.create_connection((host, port), timeout=HANG_BOUND_S) as s:
            key = base64.b64encode(os.urandom(16)).decode()
            s.sendall(
                f"GET {path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
            )
            status = s.recv(64).split(b"\r\n")[0]
        assert b" 101 " not in status and status.split()[1][:1] == b"4", (path, status)


def test_health_needs_no_token_and_tells_nothing_secret(rt):
    r = httpx.get(f"{rt.url}/health", timeout=HANG_BOUND_S)
    assert r.status_code == 200 and rt.token not in r.text


def test_the_sdk_binary_channel_refuses_missing_or_wrong_tokens(rt):
    body = wire.dumps_bytes({"args": ["secret work"]})
    bad_headers = [
        {"endpoint": "echo"},
        {"token": "", "endpoint": "echo"},
        {"token": "wrong", "endpoint": "echo"},
        {"token": rt.token[:-1], "endpoint": "echo"},
        {"token": rt.token + "x", "endpoint": "echo"},
        {"token": [rt.token], "endpoint": "echo"},
        {"token": None, "endpoint": "echo"},
        ["echo", rt.token],
    ]
    for header in bad_headers:
        status, records = data_call(rt, header, body)
        assert status == 401, header
        assert "token" in record_error(records)["message"]
    status, records = data_call(rt, {"token": rt.token, "endpoint": "echo"}, body)
    assert status == 200 and not record_error(records)
    assert any(wire.loads(p) == "secret work" for k, p in records if k == wire.REC_RESULT)


def _first_reply(sock: socket.socket, enough) -> bytes:
    """What the server sends back, until `enough(got)`, it closes, or 10 s pass in silence."""
    got = b""
    try:
        while not enough(got) and (chunk := sock.recv(1 << 16)):
            got += chunk
    except TimeoutError:
        pass
    return got


def test_a_wrong_token_is_refused_before_the_body_is_read(rt):
    """A client announcing a large body but sending none gets its 401 at once: nothing
    unauthenticated is read (or buffered, or waited for)."""
    from slipstream.protocol.ipc import PREFIX

    host, port = httpx.URL(rt.url).host, httpx.URL(rt.url).port
    with socket.create_connection((host, port), timeout=10) as s:
        s.sendall(
            b"POST /v1/endpoints/echo/call HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer wrong\r\n"
            b"Content-Type: application/json\r\nContent-Length: 1048576\r\n\r\n"
        )
        status = _first_reply(s, lambda got: b"\r\n" in got)
        assert status.startswith(b"HTTP/1.1 401"), "HTTP: 401 without the body"
    data_port = httpx.get(f"{rt.url}/health", timeout=HANG_BOUND_S).json()["data_port"]
    header = json.dumps({"token": "wrong", "endpoint": "echo"}).encode()
    with socket.create_connection((host, data_port), timeout=10) as s:
        s.sendall(PREFIX.pack(len(header), 1 << 20) + header)  # a 1 MiB body announced, none sent
        reply = _first_reply(
            s,
            lambda got: (
                len(got) >= PREFIX.size and len(got) >= PREFIX.size + PREFIX.unpack_from(got)[0]
            ),
        )
    assert len(reply) >= PREFIX.size, "binary channel: an answer without the body"
    hlen, _ = PREFIX.unpack_from(reply)
    assert json.loads(reply[PREFIX.size : PREFIX.size + hlen])["status"] == 401


def _read_events_until(rt, marker: str) -> list[str]:
    lines = []
    params = {"backlog": "2000"}
    with httpx.stream(
        "GET", f"{rt.url}/v1/logs", headers=auth(rt), params=params, timeout=HANG_BOUND_S
    ) as r:
        for line in r.iter_lines():
            lines.append(line)
            if marker in line:
                break
    return lines


def test_token_never_appears_in_logs_responses_or_errors():
    token = "tok-" + secrets.token_hex(20)
    rt = start_runtime("--gpu-fallback", "--log-level", "debug", token=token)
    seen: list[str] = []
    try:
        deploy(rt, {"app.py": RAISES_APP})
        with httpx.Client(base_url=rt.url, timeout=HANG_BOUND_S) as http:
            good, near = auth(rt), {"Authorization": f"Bearer {token[:-1]}"}
            requests = [
                ("GET", "/v1/endpoints", near, None),
                ("POST", "/v1/endpoints/echo/call", near, {"args": [1]}),
                ("POST", "/v1/endpoints/echo/call", good, {"args": [token[:8]]}),
                ("POST", "/v1/endpoints/fails/call", good, {"kwargs": {"token_guess": "x"}}),
                ("POST", "/v1/endpoints/crash/call", good, {}),
                ("POST", "/v1/endpoints/nope/call", good, {}),
                ("POST", "/v1/endpoints/echo/call", good, {"kwargs": {"wrong": 1}}),
                ("POST", "/v1/sync/manifest", good, {"files": {"../x.py": "0" * 64}}),
                ("POST", "/v1/generations", good, {"files": {"a.py": 3}}),
                ("GET", "/v1/endpoints", good, None),
                ("GET", "/metrics", good, None),
                ("GET", "/openapi.json", good, None),
            ]
            for method, path, headers, body in requests:
                r = http.request(method, path, headers=headers, json=body)
                seen.append(f"{r.status_code} {r.headers} {r.text}")
            assert http.get("/v1/endpoints", headers=near).status_code == 401
        for header, body in (
            ({"token": token[:-1], "endpoint": "echo"}, b""),
            ({"token": token, "endpoint": "echo"}, b"garbage"),
            ({"token": token, "endpoint": "nope"}, b""),
        ):
            status, records = data_call(rt, header, body)
            seen.append(f"{status} {record_error(records)}")
        with pytest.raises(Exception) as refused:  # a deploy that fails to import
            deploy(rt, {"app.py": BROKEN_APP})
        seen.append(str(refused.value))
        seen.append(repr(rt.client()))
        marker = "end-of-run-" + secrets.token_hex(4)
        httpx.post(
            f"{rt.url}/v1/endpoints/marker/call",
            json={"args": [marker]},
            headers=auth(rt),
            timeout=HANG_BOUND_S,
        )
        stream = _read_events_until(rt, marker)
        seen += stream
    finally:
        rt.stop()
    log = rt.log.read_text(errors="replace")
    # what was checked holds the run: the refusals, the runtime's own lines and the user's output
    events = "".join(stream)
    assert sum(s.startswith("401 ") for s in seen) >= 3, "the wrong-token answers are among it"
    assert "deployed" in events and "exited with code 7" in events, (
        "the runtime's log lines are among it"
    )
    assert marker in stream[-1], "the live log stream was read to the end of the run"
    assert "Slipstream runtime http" in log, "the serve log was read"
    assert token not in log, "the serve log must never show the token"
    leaks = [s[:200] for s in seen if token in s]
    assert not leaks, f"token leaked in: {leaks}"


def test_a_generated_token_is_shown_once_at_start_and_never_again():
    env = {k: v for k, v in os.environ.items() if k != "SLIPSTREAM_TOKEN"}
    env.pop("SLIPSTREAM_RUNTIME_URL", None)
    p = subprocess.Popen(
        [sys.executable, "-m", "slipstream", "serve", "--port", "0"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        assert p.stdout is not None
        lines = [p.stdout.readline() for _ in range(3)]
        token = next(
            line.split(": ", 1)[1].strip() for line in lines if "token (generated)" in line
        )
        url = next(line.split()[2] for line in lines if line.startswith("Slipstream runtime"))
        assert httpx.get(f"{url}/v1/endpoints", timeout=HANG_BOUND_S).status_code == 401
        ok = httpx.get(
            f"{url}/v1/endpoints",
            headers={"Authorization": f"Bearer {token}"},
            timeout=HANG_BOUND_S,
        )
        assert ok.status_code == 200
    finally:
        p.terminate()
        out, _ = p.communicate(timeout=30)
    assert token not in out, "after the start banner, the token is never printed again"


@pytest.mark.parametrize("host", ["::", "0.0.0.0", "127.0.0.1.nip.io"])
def test_binding_beyond_loopback_without_a_token_is_refused_at_start(host):
    env = {k: v for k, v in os.environ.items() if k != "SLIPSTREAM_TOKEN"}
    p = subprocess.run(
        [sys.executable, "-m", "slipstream", "serve", "--host", host, "--port", "0"],
        env=env,
        capture_output=True,
        text=True,
        timeout=HANG_BOUND_S,
    )
    assert p.returncode == 2 and "without a token" in p.stderr, p.stderr
