"""Pools under faults and load: crashes, timeouts, scaling, queue overflow."""

from __future__ import annotations

import concurrent.futures as cf
import time

import httpx
import pytest

from slipstream.protocol.errors import EndpointTimeout, Overloaded, WorkerCrashed
from tests.conftest import start_runtime

APP = """
import os, time, ctypes
from slipstream import endpoint

@endpoint(workers=(0, 2))
def fragile(mode="ok"):
    if mode == "exit":
        os._exit(3)
    if mode == "segv":
        ctypes.string_at(0)
    return os.getpid()

@endpoint(timeout=1)
def sleepy(seconds):
    time.sleep(seconds)
    return "woke"

@endpoint(workers=(0, 2), idle_timeout=1)
def elastic(delay=0.5):
    time.sleep(delay)
    return os.getpid()

@endpoint
def steady():
    return "fine"

@endpoint(workers=(2, 2))
def pair(mode="ok", started=None, release=None):
    if mode == "hold":  # say so, then stay busy until told
        open(started, "w").close()
        deadline = time.monotonic() + 60
        while not os.path.exists(release) and time.monotonic() < deadline:
            time.sleep(0.01)
    if mode == "exit":
        os._exit(3)
    return os.getpid()
"""


@pytest.fixture()
def app(runtime, project_factory):
    return project_factory(runtime, {"faulty.py": APP}).module("faulty")


def _pool(rt, name):
    r = httpx.get(f"{rt.url}/v1/endpoints/{name}", headers={"Authorization": f"Bearer {rt.token}"})
    return r.json()


def test_worker_exit_fails_only_its_request_and_is_replaced(app, runtime):
    app.fragile()
    with pytest.raises(WorkerCrashed, match="exited with code 3"):
        app.fragile("exit")
    assert isinstance(app.fragile(), int), "a new worker serves the next call"
    assert app.steady() == "fine"
    assert _pool(runtime, "fragile")["stats"]["crashes"] == 1


def test_segfault_is_reported_by_name(app):
    with pytest.raises(WorkerCrashed, match="SIGSEGV"):
        app.fragile("segv")
    assert isinstance(app.fragile(), int)


def test_crash_does_not_fail_a_concurrent_call_on_another_worker(app):
    with cf.ThreadPoolExecutor(2) as ex:
        ok = ex.submit(app.elastic, 1.0)
        time.sleep(0.2)
        bad = ex.submit(app.fragile, "exit")
        with pytest.raises(WorkerCrashed):
            bad.result()
        assert isinstance(ok.result(), int)


def _until(what, check, bound=60.0):
    deadline = time.monotonic() + bound
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def test_crash_does_not_fail_a_busy_worker_of_the_same_pool(app, runtime, tmp_path):
    started, release = tmp_path / "started", tmp_path / "release"

    def workers():
        return _pool(runtime, "pair")["pool"]["workers"]

    app.pair()  # deploys the code
    _until(
        "both workers up",
        lambda: [w["state"] in ("warm", "idle") for w in workers()] == [True, True],
    )
    with cf.ThreadPoolExecutor(2) as ex:
        held = ex.submit(app.pair, "hold", str(started), str(release))
        _until("the held call to run", started.exists)
        busy = [w["pid"] for w in workers() if w["inflight"]]
        assert len(busy) == 1
        with pytest.raises(WorkerCrashed, match="exited with code 3"):
            app.pair("exit")  # the other worker of the same pool: the only free slot
        assert not held.done(), "the busy worker's call is still running"
        release.touch()
        assert held.result(timeout=60) == busy[0], "and it finishes on its own worker"
    assert busy[0] in [w["pid"] for w in workers()], "that worker was not replaced"
    assert _pool(runtime, "pair")["stats"]["crashes"] == 1


def test_timeout_kills_the_worker_and_the_next_call_works(app, runtime):
    started = time.perf_counter()
    with pytest.raises(EndpointTimeout, match="timeout of 1s"):
        app.sleepy(10)
    assert time.perf_counter() - started < 8
    assert app.sleepy(0) == "woke"
    assert _pool(runtime, "sleepy")["stats"]["timeouts"] == 1


def test_scales_up_to_max_and_back_to_zero(app, runtime):
    from slipstream.sdk import session

    with cf.ThreadPoolExecutor(4) as ex:
        pids = list(ex.map(lambda _: app.elastic(0.8), range(4)))
    assert len(set(pids)) == 2, "two workers at most"
    # while this process's dev session is attached one worker stays warm (test_live_sessions.py)
    session.current().detach()
    deadline = time.monotonic() + 10
    while _pool(runtime, "elastic")["pool"]["workers"] and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _pool(runtime, "elastic")["pool"]["workers"] == [], (
        "idle workers stop after idle_timeout"
    )
    assert isinstance(app.elastic(0), int), "and it scales from zero again"


def test_full_queue_answers_with_an_explicit_overload(project_factory):
    rt = start_runtime("--gpu-fallback", "--max-queue", "2")
    try:
        app = project_factory(rt, {"q.py": APP}, name="qproj").module("q")
        app.steady()
        outcomes = []

        def one(_):
            try:
                return app.sleepy(0.5)
            except Overloaded as exc:
                return exc

        with cf.ThreadPoolExecutor(8) as ex:
            outcomes = list(ex.map(one, range(8)))
        overloads = [o for o in outcomes if isinstance(o, Overloaded)]
        assert overloads, "some calls must be refused when the queue is full"
        assert all(o == "woke" for o in outcomes if not isinstance(o, Overloaded)), (
            "the rest succeed"
        )
        assert "overloaded" in str(overloads[0]) and "workers" in str(overloads[0])
    finally:
        rt.stop()
