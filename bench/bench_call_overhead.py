"""Per-call overhead and large-payload round trips, each next to its baseline in the same run.

    .venv/bin/python bench/bench_call_overhead.py [--n 400] [--mb 100] [--big-n 20]

Subject and baselines are sampled in the same loop, one call each per round (the order
reversed every other round), so load from other work on the machine falls on all alike.

1. A no-op endpoint called through the SDK vs a bare Starlette/uvicorn echo route called
   through httpx the same way (same body). Goal: p50 within 1.5x.
2. A numpy array of --mb MB sent to an echo endpoint and back vs a plain httpx post of the
   same bytes to a bare echo route, and vs a raw loopback socket round trip. Goal: within 2x
   of the raw socket.
"""

from __future__ import annotations

import argparse
import importlib
import socket
import sys
import threading

import httpx
import numpy as np
from _common import (
    fmt,
    free_port,
    goal,
    interleaved,
    machine,
    project,
    start_uvicorn,
    stats_ms,
    use_runtime,
)
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

APP = """
from slipstream import endpoint

@endpoint
def noop(x=None):
    return x

@endpoint
def echo(x):
    return x
"""


def bare_echo_app() -> Starlette:
    async def echo(request: Request) -> Response:
        return Response(await request.body(), media_type="application/octet-stream")

    return Starlette(routes=[Route("/echo", echo, methods=["POST"])])


def raw_socket_round_trip(payload: memoryview) -> float:
    """Send the bytes to a loopback echo server and read them all back; returns seconds."""
    import time

    n = payload.nbytes
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    port = srv.getsockname()[1]

    def serve() -> None:
        conn, _ = srv.accept()
        buf = bytearray(n)
        view = memoryview(buf)
        got = 0
        while got < n:
            got += conn.recv_into(view[got:])
        conn.sendall(buf)
        conn.close()

    t = threading.Thread(target=serve)
    t.start()
    c = socket.create_connection(("127.0.0.1", port))
    started = time.perf_counter()
    sender = threading.Thread(target=c.sendall, args=(payload,))
    sender.start()
    back = bytearray(n)
    view = memoryview(back)
    got = 0
    while got < n:
        got += c.recv_into(view[got:])
    elapsed = time.perf_counter() - started
    sender.join()
    t.join()
    c.close()
    srv.close()
    return elapsed


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=400, help="no-op calls per side")
    ap.add_argument("--mb", type=int, default=100)
    ap.add_argument("--big-n", type=int, default=20, help="large round trips per side")
    a = ap.parse_args()

    from slipstream.sdk.embedded import EmbeddedRuntime

    print(machine())
    root = project({"benchapp.py": APP})
    rt = EmbeddedRuntime.start(root)
    use_runtime(rt.url, rt.token)
    sys.path.insert(0, str(root))
    app = importlib.import_module("benchapp")
    port = free_port()
    start_uvicorn(bare_echo_app(), port)
    bare = httpx.Client(base_url=f"http://127.0.0.1:{port}", trust_env=False)
    try:
        app.noop(1)
        from slipstream.protocol import wire

        small = wire.dumps_bytes({"args": [1], "kwargs": {}})
        got = interleaved(
            {"sdk": lambda: app.noop(1), "bare": lambda: bare.post("/echo", content=small)},
            a.n,
            warmup=20,
        )
        sdk, base = stats_ms(got["sdk"]), stats_ms(got["bare"])
        print("== per-call overhead (no-op), interleaved call by call ==")
        print(fmt("bare Starlette echo via httpx", base))
        print(fmt("slipstream no-op endpoint via SDK", sdk))
        ratio = sdk["p50"] / base["p50"]
        print(f"ratio p50: {ratio:.2f}x, p95: {sdk['p95'] / base['p95']:.2f}x")
        print(goal("no-op p50 <= 1.5x the bare echo", ratio <= 1.5))

        arr = np.random.default_rng(0).integers(0, 255, a.mb * 1024 * 1024, dtype=np.uint8)
        body = arr.tobytes()
        assert np.array_equal(app.echo(arr), arr)
        got = interleaved(
            {
                "raw": lambda: raw_socket_round_trip(memoryview(arr)),
                "plain": lambda: bare.post("/echo", content=body),
                "sdk": lambda: app.echo(arr),
            },
            a.big_n,
            warmup=1,
        )
        raw, plain, sdk_big = stats_ms(got["raw"]), stats_ms(got["plain"]), stats_ms(got["sdk"])
        print(f"== {a.mb} MB numpy array round trip, interleaved ==")
        print(fmt("raw loopback socket", raw))
        print(fmt("plain httpx post to bare echo", plain))
        print(fmt("slipstream echo endpoint via SDK", sdk_big))
        ratio = sdk_big["p50"] / raw["p50"]
        print(
            f"ratio p50 vs raw socket: slipstream {ratio:.2f}x (p95 {sdk_big['p95'] / raw['p95']:.2f}x), "
            f"plain httpx {plain['p50'] / raw['p50']:.2f}x"
        )
        print(goal(f"{a.mb} MB round trip p50 <= 2x the raw socket", ratio <= 2))
    finally:
        rt.stop()


if __name__ == "__main__":
    main()
