"""`slipstream run --debug script.py`: breakpoint() in endpoint code waits for a debugger on the
embedded runtime, the CLI says how to attach, a DAP client attached to the port it printed stops
at the line after breakpoint() with the call's variables, and Continue lets the script finish."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import threading

import pytest

from tests.conftest import write_project
from tests.debug.dap import DapClient
from tests.reliability.helpers import HANG_BOUND_S

APP = """
from slipstream import endpoint

@endpoint()
def add(a: int, b: int) -> int:
    total = a + b
    breakpoint()
    doubled = total * 2  # AFTER-BREAKPOINT
    return doubled

if __name__ == "__main__":
    print("result", add(2, 3), flush=True)
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_run_debug_waits_at_breakpoint_and_a_dap_client_on_the_printed_port_stops_there(tmp_path):
    root = write_project(tmp_path / "proj", {"app.py": APP})
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("SLIPSTREAM_RUNTIME_URL", "SLIPSTREAM_TOKEN")
    }
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "slipstream", "run", "--debug", "--debug-port", str(port), "app.py"],
        cwd=root,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        said: list[str] = []
        attach = None
        killer = threading.Timer(HANG_BOUND_S, proc.kill)
        killer.start()
        for line in proc.stderr:  # the CLI's message, before anything attached
            said.append(line)
            m = re.search(r"any DAP client: attach to 127\.0\.0\.1:(\d+)", line)
            if m:
                attach = int(m.group(1))
                break
        killer.cancel()
        text = "".join(said)
        assert attach == port, text
        assert (
            "breakpoint() at app.py:7 in add waits for a debugger" in text
            and f'"port": {port}' in text
        ), text
        dap = DapClient.tcp(port)
        try:
            dap.start()  # no pathMappings: the relay fills them in
            stopped = dap.event("stopped")
            frame = dap.top_frame(stopped["threadId"])
            assert (frame["source"]["path"], frame["line"]) == (str((root / "app.py").resolve()), 8)
            assert dap.locals(frame["id"])["total"] == "5"
            dap.request("continue", threadId=stopped["threadId"])
            dap.event("terminated")
        finally:
            dap.close()
        out, err = proc.communicate(timeout=HANG_BOUND_S)
        assert proc.returncode == 0, err
        assert "result 10" in out
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
