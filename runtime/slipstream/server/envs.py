"""Python environments for endpoint dependencies, installed once per requirement set.

Each distinct `dependencies=[...]` set gets a virtual environment layered on the runtime's own
(a .pth file makes the runtime's packages visible, so only what is missing is installed),
cached by the set's hash and shared by every worker and every later generation.
"""

from __future__ import annotations

import ast
import asyncio
import hashlib
import os
import shutil
import site
import sys
import sysconfig
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .logs import LogHub

__all__ = ["PyEnv", "EnvManager", "InstallFailed", "static_dependencies", "env_key"]


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

    async def ensure(self, requirements: tuple[str, ...], endpoint: str = "") -> tuple[PyEnv, bool]:
        """The environment for these requirements, installing it the first time; (env, cached)."""
        if not requirements:
            return self.base, True
        key = env_key(requirements)
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            if key in self.envs:
                return self.envs[key], True
            d = self.root / key
            if (d / ".complete").exists():
                env = PyEnv(key, str(d / "bin" / "python"), tuple(requirements), _site_dir(d))
                self.envs[key] = env
                return env, True
            env = await self._create(d, key, tuple(requirements), endpoint)
            self.envs[key] = env
            return env, False

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
