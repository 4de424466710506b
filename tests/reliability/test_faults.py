"""Faults: a worker that runs out of memory or dies fails only its own call; a restarted
runtime is found again by the SDK, which resyncs the code and carries on by itself."""

from __future__ import annotations

import asyncio
import concurrent.futures as cf
import os
import signal
import time

import httpx
import pytest

from slipstream.protocol import envvars
from slipstream.protocol.errors import MapError, RuntimeUnavailable, WorkerCrashed
from tests.conftest import start_runtime
from tests.reliability.helpers import HANG_BOUND_S, auth

HOG_APP = '''
import os, time
from slipstream import endpoint

@endpoint
def hog(mb, pid=False):
    block = bytearray(mb * 1024 * 1024)
    return os.getpid() if pid else len(block)

@endpoint
def touch(mb, pid=False):
    """Allocate and write every page, in native code (numpy), so nothing stays lazy."""
    import numpy as np
    a = np.ones(mb * 1024 * 1024 // 8)
    return os.getpid() if pid else float(a.sum())

@endpoint
def creep(holding, release):
    """Hold 64 MB, wait to be told, then ask for a gigabyte more."""
    held = [bytearray(64 * 1024 * 1024)]
    open(holding, "w").close()
    deadline = time.monotonic() + 60
    while not os.path.exists(release) and time.monotonic() < deadline:
        time.sleep(0.02)
    held.append(bytearray(1024 * 1024 * 1024))
    return len(held)

@endpoint
def steady(i=0):
    return i
'''

QUEUE_APP = """
import os, time
from slipstream import endpoint

@endpoint(workers=1)
def lane(i, started=None, release=None):
    # with `started`: say so, wait for `release`, then die (the queue fills meanwhile)
    if started:
        open(started, "w").close()
        deadline = time.monotonic() + 60
        while not os.path.exists(release) and time.monotonic() < deadline:
            time.sleep(0.01)
        os._exit(9)
    return i
"""

RESTART_APP = """
import os, time
from slipstream import endpoint

@endpoint
def double(x):
    return 2 * x

@endpoint
def count(n):
    for i in range(n):
        yield i

def _attempt(ledger):
    with open(ledger, "a") as f:
        f.write("run\\n")
    with open(ledger) as f:
        return len(f.read().splitlines())

@endpoint
def once_stuck(ledger):
    # the first attempt hangs (and dies with the runtime); a second one answers
    n = _attempt(ledger)
    if n == 1:
        time.sleep(120)
    return n

@endpoint(workers=(0, 2))
def slow(x):
    time.sleep(0.05 if x < 4 else 60)  # items from 4 on are still running when the runtime dies
    return x

@endpoint
def drip(ledger):
    _attempt(ledger)
    yield "first"
    yield "second"
    time.sleep(120)  # the runtime dies here, after two items went out
    yield "never"
"""


@pytest.fixture()
def limited():  # one per test: its JSON calls name endpoints that only one project defines
    rt = start_runtime("--gpu-fallback", "--worker-memory-mb", "300")
    yield rt
    rt.stop()


def test_a_worker_over_its_memory_limit_fails_only_its_call(limited, project_factory):
    app = project_factory(limited, {"hogs.py": HOG_APP}).module("hogs")
    assert app.hog(10) == 10 * 1024 * 1024
    # a plain MemoryError gets a message naming the limit; numpy's says what it could not allocate
    limit = (
        "the worker ran out of memory (its limit is 300 MB: slipstream serve --worker-memory-mb)"
    )
    for big, clear in ((app.hog, limit), (app.touch, "allocate 1.00 GiB")):
        worker = big(10, pid=True)
        for attempt in range(2):  # every time, not only the last
            with pytest.raises(MemoryError) as err:  # a MemoryError, never a crashed worker
                big(1024)
            assert clear in str(err.value), str(err.value)
            assert big(10, pid=True) == worker, (
                f"attempt {attempt}: the same worker serves the next call"
            )
    assert app.steady(3) == 3


def test_json_clients_see_a_clear_out_of_memory_error(limited, project_factory):
    project_factory(limited, {"hogs.py": HOG_APP}).sync()
    r = httpx.post(
        f"{limited.url}/v1/endpoints/hog/call",
        json={"args": [1024]},
        headers=auth(limited),
        timeout=HANG_BOUND_S,
    )
    assert r.status_code == 500, r.text
    err = r.json()["error"]
    assert err["type"] == "MemoryError" and "its limit is 300 MB" in err["message"], err
    ok = httpx.post(
        f"{limited.url}/v1/endpoints/hog/call",
        json={"args": [1]},
        headers=auth(limited),
        timeout=HANG_BOUND_S,
    )
    assert ok.status_code == 200 and ok.json()["result"] == 1024 * 1024


