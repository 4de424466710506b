"""Save-to-live latency with a slow model in setup, next to restarting the worker, in one run.

    .venv/bin/python bench/bench_save_to_live.py [--edits 20] [--load-s 1]

Two projects, each on its own embedded runtime, edited in turns (the order reversed every
other round), so load from other work falls on both alike:

- hot: each edit rewrites the endpoint's module; the clock runs from the file write to the
  first call that returns the new behaviour (sync + reload + call, what a save in the editor
  triggers). keep() holds the model, so the edits must load it zero times.
- restart: the same module marked `SLIPSTREAM_RELOAD = "restart"`, so each edit replaces the
  worker (a new process, setup again, the model loaded again): the way a dev server that
  restarts on save works. The model's load time is measured inside the worker and reported on
  its own, because it is whatever the model takes (here: --load-s of sleep), not a property of
  either path; the comparison that matters is hot reload vs the restart's own cost without it.

Goals: hot p50 under 100 ms, zero model reloads, and hot at least 2x faster than a restart
even before the restart loads the model.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path
from typing import Any

from _common import fmt, goal, machine, project, stats_ms, write_model


def call(client: Any, name: str, method: str | None = None, *args: Any) -> Any:
    out = client.call(name, method, args, {})
    if out.error is not None:
        raise RuntimeError(f"{name}: {out.error.type}: {out.error.message}")
    return out.value


def edit(client: Any, root: Path, version: int, load_s: float, restart: bool) -> float:
    """Seconds from writing the new module to the first call that answers with it."""
    from slipstream.sdk.sync import sync_project

    t = time.perf_counter()
    write_model(root, version, load_s, restart=restart)
    sync_project(client, root)
    while call(client, "Model", "version") != version:
        pass
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--edits", type=int, default=20, help="edits on each side")
    ap.add_argument("--load-s", type=float, default=1.0, help="model load time in setup (a sleep)")
    a = ap.parse_args()

    from slipstream.sdk.client import RuntimeClient
    from slipstream.sdk.embedded import EmbeddedRuntime
    from slipstream.sdk.sync import sync_project

    print(machine())
    roots = {"hot": project({}), "restart": project({})}
    runtimes, clients = {}, {}
    try:
        for side, root in roots.items():
            write_model(root, 0, a.load_s, restart=side == "restart")
            runtimes[side] = EmbeddedRuntime.start(root)
            clients[side] = RuntimeClient(runtimes[side].url, runtimes[side].token)
            sync_project(clients[side], root)
            t = time.perf_counter()
            assert call(clients[side], "Model", "version") == 0
            print(
                f"{side}: first call (cold worker, {a.load_s:g}s model load): {time.perf_counter() - t:.2f}s"
            )
        samples: dict[str, list[float]] = {"hot": [], "restart": []}
        model_loads: list[float] = []
        for v in range(1, a.edits + 1):
            for side in ("hot", "restart") if v % 2 else ("restart", "hot"):
                samples[side].append(
                    edit(clients[side], roots[side], v, a.load_s, side == "restart")
                )
                if side == "restart":  # a fresh worker: its one model load, timed inside it
                    model_loads.append(call(clients[side], "Model", "load_seconds"))
        reloads = call(clients["hot"], "Model", "loads") - 1
        without_load = [
            total - load for total, load in zip(samples["restart"], model_loads, strict=True)
        ]
        hot, restart = stats_ms(samples["hot"]), stats_ms(samples["restart"])
        load, floor = stats_ms(model_loads), stats_ms(without_load)
        print(f"== save -> live, {a.edits} edits each side, interleaved ==")
        print(fmt("hot reload (model kept)", hot))
        print(fmt("restarting the worker", restart))
        print(fmt("  of which the model load (in the worker)", load))
        print(fmt("  restart without the model load", floor))
        ratio = floor["p50"] / hot["p50"]
        print(
            f"hot reload is {ratio:.1f}x faster than a restart before its model loads; "
            f"{restart['p50'] / hot['p50']:.0f}x with this {a.load_s:g}s load (that ratio is set by the load)"
        )
        print(f"model loads across {a.edits} hot edits: {reloads} reloads")
        print(goal("hot p50 < 100 ms", hot["p50"] < 100))
        print(goal("0 model reloads across hot edits", reloads == 0))
        print(goal(">= 2x faster than a restart without its model load", ratio >= 2))
    finally:
        for c in clients.values():
            c.close()
        for rt in runtimes.values():
            rt.stop()
        os.environ.pop("SLIPSTREAM_RUNTIME_URL", None)


if __name__ == "__main__":
    main()
