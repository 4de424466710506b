"""The runtime's state: the code store and, per project, its generations, scanner, one pool per
endpoint and metering. Projects never see each other's code: a commit replaces only its own
project's endpoints, and calls name their project (see docs/architecture.md)."""

from __future__ import annotations

import asyncio
import json
import os
import re
import secrets
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..endpoint import IN_RUNTIME_ENV
from ..protocol.envvars import PROJECT as PROJECT_ENV
from ..protocol.errors import ErrorInfo, Frame
from ..protocol.kinds import ErrorKind
from ..protocol.messages import CommitReply, commit_endpoint
from ..protocol.version import __version__
from ..spec.endpoint_spec import EndpointSpec, SpecError
from ..spec.variants import variant_spec
from ..worker.forkserver import ForkServer, wanted_preloads
from .allocator import GpuAllocator
from .backend import Backend, GpuFallbacks, Placement
from .credentials import project_token
from .envs import (
    EnvManager,
    EnvSource,
    InstallFailed,
    PyEnv,
    shared_env_root,
    static_dependencies,
)
from .gpus import Device
from .logs import LogHub
from .pools import LocalBackend, LocalWorker, Pool, PoolError
from .sessions import DEFAULT_LEASE_S, Sessions
from .store import CURRENT_FILE, Generation, Limits, Store, check_paths

if TYPE_CHECKING:
    from .idle import IdleWatch
from ..protocol import envvars

__all__ = [
    "Runtime",
    "DeployRefused",
    "Project",
    "AmbiguousEndpoint",
    "DEFAULT_PROJECT",
    "check_project_key",
]

DEFAULT_PROJECT = "default"  # what a commit without a project key (an old client, curl) lands in
PROJECT_KEY_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,79}$")
MAX_SCANNERS = 4  # live import processes; the least recently deployed project's goes first


def check_project_key(key: str | None) -> str:
    """A usable project key, or ValueError saying what one looks like."""
    if key is None or key == "":
        return DEFAULT_PROJECT
    if not isinstance(key, str) or not PROJECT_KEY_RE.match(key):
        raise ValueError(
            f"project key {str(key)[:90]!r} is not valid: use 1-80 letters, digits, '_', '.' or '-' "
            "starting with a letter or digit (the SDK derives one: slipstream.sdk.config.project_key)"
        )
    return key


# How long a deploy's reply waits for warm workers to switch, to say what their kept objects
# run (a longer setup() reports in the endpoint's log instead).
RELOAD_REPORT_WAIT_S = 2.0


class AmbiguousEndpoint(LookupError):
    """An endpoint name that several projects define, asked for without naming the project."""

    def __init__(self, name: str, projects: list[str]) -> None:
        self.name, self.projects = name, projects
        routes = ", ".join(f"/v1/projects/{p}/endpoints/{name}/call" for p in projects)
        super().__init__(
            f"endpoint {name!r} is defined by {len(projects)} projects on this runtime "
            f"({', '.join(projects)}); name the project: {routes}"
        )


class _ProjectLogs:
    """The runtime's log hub as one project's pools see it: every line carries the project."""

    def __init__(self, hub: LogHub, key: str) -> None:
        self.hub, self.key = hub, key

    def emit(self, **event: Any) -> None:
        event.setdefault("project", self.key)
        self.hub.emit(**event)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.hub, name)


class Project:
    """One project's share of a runtime: generations, scanner, pools, deploys and metering."""

    def __init__(
        self, key: str, store: Store, logs: LogHub, sessions: Sessions | None = None
    ) -> None:
        self.key = key
        self.sessions = sessions
        self.store = store
        self.logs = _ProjectLogs(logs, key)
        self.pools: dict[str, Pool] = {}
        self.scanner: LocalWorker | None = None
        self.deploys = 0
        self.lock = asyncio.Lock()
        self.deployed_at = 0.0

    @property
    def name(self) -> str:
        return self.key.rsplit("-", 1)[0] if "-" in self.key else self.key

    def spend(self) -> dict[str, float]:
        pools = self.pools.values()
        return {
            "cost_usd": round(sum(p.stats.cost_usd for p in pools), 8),
            "busy_s": round(sum(p.stats.busy_s for p in pools), 6),
            "calls": sum(p.stats.calls for p in pools),
        }

    def describe(self) -> dict[str, Any]:
        gen = self.store.current
        return {
            "key": self.key,
            "name": self.name,
            "generation": gen.id if gen else None,
            "deploys": self.deploys,
            "deployed_at": self.deployed_at or None,
            "scanner": self.scanner
            is not None,  # its import process is live (at most MAX_SCANNERS are)
            "endpoints": sorted(self.pools),
            "environments": sorted(
                {p.pyenv.key for p in self.pools.values() if p.pyenv is not None}
            ),
            "spend": self.spend(),
            # dev sessions attached (slipstream dev, the editor, a script): warm workers stay
            "sessions": self.sessions.describe(self.key) if self.sessions is not None else [],
        }