def test_other_endpoints_answer_while_one_blows_its_memory(limited, project_factory, tmp_path):
    app = project_factory(limited, {"hogs.py": HOG_APP}).module("hogs")
    holding, release = tmp_path / "holding", tmp_path / "release"
    with cf.ThreadPoolExecutor(1) as ex:
        creeping = ex.submit(app.creep, str(holding), str(release))
        deadline = time.monotonic() + HANG_BOUND_S
        while not holding.exists():  # the hog now holds memory and waits
            assert time.monotonic() < deadline and not creeping.done(), creeping
            time.sleep(0.05)
        assert [app.steady(i) for i in range(20)] == list(range(20)), "the others answer meanwhile"
        release.touch()
        with pytest.raises(MemoryError, match="300 MB"):
            creeping.result(timeout=HANG_BOUND_S)
    assert app.steady(7) == 7 and app.hog(1) == 1024 * 1024


def _until(what, check, bound=HANG_BOUND_S):
    """Wait for `check()` to be true (an event in another process), failing after `bound` s."""
    deadline = time.monotonic() + bound
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def test_a_crash_fails_only_its_call_and_the_queue_behind_it_runs(
    runtime, project_factory, tmp_path
):
    app = project_factory(runtime, {"lanes.py": QUEUE_APP}).module("lanes")
    assert app.lane(0) == 0
    started, release = tmp_path / "started", tmp_path / "release"

    def pool():
        r = httpx.get(
            f"{runtime.url}/v1/endpoints/lane", headers=auth(runtime), timeout=HANG_BOUND_S
        )
        return r.json()

    crashes_before = pool()["stats"]["crashes"]
    with cf.ThreadPoolExecutor(8) as ex:
        doomed = ex.submit(app.lane, -1, str(started), str(release))
        _until("the doomed call to hold the only worker", started.exists)
        queued = [ex.submit(app.lane, i) for i in range(1, 8)]
        _until("seven calls queued behind it", lambda: pool()["pool"]["queued"] == 7)
        assert not any(f.done() for f in queued), "they wait for the busy worker"
        release.touch()
        with pytest.raises(WorkerCrashed, match="exited with code 9"):
            doomed.result(timeout=HANG_BOUND_S)
        assert [f.result(timeout=HANG_BOUND_S) for f in queued] == list(range(1, 8))
    assert pool()["stats"]["crashes"] == crashes_before + 1, "one crash, and only the doomed call's"


# --- runtime restarts -----------------------------------------------------------------------


def _kill(rt) -> None:
    """Kill the `slipstream serve` process hard, as a crash or an OOM kill would."""
    os.killpg(rt.proc.pid, signal.SIGKILL)
    rt.proc.wait(HANG_BOUND_S)


def _restart_on_same_port(rt):
    port = rt.url.rsplit(":", 1)[1]
    return start_runtime("--gpu-fallback", "--port", port, token=rt.token)


def _endpoint_names(rt) -> set[str]:
    r = httpx.get(f"{rt.url}/v1/endpoints", headers=auth(rt), timeout=HANG_BOUND_S)
    return {e["name"] for e in r.json()["endpoints"]}


@pytest.fixture()
def restartable(project_factory):
    rts = [start_runtime("--gpu-fallback")]
    proj = project_factory(rts[0], {"restart_app.py": RESTART_APP}, name="restartproj")
    yield rts, proj.module("restart_app")
    for rt in rts:
        rt.stop()


def test_sdk_resyncs_to_a_restarted_runtime_and_the_next_call_works(restartable):
    rts, app = restartable
    assert app.double(2) == 4
    old_id = httpx.get(f"{rts[0].url}/health", timeout=HANG_BOUND_S).json()["runtime_id"]
    _kill(rts[0])
    rts.append(_restart_on_same_port(rts[0]))
    assert _endpoint_names(rts[1]) == set(), "the new runtime starts empty"
    assert httpx.get(f"{rts[1].url}/health", timeout=HANG_BOUND_S).json()["runtime_id"] != old_id
    assert app.double(21) == 42, "no user action: the SDK syncs the code to the new runtime"
    assert _endpoint_names(rts[1]) == {"double", "count", "once_stuck", "slow", "drip"}


def test_a_restart_after_concurrent_calls_is_recovered_too(restartable):
    """Concurrent calls leave several pooled connections to the old runtime behind."""
    rts, app = restartable
    with cf.ThreadPoolExecutor(8) as ex:
        assert list(ex.map(app.double, range(32))) == [2 * i for i in range(32)]
    _kill(rts[0])
    rts.append(_restart_on_same_port(rts[0]))
    with cf.ThreadPoolExecutor(8) as ex:
        assert list(ex.map(app.double, range(32))) == [2 * i for i in range(32)]
    assert app.double(5) == 10


