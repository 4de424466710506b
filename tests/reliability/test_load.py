"""Load: 2,000 calls at 200 concurrent against a pool of 2 workers.

Every call gets its own correct result or an explicit overload error: none lost, none
duplicated (each call's id is logged by the worker that ran it), none hung; the runtime's
memory stays bounded. Prints p50/p99 latency and the overload count (`pytest -s`).
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures as cf
import threading
import time
from pathlib import Path

import httpx
import pytest

from slipstream.protocol.errors import Overloaded
from tests.conftest import start_runtime
from tests.reliability.helpers import HANG_BOUND_S, auth

CALLS = 2000
CONCURRENCY = 200
MAX_QUEUE = 100  # below the concurrency, so the overload path is exercised under load too
RSS_GROWTH_BOUND_MB = 150

LOAD_APP = '''
import os
from slipstream import endpoint

@endpoint(workers=(2, 2))
def tag(uid, ledger):
    """Return the caller's id; append it to the ledger so duplicates would show."""
    with open(ledger, "a") as f:
        f.write(f"{uid}\\n")
    return {"uid": uid, "pid": os.getpid()}
'''


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def _pct(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(p * len(s)))]


class _Tally:
    def __init__(self) -> None:
        self.results: dict[int, object] = {}
        self.latencies: list[float] = []
        self.ok_latencies: list[float] = []
        self.overloaded: list[int] = []
        self.failures: list[str] = []
        self.wall = 0.0

    def record(self, uid: int, started: float, outcome: object) -> None:
        if isinstance(outcome, Overloaded):
            self.overloaded.append(uid)
        elif isinstance(outcome, (asyncio.TimeoutError, cf.TimeoutError)):
            self.failures.append(f"{uid}: hung past {HANG_BOUND_S:g}s")
        elif isinstance(outcome, BaseException):
            self.failures.append(f"{uid}: {type(outcome).__name__}: {outcome}")
        else:
            self.results[uid] = outcome
            self.ok_latencies.append(time.perf_counter() - started)
        self.latencies.append(time.perf_counter() - started)


def _load_with_asyncio(app, ledger: Path, uids: range) -> _Tally:
    """200 coroutines on one event loop calling `tag.aio` (the SDK's async path, over HTTP)."""
    tally, todo = _Tally(), collections.deque(uids)

    async def caller() -> None:
        while todo:
            uid, started = todo.popleft(), time.perf_counter()
            try:
                outcome = await asyncio.wait_for(app.tag.aio(uid, str(ledger)), HANG_BOUND_S)
            except Exception as exc:  # noqa: BLE001 - sorted out by the tally
                outcome = exc
            tally.record(uid, started, outcome)

    async def main() -> None:
        await asyncio.gather(*(caller() for _ in range(CONCURRENCY)))

    started = time.perf_counter()
    asyncio.run(main())
    tally.wall = time.perf_counter() - started
    return tally


def _load_with_threads(app, ledger: Path, uids: range) -> _Tally:
    """200 threads calling `tag(...)` (the SDK's blocking path, over its binary channel)."""
    tally, todo, lock = _Tally(), collections.deque(uids), threading.Lock()

    def caller() -> None:
        while True:
            with lock:
                if not todo:
                    return
                uid = todo.popleft()
            started = time.perf_counter()
            try:
                outcome = app.tag(uid, str(ledger))
            except Exception as exc:  # noqa: BLE001 - sorted out by the tally
                outcome = exc
            with lock:
                tally.record(uid, started, outcome)

    started = time.perf_counter()
    with cf.ThreadPoolExecutor(CONCURRENCY) as ex:
        futures = [ex.submit(caller) for _ in range(CONCURRENCY)]
        for f in futures:
            f.result(timeout=CALLS * HANG_BOUND_S / CONCURRENCY)  # a hung call fails here
    tally.wall = time.perf_counter() - started
    return tally


@pytest.mark.slow
def test_2000_calls_at_200_concurrent_lose_nothing_and_stay_bounded(project_factory, tmp_path):
    rt = start_runtime("--gpu-fallback", "--max-queue", str(MAX_QUEUE))
    try:
        app = project_factory(rt, {"loadapp.py": LOAD_APP}).module("loadapp")
        warm = tmp_path / "warm.ledger"
        assert [app.tag(i, str(warm))["uid"] for i in range(20)] == list(range(20))
        rss_before = _rss_mb(rt.proc.pid)

        rounds: list[tuple[str, _Tally, float]] = []
        for n, (how, load) in enumerate(
            (("asyncio, f.aio", _load_with_asyncio), ("threads, f()", _load_with_threads))
        ):
            ledger = tmp_path / f"round{n}.ledger"
            ledger.touch()
            out = load(app, ledger, range(n * CALLS, (n + 1) * CALLS))
            rounds.append((how, out, _rss_mb(rt.proc.pid)))
            results, overloaded = out.results, out.overloaded

            assert not out.failures, out.failures[:10]
            assert max(out.latencies) < HANG_BOUND_S, "no call hung"
            assert len(results) + len(overloaded) == CALLS, (
                "every call answered, one way or the other"
            )
            assert not set(results) & set(overloaded)
            wrong = [(uid, r) for uid, r in results.items() if r["uid"] != uid]
            assert not wrong, f"calls got someone else's result: {wrong[:5]}"
            assert len({r["pid"] for r in results.values()}) <= 2, "a pool of 2 workers"

            ran = [int(x) for x in ledger.read_text().split()]
            dupes = [uid for uid, k in collections.Counter(ran).items() if k > 1]
            assert not dupes, f"calls ran twice: {dupes[:10]}"
            assert set(ran) == set(results), "exactly the answered calls ran; no refused call ran"

        pool = httpx.get(
            f"{rt.url}/v1/endpoints/tag", headers=auth(rt), timeout=HANG_BOUND_S
        ).json()
        assert pool["pool"]["queued"] == 0 and len(pool["pool"]["workers"]) == 2
        assert pool["stats"]["overloads"] == sum(len(out.overloaded) for _, out, _ in rounds)
        assert pool["stats"]["crashes"] == 0 and pool["stats"]["errors"] == 0

        for how, out, rss in rounds:
            lat, ok = out.latencies, out.ok_latencies
            print(
                f"\n{how}: {CALLS} calls at {CONCURRENCY} concurrent, 2 workers, max queue "
                f"{MAX_QUEUE}: {len(out.results)} ok, {len(out.overloaded)} overloaded (429), "
                f"0 lost, 0 duplicated; all calls p50 {_pct(lat, 0.5) * 1000:.1f} ms "
                f"p99 {_pct(lat, 0.99) * 1000:.1f} ms; ok calls p50 {_pct(ok, 0.5) * 1000:.1f} ms "
                f"p99 {_pct(ok, 0.99) * 1000:.1f} ms; {CALLS / out.wall:.0f} calls/s answered, "
                f"{len(out.results) / out.wall:.0f} ok/s; serve RSS after {rss:.0f} MB"
            )
        rss_after = rounds[-1][2]
        print(f"serve RSS: {rss_before:.0f} MB before, {rss_after:.0f} MB after")
        assert rss_after - rss_before < RSS_GROWTH_BOUND_MB
    finally:
        rt.stop()


def test_async_calls_work_in_one_asyncio_run_after_another(runtime, project_factory):
    """Scripts often call asyncio.run() more than once; the SDK's async client must follow."""
    app = project_factory(runtime, {"loadapp.py": LOAD_APP}).module("loadapp")
    for i in range(3):
        assert asyncio.run(asyncio.wait_for(app.tag.aio(i, "/dev/null"), HANG_BOUND_S))["uid"] == i
