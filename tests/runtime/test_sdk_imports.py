"""The SDK side stays light: a user's process that creates a runtime client (every call does)
does not import the runtime server or its web framework; `pip install slipstream` (the
[project] dependencies alone, no extra) is enough to call endpoints on a runtime."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from tests.conftest import REPO, RunningRuntime, write_project

# what the server, daemon and debug extras bring: a user's process never needs them
HEAVY = (
    "fastapi",
    "starlette",
    "uvicorn",
    "pydantic",
    "pygls",
    "lsprotocol",
    "libcst",
    "watchfiles",
    "debugpy",
    "ray",
)
OWN_ROOMS = ("slipstream.server", "slipstream.worker", "slipstream.cli", "slipstream_daemon")

USER_SCRIPT = """
import os, sys
sys.path.insert(0, os.getcwd())
import app
print("RESULT", app.double(21))
loaded = sorted(m for m in sys.modules if m.split(".")[0] in {heavy}
                or any(m == r or m.startswith(r + ".") for r in {rooms}))
print("LOADED", loaded)
"""

APP = """
from slipstream import endpoint

@endpoint
def double(x):
    return 2 * x
"""


def _user_run(
    python: str, root: Path, rt: RunningRuntime, extra_env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    import os

    env = {
        **os.environ,
        "SLIPSTREAM_RUNTIME_URL": rt.url,
        "SLIPSTREAM_TOKEN": rt.token,
        **(extra_env or {}),
    }
    code = USER_SCRIPT.format(heavy=set(HEAVY), rooms=OWN_ROOMS)
    return subprocess.run(
        [python, "-c", code], cwd=root, env=env, capture_output=True, text=True, timeout=120
    )


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


def test_importing_slipstream_loads_no_http_client() -> None:
    """`from slipstream import endpoint` runs before the project's own modules are known: the
    HTTP client (httpx, and the standard library it pulls in, such as `calendar`) loads at the
    first call, so a project module named like a standard-library one is refused with a
    message naming it instead of breaking the import (test_shapes_sdk)."""
    code = "import sys, slipstream\nprint(sorted(m for m in ('httpx', 'http.cookiejar') if m in sys.modules))\n"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]", out.stdout


def test_a_user_process_calling_an_endpoint_imports_no_server_daemon_or_worker(
    runtime: RunningRuntime, tmp_path: Path
) -> None:
    root = write_project(tmp_path / "proj", {"app.py": APP})
    out = _user_run(sys.executable, root, runtime)
    assert out.returncode == 0, out.stderr
    assert "RESULT 42" in out.stdout, out.stdout
    assert "LOADED []" in out.stdout, out.stdout


def _sdk_only_venv(tmp_path: Path) -> str:
    """A fresh virtual environment with exactly pyproject's [project] dependencies (no extra),
    Slipstream's packages on PYTHONPATH."""
    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python = str(venv / "bin" / "python")
    r = subprocess.run(
        [python, "-m", "pip", "install", "-q", "--disable-pip-version-check", *deps],
        capture_output=True,
        text=True,
        timeout=300,
    )
    if r.returncode != 0:
        pytest.fail(
            f"installing the SDK's dependencies {deps} failed (no package index here?):\n{r.stderr[-2000:]}"
        )
    return python


@pytest.mark.slow
def test_the_sdk_alone_calls_a_runtime_and_says_what_to_install_for_the_embedded_one(
    runtime: RunningRuntime, tmp_path: Path
) -> None:
    python = _sdk_only_venv(tmp_path)
    root = write_project(tmp_path / "proj", {"app.py": APP})
    # both packages, as a wheel of this repository installs them
    pythonpath = {"PYTHONPATH": f"{REPO / 'runtime'}:{REPO / 'daemon'}"}
    out = _user_run(python, root, runtime, pythonpath)
    assert out.returncode == 0, out.stderr
    assert "RESULT 42" in out.stdout, out.stdout
    assert "LOADED []" in out.stdout, out.stdout

    # no runtime configured: the embedded one needs the server extra, and the error says so
    import os

    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("SLIPSTREAM_RUNTIME_URL", "SLIPSTREAM_TOKEN")
    }
    code = "import os, sys; sys.path.insert(0, os.getcwd()); import app; app.double(1)"
    out = subprocess.run(
        [python, "-c", code],
        cwd=root,
        env={**env, **pythonpath},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode != 0
    assert "pip install 'slipstream[server]'" in out.stderr, out.stderr[-2000:]
    assert "SLIPSTREAM_RUNTIME_URL" in out.stderr, out.stderr[-2000:]

    # the commands that need an extra say which, in one line (no traceback)
    for command, extra in ((["serve", "--port", "0"], "server"), (["daemon"], "daemon")):
        out = subprocess.run(
            [python, "-m", "slipstream", *command],
            env={**env, **pythonpath},
            capture_output=True,
            text=True,
            timeout=120,
            stdin=subprocess.DEVNULL,
        )
        assert out.returncode == 2, (command, out.stderr[-2000:])
        assert f"pip install 'slipstream[{extra}]'" in out.stderr, out.stderr[-2000:]
        assert "Traceback" not in out.stderr, out.stderr[-2000:]
