"""A long `.map` under `slipstream run` shows its progress on stderr: done/failed/total and the
spend so far, a line redrawn in place on a terminal, periodic lines otherwise; a short map
prints nothing. Real `slipstream run` with its embedded runtime and worker processes."""

from __future__ import annotations

import os
import pty
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

MAIN = """
import time
from slipstream import endpoint

@endpoint(gpu="H100", workers=2)  # runs on the CPU here, priced at the H100's price
def step(i: int) -> int:
    time.sleep(0.05)
    if i % 10 == 3:
        raise ValueError(f"bad input {i}")
    return i

@endpoint(workers=1)
def quick(i: int) -> int:
    return i

async def _aio():
    return [r async for r in step.map.aio(range(100, 180), return_exceptions=True)]

if __name__ == "__main__":
    import asyncio, sys
    out = list(step.map(range(60), return_exceptions=True))
    print("failed", sum(isinstance(r, Exception) for r in out))
    print(list(quick.map([1, 2, 3])))
    if "aio" in sys.argv:
        print("aio failed", sum(isinstance(r, Exception) for r in asyncio.run(_aio())))
"""

LINE = re.compile(
    r"step\.map (?:\[[#-]{20}\] )?(\d+)/60 done, (\d+) failed, \$(\d+\.\d{6}), \d+\.\d s"
)


def _project(tmp_path: Path) -> Path:
    (tmp_path / "slipstream.toml").write_text('[project]\nname = "progress"\n')
    (tmp_path / "main.py").write_text(textwrap.dedent(MAIN))
    return tmp_path


def _env(**extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("SLIPSTREAM_RUNTIME_URL", "SLIPSTREAM_TOKEN", "SLIPSTREAM_PROGRESS")
    }
    return {**env, **extra}


def test_a_long_map_prints_periodic_progress_lines_when_stderr_is_not_a_terminal(tmp_path):
    root = _project(tmp_path)
    p = subprocess.run(
        [sys.executable, "-m", "slipstream", "run", "main.py", "aio"],
        cwd=root,
        capture_output=True,
        text=True,
        env=_env(SLIPSTREAM_PROGRESS_EVERY="0.3"),
        timeout=180,
    )
    assert p.returncode == 0, p.stderr
    assert "failed 6" in p.stdout and "aio failed 8" in p.stdout
    aio = p.stderr.splitlines()[
        [i for i, ln in enumerate(p.stderr.splitlines()) if ln.startswith("step.map 60/60")][-1]
        + 1 :
    ]
    aio_last = re.fullmatch(
        r"step\.map 80/80 done, 8 failed, \$(\d+\.\d{6}), \d+\.\d s",
        [ln for ln in aio if ln.startswith("step.map")][-1],
    )
    assert aio_last, "the .aio form shows its progress too"
    rows = [
        LINE.fullmatch(ln)
        for ln in p.stderr.splitlines()
        if ln.startswith("step.map") and "/60 " in ln
    ]
    assert len(rows) >= 2 and all(rows), p.stderr  # at least one while it ran, and the last
    counts = [(int(m[1]), int(m[2])) for m in rows]
    assert counts == sorted(counts), "done and failed only grow"
    assert counts[-1] == (60, 6), "the last line accounts for every input"
    assert counts[0][0] < 60, "a line came while the map was running"
    summary = re.search(
        r"\$(\d+\.\d{6}) at GPU prices", p.stderr
    )  # the script's spend: both maps (quick runs on the CPU)
    assert summary and float(rows[-1][3]) > 0, "spend so far"
    assert abs(float(rows[-1][3]) + float(aio_last[1]) - float(summary[1])) <= 2e-6, (
        "each map's spend, all of it"
    )
    assert "quick.map" not in p.stderr, "a map done within a second prints nothing"
    quiet = subprocess.run(
        [sys.executable, "-m", "slipstream", "run", "main.py"],
        cwd=root,
        capture_output=True,
        text=True,
        env=_env(SLIPSTREAM_PROGRESS="0", SLIPSTREAM_PROGRESS_EVERY="0.3"),
        timeout=180,
    )
    assert quiet.returncode == 0 and "step.map" not in quiet.stderr, (
        "SLIPSTREAM_PROGRESS=0 silences it"
    )


