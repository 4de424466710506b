"""Printing at full speed: workers send output in chunks, a reply keeps the tail and says how
many earlier lines it left out, the live stream (/v1/logs) loses none, and a `\\r` progress bar
is one updating line."""

from __future__ import annotations

import json
import re
import threading
import time

import httpx

from slipstream.protocol.logtext import KEEP_LINES, progress_lines

N = 200_000

APP = """
from slipstream import endpoint

@endpoint
def spam(n):
    for i in range(n):
        print(f"line {i}")
    return n

@endpoint
def then_wait(s):
    print("first")
    import time
    time.sleep(s)
    return "done"
"""


def test_progress_bar_is_one_updating_line() -> None:
    bar = "\r  0%|     | 0/3\r 33%|#    | 1/3\r 67%|###  | 2/3\r100%|#####| 3/3\n"
    assert progress_lines(bar) == "\r100%|#####| 3/3\n"
    assert progress_lines("a\nb\r\nc\n") == "a\nb\r\nc\n", "Windows line endings stay"
    assert progress_lines("x\r 50%\r 60%") == "x\n"[:0] + "\r 60%", "a bar still running"
    assert progress_lines("plain\n") == "plain\n"
    assert progress_lines("epoch 1\n\r 10%\r 20%\ndone\n") == "epoch 1\n\r 20%\ndone\n"


def test_a_call_printing_200k_lines_is_fast_and_loses_none(runtime, project_factory, capsys):
    from slipstream.sdk.config import project_key

    proj = project_factory(runtime, {"loud.py": APP})
    app = proj.module("loud")
    assert app.spam(3) == 3
    capsys.readouterr()
    seen: list[int] = []
    ready, done = threading.Event(), threading.Event()

    def follow() -> None:
        params = {"project": project_key(proj.root), "backlog": "0", "keepalive": "0.2"}
        headers = {"Authorization": f"Bearer {runtime.token}"}
        with httpx.stream(
            "GET", f"{runtime.url}/v1/logs", params=params, headers=headers, timeout=60
        ) as r:
            for line in r.iter_lines():
                ready.set()
                if line.startswith("data: "):
                    text = json.loads(line[6:]).get("text", "")
                    seen.extend(int(m) for m in re.findall(r"^line (\d+)$", text, re.M))
                    if seen and seen[-1] == N - 1:
                        break
        done.set()

    threading.Thread(target=follow, daemon=True).start()
    assert ready.wait(10), "the live stream answered (a keep-alive)"
    t = time.perf_counter()
    assert app.spam(N) == N
    took = time.perf_counter() - t
    captured = capsys.readouterr()
    out = captured.out
    assert took < 10, f"200k printed lines took {took:.1f} s"
    printed = [int(m) for m in re.findall(r"^line (\d+)$", out, re.M)]
    note = re.search(r"([\d,]+) earlier lines not kept", captured.err)
    assert note, captured.err[:300]
    dropped = int(note.group(1).replace(",", ""))
    assert dropped + len(printed) == N, "every line printed or counted"
    assert printed == list(range(dropped, N)), "the reply keeps the tail, in order"
    assert len(printed) <= KEEP_LINES * 1.3
    assert done.wait(30), f"the live stream ended at {seen[-1] if seen else None}"
    assert seen == list(range(N)), "the live stream lost no line"


def test_a_line_printed_before_a_long_wait_is_live_at_once(runtime, project_factory) -> None:
    """Output waits at most 50 ms in the worker for more to join it (worker/main.LOG_DELAY)."""
    import concurrent.futures as cf

    from slipstream.sdk.config import project_key

    proj = project_factory(runtime, {"loud.py": APP})
    app = proj.module("loud")
    assert app.spam(1) == 1
    params = {"project": project_key(proj.root), "backlog": "0", "keepalive": "0.2"}
    headers = {"Authorization": f"Bearer {runtime.token}"}
    with (
        httpx.stream(
            "GET", f"{runtime.url}/v1/logs", params=params, headers=headers, timeout=30
        ) as r,
        cf.ThreadPoolExecutor(1) as ex,
    ):
        lines = r.iter_lines()
        next(lines)  # the stream is open (a keep-alive)
        t = time.monotonic()
        call = ex.submit(app.then_wait, 3)
        for line in lines:
            if line.startswith("data: ") and "first" in line:
                break
        assert time.monotonic() - t < 2, "the line came while the call still slept"
        assert call.result(30) == "done"
