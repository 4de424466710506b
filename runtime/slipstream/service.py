"""The runtime's state: code store, scanner, one pool per endpoint, metering totals."""

from __future__ import annotations

import asyncio
import os
import secrets
import tempfile
import time
from pathlib import Path
from typing import Any

from . import __version__
from .endpoint import IN_RUNTIME_ENV
from .envs import EnvManager, InstallFailed, PyEnv, static_dependencies
from .errors import ErrorInfo, Frame
from .forkserver import ForkServer, wanted_preloads
from .gpus import Device, inventory, matches
from .logs import LogHub
from .pools import LocalBackend, LocalWorker, Pool, PoolError
from .spec import EndpointSpec
from .store import Generation, Limits, Store

__all__ = ["Runtime", "DeployRefused"]


class DeployRefused(Exception):
    def __init__(self, info: ErrorInfo) -> None:
        super().__init__(info.message)
        self.info = info


class Runtime:
    def __init__(
        self,
        *,
        store_dir: Path | None = None,
        backend: Any = None,
        embedded: bool = False,
        gpu_fallback: bool = False,
        url: str = "",
        token: str = "",
        max_queue: int = 256,
        limits: Limits | None = None,
        scan_timeout: float = 120.0,
        fork: bool = True,
    ) -> None:
        self.id = secrets.token_hex(8)
        self.started_at = time.time()
        self._tmp = None
        if store_dir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="slipstream-store-")
            store_dir = Path(self._tmp.name)
        self.store = Store(store_dir, limits or Limits())
        self.backend = backend or LocalBackend()
        self.embedded = embedded
        self.gpu_fallback = gpu_fallback or embedded
        self.url, self.token = url, token
        self.max_queue = max_queue
        self.scan_timeout = scan_timeout
        self.logs = LogHub()
        self.data_port = 0  # the SDK's binary call channel (datachannel.py), set by the server
        self.envs = EnvManager(self.store.root / "envs", self.logs)
        self.fork = fork and hasattr(os, "fork") and self.backend.name == "local"
        self._preload: list[str] = []
        self.devices: list[Device] = self._inventory()
        self.pools: dict[str, Pool] = {}
        self.deploys = 0
        self._scanner: LocalWorker | None = None
        self._commit_lock = asyncio.Lock()

    # --- facts --------------------------------------------------------------------------
    def _inventory(self) -> list[Device]:
        cluster = getattr(self.backend, "inventory", None)  # a cluster backend (Ray) lists its nodes' GPUs
        return cluster() if cluster else inventory()

    def health(self) -> dict[str, Any]:
        gen = self.store.current
        if hasattr(self.backend, "inventory"):
            self.devices = self._inventory()  # a cluster's nodes come and go
        extra = {"cluster": self.backend.cluster()} if hasattr(self.backend, "cluster") else {}
        return {
            **extra,
            "ok": True,
            "version": __version__,
            "runtime_id": self.id,
            "backend": self.backend.name,
            "embedded": self.embedded,
            "data_port": self.data_port,
            "gpus": [d.to_dict() for d in self.devices],
            "generation": gen.id if gen else None,
            "endpoints": len(self.pools),
            "uptime_s": round(time.time() - self.started_at, 1),
            "environments": [
                {"key": e.key, "requirements": list(e.requirements),
                 "fork_server": None if e.forkserver is None else {
                     "ready": e.forkserver.usable, "preloaded": e.forkserver.info.get("preloaded", []),
                     "import_s": round(e.forkserver.info.get("import_s", 0.0), 2), "note": e.forkserver.reason}}
                for e in self.envs.envs.values()
            ],
            "installs": self.envs.installs,
        }

    def spend(self) -> dict[str, float]:
        return {
            "cost_usd": round(sum(p.stats.cost_usd for p in self.pools.values()), 8),
            "busy_s": round(sum(p.stats.busy_s for p in self.pools.values()), 6),
            "calls": sum(p.stats.calls for p in self.pools.values()),
        }

    def worker_env(self) -> dict[str, str]:
        env = {IN_RUNTIME_ENV: "1", "PYTHONUNBUFFERED": "1"}
        if self.url:
            env["SLIPSTREAM_RUNTIME_URL"] = self.url
        if self.token:
            env["SLIPSTREAM_TOKEN"] = self.token
        return env

    # --- code sync ----------------------------------------------------------------------
    def missing(self, files: dict[str, str]) -> list[str]:
        return self.store.missing(files)

    def put_blob(self, sha: str, data: bytes) -> None:
        self.store.put(sha, data)

    async def commit(self, files: dict[str, str], entries: list[str]) -> dict[str, Any]:
        async with self._commit_lock:
            started = time.perf_counter()
            cur = self.store.current
            if cur is not None and cur.files == files and sorted(cur.entries) == sorted(entries):
                return self._commit_reply(cur, [], {"endpoints": [self._pool_info(p) for p in self.pools.values()]}, started, unchanged=True)
            gen = self.store.commit(files, entries)
            try:
                installs = await self._install_declared(gen)
                scan = await self._scan(gen, [e.site_dir for e in installs if e.site_dir])
            except BaseException:  # refused or failed: the half-made generation goes
                self.store.discard(gen)
                raise
            self.store.activate(gen)
            self.deploys += 1
            changed = sorted(p for p in set(files) | set(cur.files if cur else {}) if (cur.files if cur else {}).get(p) != files.get(p))
            self._preload = self._preload or wanted_preloads(
                [(gen.dir / p).read_text(errors="replace") for p in files if p.endswith(".py")]
            )
            await self._apply(gen, scan)
            scan["installs"] = [
                {"requirements": list(e.requirements), "environment": e.key, "python": e.python,
                 "cached": self._cached.get(e.key, True), "install_s": round(e.install_s, 2)}
                for e in installs
            ]
            self.logs.emit(stream="system", text=f"deployed {gen.id}: {len(changed)} file(s) changed")
            return self._commit_reply(gen, changed, scan, started)

    def _commit_reply(self, gen: Generation, changed: list[str], scan: dict[str, Any], started: float, unchanged: bool = False) -> dict[str, Any]:
        return {
            "generation": gen.id,
            "unchanged": unchanged,
            "changed": changed,
            "reexecuted": scan.get("reexecuted", []),
            "restart": scan.get("restart", ""),
            "installs": scan.get("installs", []),
            "endpoints": [
                {k: e.get(k) for k in ("name", "module", "file", "line", "kind", "methods", "generator", "signature", "doc", "spec", "gpu", "note", "unavailable")}
                for e in scan.get("endpoints", [])
            ],
            "duration_ms": round((time.perf_counter() - started) * 1000, 2),
        }

    @staticmethod
    def _pool_info(p: Pool) -> dict[str, Any]:
        d = dict(p.info)
        d.update(gpu=p.spec.gpu_label, note=p.fallback_note, unavailable=p.unavailable)
        return d

    async def _install_declared(self, gen: Generation) -> list[PyEnv]:
        """Install every literal dependencies=[...] set before the code is imported."""
        envs: list[PyEnv] = []
        self._cached: dict[str, bool] = {}
        for rel in gen.entries:
            for reqs, line in static_dependencies(gen.dir / rel):
                try:
                    env, cached = await self.envs.ensure(reqs, endpoint=f"{rel}:{line}")
                    self._cached[env.key] = self._cached.get(env.key, True) and cached
                except InstallFailed as exc:
                    raise DeployRefused(
                        ErrorInfo("InstallError", str(exc), exc.output[-4000:], [Frame(rel, line, "@endpoint", "", True)], kind="deploy")
                    ) from None
                if env not in envs:
                    envs.append(env)
        return envs

    async def _env_for(self, spec: EndpointSpec) -> PyEnv:
        env, _ = await self.envs.ensure(spec.dependencies, endpoint=spec.name)
        if self.fork and env.forkserver is None:
            env.forkserver = ForkServer(env.python, self._preload, self.worker_env())
            asyncio.ensure_future(env.forkserver.start())
        return env

    async def _scan(self, gen: Generation, extra_paths: list[str] | None = None) -> dict[str, Any]:
        for attempt in range(2):
            if self._scanner is None:
                env = self.worker_env()
                env[IN_RUNTIME_ENV] = "scan"
                env["CUDA_VISIBLE_DEVICES"] = ""  # the scanner imports code; it never touches a GPU
                self._scanner = LocalWorker("scanner", lambda *a: None, self._scanner_exit, env)
                await self._scanner.start({})
            header = {"op": "scan", "gen": gen.id, "gen_dir": str(gen.dir), "manifest": gen.files,
                      "entries": gen.entries, "extra_paths": extra_paths or []}
            try:
                reply = await self._scanner.request(header, "scanned", "scan_error", timeout=self.scan_timeout)
            except TimeoutError:
                self._scanner.kill("import took too long")
                self._scanner = None
                raise DeployRefused(
                    ErrorInfo("DeployTimeout", f"importing the new code took over {self.scan_timeout:g}s; "
                              "move slow work (model loads) out of module level into setup() or keep()", "", kind="deploy")
                ) from None
            except PoolError as exc:
                self._scanner = None
                if attempt == 0:
                    continue
                raise DeployRefused(ErrorInfo("ImportCrashed", f"importing the new code crashed the process: {exc}", "", kind="deploy")) from None
            if reply["op"] == "scan_error":
                info = ErrorInfo.from_dict(reply["error"])
                info.kind = "deploy"
                raise DeployRefused(info)
            if reply.get("restart"):
                # The scanner cannot reload this in place either: start it fresh on the new code.
                self._scanner.kill("restart for reload")
                self._scanner = None
                if attempt == 0:
                    reply_restart = reply["restart"]
                    res = await self._scan(gen, extra_paths)
                    res["restart"] = reply_restart
                    return res
            return reply
        raise AssertionError("unreachable")

    def _scanner_exit(self, handle: Any, reason: str) -> None:
        if self._scanner is handle:
            self._scanner = None

    async def _apply(self, gen: Generation, scan: dict[str, Any]) -> None:
        seen = set()
        for info in scan.get("endpoints", []):
            spec = EndpointSpec.from_dict(info["spec"])
            seen.add(spec.name)
            devices, note, unavailable = self._placement(spec)
            info.update(gpu=spec.gpu_label, note=note, unavailable=unavailable)
            pyenv = await self._env_for(spec)
            pool = self.pools.get(spec.name)
            if pool is None:
                self.pools[spec.name] = Pool(
                    info, spec, gen, self.backend, self.logs,
                    env={**self.worker_env(), **dict(spec.env)},
                    devices=devices, max_queue=self.max_queue,
                    fallback_note=note, unavailable=unavailable, pyenv=pyenv,
                )
            else:
                pool.pyenv = pyenv
                pool.env = {**self.worker_env(), **dict(spec.env)}
                pool.device_slots, pool.fallback_note, pool.unavailable = devices, note, unavailable
                pool.update(info, spec, gen, replace=scan.get("restart", ""))
        for name in [n for n in self.pools if n not in seen]:
            await self.pools.pop(name).close()

    def _placement(self, spec: EndpointSpec) -> tuple[list[tuple[int, ...]], str, str]:
        """GPU slots for the pool's workers, a note for CPU fallback, or why it cannot run here."""
        if hasattr(self.backend, "placement"):  # a cluster backend places workers on its nodes itself
            return self.backend.placement(spec, self.gpu_fallback)
        req = spec.gpu_request
        if req.is_cpu:
            return [], "", ""
        for choice in req.choices:
            found = matches(self.devices, choice.gpu.name)
            if len(found) >= choice.count:
                idx = [d.index for d in found]
                slots = [tuple(idx[i : i + choice.count]) for i in range(0, len(idx) - choice.count + 1, choice.count)]
                return slots, "", ""
        have = ", ".join(sorted({d.name for d in self.devices})) or "no GPU"
        if self.gpu_fallback:
            if self.devices:
                idx = tuple(d.index for d in self.devices[: req.primary.count])
                return [idx], f"this runtime has no {req.label}; running on {self.devices[0].name} instead", ""
            return [], f"this runtime has no GPU; {spec.name!r} ({req.label}) runs on the CPU", ""
        return [], "", (
            f"endpoint {spec.name!r} asks for {req.label} but this runtime has {have}. "
            "Point SLIPSTREAM_RUNTIME_URL at a runtime with that GPU, add a fallback (gpu=[...]), "
            "or start this one with --gpu-fallback to run on what it has."
        )

    # --- calls --------------------------------------------------------------------------
    def pool(self, name: str) -> Pool:
        pool = self.pools.get(name)
        if pool is None:
            known = ", ".join(sorted(self.pools)) or "none deployed yet"
            raise KeyError(f"no endpoint named {name!r} on this runtime (endpoints: {known})")
        return pool

    async def shutdown(self) -> None:
        await asyncio.gather(*(p.close() for p in self.pools.values()), return_exceptions=True)
        self.pools.clear()
        if self._scanner is not None:
            await self._scanner.stop(0.5)
        await self.envs.close()
        if self._tmp is not None:
            self._tmp.cleanup()


def default_store_dir() -> Path | None:
    d = os.environ.get("SLIPSTREAM_STORE")
    return Path(d) if d else None

