"""Shared fixtures: a real `slipstream serve` on loopback, and throwaway projects."""

from __future__ import annotations

import importlib
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@dataclass
class RunningRuntime:
    url: str
    token: str
    proc: subprocess.Popen[bytes]
    log: Path

    def client(self):
        from slipstream.sdk.client import RuntimeClient

        return RuntimeClient(self.url, self.token)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


_runtime_dirs: list[
    Path
] = []  # each test runtime's ready file and log, removed when the session ends

# the embedded runtimes tests start keep dependency environments in a cache folder of their own
# (not the user's ~/.cache/slipstream/envs), removed when the session ends
if "SLIPSTREAM_ENV_CACHE" not in os.environ:
    _env_cache = Path(tempfile.mkdtemp(prefix="slipstream-test-envs-"))
    _runtime_dirs.append(_env_cache)
    os.environ["SLIPSTREAM_ENV_CACHE"] = str(_env_cache)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    for d in _runtime_dirs:
        shutil.rmtree(d, ignore_errors=True)


def start_runtime(
    *args: str,
    token: str | None = None,
    env: dict[str, str] | None = None,
    launcher: tuple[str, ...] = (sys.executable, "-m", "slipstream"),
) -> RunningRuntime:
    """A real `slipstream serve` on a free loopback port, started by `launcher` (the CLI's argv
    before "serve"), once it has written its ready file."""
    token = token or secrets.token_urlsafe(16)
    d = Path(tempfile.mkdtemp(prefix="slipstream-test-rt-"))
    _runtime_dirs.append(d)
    ready = d / "ready.json"
    log = d / "serve.log"
    full_env = {**os.environ, "SLIPSTREAM_TOKEN": token, **(env or {})}
    full_env.pop("SLIPSTREAM_RUNTIME_URL", None)
    if "--store" not in args:
        args = (
            "--temp-store",
            *args,
        )  # each test runtime its own code store, removed when it stops
    proc = subprocess.Popen(
        [*launcher, "serve", "--port", "0", "--ready-file", str(ready), *args],
        env=full_env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    deadline = time.monotonic() + 30
    while not ready.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"runtime did not start:\n{log.read_text()}")
        time.sleep(0.02)
    return RunningRuntime(json.loads(ready.read_text())["url"], token, proc, log)


@pytest.fixture(scope="module")
def runtime() -> Iterator[RunningRuntime]:
    rt = start_runtime("--gpu-fallback")
    yield rt
    rt.stop()


def remove_project(rt: RunningRuntime, root: Path) -> None:
    """Forget a test's project on a runtime that other tests go on using (DELETE /v1/projects/{key})."""
    import httpx

    from slipstream.sdk.config import project_key

    if rt.proc.poll() is not None:
        return
    try:
        httpx.delete(
            f"{rt.url}/v1/projects/{project_key(root)}",
            headers={"Authorization": f"Bearer {rt.token}"},
            timeout=30,
        )
    except httpx.HTTPError:
        pass  # the runtime went away: nothing left to forget


def write_project(root: Path, files: dict[str, str]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "slipstream.toml").write_text('[project]\nname = "test"\n')
    for rel, text in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(textwrap.dedent(text))
    return root


class Project:
    """A project on disk whose modules are imported in this process and called through the SDK."""

    def __init__(self, root: Path, rt: RunningRuntime) -> None:
        self.root = root
        self.rt = rt

    def write(self, rel: str, text: str) -> None:
        p = self.root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(textwrap.dedent(text))
        # a save within the same mtime tick must still be seen as a change
        st = p.stat()
        os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))

    def module(self, name: str):
        sys.path.insert(0, str(self.root))
        try:
            sys.modules.pop(name, None)
            return importlib.import_module(name)
        finally:
            sys.path.remove(str(self.root))

    def sync(self):
        return self.rt.client().sync(self.root)


@pytest.fixture()
def project_factory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    from slipstream.sdk import session

    before = set(sys.modules)
    made: list[Project] = []

    def make(rt: RunningRuntime, files: dict[str, str], name: str = "proj") -> Project:
        monkeypatch.setenv("SLIPSTREAM_RUNTIME_URL", rt.url)
        monkeypatch.setenv("SLIPSTREAM_TOKEN", rt.token)
        session._session = None
        made.append(Project(write_project(tmp_path / name, files), rt))
        return made[-1]

    yield make
    if session._session is not None:
        session._session.close()
        session._session = None
    for proj in made:  # a module's runtime outlives the test: its projects (and workers) must not
        remove_project(proj.rt, proj.root)
    for mod in set(sys.modules) - before:  # this test's project modules must not leak into others
        if str(getattr(sys.modules[mod], "__file__", "") or "").startswith(str(tmp_path)):
            del sys.modules[mod]
