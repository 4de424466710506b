"""The Ray backend next to the local backend, in one run: per-call overhead and save-to-live.

    .venv/bin/python bench/bench_ray.py [--n 300] [--edits 10] [--load-s 1] [--address ADDR]

Starts a local one-node Ray cluster (2 CPUs, an 80 MB object store; or attaches to --address),
then two runtimes on the same project: `slipstream serve` (local backend, worker processes over
a socketpair) and `slipstream serve --backend ray` (a Ray actor per worker, its worker process
dialling the runtime over TCP and fetching code over HTTP). For each:

1. cold start: the first call, which starts a worker (on Ray: creates the actor).
2. per-call overhead: a no-op endpoint called through the SDK's client; p50 ratio Ray / local.
3. save -> live: rewrite the module, sync, call until the new version answers (a model held by
   keep() stays loaded: the reloads must load it zero times); p50 ratio Ray / local. On Ray the
   worker also downloads the changed file from the runtime before it switches.

The two backends are measured in the same loops, alternating (blocks of 25 calls; edits in
alternating order), so load from other work on the machine falls on both alike.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import fmt, goal, machine, project, stats_ms, timed, write_model


class Serve:
    """A `slipstream serve` child process (like tests/conftest.py's start_runtime)."""

    def __init__(self, *args: str, env: dict[str, str] | None = None) -> None:
        self.token = secrets.token_urlsafe(16)
        d = Path(tempfile.mkdtemp(prefix="slipstream-bench-rt-"))
        ready = d / "ready.json"
        self.log = d / "serve.log"
        full_env = {**os.environ, "SLIPSTREAM_TOKEN": self.token, **(env or {})}
        full_env.pop("SLIPSTREAM_RUNTIME_URL", None)
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "slipstream",
                "serve",
                "--port",
                "0",
                "--ready-file",
                str(ready),
                *args,
            ],
            env=full_env,
            stdout=self.log.open("wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 60
        while not ready.exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"runtime did not start:\n{self.log.read_text()}")
            time.sleep(0.05)
        self.url = json.loads(ready.read_text())["url"]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def call(client: Any, name: str, method: str | None = None, *args: Any) -> Any:
    out = client.call(name, method, args, {})
    if out.error is not None:
        raise RuntimeError(f"{name}: {out.error.type}: {out.error.message}")
    return out.value


def measure(rts: dict[str, Serve], root: Path, a: argparse.Namespace) -> dict[str, dict]:
    """Both backends in the same loop, alternating, so background load hits both alike."""
    from slipstream.sdk.client import RuntimeClient
    from slipstream.sdk.sync import sync_project

    clients = {k: RuntimeClient(rt.url, rt.token) for k, rt in rts.items()}
    res: dict[str, dict[str, Any]] = {k: {"calls": [], "hot": []} for k in rts}
    for k, c in clients.items():
        sync_project(c, root)
        t = time.perf_counter()
        call(c, "noop", None, 1)
        res[k]["cold_s"] = time.perf_counter() - t
        timed(lambda c=c: call(c, "noop", None, 1), 0, warmup=20)
        assert call(c, "Model", "version") == 0  # setup loads the model once
    block = 25
    for _ in range(max(a.n // block, 1)):
        for k, c in clients.items():
            res[k]["calls"] += timed(lambda c=c: call(c, "noop", None, 1), block, warmup=0)
    for v in range(1, a.edits + 1):
        order = list(clients.items())
        for k, c in order if v % 2 else order[::-1]:
            t = time.perf_counter()
            write_model(root, v, a.load_s)
            sync_project(c, root)
            while call(c, "Model", "version") != v:
                pass
            res[k]["hot"].append(time.perf_counter() - t)
    for k, c in clients.items():
        res[k]["model_reloads"] = call(c, "Model", "loads") - 1
        res[k]["calls"] = stats_ms(res[k]["calls"])
        res[k]["hot"] = stats_ms(res[k]["hot"])
        c.close()
    return res


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=300)
    ap.add_argument("--edits", type=int, default=10)
    ap.add_argument("--load-s", type=float, default=1.0)
    ap.add_argument(
        "--address", default=None, help="an existing Ray cluster (default: start a local one)"
    )
    a = ap.parse_args()

    print(machine())
    cluster = None
    address = a.address
    if address is None:
        from ray.cluster_utils import Cluster

        t = time.perf_counter()
        cluster = Cluster(
            initialize_head=True,
            head_node_args={
                "num_cpus": 2,
                "object_store_memory": 80 * 1024 * 1024,
                "include_dashboard": False,
            },
        )
        address = cluster.address
        print(f"local Ray cluster up in {time.perf_counter() - t:.1f}s at {address}")
    root = project({})
    write_model(root, 0, a.load_s)
    local = Serve("--gpu-fallback")
    on_ray = Serve(
        "--backend", "ray", "--ray-address", address, env={"SLIPSTREAM_RAY_WORKER_CPUS": "0.5"}
    )
    try:
        both = measure({"local": local, "ray": on_ray}, root, a)
    finally:
        local.stop()
        on_ray.stop()
        if cluster is not None:
            cluster.shutdown()
    lo, ry = both["local"], both["ray"]
    res = [{"name": k, **v} for k, v in both.items()]
    print("== cold start (first call starts a worker) ==")
    for r in res:
        print(f"{r['name'] + ' backend':<42} {r['cold_s'] * 1000:9.1f} ms")
    print(f"ratio ray / local: {ry['cold_s'] / lo['cold_s']:.1f}x")
    print(f"== per-call overhead (no-op via SDK, n={a.n}) ==")
    for r in res:
        print(fmt(f"{r['name']} backend", r["calls"]))
    print(f"ratio p50 ray / local: {ry['calls']['p50'] / lo['calls']['p50']:.2f}x")
    print(
        f"== save -> live (sync + reload + call, {a.edits} edits, "
        f"model load {a.load_s:g}s in setup) =="
    )
    for r in res:
        print(fmt(f"{r['name']} backend", r["hot"]) + f"   model reloads: {r['model_reloads']}")
    print(f"ratio p50 ray / local: {ry['hot']['p50'] / lo['hot']['p50']:.2f}x")
    print(
        goal(
            "no-op p50 on Ray within 1.5x of local", ry["calls"]["p50"] <= 1.5 * lo["calls"]["p50"]
        )
    )
    print(
        goal(
            "save -> live p50 on Ray within 1.5x of local",
            ry["hot"]["p50"] <= 1.5 * lo["hot"]["p50"],
        )
    )
    print(goal("0 model reloads on both", ry["model_reloads"] == lo["model_reloads"] == 0))


if __name__ == "__main__":
    main()
