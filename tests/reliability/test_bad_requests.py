"""Bad requests get a 4xx with a message: never a 500, a hang, or a dead worker."""

from __future__ import annotations

import pickle
import random
import socket
import struct
import time
from urllib.parse import urlparse

import httpx
import pytest

from slipstream.protocol import wire
from tests.conftest import start_runtime
from tests.reliability.helpers import (
    ECHO_APP,
    HANG_BOUND_S,
    assert_still_serving,
    auth,
    data_call,
    data_channel,
    deploy,
    error_message,
    generation,
    record_error,
)

_rng = random.Random(8)
_HEAD = struct.Struct("<4sIQ")


def _frame(pickled: bytes, nbuf: int = 0, extra: bytes = b"") -> bytes:
    return _HEAD.pack(wire.MAGIC, nbuf, len(pickled)) + extra + pickled


# (name, body) sent as the SDK's pickle frame content type
GARBAGE_FRAMES = {
    "empty": b"",
    "random-bytes": bytes(_rng.getrandbits(8) for _ in range(300)),
    "json-in-a-pickle-type": b'{"args": [1]}',
    "bad-magic": b"NOPE" + bytes(40),
    "magic-then-random": wire.MAGIC + bytes(_rng.getrandbits(8) for _ in range(200)),
    "valid-header-random-pickle": _frame(bytes(_rng.getrandbits(8) for _ in range(200))),
    "pickle-opcodes-garbage": _frame(b"\x80\x05\x95garbage\x00\x00\x00."),
    "truncated": wire.dumps_bytes({"args": [1]})[:-3],
    "trailing-bytes": wire.dumps_bytes({"args": [1]}) + b"xx",
    "huge-buffer-count": _frame(pickle.dumps({}), nbuf=2**32 - 1),
    "huge-length": _HEAD.pack(wire.MAGIC, 0, 2**63) + b"x",
    "not-a-dict": wire.dumps_bytes([1, 2, 3]),
    "args-not-a-list": wire.dumps_bytes({"args": 5}),
    "kwargs-not-a-dict": wire.dumps_bytes({"kwargs": 5}),
    "kwargs-a-string": wire.dumps_bytes({"kwargs": "x=1"}),
    "unknown-class": _frame(
        b"\x80\x04\x95\x1a\x00\x00\x00\x00\x00\x00\x00\x8c\x0cno_such_mod\x94\x8c\x03Cls\x94\x93\x94."
    ),
    "too-many-args": wire.dumps_bytes({"args": [1, 2, 3]}),
    "wrong-kwarg": wire.dumps_bytes({"kwargs": {"y": 1}}),
}

