"""The SDK side stays light: a user's process that creates a runtime client (every call does)
does not import the runtime server or its web framework."""

from __future__ import annotations

import subprocess
import sys


def test_a_runtime_client_does_not_import_the_server() -> None:
    code = (
        "import sys\n"
        "from slipstream.sdk.client import RuntimeClient\n"
        "RuntimeClient('http://127.0.0.1:9', 'token')\n"
        "print(sorted(m for m in ('fastapi', 'starlette', 'uvicorn', 'slipstream.server.app') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]", out.stdout
