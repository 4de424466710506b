"""Cold start of a new worker for an endpoint that imports torch: forked vs spawned, one run.

    .venv/bin/python bench/bench_worker_start.py [--n 10]

Two runtimes side by side, one with its fork server and one started with --no-fork, sampled
in turns (the order reversed every other round), so load from other work falls on both
alike. Each sample waits for the pool to scale to zero, then times one call (request ->
result), so every sample needs a new worker. Goal: forked under 300 ms and at least 5x faster
than spawning.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import httpx
from _common import fmt, goal, machine, project, stats_ms

APP = """
import torch
from slipstream import endpoint

@endpoint(idle_timeout=0.2)
def tsum(n):
    return float(torch.arange(n).sum())
"""


class Side:
    """One embedded runtime with the torch endpoint deployed and its worker pool warm once."""

    def __init__(self, extra: list[str]) -> None:
        from slipstream.sdk.client import RuntimeClient
        from slipstream.sdk.embedded import EmbeddedRuntime

        root = project({"heavy.py": APP})
        self.rt = EmbeddedRuntime.start(root, extra_args=extra)
        self.client = RuntimeClient(self.rt.url, self.rt.token)
        self.headers = {"Authorization": f"Bearer {self.rt.token}"}
        self.client.sync(root)
        self.client.call_json("tsum", {"n": 3})
        self.started_by: list[str] = []

    def wait_for_fork_server(self) -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            envs = httpx.get(f"{self.rt.url}/health").json()["environments"]
            if any(e["fork_server"] and e["fork_server"]["ready"] for e in envs):
                return
            time.sleep(0.2)
        raise RuntimeError("the fork server never became ready")

    def workers(self) -> list[dict[str, Any]]:
        return httpx.get(f"{self.rt.url}/v1/endpoints/tsum", headers=self.headers).json()["pool"][
            "workers"
        ]

    def sample(self) -> float:
        while self.workers():  # scaled to zero: the call below needs a new worker
            time.sleep(0.05)
        t = time.perf_counter()
        r = self.client.call_json("tsum", {"n": 4})
        elapsed = time.perf_counter() - t
        assert r["result"] == 6.0, r
        self.started_by += [w["started_by"] for w in self.workers()]
        return elapsed

    def stop(self) -> None:
        self.client.close()
        self.rt.stop()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=10, help="new workers on each side")
    a = ap.parse_args()
    print(machine())
    sides: dict[str, Side] = {}
    try:
        sides["forked"] = Side([])
        sides["spawned"] = Side(["--no-fork"])
        sides["forked"].wait_for_fork_server()
        got: dict[str, list[float]] = {k: [] for k in sides}
        for i in range(a.n):
            for k in ("forked", "spawned") if i % 2 == 0 else ("spawned", "forked"):
                got[k].append(sides[k].sample())
        f, s = stats_ms(got["forked"]), stats_ms(got["spawned"])
        print("== a new worker for a torch endpoint, interleaved ==")
        print(fmt(f"forked ({', '.join(sorted(set(sides['forked'].started_by)))})", f))
        print(fmt(f"spawned ({', '.join(sorted(set(sides['spawned'].started_by)))})", s))
        ratio = s["p50"] / f["p50"]
        print(f"forked is {ratio:.1f}x faster at p50 ({s['p95'] / f['p95']:.1f}x at p95)")
        print(goal("forked p50 < 300 ms", f["p50"] < 300))
        print(goal("forked >= 5x faster than spawned", ratio >= 5))
    finally:
        for side in sides.values():
            side.stop()


if __name__ == "__main__":
    main()
