"""Printing at full speed: an endpoint printing N lines vs the same print to a local pipe.

    .venv/bin/python bench/bench_log_throughput.py [--n 1000000]

1. Baseline: a subprocess runs the same loop (`print(f"step {i} loss {...}")`) with its stdout a
   pipe this process reads to the end (and counts the lines of).
2. Subject: the endpoint runs that loop on the embedded runtime, called through the SDK; the
   call's logs the client prints go to a sink that counts lines (the terminal is not measured).

Both in the same run, printed side by side with the ratio, and the client's peak RSS
(resource.getrusage) before and after the call. Goal: the call within 3x of the pipe, the
client under 200 MB, every line accounted for (printed, or counted in the "not kept" note).
"""

from __future__ import annotations

import argparse
import importlib
import io
import re
import resource
import subprocess
import sys
import time

from _common import goal, machine, project, use_runtime

LOOP = 'for i in range(n):\n    print(f"step {i:>8} loss {1.0 / (i + 1):.6f} lr 0.000300 tokens/s 51234")\n'
APP = "from slipstream import endpoint\n\n@endpoint\ndef spam(n):\n" + "".join(
    "    " + line + "\n" for line in LOOP.splitlines()
)


class _Count(io.TextIOBase):
    def __init__(self) -> None:
        self.lines = 0
        self.bytes = 0
        self.tail = ""

    def writable(self) -> bool:
        return True

    def write(self, s: str) -> int:
        self.lines += s.count("\n")
        self.bytes += len(s)
        self.tail = (self.tail + s)[-4000:]
        return len(s)


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def pipe(n: int) -> tuple[float, int]:
    code = f"n = {n}\n" + LOOP
    t = time.perf_counter()
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
    assert p.stdout is not None
    lines = 0
    while chunk := p.stdout.read(1 << 16):
        lines += chunk.count(b"\n")
    p.wait()
    return time.perf_counter() - t, lines


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=1_000_000)
    a = ap.parse_args()
    print(machine())
    from slipstream.sdk.embedded import EmbeddedRuntime

    root = project({"logapp.py": APP})
    rt = EmbeddedRuntime.start(root)
    use_runtime(rt.url, rt.token)
    sys.path.insert(0, str(root))
    app = importlib.import_module("logapp")
    try:
        app.spam(10)  # deployed, a worker warm
        base_s, base_lines = pipe(a.n)
        before = rss_mb()
        sink, errs, real = _Count(), _Count(), (sys.stdout, sys.stderr)
        sys.stdout, sys.stderr = sink, errs  # type: ignore[assignment]
        t = time.perf_counter()
        try:
            app.spam(a.n)
        finally:
            sys.stdout, sys.stderr = real
        call_s = time.perf_counter() - t
        peak = rss_mb()
        m = re.search(r"([\d,]+) earlier lines not kept", errs.tail)
        dropped = int(m.group(1).replace(",", "")) if m else 0
        kept = sink.lines
        ratio = call_s / base_s
        print(f"lines: {a.n:,} ({a.n * 50 / 1e6:.0f} MB of text)")
        print(f"local pipe:        {base_s:8.2f} s   ({base_lines:,} lines read)")
        print(f"endpoint (SDK):    {call_s:8.2f} s   ratio {ratio:.2f}x")
        print(
            f"client printed {kept:,} lines, {dropped:,} counted as not kept "
            f"(total {kept + dropped:,})"
        )
        print(f"client peak RSS: {peak:.0f} MB (before the call {before:.0f} MB)")
        print(goal("call within 3x of a local pipe", ratio <= 3))
        print(goal("client peak RSS under 200 MB", peak < 200))
        print(goal("every line accounted for", kept + dropped >= a.n))
    finally:
        rt.stop()


if __name__ == "__main__":
    main()