def test_a_call_made_while_the_runtime_is_down_waits_for_it_to_come_back(restartable):
    rts, app = restartable
    assert app.double(1) == 2
    _kill(rts[0])
    with cf.ThreadPoolExecutor(1) as ex:
        pending = ex.submit(app.double, 50)
        time.sleep(1.5)
        assert not pending.done(), "the call waits for the runtime rather than failing at once"
        rts.append(_restart_on_same_port(rts[0]))
        assert pending.result(timeout=HANG_BOUND_S) == 100


def _lines(path) -> int:
    return len(path.read_text().splitlines()) if path.exists() else 0


def test_a_call_in_flight_when_the_runtime_dies_is_retried_once_after_it_returns(
    restartable, tmp_path
):
    """The documented at-least-once: the call runs again on the restarted runtime."""
    rts, app = restartable
    ledger = tmp_path / "ledger"
    with cf.ThreadPoolExecutor(1) as ex:
        pending = ex.submit(app.once_stuck, str(ledger))
        _until("the first attempt to run", lambda: _lines(ledger) == 1)
        _kill(rts[0])
        rts.append(_restart_on_same_port(rts[0]))
        assert pending.result(timeout=HANG_BOUND_S) == 2, "it ran a second time, and answered"
    assert _lines(ledger) == 2, "exactly one retry"


def test_a_generator_cut_by_a_restart_is_not_retried(restartable, tmp_path):
    rts, app = restartable
    ledger = tmp_path / "ledger"
    items = app.drip(str(ledger))
    assert next(items) == "first" and next(items) == "second"
    _kill(rts[0])
    rts.append(_restart_on_same_port(rts[0]))
    assert app.double(3) == 6, "the SDK has found the new runtime"
    with pytest.raises(RuntimeUnavailable):
        next(items)
    assert _lines(ledger) == 1, "the generator was not run again: its items would repeat"


def test_async_streaming_and_map_calls_also_recover_from_a_restart(restartable):
    rts, app = restartable
    assert app.double(1) == 2
    for round_ in range(3):
        _kill(rts[-1])
        rts.append(_restart_on_same_port(rts[-1]))
        if round_ == 0:
            assert asyncio.run(asyncio.wait_for(app.double.aio(4), HANG_BOUND_S)) == 8
        elif round_ == 1:
            assert list(app.count(3)) == [0, 1, 2]
        else:
            assert list(app.double.map([1, 2, 3])) == [2, 4, 6]


def test_an_async_call_made_while_the_runtime_is_down_waits_for_it(restartable):
    rts, app = restartable
    assert app.double(1) == 2
    _kill(rts[0])

    async def later_restart() -> None:
        await asyncio.sleep(1.5)
        rts.append(await asyncio.to_thread(_restart_on_same_port, rts[0]))

    async def main() -> int:
        restart = asyncio.ensure_future(later_restart())
        value = await asyncio.wait_for(app.double.aio(8), HANG_BOUND_S)
        await restart
        return value

    assert asyncio.run(main()) == 16


@pytest.mark.parametrize("form", ["sync", "aio"])
def test_a_runtime_that_dies_during_a_map_is_noticed_once_for_the_whole_map(
    restartable, monkeypatch, form
):
    """One deadline for the map (SLIPSTREAM_RUNTIME_PATIENCE, 30 s by default), not one per
    call in flight: the results that came back are kept, the error names the runtime and
    lists what did not complete."""
    rts, app = restartable
    monkeypatch.setenv(envvars.RUNTIME_PATIENCE, "2")
    got: list[int] = []
    killed_at = 0.0

    def take(r: int) -> None:
        nonlocal killed_at
        got.append(r)
        if len(got) == 4:
            _kill(rts[0])
            killed_at = time.monotonic()

    async def take_all() -> None:
        async for r in app.slow.map.aio(range(40), order_outputs=False):
            take(r)

    with pytest.raises(MapError) as info:
        if form == "aio":
            asyncio.run(asyncio.wait_for(take_all(), HANG_BOUND_S))
        else:
            for r in app.slow.map(range(40), order_outputs=False):
                take(r)
    noticed = time.monotonic() - killed_at
    assert sorted(got) == [0, 1, 2, 3]
    assert noticed < 2 + 6, f"noticed after {noticed:.1f}s: one 2 s deadline for the whole map"
    err = info.value
    assert err.results[:4] == [0, 1, 2, 3], "the results that came back are kept"
    assert err.failed == list(range(4, 40)), "the rest are listed"
    assert all(isinstance(e, RuntimeUnavailable) for e in err.errors.values())
    msg = str(err)
    assert f"lost the runtime at {rts[0].url}: it did not answer for 2s" in msg, msg
    assert "completed: items 0-3, their results are in .results" in msg, msg
