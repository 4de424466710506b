"""Helpers shared by the benchmarks: timing stats and throwaway servers/projects."""

from __future__ import annotations

import os
import socket
import statistics
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def stats_ms(samples: list[float]) -> dict[str, float]:
    s = sorted(samples)
    return {
        "p50": statistics.median(s) * 1000,
        "p95": s[min(len(s) - 1, int(0.95 * len(s)))] * 1000,
        "mean": statistics.fmean(s) * 1000,
        "n": len(s),
    }


def fmt(name: str, st: dict[str, float]) -> str:
    return f"{name:<42} p50 {st['p50']:9.2f} ms   p95 {st['p95']:9.2f} ms   (n={st['n']})"


def timed(fn, n: int, warmup: int = 3) -> list[float]:
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_uvicorn(app, port: int) -> threading.Thread:
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error", access_log=False))
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


MODEL_SRC = '''
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
'''


def write_model(root: Path, version: int, load_s: float, restart: bool = False) -> None:
    """The save-to-live benchmarks' endpoint module: a slow model kept across edits.
    restart=True marks the module unsafe to reload, so the runtime replaces the worker."""
    marker = 'SLIPSTREAM_RELOAD = "restart"' if restart else ""
    (root / "model.py").write_text(MODEL_SRC.format(version=version, load_s=load_s, marker=marker))