# (name, raw body, content type) for JSON clients
BAD_JSON = {
    "not-json": (b"{nope", "application/json"),
    "invalid-utf8": (b'{"args": ["\xff\xfe"]}', "application/json"),
    "a-list": (b"[1, 2]", "application/json"),
    "a-string": (b'"hello"', "application/json"),
    "null": (b"null", "application/json"),
    "args-is-object": (b'{"args": {"x": 1}}', "application/json"),
    "kwargs-is-list": (b'{"kwargs": [1]}', "application/json"),
    "deeply-nested": (b'{"args": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "application/json"),
    "too-many-args": (b'{"args": [1, 2, 3]}', "application/json"),
    "wrong-kwarg": (b'{"kwargs": {"y": 1}}', "application/json"),
    "text-plain": (b'{"args": [1]}', "text/plain"),
    "form": (b"args=1", "application/x-www-form-urlencoded"),
    "multipart": (b"--x\r\n\r\n--x--", "multipart/form-data; boundary=x"),
    "octet-stream": (b"\x00\x01", "application/octet-stream"),
}


@pytest.fixture(scope="module")
def rt():
    runtime = start_runtime("--gpu-fallback")
    deploy(runtime, {"app.py": ECHO_APP})
    yield runtime
    runtime.stop()


def _post(rt, name: str, body: bytes, ctype: str, **params: str) -> httpx.Response:
    started = time.monotonic()
    r = httpx.post(
        f"{rt.url}/v1/endpoints/{name}/call",
        content=body,
        params=params or None,
        headers={**auth(rt), "content-type": ctype},
        timeout=HANG_BOUND_S,
    )
    assert time.monotonic() - started < HANG_BOUND_S
    return r


def _assert_4xx_with_message(r: httpx.Response) -> str:
    assert 400 <= r.status_code < 500, (r.status_code, r.text[:300])
    msg = error_message(r)
    assert msg, f"a 4xx says why: {r.content[:300]!r}"
    return msg


def _crashes(rt, name: str) -> int:
    r = httpx.get(f"{rt.url}/v1/endpoints/{name}", headers=auth(rt), timeout=HANG_BOUND_S)
    return r.json()["stats"]["crashes"]


@pytest.mark.parametrize("case", sorted(GARBAGE_FRAMES))
def test_garbage_sdk_frames_are_a_4xx_and_the_worker_lives_on(rt, case):
    before = generation(rt)
    r = _post(rt, "echo", GARBAGE_FRAMES[case], wire.CONTENT_TYPE)
    msg = _assert_4xx_with_message(r)
    assert r.headers["content-type"].startswith(wire.CONTENT_TYPE), (
        "the SDK gets its own format back"
    )
    if case in ("too-many-args", "wrong-kwarg"):
        assert "echo(x=None)" in msg, "argument errors show the signature"
    assert _crashes(rt, "echo") == 0
    assert_still_serving(rt, before)


@pytest.mark.parametrize("case", sorted(BAD_JSON))
def test_malformed_json_calls_are_a_4xx_with_a_message(rt, case):
    before = generation(rt)
    body, ctype = BAD_JSON[case]
    msg = _assert_4xx_with_message(_post(rt, "echo", body, ctype))
    if case == "wrong-kwarg":
        assert "unexpected keyword argument 'y'" in msg
    assert_still_serving(rt, before)


@pytest.mark.parametrize(
    "name,params,expect",
    [
        ("nope", {}, "echo"),  # unknown endpoint: lists the known ones
        ("Echo", {}, "echo"),
        ("echo", {"method": "bump"}, "is a function"),
        ("Box", {}, "one of bump"),
        ("Box", {"method": "_private"}, "one of bump"),
        ("Box", {"method": "setup"}, "one of bump"),
        ("Box", {"method": "missing"}, "no method 'missing'"),
        ("Box", {"method": "bump", "stream": "maybe"}, "stream must be true or false"),
    ],
)
@pytest.mark.parametrize("fmt", ["json", "sdk"])
def test_unknown_endpoints_and_methods_are_a_4xx_naming_what_exists(rt, name, params, expect, fmt):
    if fmt == "json":
        r = _post(rt, name, b'{"kwargs": {"k": "one"}}', "application/json", **params)
    else:
        r = _post(rt, name, wire.dumps_bytes({"kwargs": {"k": "one"}}), wire.CONTENT_TYPE, **params)
    assert expect in _assert_4xx_with_message(r)
    if "stream" in params:  # refused before the call: the body's bad value never reaches the code
        assert r.status_code == 422, r.text
    assert_still_serving(rt, generation(rt))


def test_half_sent_and_garbage_http_requests_do_not_block_others(rt):
    u = urlparse(rt.url)
    socks = []
    try:
        for i in range(40):  # slow or broken clients holding connections open
            s = socket.create_connection((u.hostname, u.port), timeout=HANG_BOUND_S)
            if i % 4 == 0:
                s.sendall(b"GARBAGE \x00\xff\r\n\r\n")
            elif i % 4 == 1:
                s.sendall(
                    b"POST /v1/endpoints/echo/call HTTP/1.1\r\nHost: x\r\n"
                )  # headers never end
            elif i % 4 == 2:
                s.sendall(
                    b"POST /v1/endpoints/echo/call HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
                    + rt.token.encode()
                    + b"\r\nContent-Length: 1000\r\n"
                    b'Content-Type: application/json\r\n\r\n{"args"'
                )  # body never ends
            else:
                s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n")
            socks.append(s)
        started = time.monotonic()
        assert_still_serving(rt, generation(rt))
        assert time.monotonic() - started < HANG_BOUND_S
        for s in socks[::4]:  # garbage gets a 400 from the HTTP layer, not silence
            assert s.recv(64).startswith(b"HTTP/1.1 400")
    finally:
        for s in socks:
            s.close()
    assert_still_serving(rt, generation(rt))


def test_a_client_that_disconnects_mid_call_leaves_the_endpoint_serving(rt):
    u = urlparse(rt.url)
    for _ in range(5):
        s = socket.create_connection((u.hostname, u.port), timeout=HANG_BOUND_S)
        body = b'{"args": ["gone"]}'
        s.sendall(
            b"POST /v1/endpoints/echo/call HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
            + rt.token.encode()
            + b"\r\nContent-Type: application/json\r\n"
            b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
        )
        s.close()
    assert_still_serving(rt, generation(rt))
    assert _crashes(rt, "echo") == 0


# --- the SDK's binary call channel -----------------------------------------------------------


@pytest.mark.parametrize("case", sorted(GARBAGE_FRAMES))
def test_garbage_frames_on_the_binary_channel_get_an_error_record(rt, case):
    status, records = data_call(rt, {"token": rt.token, "endpoint": "echo"}, GARBAGE_FRAMES[case])
    err = record_error(records)
    assert status is not None and err.get("message"), (status, records)
    assert err["kind"] == "bad-request" and status < 500
    assert _crashes(rt, "echo") == 0
    assert_still_serving(rt, generation(rt))


@pytest.mark.parametrize(
    "raw,claim,expect",
    [
        (b"{not json", None, 400),
        (b"\xff\xfe", None, 400),
        (b"[" * 50_000 + b"]" * 50_000, None, 400),
        (b"", (2 << 20, 0), 413),  # a 2 MiB header is refused before it is read
        (b"", (10, 1 << 40), 413),  # so is a 1 TiB body
    ],
)
def test_malformed_binary_channel_headers_get_a_4xx(rt, raw, claim, expect):
    status, records = data_call(rt, None, b"", raw_header=raw, claim=claim)
    assert status == expect and record_error(records)["message"]
    assert_still_serving(rt, generation(rt))


def test_unknown_endpoints_on_the_binary_channel_are_a_404_naming_what_exists(rt):
    status, records = data_call(rt, {"token": rt.token, "endpoint": "nope"}, wire.dumps_bytes({}))
    assert status == 404 and "echo" in record_error(records)["message"]


def test_silent_and_half_sent_binary_connections_do_not_block_others(rt):
    socks = []
    try:
        for i in range(40):
            s = socket.create_connection(data_channel(rt), timeout=HANG_BOUND_S)
            if i % 2:
                s.sendall(struct.pack("<IQ", 1000, 0) + b'{"tok')  # a header that never ends
            socks.append(s)
        status, records = data_call(
            rt, {"token": rt.token, "endpoint": "echo"}, wire.dumps_bytes({"args": ["through"]})
        )
        assert status == 200 and not record_error(records)
        assert_still_serving(rt, generation(rt))
    finally:
        for s in socks:
            s.close()
