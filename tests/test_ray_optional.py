"""Ray is an optional extra: nothing but the Ray backend module imports it."""

from __future__ import annotations

import subprocess
import sys


def test_importing_slipstream_and_the_runtime_never_imports_ray():
    code = (
        "import sys, slipstream, slipstream.cli, slipstream.server.service, slipstream.server.app, "
        "slipstream.worker.main, slipstream.worker.fetch, slipstream.server.pools\n"
        "assert 'ray' not in sys.modules, sorted(m for m in sys.modules if m.startswith('ray'))"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
