"""Spawned calls and their handles against a real runtime (`slipstream serve` on loopback):
fetched by id from another process after the spawner exited, over HTTP (token-protected),
cancelled (the worker is free at once), kept for --call-ttl seconds, then dropped."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time

import httpx
import pytest

import slipstream
from slipstream.protocol.errors import CallWasCancelled
from slipstream.sdk.config import project_key
from tests.conftest import start_runtime
from tests.reliability.helpers import HANG_BOUND_S, auth, wait_for

TTL_S = 6

APP = """
import os, time
from pathlib import Path
from slipstream import endpoint

@endpoint(workers=2, concurrency=4)
def slow_add(a: int, b: int = 0, delay: float = 0.0) -> int:
    time.sleep(delay)
    if a < 0:
        raise ValueError(f"negative {a}")
    return a + b

@endpoint(workers=1)
def sleepy(seconds: float, marker: str = "") -> int:
    if marker:
        Path(marker).write_text(str(os.getpid()))
    time.sleep(seconds)
    if marker:
        Path(marker + ".finished").write_text("")
    return os.getpid()
"""

SPAWNER = """
import app
h = app.slow_add.spawn(1, 2, delay=1.5)
print(h.id, flush=True)
"""

FETCHER = """
import sys
from slipstream import FunctionCall
print(FunctionCall.from_id(sys.argv[1]).get(timeout=60))
"""


@pytest.fixture(scope="module")
def rt():
    r = start_runtime("--call-ttl", str(TTL_S))
    yield r
    r.stop()


@pytest.fixture()
def proj(rt, project_factory):
    return project_factory(rt, {"app.py": APP, "spawner.py": SPAWNER, "fetcher.py": FETCHER})


def test_a_spawned_call_is_fetched_by_id_from_a_second_process_after_the_first_exited(rt, proj):
    env = {**os.environ, "SLIPSTREAM_RUNTIME_URL": rt.url, "SLIPSTREAM_TOKEN": rt.token}
    first = subprocess.run(
        [sys.executable, "spawner.py"],
        cwd=proj.root,
        env=env,
        capture_output=True,
        text=True,
        timeout=HANG_BOUND_S,
    )
    assert first.returncode == 0, first.stderr
    call_id = first.stdout.split()[-1]
    assert call_id.startswith("fc-")
    state = httpx.get(f"{rt.url}/v1/calls/{call_id}", headers=auth(rt), timeout=HANG_BOUND_S).json()
    assert state["status"] in ("queued", "running"), "the spawner exited before its call finished"
    second = subprocess.run(
        [sys.executable, "fetcher.py", call_id],
        cwd=proj.root,
        env=env,
        capture_output=True,
        text=True,
        timeout=HANG_BOUND_S,
    )
    assert second.returncode == 0, second.stderr
    assert second.stdout.strip() == "3"
    # over HTTP: token-protected, the status and times of the outcome kept
    assert httpx.get(f"{rt.url}/v1/calls/{call_id}", timeout=HANG_BOUND_S).status_code == 401
    assert httpx.delete(f"{rt.url}/v1/calls/{call_id}", timeout=HANG_BOUND_S).status_code == 401
    done = httpx.get(f"{rt.url}/v1/calls/{call_id}", headers=auth(rt), timeout=HANG_BOUND_S).json()
    assert done["status"] == "done" and done["endpoint"] == "slow_add"
    assert done["expires_at"] == pytest.approx(done["finished_at"] + TTL_S)
    # dropped after --call-ttl seconds: a clear 404
    gone = wait_for(
        lambda: (
            (
                r := httpx.get(
                    f"{rt.url}/v1/calls/{call_id}", headers=auth(rt), timeout=HANG_BOUND_S
                )
            ).status_code
            == 404
            and r
        ),
        "the outcome to be dropped",
        bound=TTL_S + HANG_BOUND_S,
    )
    assert time.time() >= done["finished_at"] + TTL_S, "kept for the stated time"
    assert "--call-ttl" in gone.json()["error"]["message"]
    with pytest.raises(slipstream.protocol.errors.SlipstreamError, match="dropped"):
        slipstream.FunctionCall.from_id(call_id).get()


def test_cancel_frees_the_worker_at_once_and_a_queued_call_never_runs(rt, proj, tmp_path):
    app = proj.module("app")
    pid = app.sleepy(0)  # the one worker up
    running, queued = tmp_path / "running", tmp_path / "queued"
    h = app.sleepy.spawn(120, str(running))
    behind = app.sleepy.spawn(0, str(queued))
    wait_for(running.exists, "the spawned call to start")
    assert h.status == "running" and behind.status == "queued"
    assert behind.cancel() is True
    started = time.monotonic()
    assert h.cancel() is True
    assert app.sleepy(0) == pid, "the same worker serves the next call: interrupted, not replaced"
    assert time.monotonic() - started < 3.0, (
        "the worker is free at once, not after the cancel grace period (5 s)"
    )
    assert h.status == "cancelled" and behind.status == "cancelled"
    with pytest.raises(CallWasCancelled, match=h.id):
        h.get()
    assert not queued.exists(), "a cancelled queued call never runs"
    assert not (tmp_path / "running.finished").exists()
    assert h.cancel() is False, "cancelling a finished call changes nothing"


def test_spawn_map_gather_timeouts_errors_and_aio_forms(rt, proj):
    app = proj.module("app")
    hs = app.slow_add.spawn_map([1, 2, 3], [10, 20, 30])
    assert slipstream.gather(*hs) == [11, 22, 33]
    slow = app.slow_add.spawn(1, delay=2.0)
    with pytest.raises(TimeoutError, match="keeps running"):
        slow.get(timeout=0.2)
    assert slow.get() == 1, "it kept running and can be fetched again"
    with pytest.raises(ValueError, match="negative -1"):
        app.slow_add.spawn(-1).get()
    with pytest.raises(TypeError, match="gather\\(\\*handles\\)"):
        slipstream.gather(hs)

    async def main():
        h = await app.slow_add.spawn.aio(2, 2)
        many = await app.slow_add.spawn_map.aio([5, 6], kwargs={"b": 1})
        return await h.get.aio(), await slipstream.gather.aio(*many)

    assert asyncio.run(main()) == (4, [6, 7])


def test_spawn_and_fetch_over_http_with_json(rt, proj):
    proj.sync()
    key = project_key(proj.root)
    r = httpx.post(
        f"{rt.url}/v1/projects/{key}/endpoints/slow_add/spawn",
        json={"args": [1], "kwargs": {"b": 41}},
        headers=auth(rt),
        timeout=HANG_BOUND_S,
    )
    assert r.status_code == 202 and r.json()["status"] in ("queued", "running")
    out = httpx.get(
        f"{rt.url}/v1/calls/{r.json()['id']}",
        params={"wait": 30},
        headers=auth(rt),
        timeout=HANG_BOUND_S,
    ).json()
    assert out["ok"] is True and out["result"] == 42 and out["status"] == "done"
    bad = httpx.get(f"{rt.url}/v1/calls/fc-nosuchcall", headers=auth(rt), timeout=HANG_BOUND_S)
    assert bad.status_code == 404 and "no call 'fc-nosuchcall'" in bad.json()["error"]["message"]
    assert (
        "/v1/calls/{call_id}"
        in httpx.get(f"{rt.url}/openapi.json", headers=auth(rt), timeout=HANG_BOUND_S).json()[
            "paths"
        ]
    )
