"""Save-to-live latency with a slow model in setup, next to restarting the worker, in one run.

    .venv/bin/python bench/bench_save_to_live.py [--edits 15] [--load-s 3] [--restarts 2]

Each edit rewrites the endpoint's module; the clock runs from the file write to the first call
that returns the new behaviour (sync + reload + call, what a save in the editor triggers).
The baseline replaces the worker instead (the peer's way: a new process, setup again, the
model loaded again). Goals: p50 under 100 ms, at least 20x faster, zero model reloads.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import time

from _common import fmt, project, stats_ms, use_runtime, write_model


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--edits", type=int, default=15)
    ap.add_argument("--load-s", type=float, default=3.0)
    ap.add_argument("--restarts", type=int, default=2)
    a = ap.parse_args()

    from slipstream.client import RuntimeClient
    from slipstream.embedded import EmbeddedRuntime
    from slipstream.sync import sync_project

    root = project({})
    write_model(root, 0, a.load_s)
    rt = EmbeddedRuntime.start(root)
    use_runtime(rt.url, rt.token)
    client = RuntimeClient(rt.url, rt.token)
    sys.path.insert(0, str(root))
    mod = importlib.import_module("model")
    m = mod.Model()
    try:
        t = time.perf_counter()
        assert m.version() == 0
        print(f"first call (cold worker, {a.load_s:g}s model load): {time.perf_counter() - t:.2f}s")
        hot = []
        for v in range(1, a.edits + 1):
            t = time.perf_counter()
            write_model(root, v, a.load_s)
            sync_project(client, root)
            while m.version() != v:
                pass
            hot.append(time.perf_counter() - t)
        loads_after_edits = m.loads()
        cold = []
        for i in range(a.restarts):
            v = 1000 + i
            t = time.perf_counter()
            write_model(root, v, a.load_s, restart=True)  # forces a new worker: setup and model load again
            sync_project(client, root)
            while m.version() != v:
                pass
            cold.append(time.perf_counter() - t)
        hs, cs = stats_ms(hot), stats_ms(cold)
        print(fmt("save -> live, hot reload", hs))
        print(fmt("save -> live, restarting the worker", cs))
        print(f"hot reload is {cs['p50'] / hs['p50']:.0f}x faster (goal >= 20x); p50 {hs['p50']:.1f} ms (goal < 100 ms)")
        print(f"model loads across {a.edits} edits: {loads_after_edits - 1} reloads (goal 0)")
    finally:
        rt.stop()
        os.environ.pop("SLIPSTREAM_RUNTIME_URL", None)


if __name__ == "__main__":
    main()
