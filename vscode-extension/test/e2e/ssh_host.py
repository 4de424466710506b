"""The e2e's stand-in GPU machine: the tests' OpenSSH server (tests/remote/sshhost.py) on a free
loopback port, whose sessions see SLIPSTREAM_FAKE_GPUS=H100, so the runtime `slipstream
connect` starts there reports an H100 (it runs on the CPU).

    python ssh_host.py      # prints one JSON line: {"env": {...}, "port": N, "root": "..."}

`env` is what a client needs (SLIPSTREAM_SSH_CONFIG with the alias `testhost`, SLIPSTREAM_SSH_DIR).
Everything stops, and the temporary folder goes, when stdin closes (the e2e run ends)."""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
sys.path.append(str(REPO))  # after PYTHONPATH: a checkout named there wins

from tests.remote.sshhost import start_ssh_host  # noqa: E402


def main() -> None:
    tmp = Path(tempfile.mkdtemp(prefix="slipstream-e2e-ssh-"))
    host = start_ssh_host(tmp, host_env={"SLIPSTREAM_FAKE_GPUS": "H100"})
    try:
        env = {k: v for k, v in host.env.items() if k != "HOME"}
        print(json.dumps({"env": env, "port": host.port, "root": str(tmp)}), flush=True)
        sys.stdin.read()
    finally:
        host.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
