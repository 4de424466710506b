"""Generator endpoints stream on every path: f(), await/async for over f.aio(), .map, and HTTP.

"Streamed" is checked by behaviour, not timing: after its first item the generator waits for a
gate file that the test creates only once it has received that item. It then yields
"saw-gate"; if the caller only got items at the end, the generator gives up waiting after
GATE_S and yields "no-gate" instead, and the test fails on the value.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid

import httpx
import pytest

APP = '''
import asyncio, os, time
from slipstream import endpoint

GATE_S = 8.0

def _gate(path):
    deadline = time.monotonic() + GATE_S
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            return "no-gate"
        time.sleep(0.01)
    return "saw-gate"

@endpoint
def ticks(n, gate="", delay=0.0):
    """0, then (with a gate) whether the caller saw 0 before the generator finished, then 1..n-1."""
    yield 0
    if gate:
        yield _gate(gate)
    for i in range(1, n):
        yield i
        time.sleep(delay)

@endpoint
async def aticks(n, gate=""):
    yield 0
    if gate:
        deadline = time.monotonic() + GATE_S
        while not os.path.exists(gate) and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        yield "saw-gate" if os.path.exists(gate) else "no-gate"
    for i in range(1, n):
        await asyncio.sleep(0)
        yield i

@endpoint
class Words:
    def setup(self):
        self.words = ["alpha", "beta", "gamma"]

    def each(self, gate=""):
        yield self.words[0]
        if gate:
            yield _gate(gate)
        yield from self.words[1:]

    def count(self):
        return len(self.words)
'''


@pytest.fixture()
def app(runtime, project_factory):
    proj = project_factory(runtime, {"streamer.py": APP})
    proj.sync()  # deployed before any SDK call, for the tests that call over plain HTTP
    return proj.module("streamer")


@pytest.fixture()
def gate(tmp_path):
    """A fresh gate path, and the function that opens it."""
    path = tmp_path / f"gate-{uuid.uuid4().hex}"
    return str(path), path.touch


@pytest.mark.parametrize("name", ["ticks", "aticks"])
def test_a_blocking_call_streams_sync_and_async_generators(app, gate, name):
    path, open_gate = gate
    it = getattr(app, name)(3, gate=path)
    assert next(it) == 0
    open_gate()
    assert list(it) == ["saw-gate", 1, 2], (
        "the first item must reach the caller before the generator ends"
    )


def test_a_class_method_generator_streams(app, gate):
    path, open_gate = gate
    it = app.Words().each(gate=path)
    assert next(it) == "alpha"
    open_gate()
    assert list(it) == ["saw-gate", "beta", "gamma"]
    assert app.Words().count() == 3, "plain methods of the same class still return their value"


@pytest.mark.parametrize("name", ["ticks", "aticks"])
def test_async_for_over_aio_streams_sync_and_async_generators(app, gate, name):
    path, open_gate = gate

    async def consume():
        got = []
        async for item in getattr(app, name).aio(3, gate=path):
            got.append(item)
            if item == 0:
                open_gate()
        return got

    assert asyncio.run(consume()) == [0, "saw-gate", 1, 2]


@pytest.mark.parametrize("name", ["ticks", "aticks"])
def test_awaiting_aio_of_a_generator_gives_every_item(app, name):
    async def main():
        return await getattr(app, name).aio(4)

    assert asyncio.run(main()) == [0, 1, 2, 3]


@pytest.mark.parametrize("name", ["ticks", "aticks"])
def test_map_over_a_generator_gives_each_calls_items_in_order(app, name):
    assert list(getattr(app, name).map([1, 3, 2])) == [[0], [0, 1, 2], [0, 1]]


def _cancelled(rt, name):
    return httpx.get(f"{rt.url}/v1/endpoints/{name}", headers=_auth(rt), timeout=60).json()[
        "stats"
    ]["cancelled"]


@pytest.mark.parametrize("how", ["for", "async-for", "http-json"])
def test_leaving_a_stream_early_cancels_the_rest_of_the_call(runtime, app, how):
    """A generator that would run for an hour: the caller stops reading after 3 items. Its one
    worker must be free for the next call at once (the call is cancelled, not left running)."""
    before = _cancelled(runtime, "ticks")
    endless = {"n": 10**9, "delay": 3600 / 10**4}
    if how == "for":
        for item in app.ticks(**endless):
            if item == 2:
                break
    elif how == "async-for":

        async def consume():
            async for item in app.ticks.aio(**endless):
                if item == 2:
                    break

        asyncio.run(consume())
    else:
        with httpx.stream(
            "POST",
            f"{runtime.url}/v1/endpoints/ticks/call",
            params={"stream": "true"},
            json={"kwargs": endless},
            headers=_auth(runtime),
            timeout=60,
        ) as r:
            for line in r.iter_lines():
                if line and json.loads(line).get("item") == 2:
                    break
    deadline = time.monotonic() + 30
    while _cancelled(runtime, "ticks") - before < 1:
        assert time.monotonic() < deadline, "the abandoned stream's call was never cancelled"
        time.sleep(0.02)
    assert list(app.ticks(3)) == [0, 1, 2], (
        "the next call runs (it would wait an hour behind the abandoned one)"
    )


def _auth(rt):
    return {"Authorization": f"Bearer {rt.token}"}


def test_http_json_streaming_sends_one_line_per_item_as_it_comes(runtime, app, gate):
    path, open_gate = gate
    lines = []
    with httpx.stream(
        "POST",
        f"{runtime.url}/v1/endpoints/aticks/call",
        params={"stream": "true"},
        json={"kwargs": {"n": 3, "gate": path}},
        headers=_auth(runtime),
        timeout=60,
    ) as r:
        assert r.status_code == 200, r.read()
        assert r.headers["content-type"].startswith("application/x-ndjson")
        for line in r.iter_lines():
            if not line:
                continue
            lines.append(json.loads(line))
            if lines[-1] == {"item": 0}:
                open_gate()
    assert lines[:4] == [{"item": 0}, {"item": "saw-gate"}, {"item": 1}, {"item": 2}]
    assert (
        lines[-1]["ok"] is True and lines[-1]["endpoint"] == "aticks" and "duration_s" in lines[-1]
    )


def test_http_json_without_streaming_returns_the_items_as_a_list(runtime, app):
    r = httpx.post(
        f"{runtime.url}/v1/endpoints/ticks/call",
        json={"kwargs": {"n": 3}},
        headers=_auth(runtime),
        timeout=60,
    )
    assert r.status_code == 200 and r.json()["result"] == [0, 1, 2]
    r = httpx.post(
        f"{runtime.url}/v1/endpoints/Words/call",
        params={"method": "each"},
        json={},
        headers=_auth(runtime),
        timeout=60,
    )
    assert r.json()["result"] == ["alpha", "beta", "gamma"]


def test_the_listing_says_what_streams(runtime, app):
    r = httpx.get(f"{runtime.url}/v1/endpoints", headers=_auth(runtime), timeout=60).json()
    streams = {
        e["name"]: e["streams"] for e in r["endpoints"] if e["name"] in ("ticks", "aticks", "Words")
    }
    assert streams == {"ticks": [""], "aticks": [""], "Words": ["each"]}


@pytest.mark.slow
def test_slipstream_dev_streams_generator_endpoints_line_by_line(tmp_path, gate):
    import os
    import subprocess
    import sys

    from tests.conftest import write_project
    from tests.reload.test_dev_server import _port, _wait

    root = write_project(tmp_path / "devstream", {"streamer.py": APP})
    port = _port()
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("SLIPSTREAM_RUNTIME_URL", "SLIPSTREAM_TOKEN")
    }
    with (tmp_path / "dev.log").open("w+") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "slipstream", "dev", str(root), "--port", str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
        try:
            url = f"http://127.0.0.1:{port}"
            _wait(lambda: "/ticks" in httpx.get(url + "/openapi.json").json()["paths"], timeout=60)
            path, open_gate = gate
            lines = []
            with httpx.stream("POST", url + "/ticks", json={"n": 3, "gate": path}, timeout=60) as r:
                assert r.status_code == 200 and r.headers["content-type"].startswith(
                    "application/x-ndjson"
                )
                for line in r.iter_lines():
                    if line:
                        lines.append(json.loads(line))
                        if lines[-1] == {"item": 0}:
                            open_gate()
            assert [ln["item"] for ln in lines if "item" in ln] == [0, "saw-gate", 1, 2]
            assert lines[-1]["ok"] is True
            # a plain method of the same project still answers one JSON object
            assert httpx.post(url + "/Words/count", json={}, timeout=60).json()["result"] == 3
        finally:
            proc.terminate()
            proc.wait(30)
