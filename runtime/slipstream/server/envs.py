"""Python environments for endpoint dependencies, installed once per requirement set.

Each distinct `dependencies=[...]` set gets a virtual environment layered on the runtime's own
(a .pth file makes the runtime's packages visible, so only what is missing is installed),
cached by the set's hash and shared by every worker and every later generation. A served
runtime keeps them in its store; the embedded one (`slipstream run`, `dev`, the editor), whose
store is temporary, in a cache folder of the user's (shared_env_root) that outlives it, so a set
is installed once per machine. Runtimes sharing that folder take a file lock per environment
while they build or check it: one installs, the others wait and reuse it.
"""

from __future__ import annotations

import ast
import asyncio
import contextlib
import hashlib
import os
import shutil
import site
import sys
import sysconfig
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ..protocol import envvars
from .logs import LogHub

try:
    import fcntl
except ImportError:  # not on POSIX: runtimes sharing a cache folder are not serialized
    fcntl = None  # type: ignore[assignment]

__all__ = [
    "PyEnv",
    "EnvManager",
    "EnvSource",
    "InstallFailed",
    "static_dependencies",
    "env_key",
    "shared_env_root",
]

# how ensure() found an environment: built now, built by an earlier runtime (on disk), or
# already in use by this runtime
EnvSource = Literal["installed", "reused", "cached"]


class InstallFailed(Exception):
    def __init__(self, requirements: tuple[str, ...], output: str) -> None:
        tail = "\n".join(output.strip().splitlines()[-12:])
        super().__init__(f"installing {', '.join(requirements)} failed:\n{tail}")
        self.requirements = requirements
        self.output = output


@dataclass
class PyEnv:
    key: str
    python: str
    requirements: tuple[str, ...] = ()
    site_dir: str = ""
    install_s: float = 0.0
    forkserver: Any = None
    preload: list[str] = field(default_factory=list)


def env_key(requirements: tuple[str, ...]) -> str:
    norm = sorted({r.strip().lower().replace(" ", "") for r in requirements})
    return hashlib.sha256("\n".join(norm).encode()).hexdigest()[:16]


def shared_env_root() -> Path:
    """Where the embedded runtime keeps dependency environments across runs: $SLIPSTREAM_ENV_CACHE,
    else $XDG_CACHE_HOME/slipstream/envs, else ~/.cache/slipstream/envs; a folder per interpreter
    in it, as an environment is layered on the runtime's own (its python and site-packages)."""
    base = os.environ.get(envvars.ENV_CACHE) or (
        Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "slipstream" / "envs"
    )
    ident = f"{sys.executable}\n{sys.prefix}\n{sys.version}"
    tag = hashlib.sha256(ident.encode()).hexdigest()[:10]
    v = sys.version_info
    return Path(base).expanduser().absolute() / f"py{v.major}.{v.minor}-{tag}"


def static_dependencies(path: Path) -> list[tuple[tuple[str, ...], int]]:
    """(requirements, decorator line) of every @endpoint(dependencies=[literal]) in a file,
    read without importing it, so the packages can be installed before the file is imported."""
    try:
        tree = ast.parse(path.read_bytes())
    except (OSError, SyntaxError, ValueError):
        return []
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            continue
        for dec in node.decorator_list:
            if not isinstance(dec, ast.Call):
                continue
            fn = dec.func
            name = fn.attr if isinstance(fn, ast.Attribute) else getattr(fn, "id", "")
            if "endpoint" not in name:
                continue
            for kw in dec.keywords:
                if kw.arg == "dependencies":
                    try:
                        reqs = ast.literal_eval(kw.value)
                    except ValueError:
                        continue
                    if (
                        isinstance(reqs, (list, tuple))
                        and all(isinstance(r, str) for r in reqs)
                        and reqs
                    ):
                        found.append((tuple(reqs), dec.lineno))
    return found