@pytest.mark.slow
def test_on_a_terminal_the_progress_is_one_line_redrawn_with_a_bar(tmp_path):
    root = _project(tmp_path)
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "slipstream", "run", "main.py"],
        cwd=root,
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=slave,
        stdin=subprocess.DEVNULL,
    )
    os.close(slave)
    seen = b""
    try:
        while True:
            try:
                chunk = os.read(master, 4096)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            seen += chunk
    finally:
        os.close(master)
        proc.wait(60)
    assert proc.returncode == 0, seen.decode(errors="replace")
    text = seen.decode(errors="replace")
    redraws = text.split("\r\x1b[2K")
    assert len(redraws) >= 3, text  # drawn while running, then redrawn in place
    assert re.match(
        r"step\.map \[####################\] 60/60 done, 6 failed, \$\d+\.\d{6}, \d+\.\d s\r?\n",
        redraws[-1],
    ), redraws[-1]
    assert all(r.startswith("step.map [") for r in redraws[1:]), "every redraw is the bar line"


SLOW = """
import os, time
from pathlib import Path
from slipstream import endpoint

@endpoint(workers=4)
def slow(i: int) -> int:
    Path(os.environ["MARKS"], str(i)).touch()
    time.sleep(30)
    return i

if __name__ == "__main__":
    list(slow.map(range(4)))
"""


@pytest.mark.slow
def test_ctrl_c_in_a_long_map_does_not_count_the_cancelled_calls_as_failed(tmp_path):
    import signal
    import time

    (tmp_path / "slipstream.toml").write_text('[project]\nname = "progress-int"\n')
    (tmp_path / "main.py").write_text(textwrap.dedent(SLOW))
    marks = tmp_path / "marks"
    marks.mkdir()
    p = subprocess.Popen(
        [sys.executable, "-m", "slipstream", "run", "main.py"],
        cwd=tmp_path,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=_env(MARKS=str(marks), SLIPSTREAM_PROGRESS_EVERY="0.3"),
    )
    try:
        deadline = time.monotonic() + 120
        while len(list(marks.iterdir())) < 4 and time.monotonic() < deadline and p.poll() is None:
            time.sleep(0.1)
        assert len(list(marks.iterdir())) == 4, "the four calls are running"
        time.sleep(1.2)  # past the first second: the map's progress is due
        p.send_signal(signal.SIGINT)
        _, err = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    lines = [ln for ln in err.splitlines() if ln.startswith("slow.map")]
    assert lines, err
    assert re.fullmatch(r"slow\.map 0/4 done, 0 failed, \$\d+\.\d{6}, \d+\.\d s", lines[-1]), err


def test_the_last_line_counts_a_call_whose_done_callback_has_not_run_yet():
    """asyncio runs a task's done callbacks later, on the loop: the map may take its last call
    (and print its last line) before they run. That line must still count every call."""
    import asyncio
    import io

    from slipstream.sdk.mapping import _Batch
    from slipstream.sdk.progress import MapProgress

    now = [0.0]
    out = io.StringIO()
    b = _Batch(4, True, True, MapProgress("step", 2, lambda: 0.0, stream=out, clock=lambda: now[0]))
    loop = asyncio.new_event_loop()
    try:
        futures = [loop.create_future(), loop.create_future()]
        b.fill(iter([(0,), (1,)]), lambda args, index: futures[index])
        now[0] = 5.0  # a long map: it prints a last line
        futures[0].set_result(0)
        futures[1].set_exception(
            ValueError("bad")
        )  # callbacks scheduled, not run: the loop is idle
        b.take(futures)
        b.close()
    finally:
        loop.close()
    assert out.getvalue().splitlines()[-1].startswith("step.map 2/2 done, 1 failed"), out.getvalue()
