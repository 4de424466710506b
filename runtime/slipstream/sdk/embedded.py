"""The embedded local runtime: a `slipstream serve` child process on loopback, started on demand."""

from __future__ import annotations

import atexit
import importlib.util
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ..protocol import envvars
from ..protocol.errors import RuntimeUnavailable

__all__ = ["EmbeddedRuntime"]

SERVER_MODULES = ("fastapi", "uvicorn")  # what `slipstream serve` imports from the server extra


class EmbeddedRuntime:
    def __init__(self, proc: subprocess.Popen[bytes], url: str, token: str, info: dict) -> None:
        self.proc = proc
        self.url = url
        self.token = token
        self.info = info

    @classmethod
    def start(
        cls,
        root: str | os.PathLike[str] | None = None,
        *,
        timeout: float = 60.0,
        extra_args: list[str] | None = None,
        log_path: str | None = None,
    ) -> EmbeddedRuntime:
        missing = [m for m in SERVER_MODULES if importlib.util.find_spec(m) is None]
        if missing:  # `pip install slipstream` is the SDK alone
            raise RuntimeUnavailable(
                f"no runtime is configured and the embedded one needs the runtime server, which is "
                f"not installed here (no {', '.join(missing)}): pip install 'slipstream[server]', "
                f"or set SLIPSTREAM_RUNTIME_URL to a running runtime"
            )
        token = secrets.token_urlsafe(24)
        ready = Path(tempfile.mkdtemp(prefix="slipstream-embedded-")) / "ready.json"
        env = dict(os.environ)
        env[envvars.TOKEN] = token  # passed by environment, never on the command line
        env.pop(envvars.RUNTIME_URL, None)
        # -P: the runtime's own imports never see the project in the current folder (a json.py there)
        cmd = [
            sys.executable,
            "-P",
            "-m",
            "slipstream",
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--embedded",
            "--ready-file",
            str(ready),
            "--parent-pid",
            str(os.getpid()),
            *(extra_args or []),
        ]
        log = open(log_path, "ab") if log_path else subprocess.DEVNULL
        proc = subprocess.Popen(
            cmd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log if log_path else None,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        try:
            while not ready.exists():
                if proc.poll() is not None:
                    raise RuntimeUnavailable(
                        f"the embedded runtime exited during start (code {proc.returncode})"
                    )
                if time.monotonic() > deadline:
                    proc.kill()
                    raise RuntimeUnavailable(
                        f"the embedded runtime did not start within {timeout:g}s"
                    )
                time.sleep(0.02)
            info = json.loads(ready.read_text())
        finally:
            shutil.rmtree(
                ready.parent, ignore_errors=True
            )  # nothing of ours stays in the temp folder
        rt = cls(proc, info["url"], token, info)
        atexit.register(rt.stop)
        return rt

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the runtime (its workers stop with it) and remove its temp store, also when it
        had to be killed before it could clean up itself."""
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        store = self.info.get("temp_store")
        if store and Path(store).name.startswith("slipstream-store-"):
            shutil.rmtree(store, ignore_errors=True)

    def __enter__(self) -> EmbeddedRuntime:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