class EnvManager:
    def __init__(self, root: Path, logs: LogHub) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.logs = logs
        self.base = PyEnv("base", sys.executable)
        self.envs: dict[str, PyEnv] = {"base": self.base}
        self._locks: dict[str, asyncio.Lock] = {}
        self.installs = 0

    def get(self, requirements: tuple[str, ...]) -> PyEnv | None:
        if not requirements:
            return self.base
        return self.envs.get(env_key(requirements))

    async def ensure(
        self, requirements: tuple[str, ...], endpoint: str = ""
    ) -> tuple[PyEnv, EnvSource]:
        """The environment for these requirements, installing it the first time; (env, how it
        was found: "installed" now, "reused" from an earlier install on disk, or "cached")."""
        if not requirements:
            return self.base, "cached"
        key = env_key(requirements)
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            if key in self.envs:
                return self.envs[key], "cached"
            d = self.root / key
            async with self._file_lock(key, requirements, endpoint):
                if (d / ".complete").exists():
                    env = PyEnv(key, str(d / "bin" / "python"), tuple(requirements), _site_dir(d))
                    self.envs[key] = env
                    self._log(
                        endpoint,
                        f"reusing the environment of {' '.join(requirements)} installed before "
                        f"({d})",
                    )
                    return env, "reused"
                env = await self._create(d, key, tuple(requirements), endpoint)
            self.envs[key] = env
            return env, "installed"

    @contextlib.asynccontextmanager
    async def _file_lock(
        self, key: str, requirements: tuple[str, ...], endpoint: str
    ) -> AsyncIterator[None]:
        """Held while this process checks or builds environment `key`: another runtime using the
        same folder (two `slipstream run`s at once) waits for it, then finds it complete. The
        lock goes with its process, so a build that was killed never blocks the next one."""
        if fcntl is None:
            yield
            return
        fd = os.open(self.root / f"{key}.lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            said = False
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if not said:
                        said = True
                        self._log(
                            endpoint,
                            f"waiting for another runtime installing {' '.join(requirements)}",
                        )
                    await asyncio.sleep(0.2)
            yield
        finally:
            os.close(fd)  # releases the lock

    async def _create(self, d: Path, key: str, reqs: tuple[str, ...], endpoint: str) -> PyEnv:
        started = time.perf_counter()
        shutil.rmtree(d, ignore_errors=True)
        self._log(
            endpoint,
            f"installing {' '.join(reqs)} (environment {key}, once for every worker and generation)",
        )
        out = await self._run([sys.executable, "-m", "venv", "--without-pip", str(d)], endpoint)
        if out[0] != 0:
            raise InstallFailed(reqs, out[1])
        site_dir = _site_dir(d)
        Path(site_dir).mkdir(parents=True, exist_ok=True)
        # Layer on the runtime's environment: its packages (slipstream, torch, ...) stay visible.
        base_dirs = [
            p
            for p in site.getsitepackages() + [sysconfig.get_paths()["purelib"]]
            if os.path.isdir(p)
        ]
        lines = "".join(f"import site; site.addsitedir({p!r})\n" for p in dict.fromkeys(base_dirs))
        Path(site_dir, "_slipstream_base.pth").write_text(lines)
        python = str(d / "bin" / "python")
        cmd = [
            sys.executable,
            "-m",
            "pip",
            "--python",
            python,
            "install",
            "--no-input",
            "--progress-bar",
            "off",
            "--disable-pip-version-check",
            *reqs,
        ]
        code, output = await self._run(cmd, endpoint)
        if code != 0:
            shutil.rmtree(d, ignore_errors=True)
            self._log(endpoint, "install failed")
            raise InstallFailed(reqs, output)
        (d / ".complete").write_text("\n".join(reqs))
        self.installs += 1
        env = PyEnv(key, python, reqs, site_dir, time.perf_counter() - started)
        self._log(endpoint, f"installed {' '.join(reqs)} in {env.install_s:.1f}s")
        return env

    async def _run(self, cmd: list[str], endpoint: str) -> tuple[int, str]:
        proc = await asyncio.create_subprocess_exec(
            *cmd,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            stdin=asyncio.subprocess.DEVNULL,
        )
        assert proc.stdout is not None
        lines = []
        async for raw in proc.stdout:
            line = raw.decode(errors="replace").rstrip()
            lines.append(line)
            self.logs.emit(endpoint=endpoint or None, stream="install", text=line + "\n")
        return await proc.wait(), "\n".join(lines)

    def _log(self, endpoint: str, text: str) -> None:
        self.logs.emit(endpoint=endpoint or None, stream="system", text=text)

    async def close(self) -> None:
        for env in self.envs.values():
            if env.forkserver is not None:
                await env.forkserver.close()


def _site_dir(d: Path) -> str:
    return str(
        d / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages"
    )
