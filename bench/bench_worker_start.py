"""Cold start of a new worker for an endpoint that imports torch: forked vs spawned, one run.

    .venv/bin/python bench/bench_worker_start.py [--n 5]

Each sample waits for the pool to scale to zero, then times one call (request -> result), so
every sample needs a new worker. Goal: forked under 300 ms and at least 5x faster than spawning.
"""

from __future__ import annotations

import argparse
import time

import httpx
from _common import fmt, project, stats_ms

APP = """
import torch
from slipstream import endpoint

@endpoint(idle_timeout=0.2)
def tsum(n):
    return float(torch.arange(n).sum())
"""


def samples(extra: list[str], n: int) -> tuple[list[float], list[str]]:
    from slipstream.client import RuntimeClient
    from slipstream.embedded import EmbeddedRuntime

    root = project({"heavy.py": APP})
    rt = EmbeddedRuntime.start(root, extra_args=extra)
    c = RuntimeClient(rt.url, rt.token)
    h = {"Authorization": f"Bearer {rt.token}"}
    try:
        c.sync(root)
        c.call_json("tsum", {"n": 3})
        if "--no-fork" not in extra:  # let the fork server finish importing torch
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                envs = httpx.get(f"{rt.url}/health").json()["environments"]
                if any(e["fork_server"] and e["fork_server"]["ready"] for e in envs):
                    break
                time.sleep(0.2)
        out, how = [], []
        for _ in range(n):
            while httpx.get(f"{rt.url}/v1/endpoints/tsum", headers=h).json()["pool"]["workers"]:
                time.sleep(0.05)
            t = time.perf_counter()
            r = c.call_json("tsum", {"n": 4})
            out.append(time.perf_counter() - t)
            assert r["result"] == 6.0, r
            how += [w["started_by"] for w in httpx.get(f"{rt.url}/v1/endpoints/tsum", headers=h).json()["pool"]["workers"]]
        return out, how
    finally:
        rt.stop()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=5)
    a = ap.parse_args()
    forked, how_f = samples([], a.n)
    spawned, how_s = samples(["--no-fork"], a.n)
    f, s = stats_ms(forked), stats_ms(spawned)
    print(fmt(f"new worker, forked ({set(how_f)})", f))
    print(fmt(f"new worker, spawned ({set(how_s)})", s))
    print(f"forked is {s['p50'] / f['p50']:.1f}x faster (goal >= 5x); p50 {f['p50']:.0f} ms (goal < 300 ms)")


if __name__ == "__main__":
    main()