class DeployRefused(Exception):
    def __init__(self, info: ErrorInfo) -> None:
        super().__init__(info.message)
        self.info = info


class Runtime:
    def __init__(
        self,
        *,
        store_dir: Path | None = None,
        envs_dir: Path | None = None,
        backend: Backend | None = None,
        embedded: bool = False,
        gpu_fallback: bool = False,
        url: str = "",
        token: str = "",
        max_queue: int = 256,
        limits: Limits | None = None,
        scan_timeout: float = 120.0,
        fork: bool = True,
        session_lease: float = DEFAULT_LEASE_S,
    ) -> None:
        self.id = secrets.token_hex(8)
        self.sessions = Sessions(session_lease)  # attached dev sessions (sessions.py)
        self.started_at = time.time()
        self._tmp = None
        if store_dir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="slipstream-store-")
            store_dir = Path(self._tmp.name)
        self.store = Store(store_dir, limits or Limits())
        self.backend: Backend = backend or LocalBackend()
        self.embedded = embedded
        self.activity: IdleWatch | None = None  # serve --idle-stop (app.py); idle.py counts calls
        self.gpu_fallback = gpu_fallback or embedded
        self.url, self.token = url, token
        self.max_queue = max_queue
        self.scan_timeout = scan_timeout
        self.logs = LogHub()
        self.data_port = 0  # the SDK's binary call channel (datachannel.py), set by the server
        self.tls = (
            False  # HTTPS and a TLS data channel (serve --tls-cert/--tls-key), set by the server
        )
        self.tls_ca = ""  # the certificate file, given to workers as their CA bundle
        # dependency environments: in the store, but the embedded runtime's store is temporary,
        # so it keeps them in the user's cache, installed once per machine (envs.shared_env_root)
        self.envs = EnvManager(
            envs_dir or (shared_env_root() if embedded else self.store.root / "envs"), self.logs
        )
        self.fork = fork and hasattr(os, "fork") and self.backend.forks
        self._preload: list[str] = []
        self.devices: list[Device] = self.backend.inventory()
        # one GPU allocator for every worker of every pool and project on this machine (a
        # cluster's scheduler places its own: no allocator there); docs/gpus.md
        self.allocator: GpuAllocator | None = (
            GpuAllocator(self.devices) if self.backend.forks and self.devices else None
        )
        self.projects: dict[str, Project] = {}
        self.deploys = 0
        self._last_project: Project | None = None

    # --- facts --------------------------------------------------------------------------
    @property
    def pools(self) -> dict[str, Pool]:
        """Every project's pools, keyed "project/endpoint"."""
        return {
            f"{p.key}/{name}": pool
            for p in self.projects.values()
            for name, pool in p.pools.items()
        }

    def project(self, key: str | None, *, create: bool = False) -> Project:
        """The project by key (KeyError if it never deployed here; ValueError for a bad key)."""
        key = check_project_key(key)
        proj = self.projects.get(key)
        if proj is None:
            if not create:
                known = ", ".join(sorted(self.projects)) or "none deployed yet"
                raise KeyError(
                    f"no project {key!r} has deployed to this runtime (projects: {known}); sync it first"
                )
            proj = self.projects[key] = Project(
                key, self.store.scoped(key), self.logs, self.sessions
            )
        return proj

    def deployed(self) -> list[Project]:
        """The projects with a live generation (a first deploy that was refused leaves none)."""
        return [p for p in self.projects.values() if p.store.current is not None]

    def listing(self, project: str | None = None) -> dict[str, Any]:
        """GET /v1/endpoints: every endpoint (each naming its project), the projects, the spend."""
        projects = [self.project(project)] if project else self.deployed()
        return {
            "endpoints": [pool.describe() for p in projects for pool in p.pools.values()],
            "projects": [p.describe() for p in projects],
            "spend": projects[0].spend() if project else self.spend(),
            "runtime": self.health(),
        }

    def health(self) -> dict[str, Any]:
        gen = self._last_project.store.current if self._last_project else None
        self.devices = self.backend.inventory()  # a cluster's nodes come and go
        cluster = self.backend.cluster()
        extra = {"cluster": cluster} if cluster is not None else {}
        return {
            **extra,
            "ok": True,
            "version": __version__,
            "runtime_id": self.id,
            "backend": self.backend.name,
            "embedded": self.embedded,
            "data_port": self.data_port,
            "tls": self.tls,
            "persistent_store": self._tmp
            is None,  # code survives a restart (served again at start)
            "gpus": [d.to_dict() for d in self.devices],
            # who holds each GPU: project, endpoint, worker, GB reserved (allocator.py)
            "gpu_use": self.allocator.snapshot() if self.allocator is not None else [],
            "generation": gen.id if gen else None,  # the latest deploy's, of whichever project
            "endpoints": sum(len(p.pools) for p in self.projects.values()),
            "projects": [
                {
                    "key": p.key,
                    "generation": p.store.current.id if p.store.current else None,
                    "endpoints": len(p.pools),
                }
                for p in self.deployed()
            ],
            "uptime_s": round(time.time() - self.started_at, 1),
            "environments": [
                {
                    "key": e.key,
                    "requirements": list(e.requirements),
                    "fork_server": None
                    if e.forkserver is None
                    else {
                        "ready": e.forkserver.usable,
                        "preloaded": e.forkserver.info.get("preloaded", []),
                        "import_s": round(e.forkserver.info.get("import_s", 0.0), 2),
                        "note": e.forkserver.reason,
                    },
                    "projects": sorted(
                        p.key
                        for p in self.projects.values()
                        if any(pool.pyenv is e for pool in p.pools.values())
                    ),
                }
                for e in self.envs.envs.values()
            ],
            "installs": self.envs.installs,
        }

    def spend(self) -> dict[str, float]:
        each = [p.spend() for p in self.projects.values()]
        return {
            "cost_usd": round(sum(s["cost_usd"] for s in each), 8),
            "busy_s": round(sum(s["busy_s"] for s in each), 6),
            "calls": sum(s["calls"] for s in each),
        }

    def worker_env(self, project: str = "") -> dict[str, str]:
        env = {IN_RUNTIME_ENV: "1", "PYTHONUNBUFFERED": "1"}
        if project:
            env[PROJECT_ENV] = project  # an endpoint calling another stays in its own project
            # several runtimes: the table the client sent with its commit (sdk/routing.py), read
            # at each nested call, so one naming a new address is seen without new workers
            env[envvars.ROUTING_FILE] = str(self._routing_file(project))
        if self.url:
            env[envvars.RUNTIME_URL] = self.url
        if self.token and project:
            # never the runtime's token: one narrowed to this project (credentials.py), which
            # reaches its calls and routes only (user code may print its environment)
            env[envvars.TOKEN] = project_token(self.token, project)
        if self.url.startswith("http://"):
            # the runtime serves plain HTTP where its workers reach it (0.0.0.0 as a Ray node's
            # LAN address): calling it back is not the user's choice to send a token in clear
            env[envvars.ALLOW_INSECURE] = "runtime"
        if self.tls_ca:  # workers call over https:// too; a self-signed certificate is its own CA
            env.setdefault(envvars.CA_BUNDLE, os.environ.get(envvars.CA_BUNDLE) or self.tls_ca)
        return env

    def _routing_file(self, project: str) -> Path:
        return self.store.root / "routing" / f"{project}.json"

    def _write_routing(self, project: str, routing: str) -> None:
        """Keep the routing table a client sent (it names every runtime of the project, with
        their tokens): mode 0600, removed when the runtime stops."""
        try:
            data = json.loads(routing)
            ok = isinstance(data, dict) and isinstance(data.get("runtimes"), list)
        except ValueError:
            ok = False
        if not ok:
            raise ValueError(
                '\'routing\' must be a routing table: {"self": NAME, "runtimes": [...]} (sdk/routing.py)'
            )
        if self.token:  # this runtime's own entry: the project's narrowed credential, never ours
            for rt in data["runtimes"]:
                if isinstance(rt, dict) and rt.get("token") == self.token:
                    rt["token"] = project_token(self.token, project)
            routing = json.dumps(data)
        path = self._routing_file(project)
        path.parent.mkdir(mode=0o700, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(routing)
        os.replace(tmp, path)

    # --- code sync ----------------------------------------------------------------------
    def missing(self, files: dict[str, str]) -> list[str]:
        return self.store.missing(files)

    def put_blob(self, sha: str, data: bytes) -> None:
        self.store.put(sha, data)

    def put_blobs(self, blobs: list[tuple[str, bytes]]) -> None:
        for sha, data in blobs:
            self.store.put(sha, data)

    async def commit(
        self,
        files: dict[str, str],
        entries: list[str],
        project: str | None = None,
        paths: list[str] | None = None,
        routing: str | None = None,
        skipped: dict[str, str] | None = None,
    ) -> CommitReply:
        """Deploy a project's files; only that project's endpoints change. ValueError: bad key.
        routing: the project's routing table when it runs on several runtimes (sdk/routing.py).
        skipped: the paths the sync left out and why (workers add it to errors on them)."""
        proj = self.project(project, create=True)
        if routing is not None:
            await asyncio.to_thread(self._write_routing, proj.key, routing)
        async with proj.lock:
            started = time.perf_counter()
            store = proj.store
            cur = store.current
            if (
                cur is not None
                and cur.files == files
                and sorted(cur.entries) == sorted(entries)
                and cur.paths == check_paths(paths)
                and cur.skipped == (skipped or {})
            ):
                return self._commit_reply(
                    proj,
                    cur,
                    [],
                    {"endpoints": [self._pool_info(p) for p in proj.pools.values()]},
                    started,
                    unchanged=True,
                )
            gen = store.commit(files, entries, paths, skipped)
            try:
                installs, cached = await self._install_declared(gen)
                scan = await self._scan(proj, gen, [e.site_dir for e in installs if e.site_dir])
            except BaseException:  # refused or failed: the half-made generation goes
                store.discard(gen)
                raise
            store.activate(gen)
            self.deploys += 1
            proj.deploys += 1
            proj.deployed_at = time.time()
            self._last_project = proj
            changed = sorted(
                p
                for p in set(files) | set(cur.files if cur else {})
                if (cur.files if cur else {}).get(p) != files.get(p)
            )
            self._preload = self._preload or wanted_preloads(
                [(gen.dir / p).read_text(errors="replace") for p in files if p.endswith(".py")]
            )
            await self._apply(proj, gen, scan)
            scan["in_flight"] = [
                {"endpoint": name, "calls": n, "generation": old}
                for name, pool in sorted(proj.pools.items())
                for old, n in sorted(pool.running_before(gen.id).items())
            ]
            scan["kept"] = await self._reloaded(proj)
            scan["installs"] = [
                {
                    "requirements": list(e.requirements),
                    "environment": e.key,
                    "python": e.python,
                    "cached": cached.get(e.key, "cached") != "installed",
                    # found on disk, installed by an earlier runtime (the embedded one's cache)
                    "reused": cached.get(e.key) == "reused",
                    "install_s": round(e.install_s, 2),
                }
                for e in installs
            ]
            proj.logs.emit(
                stream="system",
                text=f"deployed {proj.key} {gen.id}: {len(changed)} file(s) changed",
            )
            return self._commit_reply(proj, gen, changed, scan, started)

    def _commit_reply(
        self,
        proj: Project,
        gen: Generation,
        changed: list[str],
        scan: dict[str, Any],
        started: float,
        unchanged: bool = False,
    ) -> CommitReply:
        return {
            "project": proj.key,
            "generation": gen.id,
            "unchanged": unchanged,
            "changed": changed,
            "reexecuted": scan.get("reexecuted", []),
            "restart": scan.get("restart", ""),
            "installs": scan.get("installs", []),
            "in_flight": scan.get("in_flight", []),
            "endpoints": [commit_endpoint(e) for e in scan.get("endpoints", [])],
            "duration_ms": round((time.perf_counter() - started) * 1000, 2),
            "kept": scan.get("kept") or {},
        }

    async def _reloaded(self, proj: Project) -> dict[str, dict[str, Any]]:
        """What the project's warm workers say of their kept objects once they run the new
        generation (waiting RELOAD_REPORT_WAIT_S at most), per endpoint that has something to say."""
        pools = list(proj.pools.values())
        reports = await asyncio.gather(*(p.reload_report(RELOAD_REPORT_WAIT_S) for p in pools))
        return {p.name: r for p, r in zip(pools, reports, strict=True) if r is not None}

    @staticmethod
    def _pool_info(p: Pool) -> dict[str, Any]:
        d = dict(p.info)
        d.update(gpu=p.spec.gpu_label, note=p.fallback_note, unavailable=p.unavailable)
        return d

    async def _install_declared(self, gen: Generation) -> tuple[list[PyEnv], dict[str, EnvSource]]:
        """Install every literal dependencies=[...] set before the code is imported; (envs, how
        each was found by key: "installed", "reused" or "cached", as EnvManager.ensure says)."""
        envs: list[PyEnv] = []
        cached_by_key: dict[str, EnvSource] = {}
        for rel in gen.entries:
            for reqs, line in static_dependencies(gen.dir / rel):
                try:
                    env, source = await self.envs.ensure(reqs, endpoint=f"{rel}:{line}")
                    if cached_by_key.get(env.key, "cached") == "cached":
                        cached_by_key[env.key] = source
                except InstallFailed as exc:
                    raise DeployRefused(
                        ErrorInfo(
                            "InstallError",
                            str(exc),
                            exc.output[-4000:],
                            [Frame(rel, line, "@endpoint", "", True)],
                            kind=ErrorKind.DEPLOY,
                        )
                    ) from None
                if env not in envs:
                    envs.append(env)
        return envs, cached_by_key

    async def _env_for(self, spec: EndpointSpec) -> PyEnv:
        env, _ = await self.envs.ensure(spec.dependencies, endpoint=spec.name)
        if self.fork and env.forkserver is None:
            env.forkserver = ForkServer(env.python, self._preload, self.worker_env())
            asyncio.ensure_future(env.forkserver.start())
        return env

    async def _scan(
        self, proj: Project, gen: Generation, extra_paths: list[str] | None = None
    ) -> dict[str, Any]:
        """Import the generation in the project's own scanner (a long-lived process that switches
        generations in place); projects never share one, so their modules never mix."""
        for attempt in range(2):
            if proj.scanner is None:
                await self._retire_scanners(keep=proj)
                env = self.worker_env(proj.key)
                env[IN_RUNTIME_ENV] = "scan"
                env["CUDA_VISIBLE_DEVICES"] = ""  # the scanner imports code; it never touches a GPU

                def gone(handle: Any, reason: str, proj: Project = proj) -> None:
                    if proj.scanner is handle:
                        proj.scanner = None

                proj.scanner = LocalWorker(f"scanner-{proj.key}", lambda *a: None, gone, env)
                await proj.scanner.start({})
            scanner = proj.scanner
            header = {
                "op": "scan",
                "gen": gen.id,
                "gen_dir": str(gen.dir),
                "manifest": gen.files,
                "entries": gen.entries,
                "paths": gen.paths,
                "skipped": gen.skipped,
                "extra_paths": extra_paths or [],
            }
            try:
                reply = await scanner.request(
                    header, "scanned", "scan_error", "fatal", timeout=self.scan_timeout
                )
            except TimeoutError:
                scanner.kill("import took too long")
                proj.scanner = None
                raise DeployRefused(
                    ErrorInfo(
                        "DeployTimeout",
                        f"importing the new code took over {self.scan_timeout:g}s; "
                        "move slow work (model loads) out of module level into setup() or keep()",
                        "",
                        kind=ErrorKind.DEPLOY,
                    )
                ) from None
            except PoolError as exc:
                proj.scanner = None
                if attempt == 0:
                    continue
                raise DeployRefused(
                    ErrorInfo(
                        "ImportCrashed",
                        f"importing the new code crashed the process: {exc}",
                        "",
                        kind=ErrorKind.DEPLOY,
                    )
                ) from None
            if reply["op"] == "fatal" or (reply["op"] == "scan_error" and not scanner.imported):
                # the scanner itself failed, or its first import did: it has no generation to go
                # back to (the refused one's folder is dropped), so the next deploy starts a fresh one
                scanner.kill(
                    "internal error while importing"
                    if reply["op"] == "fatal"
                    else "its first import failed"
                )
                proj.scanner = None
            if reply["op"] in ("scan_error", "fatal"):
                info = ErrorInfo.from_dict(reply["error"])
                info.kind = ErrorKind.DEPLOY
                raise DeployRefused(info)
            scanner.imported = True  # a generation to roll back to from now on
            if reply.get("restart"):
                # The scanner cannot reload this in place either: start it fresh on the new code.
                scanner.kill("restart for reload")
                proj.scanner = None
                if attempt == 0:
                    reply_restart = reply["restart"]
                    res = await self._scan(proj, gen, extra_paths)
                    res["restart"] = reply_restart
                    return res
            return reply
        raise AssertionError("unreachable")

    async def _retire_scanners(self, keep: Project) -> None:
        """At most MAX_SCANNERS import processes: stop the least recently deployed idle ones.
        A project whose scanner went is imported afresh on its next deploy."""
        live = [
            p
            for p in self.projects.values()
            if p.scanner is not None and p is not keep and not p.lock.locked()
        ]
        live.sort(key=lambda p: p.deployed_at)
        for p in live[: max(len(live) + 1 - MAX_SCANNERS, 0)]:
            scanner, p.scanner = p.scanner, None
            if scanner is not None:
                await scanner.stop(0.5)

    async def _apply(self, proj: Project, gen: Generation, scan: dict[str, Any]) -> None:
        seen = set()
        for info in scan.get("endpoints", []):
            spec = EndpointSpec.from_dict(info["spec"])
            seen.add(spec.name)
            pool = proj.pools.get(spec.name)
            if pool is None:
                await self.add_pool(proj, spec, gen, info)
            else:
                await self._update_pool(proj, pool, info, spec, gen, scan)
        for name in [n for n in proj.pools if n not in seen]:  # this project's only
            pool = proj.pools[name]
            if await self._update_variant(proj, pool, gen, scan, seen):
                continue
            await proj.pools.pop(name).close()

    async def _update_pool(
        self,
        proj: Project,
        pool: Pool,
        info: dict[str, Any],
        spec: EndpointSpec,
        gen: Generation,
        scan: dict[str, Any],
    ) -> None:
        """A deploy's new code, spec, environment and placement for an existing pool."""
        pool.update(
            info,
            spec,
            gen,
            replace=scan.get("restart", ""),
            pyenv=await self._env_for(spec),
            env=self._pool_env(proj, spec),
            placement=self.place(spec, info),
            gpu_fallbacks=self.gpu_fallbacks(spec),
        )

    async def _update_variant(
        self, proj: Project, pool: Pool, gen: Generation, scan: dict[str, Any], seen: set[str]
    ) -> bool:
        """A with_options variant whose base the deploy kept follows it onto the new code as
        the base's pool does (its running calls finish; its workers load the new generation
        between calls, or are replaced when its GPU, dependencies or env changed); False when
        it goes with its base (or its options no longer make a valid spec)."""
        base_name, options = pool.info.get("variant_of"), pool.info.get("variant_options")
        if base_name not in seen or not isinstance(options, dict):
            return False
        base = proj.pools[base_name]
        try:
            spec = variant_spec(base.spec, options)
        except (SpecError, TypeError) as exc:
            proj.logs.emit(
                endpoint=pool.name,
                stream="system",
                text=f"variant dropped: its options no longer apply to {base_name!r} ({exc})",
            )
            return False
        if spec.name != pool.name:
            return False
        info = {**base.info, "name": spec.name, "variant_of": base_name, "variant_options": options}
        await self._update_pool(proj, pool, info, spec, gen, scan)
        return True

    async def add_pool(
        self,
        proj: Project,
        spec: EndpointSpec,
        gen: Generation,
        info: dict[str, Any],
        target: str | None = None,
    ) -> Pool:
        """A new pool for the project's endpoint `spec` (target: the endpoint its workers run,
        when not its own, as a with_options variant's), placed by the backend."""
        place = self.place(spec, info)
        pool = proj.pools[spec.name] = Pool(
            info,
            spec,
            gen,
            self.backend,
            proj.logs,
            env=self._pool_env(proj, spec),
            placement=place,
            max_queue=self.max_queue,
            pyenv=await self._env_for(spec),
            project=proj.key,
            target=target,
            gpu_fallbacks=self.gpu_fallbacks(spec),
            siblings=proj.pools,
            sessions=self.sessions,
            allocator=self.allocator,
        )
        return pool

    def place(self, spec: EndpointSpec, info: dict[str, Any]) -> Placement:
        """Where the endpoint's workers run (the backend decides); its description `info` says
        on which GPU, and any fallback note or reason it cannot run here."""
        place = self.backend.placement(spec, self.gpu_fallback)
        info.update(gpu=spec.gpu_label, note=place.note, unavailable=place.unavailable)
        return place

    def _pool_env(self, proj: Project, spec: EndpointSpec) -> dict[str, str]:
        return {**self.worker_env(proj.key), **dict(spec.env)}

    def gpu_fallbacks(self, spec: EndpointSpec) -> GpuFallbacks:
        """Where a call that ran out of CUDA memory moves next (see Backend.gpu_fallbacks)."""
        return self.backend.gpu_fallbacks(spec)

    # --- calls --------------------------------------------------------------------------
    def pool(self, name: str, project: str | None = None) -> Pool:
        """The endpoint's pool. With a project key, only that project's endpoints count (KeyError
        otherwise); without one the name must be unambiguous (AmbiguousEndpoint otherwise)."""
        if project:
            proj = self.project(project)
            pool = proj.pools.get(name)
            if pool is None:
                known = ", ".join(sorted(proj.pools)) or "none"
                raise KeyError(
                    f"no endpoint named {name!r} in project {proj.key!r} (its endpoints: {known})"
                )
            return pool
        found = [(p.key, p.pools[name]) for p in self.projects.values() if name in p.pools]
        if len(found) == 1:
            return found[0][1]
        if found:
            raise AmbiguousEndpoint(name, sorted(k for k, _ in found))
        known = (
            ", ".join(sorted({n for p in self.projects.values() for n in p.pools}))
            or "none deployed yet"
        )
        raise KeyError(f"no endpoint named {name!r} on this runtime (endpoints: {known})")

    async def restore(self) -> list[str]:
        """A persistent store (not the embedded runtime's temporary one): deploy each project's
        last committed generation again, as it was committed, so calls work after a restart
        before any client syncs. A project that no longer deploys is logged and left out."""
        if self._tmp is not None:
            return []
        restored = []
        for saved in sorted(self.store.gens.glob(f"*/{CURRENT_FILE}")):
            key = saved.parent.name
            try:
                check_project_key(key)
                state = json.loads(saved.read_text())
                files, entries, paths = state["files"], state["entries"], state.get("paths")
                await self.commit(files, entries, key, paths, skipped=state.get("skipped"))
            except Exception as exc:  # noqa: BLE001 - one project's failure never keeps the runtime down
                msg = (
                    exc.info.message
                    if isinstance(exc, DeployRefused)
                    else f"{exc.__class__.__name__}: {exc}"
                )
                self.logs.emit(
                    stream="system",
                    text=f"could not serve {key} again after the restart: {msg}; sync it again",
                )
                print(
                    f"slipstream: could not serve {key} again after the restart: {msg}",
                    file=sys.stderr,
                    flush=True,
                )
                self.projects.pop(key, None)
                continue
            proj = self.projects[key]
            current = proj.store.current.dir if proj.store.current else None
            for d in proj.store.gens.glob("g*"):  # the previous process's generations
                if d.is_dir() and d != current:
                    shutil.rmtree(d, ignore_errors=True)
            restored.append(key)
        if restored:
            self.logs.emit(
                stream="system",
                text=f"serving {len(restored)} project(s) from the store again: {', '.join(restored)}",
            )
        return restored

    async def remove_project(self, key: str) -> None:
        """Forget a project: its pools stop, its scanner stops, its generations are deleted."""
        proj = self.project(key)
        async with proj.lock:
            await asyncio.gather(*(p.close() for p in proj.pools.values()), return_exceptions=True)
            proj.pools.clear()
            if proj.scanner is not None:
                await proj.scanner.stop(0.5)
                proj.scanner = None
            self.projects.pop(proj.key, None)
            if self._last_project is proj:
                self._last_project = None
            shutil.rmtree(proj.store.gens, ignore_errors=True)
        proj.logs.emit(stream="system", text=f"project {proj.key} removed")

    async def shutdown(self) -> None:
        pools = [p for proj in self.projects.values() for p in proj.pools.values()]
        await asyncio.gather(*(p.close() for p in pools), return_exceptions=True)
        for proj in self.projects.values():
            proj.pools.clear()
            if proj.scanner is not None:
                await proj.scanner.stop(0.5)
                proj.scanner = None
        await self.envs.close()
        shutil.rmtree(
            self.store.root / "routing", ignore_errors=True
        )  # peers' tokens never outlive the runtime
        if self._tmp is not None:
            self._tmp.cleanup()


def default_store_dir() -> Path | None:
    d = os.environ.get(envvars.STORE)
    return Path(d) if d else None
