"""How long a `.map` takes to notice that its runtime died (SIGKILL mid-map), with the map's
calls sharing one deadline (now) vs each call in flight waiting on its own (before).

    .venv/bin/python bench/bench_dead_runtime.py [--items 100] [--patience 3] [--runs 2]

A served runtime (`slipstream serve`) runs a map of --items slow items (the first 4 quick);
once 4 results are back the runtime's process group is killed, and the time until the map
raises its MapError is measured. The patience (SLIPSTREAM_RUNTIME_PATIENCE, 30 s by default)
is shortened so the old behaviour finishes: both figures are also given in units of it. The
reference is a single call's bound: one patience. Each mode starts a fresh runtime per run,
the modes alternating.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import goal, machine, project, use_runtime

APP = """
import time
from slipstream import endpoint

@endpoint(workers=(0, 2))
def slow(x):
    time.sleep(0.05 if x < 4 else 120)
    return x
"""


def serve() -> tuple[subprocess.Popen[bytes], str, str]:
    token = secrets.token_urlsafe(16)
    d = Path(tempfile.mkdtemp(prefix="slipstream-bench-rt-"))
    ready = d / "ready.json"
    env = {**os.environ, "SLIPSTREAM_TOKEN": token}
    env.pop("SLIPSTREAM_RUNTIME_URL", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "slipstream", "serve", "--port", "0", "--temp-store"]
        + ["--gpu-fallback", "--ready-file", str(ready)],
        env=env,
        stdout=(d / "serve.log").open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    deadline = time.monotonic() + 60
    while not ready.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"runtime did not start:\n{(d / 'serve.log').read_text()}")
        time.sleep(0.05)
    return proc, json.loads(ready.read_text())["url"], token


def one_run(root: Path, items: int, shared: bool) -> tuple[float, int, int]:
    """Seconds from the kill to the MapError; the items completed and failed."""
    from slipstream.errors import MapError
    from slipstream.sdk import mapping, session

    proc, url, token = serve()
    use_runtime(url, token)
    session._session = None
    sys.modules.pop("deadapp", None)
    app = importlib.import_module("deadapp")
    mapping._SHARED_WATCH = shared
    killed_at = 0.0
    got = 0
    try:
        for _ in app.slow.map(range(items), order_outputs=False):
            got += 1
            if got == 4:
                os.killpg(proc.pid, signal.SIGKILL)
                killed_at = time.monotonic()
        raise RuntimeError("the map finished although its runtime was killed")
    except MapError as exc:
        return time.monotonic() - killed_at, len(exc.completed), len(exc.failed)
    finally:
        mapping._SHARED_WATCH = True
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        if session._session is not None:
            session._session.close()
            session._session = None


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--items", type=int, default=100)
    ap.add_argument("--patience", type=float, default=3.0, help="SLIPSTREAM_RUNTIME_PATIENCE")
    ap.add_argument("--runs", type=int, default=2, help="runs per mode")
    a = ap.parse_args()
    from slipstream.protocol import envvars

    os.environ[envvars.RUNTIME_PATIENCE] = str(a.patience)
    os.environ.pop(envvars.PROGRESS, None)
    print(machine())
    root = project({"deadapp.py": APP})
    sys.path.insert(0, str(root))
    got: dict[str, list[float]] = {"shared": [], "per-call": []}
    for _ in range(a.runs):
        for mode in ("shared", "per-call"):
            s, done, failed = one_run(root, a.items, mode == "shared")
            got[mode].append(s)
            print(
                f"{mode:>8}: noticed after {s:6.1f} s = {s / a.patience:5.1f} x the patience "
                f"({done} completed, {failed} failed)",
                flush=True,
            )
    shared, per_call = max(got["shared"]), min(got["per-call"])
    print(
        f"== a map of {a.items} items, runtime killed after 4 results, patience {a.patience:g} s ==\n"
        f"shared deadline (now): worst {shared:.1f} s = {shared / a.patience:.1f} x the patience "
        f"(a single call's bound: 1.0 x)\n"
        f"per call (before): best {per_call:.1f} s = {per_call / a.patience:.1f} x the patience "
        f"(at the default 30 s: about {per_call / a.patience * 30:.0f} s)\n"
        f"ratio: {per_call / shared:.1f}x"
    )
    print(goal("noticed within the patience + 2 s", shared <= a.patience + 2))


if __name__ == "__main__":
    main()
