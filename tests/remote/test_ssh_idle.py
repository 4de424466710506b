"""`slipstream serve --idle-stop`: a forgotten runtime stops itself and says so in its log."""

from __future__ import annotations

import subprocess
import sys
import time

from tests.conftest import start_runtime


def test_idle_stop_stops_the_runtime_after_the_last_call_and_says_so() -> None:
    rt = start_runtime("--idle-stop", "2s")
    try:
        c = rt.client()
        t0 = time.monotonic()
        for _ in range(3):  # calls keep it up past its idle time
            c.health()
            time.sleep(1.0)
        c.close()
        assert rt.proc.poll() is None, "stopped while it was being called"
        rt.proc.wait(timeout=30)
        assert time.monotonic() - t0 >= 4.0
        assert rt.proc.returncode == 0
        log = rt.log.read_text()
        assert (
            "idle-stop: no call and no client for 2s (--idle-stop 2s): stopping the runtime" in log
        )
    finally:
        rt.stop()


def test_a_bad_idle_stop_is_refused_with_the_form_to_write() -> None:
    r = subprocess.run(
        [sys.executable, "-m", "slipstream", "serve", "--port", "0", "--idle-stop", "soon"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 2
    assert "write e.g. 30m, 2h, 90s or 1h30m" in r.stderr
