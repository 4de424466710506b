"""Helpers shared by the benchmarks: timing stats and throwaway servers/projects."""

from __future__ import annotations

import math
import os
import socket
import statistics
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def stats_ms(samples: list[float]) -> dict[str, float]:
    """p50, p95 (nearest rank), min, max and mean in ms, and n, of samples in seconds."""
    s = sorted(samples)
    return {
        "p50": statistics.median(s) * 1000,
        "p95": s[min(len(s) - 1, max(0, math.ceil(0.95 * len(s)) - 1))] * 1000,
        "min": s[0] * 1000,
        "max": s[-1] * 1000,
        "mean": statistics.fmean(s) * 1000,
        "n": len(s),
    }


def fmt(name: str, st: dict[str, float]) -> str:
    return (
        f"{name:<42} p50 {st['p50']:9.2f} ms   p95 {st['p95']:9.2f} ms   "
        f"(min {st['min']:.2f}, max {st['max']:.2f}, n={st['n']})"
    )


def goal(what: str, met: bool) -> str:
    """One line a reader can grep: whether the benchmark met its goal."""
    return f"goal {what}: {'met' if met else 'NOT met'}"


def machine() -> str:
    """What else the machine was doing: benchmarks here share it with other work."""
    one, five, fifteen = os.getloadavg()
    return f"machine: {os.cpu_count()} CPUs, load average {one:.2f} / {five:.2f} / {fifteen:.2f} (1/5/15 min)"


def timed(fn, n: int, warmup: int = 3) -> list[float]:
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def interleaved(
    fns: dict[str, Callable[[], object]], n: int, warmup: int = 3
) -> dict[str, list[float]]:
    """n samples of each fn, taken in rounds of one sample each, the order of the round
    reversed every other round: load from elsewhere and drift fall on every side alike."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    out: dict[str, list[float]] = {k: [] for k in fns}
    order = list(fns)
    for i in range(n):
        for k in order if i % 2 == 0 else order[::-1]:
            t = time.perf_counter()
            fns[k]()
            out[k].append(time.perf_counter() - t)
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_uvicorn(app, port: int) -> threading.Thread:
    import uvicorn

    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error", access_log=False)
    )
    t = threading.Thread(target=server.run, daemon=True)
    t.start()
    while not server.started:
        time.sleep(0.01)
    return t


def project(files: dict[str, str]) -> Path:
    d = Path(tempfile.mkdtemp(prefix="slipstream-bench-"))
    (d / "slipstream.toml").write_text('[project]\nname = "bench"\n')
    for rel, text in files.items():
        (d / rel).write_text(textwrap.dedent(text))
    return d


def use_runtime(url: str, token: str) -> None:
    os.environ["SLIPSTREAM_RUNTIME_URL"] = url
    os.environ["SLIPSTREAM_TOKEN"] = token


MODEL_SRC = """
import time
from slipstream import endpoint, keep
from slipstream.keeper import stats
{marker}
VERSION = {version}

def load_model():
    time.sleep({load_s})
    return object()

@endpoint
def noop(x=None):
    return x

@endpoint
class Model:
    def setup(self):
        self.model = keep("weights", load_model)

    def version(self):
        return VERSION

    def loads(self):
        return stats().loads

    def load_seconds(self):
        return stats().load_seconds
"""


def write_model(root: Path, version: int, load_s: float, restart: bool = False) -> None:
    """The save-to-live benchmarks' endpoint module: a slow model kept across edits.
    restart=True marks the module unsafe to reload, so the runtime replaces the worker."""
    marker = 'SLIPSTREAM_RELOAD = "restart"' if restart else ""
    (root / "model.py").write_text(MODEL_SRC.format(version=version, load_s=load_s, marker=marker))
