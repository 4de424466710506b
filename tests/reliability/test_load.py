"""Load: 2,000 calls at 200 concurrent against a pool of 2 workers.

Every call gets its own correct result or an explicit overload error: none lost, none
duplicated (each call's id is logged by the worker that ran it), none hung; the runtime's
memory stays bounded. Prints p50/p99 latency and the overload count (`pytest -s`).
"""

from __future__ import annotations

import asyncio
import collections
import statistics
import time
from pathlib import Path

import httpx
import pytest

from slipstream.errors import Overloaded
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


async def _run_load(app, ledger: Path, first_uid: int) -> dict:
    ids = collections.deque(range(first_uid, first_uid + CALLS))
    results: dict[int, object] = {}
    latencies: list[float] = []
    overloaded: list[int] = []
    failures: list[str] = []

    async def caller() -> None:
        while ids:
            uid = ids.popleft()
            started = time.perf_counter()
            try:
                results[uid] = await asyncio.wait_for(app.tag.aio(uid, str(ledger)), HANG_BOUND_S)
            except Overloaded:
                overloaded.append(uid)
            except asyncio.TimeoutError:
                failures.append(f"{uid}: hung past {HANG_BOUND_S:g}s")
            except Exception as exc:  # noqa: BLE001 - anything else is a broken promise
                failures.append(f"{uid}: {type(exc).__name__}: {exc}")
            latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    await asyncio.gather(*(caller() for _ in range(CONCURRENCY)))
    return {"results": results, "overloaded": overloaded, "failures": failures,
            "latencies": latencies, "wall": time.perf_counter() - started}


@pytest.mark.slow
def test_2000_calls_at_200_concurrent_lose_nothing_and_stay_bounded(project_factory, tmp_path):
    rt = start_runtime("--gpu-fallback", "--max-queue", str(MAX_QUEUE))
    try:
        app = project_factory(rt, {"loadapp.py": LOAD_APP}).module("loadapp")
        warm = tmp_path / "warm.ledger"
        assert [app.tag(i, str(warm))["uid"] for i in range(20)] == list(range(20))
        rss_before = _rss_mb(rt.proc.pid)

        rounds = []
        for n in range(2):  # a second round shows memory does not keep growing
            ledger = tmp_path / f"round{n}.ledger"
            ledger.touch()
            out = asyncio.run(_run_load(app, ledger, first_uid=n * CALLS))
            out["rss"] = _rss_mb(rt.proc.pid)
            rounds.append(out)
            results, overloaded = out["results"], out["overloaded"]

            assert not out["failures"], out["failures"][:10]
            assert len(results) + len(overloaded) == CALLS, "every call answered, one way or the other"
            assert not set(results) & set(overloaded)
            wrong = [(uid, r) for uid, r in results.items() if r["uid"] != uid]
            assert not wrong, f"calls got someone else's result: {wrong[:5]}"
            assert len({r["pid"] for r in results.values()}) <= 2, "a pool of 2 workers"

            ran = [int(x) for x in ledger.read_text().split()]
            dupes = [uid for uid, k in collections.Counter(ran).items() if k > 1]
            assert not dupes, f"calls ran twice: {dupes[:10]}"
            assert set(ran) == set(results), "exactly the answered calls ran; no refused call ran"

        pool = httpx.get(f"{rt.url}/v1/endpoints/tag", headers=auth(rt), timeout=HANG_BOUND_S).json()
        assert pool["pool"]["queued"] == 0 and len(pool["pool"]["workers"]) == 2
        assert pool["stats"]["overloads"] == sum(len(r["overloaded"]) for r in rounds)
        assert pool["stats"]["crashes"] == 0 and pool["stats"]["errors"] == 0

        for n, out in enumerate(rounds):
            lat = out["latencies"]
            print(f"\nround {n + 1}: {CALLS} calls at {CONCURRENCY} concurrent, 2 workers, "
                  f"max queue {MAX_QUEUE}: {len(out['results'])} ok, {len(out['overloaded'])} overloaded "
                  f"(429), 0 lost, 0 duplicated; p50 {_pct(lat, 0.5) * 1000:.1f} ms, "
                  f"p99 {_pct(lat, 0.99) * 1000:.1f} ms, mean {statistics.mean(lat) * 1000:.1f} ms, "
                  f"{CALLS / out['wall']:.0f} calls/s; serve RSS {out['rss']:.0f} MB")
        print(f"serve RSS: {rss_before:.0f} MB before, {rounds[-1]['rss']:.0f} MB after")
        assert rounds[-1]["rss"] - rss_before < RSS_GROWTH_BOUND_MB
        assert rounds[1]["rss"] - rounds[0]["rss"] < RSS_GROWTH_BOUND_MB / 3, "no steady growth"
    finally:
        rt.stop()
